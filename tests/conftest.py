"""Test harness: a real PostgreSQL database per test session, a rolled-back transaction per test.

The server is CX_TEST_DATABASE_URL if set, else one answering on 127.0.0.1:5432, else the
embedded server. The suite creates its own database, migrates it to head and drops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.keys.scopes import Scope
from app.keys.service import create_key
from app.main import create_app
from app.platform.config import Environment, Settings
from app.platform.db import create_engine
from app.platform.migrate import upgrade

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_PSEUDONYM_KEY = "test-pseudonym-key-0123456789abcdef0123456789"


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(_plain(url), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _server_url() -> str:
    """An admin URL of the server the suite runs on."""
    configured = os.environ.get("CX_TEST_DATABASE_URL")
    if configured:
        return configured
    if asyncio.run(_answers(LOCAL_SERVER)):
        return LOCAL_SERVER
    from app.platform.embedded import start_embedded

    data_dir = Path(tempfile.mkdtemp(prefix="cx-test-pg-"))
    return start_embedded(data_dir, database="postgres")


def _with_database(url: str, database: str) -> str:
    return make_url(_plain(url)).set(database=database).render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_plain(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def server_url() -> str:
    return _server_url()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database migrated to head, dropped after the session."""
    name = f"cx_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    url = _with_database(server_url, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        asyncio.run(upgrade(url))
        yield url
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        database_url=database_url,
        pseudonym_key=TEST_PSEUDONYM_KEY,
        # Concurrency tests hold 20+ requests open at once, each with its own connection.
        db_pool_size=30,
        db_max_overflow=10,
        # High enough that no test trips it by accident, so the limiter still runs on every call.
        rate_limit_per_second=100_000,
        rate_limit_burst=100_000,
        public_rate_limit_per_second=100_000,
        public_rate_limit_burst=100_000,
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings, database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings, database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection in a transaction that is rolled back after the test."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine, connection: AsyncConnection) -> Any:
    """The app with every request's session inside the test's transaction (as savepoints)."""
    application = create_app(settings, engine=engine)
    application.state.sessionmaker = async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    return application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as c:
        yield c


KeyFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def make_key(app: Any) -> KeyFactory:
    """Issue a key inside the test's transaction: make_key("responses:write", org="HQ")."""

    async def make(*scopes: str, org: str | None = None, source: str | None = None) -> str:
        async with app.state.sessionmaker() as session, session.begin():
            issued = await create_key(
                session,
                name="test",
                scopes=[Scope(s) for s in scopes] or [Scope.admin],
                org_code=org,
                source=source,
            )
        return issued.secret_key

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def admin(client: httpx.AsyncClient, make_key: KeyFactory) -> dict[str, str]:
    """Headers of an unbound admin key."""
    return bearer(await make_key("admin"))


# Committed mode: for tests about concurrency, where requests need their own connections.

TABLES = (
    "evaluation_scorecards, evaluation_versions, evaluation_periods, evaluation_schemes,"
    " purviews, executive_targets, executives, tasks, cases, case_rules, invitations,"
    " sampling_rules, webhook_deliveries, webhooks,"
    " contact_rules, opt_outs, responses, tombstones, index_deltas,"
    " index_rollup, index_rollup_stage, index_rollup_survey, segment_deltas,"
    " index_rollup_segment, choice_deltas, choice_rollup, moment_deltas, moment_rollup,"
    " day_deltas, index_rollup_day,"
    " stage_weights, targets,"
    " idempotency_keys, audit_events, ui_sessions, api_keys, survey_versions, surveys,"
    " org_placements, orgs"
)


@pytest.fixture
async def committed_app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Any]:
    """The app on the real engine (each request its own connection and commit); emptied after."""
    application = create_app(settings, engine=engine)
    try:
        yield application
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
            # A new token: no process may take its cached tree for the emptied one.
            await conn.exec_driver_sql(
                "UPDATE tree_state SET version = gen_random_uuid()::text, tree_date = NULL"
            )


@pytest.fixture
async def committed_client(committed_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(committed_app) as c:
        yield c


@pytest.fixture
async def committed_admin(committed_app: Any) -> dict[str, str]:
    async with committed_app.state.sessionmaker() as session, session.begin():
        issued = await create_key(session, name="admin", scopes=[Scope.admin])
    return bearer(issued.secret_key)
