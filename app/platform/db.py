"""Database plumbing: declarative base with a naming convention, engine factory, request session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from starlette.requests import Request

from app.platform.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def create_engine(settings: Settings, url: str, **overrides: Any) -> AsyncEngine:
    """An asyncpg engine with the pool sizes and per-connection settings of `settings`.

    No pre-ping: it cost three round trips (BEGIN, ping, ROLLBACK) on every checkout. A
    connection that died with the server fails its next statement instead; that is a 503, and
    SQLAlchemy then invalidates the whole pool, so the service recovers on the next request.
    """
    connect_args: dict[str, Any] = {
        "server_settings": {
            "application_name": "cx-survey",
            "statement_timeout": str(settings.db_statement_timeout_ms),
        },
        "timeout": 5,
    }
    parsed = make_url(url)
    if parsed.host in LOOPBACK and not ({"ssl", "sslmode"} & set(parsed.query)):
        # asyncpg's default (prefer) would encrypt loopback traffic, for nothing.
        connect_args["ssl"] = False
    options: dict[str, Any] = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "connect_args": connect_args,
    }
    options.update(overrides)
    return create_async_engine(url, **options)


async def connect_driver(engine: AsyncEngine, *, name: str) -> Any:
    """A connection of its own (outside the pool) to the engine's database, as the engine's
    connections are made, named `name` (application_name): for a worker that holds one for
    long (LISTEN)."""
    import asyncpg

    url = engine.url
    options: dict[str, Any] = {"timeout": 5, "server_settings": {"application_name": name}}
    if url.host in LOOPBACK and not ({"ssl", "sslmode"} & set(url.query)):
        options["ssl"] = False
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return await asyncpg.connect(dsn, **options)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, inside the session's transaction."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    if not driver.is_in_transaction():
        # SQLAlchemy's adapter begins lazily, at its first statement: begin it now, as that
        # statement would, so that raw statements join the transaction (a `SELECT 1` would
        # cost a round trip more).
        adapter = raw.dbapi_connection
        begin = getattr(adapter, "_start_transaction", None)
        if begin is not None and getattr(adapter, "_transaction", False) is None:
            await begin()
        if not driver.is_in_transaction():  # the adapter changed, or is in autocommit
            await conn.execute(text("SELECT 1"))
    return driver


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session; the one owner of its transaction (commit on success)."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, session.begin():
        yield session
