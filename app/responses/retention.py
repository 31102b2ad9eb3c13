"""Retention: purge responses older than N calendar months (and expired idempotency records).

A purge deletes through erasure's code path, so each purged response leaves a tombstone (reason
`purged`) and the index trigger takes it out of every index at once. It works in bounded batches,
each its own committed transaction, so a huge purge never holds one giant transaction and an
interrupted one is simply run again.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.audit.models import AuditEvent
from app.idempotency import service as idempotency
from app.platform.db import driver_connection
from app.responses.erasure import delete_with_tombstones

DEFAULT_BATCH_SIZE = 5_000

# The oldest responses first, along ix_responses_occurred_at_id.
_OLDEST = (
    "r.id IN (SELECT id FROM responses WHERE occurred_at < $1"
    " ORDER BY occurred_at, id LIMIT {limit})"
)
_COUNT_OLD = text("SELECT count(*) FROM responses WHERE occurred_at < :cutoff")
_COUNT_OLD_INVITATIONS = text("SELECT count(*) FROM invitations WHERE occurred_at < :cutoff")
# Invitations hold a customer pseudonym: they leave with the responses of their time.
_DELETE_OLD_INVITATIONS = text("DELETE FROM invitations WHERE occurred_at < :cutoff")
_COUNT_EXPIRED = text("SELECT count(*) FROM idempotency_keys WHERE expires_at <= :now")


@dataclass(frozen=True)
class PurgeResult:
    months: int
    cutoff: datetime
    responses: int
    idempotency_records: int
    dry_run: bool
    invitations: int = 0


def retention_cutoff(now: datetime, months: int, zone: ZoneInfo) -> datetime:
    """Midnight, in `zone`, of the date `months` calendar months before now's date there.

    The day is clamped to the target month's length (31 May minus 3 months: 28 or 29 Feb), and
    the cutoff falls on a day boundary of the reporting zone, so no index day is half purged.
    """
    today = now.astimezone(zone).date()
    index = today.year * 12 + (today.month - 1) - months
    year, month = index // 12, index % 12 + 1
    day = min(today.day, calendar.monthrange(year, month)[1])
    return datetime.combine(date(year, month, day), time(), tzinfo=zone)


async def purge(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    months: int,
    now: datetime,
    zone: ZoneInfo,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
) -> PurgeResult:
    """Delete responses that occurred before the cutoff (leaving tombstones) and idempotency
    records expired by `now`; one audit event `responses.purge` (none on a dry run)."""
    if months < 1 or batch_size < 1:
        raise ValueError("months and batch_size must be at least 1")
    cutoff = retention_cutoff(now, months, zone)
    if dry_run:
        async with sessionmaker() as session, session.begin():
            old = await session.scalar(_COUNT_OLD, {"cutoff": cutoff})
            expired = await session.scalar(_COUNT_EXPIRED, {"now": now})
            invitations = await session.scalar(_COUNT_OLD_INVITATIONS, {"cutoff": cutoff})
        return PurgeResult(
            months, cutoff, old or 0, expired or 0, dry_run=True, invitations=invitations or 0
        )

    total = 0
    event_id: int | None = None
    while True:
        async with sessionmaker() as session, session.begin():
            rows = await delete_with_tombstones(
                await driver_connection(session),
                match=_OLDEST.format(limit=int(batch_size)),
                value=cutoff,
                within_org=None,
                reason="purged",
            )
            total += len(rows)
            details = {"months": months, "cutoff": cutoff.isoformat(), "count": total}
            # One event, kept equal to what is committed: written with the first batch,
            # its count raised in the transaction of every later one.
            if event_id is None:
                event = await audit.record(
                    session, actor=audit.CLI, action=audit.Action.responses_purge, details=details
                )
                event_id = event.id
            elif rows:
                await session.execute(
                    update(AuditEvent).where(AuditEvent.id == event_id).values(details=details)
                )
        if not rows:
            break

    async with sessionmaker() as session, session.begin():
        gone = await session.execute(_DELETE_OLD_INVITATIONS, {"cutoff": cutoff})
        invitations = gone.rowcount  # type: ignore[attr-defined]
    expired = await idempotency.sweep(sessionmaker, now=now)
    return PurgeResult(months, cutoff, total, expired, dry_run=False, invitations=invitations)
