"""What the benchmark scripts share: the database they run on, setup of orgs and surveys."""

from __future__ import annotations

import asyncio
import os

import asyncpg
from sqlalchemy.engine import make_url

from app.config import Settings
from app.keys.scopes import Scope
from app.keys.service import Principal

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_PRINCIPAL = Principal(key_id="bench", name="bench", scopes=frozenset({Scope.admin}))


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def server_url() -> str:
    """CX_BENCH_SERVER_URL, else a server on 127.0.0.1:5432, else the embedded one."""
    configured = os.environ.get("CX_BENCH_SERVER_URL")
    if configured:
        return configured

    async def answers() -> bool:
        try:
            conn = await asyncpg.connect(LOCAL_SERVER, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    if asyncio.run(answers()):
        return LOCAL_SERVER
    from pathlib import Path

    from app.embedded import start_embedded

    return plain(start_embedded(Path(".cx-data"), database="postgres"))


def database_url(server: str, name: str) -> str:
    url = make_url(plain(server)).set(database=name).render_as_string(hide_password=False)
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def recreate_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(plain(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def bench_settings(url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        db_pool_size=4,
        db_statement_timeout_ms=0,
    )
