"""The state of an evaluation period as the writers of that period see it: open or closed.

Every write that belongs to a period takes the period's row `FOR SHARE` (creating it open
first); a close takes it `FOR UPDATE`. So a close waits for the writes in flight, and no write
is acknowledged for a period once it is closed (docs/architecture.md, "Executive evaluation").
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.evaluations.models import EvaluationPeriod
from app.platform.errors import Conflict

OPEN = "open"
CLOSED = "closed"


class PeriodClosed(Conflict):
    slug = "period-closed"
    title = "The evaluation period is closed"


async def _locked(session: AsyncSession, period: str, *, exclusive: bool) -> EvaluationPeriod:
    await session.execute(insert(EvaluationPeriod).values(period=period).on_conflict_do_nothing())
    query = select(EvaluationPeriod).where(EvaluationPeriod.period == period)
    query = query.with_for_update() if exclusive else query.with_for_update(read=True)
    # populate_existing: the row as locked now, not as the session may have loaded it before.
    row = await session.scalar(query.execution_options(populate_existing=True))
    assert row is not None
    return row


async def writable(session: AsyncSession, period: str) -> None:
    """Hold `period` open until the transaction ends; 409 `period-closed` if it is closed."""
    row = await _locked(session, period, exclusive=False)
    if row.status == CLOSED:
        raise PeriodClosed(
            f"The evaluation period {period} is closed: reopen it to change what it holds."
        )


async def exclusive(session: AsyncSession, period: str) -> EvaluationPeriod:
    """The period's row, locked against every writer and every other close or reopen."""
    return await _locked(session, period, exclusive=True)
