"""Schema migrations from code: Alembic upgrade/downgrade on a URL, and the URL resolution."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.platform.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIGRATION_LOCK_ID = 7_301_942  # pg advisory lock: one migrator at a time


def resolve_database_url(settings: Settings) -> str:
    """CX_DATABASE_URL, or else the embedded server in CX_DATA_DIR (started or joined)."""
    if settings.database_url:
        return settings.database_url
    from app.platform.embedded import start_embedded

    return start_embedded(settings.data_dir)


def alembic_config() -> Config:
    ini = PROJECT_ROOT / "alembic.ini"
    cfg = Config(str(ini)) if ini.exists() else Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.attributes["configure_logger"] = False
    return cfg


async def run_alembic(url: str, action: str, revision: str) -> None:
    """Run `alembic <action> <revision>` on `url` under an advisory lock."""
    engine = create_async_engine(url)

    def _do(connection: Connection) -> None:
        # Held until the commit below: a migrator that waited for it then sees the finished schema.
        # (A session lock released before the commit let it read the old alembic_version.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, revision)

    try:
        async with engine.connect() as connection:
            await connection.run_sync(_do)
            await connection.commit()
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    await run_alembic(url, "upgrade", revision)


async def downgrade(url: str, revision: str = "base") -> None:
    await run_alembic(url, "downgrade", revision)
