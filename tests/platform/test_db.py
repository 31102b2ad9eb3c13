"""driver_connection: raw asyncpg statements inside the session's own transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import nullcontext

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.db import create_sessionmaker, driver_connection


@pytest.fixture
async def scratch(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS db_scratch (n int)"))
        await conn.execute(text("TRUNCATE db_scratch"))
    yield engine
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE db_scratch"))


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_raw_statements_commit_and_roll_back_with_the_session(
    scratch: AsyncEngine, outcome: str
) -> None:
    sessionmaker = create_sessionmaker(scratch)
    with pytest.raises(RuntimeError) if outcome == "rollback" else nullcontext():
        async with sessionmaker() as session, session.begin():
            raw = await driver_connection(session)
            assert raw.is_in_transaction()
            await raw.execute("INSERT INTO db_scratch VALUES (1)")
            # the ORM's statements run in the same transaction
            seen = await session.scalar(text("SELECT count(*) FROM db_scratch"))
            assert seen == 1
            if outcome == "rollback":
                raise RuntimeError("roll it back")
    async with sessionmaker() as session:
        kept = await session.scalar(text("SELECT count(*) FROM db_scratch"))
    assert kept == (1 if outcome == "commit" else 0)
