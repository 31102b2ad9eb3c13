"""The delivery worker: claims due deliveries in a short transaction, sends them, records each
outcome in another. Several workers (processes) never send one delivery at the same time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform import clock
from app.platform.config import Settings
from app.webhooks import sender

logger = logging.getLogger("cx_survey.webhooks")

# Seconds after attempt 1, 2, ... 7 before the next; the 8th failure is final.
SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
ATTEMPTS = len(SCHEDULE) + 1
# A claimed delivery is not claimed again before this (a send takes at most 16 s): a worker
# that died after claiming leaves it to be sent again once the lease runs out.
LEASE = timedelta(seconds=60)
BATCH = 50
SWEEP_EVERY = timedelta(minutes=10)

_CLAIM = """
UPDATE webhook_deliveries d SET next_attempt_at = $1::timestamptz + $3::interval
FROM webhooks w
WHERE w.id = d.webhook_id AND d.id IN (
    SELECT c.id FROM webhook_deliveries c JOIN webhooks cw ON cw.id = c.webhook_id
    WHERE c.status = 'pending' AND c.next_attempt_at <= $1 AND cw.enabled
    ORDER BY c.next_attempt_at
    LIMIT $2
    FOR UPDATE OF c SKIP LOCKED)
RETURNING d.id, d.msg_id, d.payload, d.attempt_count, w.id AS webhook_id, w.url, w.secret,
          w.previous_secret, w.previous_until
"""

_RECORD = """
UPDATE webhook_deliveries
SET status = $2, attempt_count = attempt_count + 1, next_attempt_at = $3,
    attempts = attempts || $4::jsonb, delivered_at = $5
WHERE id = $1
"""

_DISABLE = """
UPDATE webhooks SET enabled = false, disabled_reason = $2 WHERE id = $1
"""

_SWEEP = """
DELETE FROM webhook_deliveries WHERE status = 'delivered' AND delivered_at < $1
"""


def next_after(attempts_made: int, *, scale: float) -> timedelta | None:
    """The wait after the `attempts_made`-th failed attempt; None when that one was the last."""
    if attempts_made >= ATTEMPTS:
        return None
    return timedelta(seconds=SCHEDULE[attempts_made - 1] * scale)


async def deliver_due(engine: AsyncEngine, client: httpx.AsyncClient, settings: Settings) -> int:
    """Claim and send the deliveries due now; how many were attempted."""
    now = clock.now()
    async with engine.begin() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        claimed = await driver.fetch(_CLAIM, now, BATCH, LEASE)
    if not claimed:
        return 0
    outcomes = await asyncio.gather(*(_attempt(client, row, settings) for row in claimed))
    async with engine.begin() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        for row, outcome in zip(claimed, outcomes, strict=True):
            await _record(driver, row, outcome, settings)
    return len(claimed)


def _secrets(row: Any) -> list[str]:
    secrets = [row["secret"]]
    if row["previous_secret"] and row["previous_until"] and row["previous_until"] > clock.now():
        secrets.append(row["previous_secret"])
    return secrets


async def _attempt(client: httpx.AsyncClient, row: Any, settings: Settings) -> sender.Outcome:
    return await sender.send(
        client,
        url=row["url"],
        msg_id=row["msg_id"],
        body=bytes(row["payload"]),
        secrets=_secrets(row),
        allow_http=settings.webhook_allow_http,
        allow_private=settings.webhook_allow_private,
    )


async def _record(driver: Any, row: Any, outcome: sender.Outcome, settings: Settings) -> None:
    now = clock.now()
    made = row["attempt_count"] + 1
    attempt = orjson.dumps(
        [
            {
                "at": now.isoformat(),
                "status_code": outcome.status_code,
                "error": outcome.error,
                "duration_ms": outcome.duration_ms,
            }
        ]
    ).decode()
    if outcome.delivered:
        await driver.execute(_RECORD, row["id"], "delivered", None, attempt, now)
        return
    if outcome.status_code == 410:
        await driver.execute(_RECORD, row["id"], "failed", None, attempt, None)
        await driver.execute(_DISABLE, row["webhook_id"], "the receiver answered 410 Gone")
        return
    wait = next_after(made, scale=settings.webhook_retry_scale)
    if wait is None:
        await driver.execute(_RECORD, row["id"], "failed", None, attempt, None)
    else:
        await driver.execute(_RECORD, row["id"], "pending", now + wait, attempt, None)


async def sweep(engine: AsyncEngine, settings: Settings) -> None:
    """Forget delivered payloads older than CX_WEBHOOK_LOG_DAYS."""
    async with engine.begin() as conn:
        raw = await conn.get_raw_connection()
        cutoff: datetime = clock.now() - timedelta(days=settings.webhook_log_days)
        await raw.driver_connection.execute(_SWEEP, cutoff)  # type: ignore[union-attr]


async def run(engine: AsyncEngine, settings: Settings, *, stop: asyncio.Event) -> None:
    """Deliver until `stop` is set: what is due, then wait a poll interval (at once again when
    a full batch was due)."""
    interval = settings.webhook_poll_seconds
    swept = clock.now() - SWEEP_EVERY
    async with httpx.AsyncClient(verify=True) as client:
        while not stop.is_set():
            busy = False
            try:
                busy = await deliver_due(engine, client, settings) >= BATCH
                if clock.now() - swept >= SWEEP_EVERY:
                    await sweep(engine, settings)
                    swept = clock.now()
            except Exception as error:  # the database may be away; the next round tries again
                logger.warning("webhook delivery round failed: %s", type(error).__name__)
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
