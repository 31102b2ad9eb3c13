"""Graceful shutdown: SIGTERM during load finishes in-flight requests within the configured
timeout, and leaves no half-written batch even when the timeout cuts requests short."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import _plain, bearer
from tests.factories import response_body, standard_setup
from tests.scratch import Served, cli_env, cli_key, scratch_database, served, until

BATCH_CLIENTS = 6
BATCH_SIZE = 1000
INVALID_PER_BATCH = 10  # off the scale: `invalid` in the results, never stored
SINGLE_CLIENTS = 20
# A request whose body was sent this long before SIGTERM has surely reached the server's
# application (a busy event loop reads it well within this); it is in flight, not a late one.
IN_FLIGHT_MARGIN = 1.0
EXIT_SLACK = 30  # seconds beyond the shutdown timeout for the processes to end (busy machine)


@dataclass
class Sent:
    """One request and what became of it."""

    kind: str  # "batch" or "single"
    valid: list[str]
    invalid: list[str]
    body_sent_at: float | None = None
    answered_at: float | None = None
    status: int | None = None
    result: Any = None
    retry_after: str | None = None
    error: str | None = None


def _open() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass
class Load:
    sent: list[Sent] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=_open)  # clients send only while it is set

    def settled(self) -> bool:
        """Whether every request sent so far has its answer (or its error)."""
        return all(s.status is not None or s.error is not None for s in self.sent)


def _batch(client_no: int, n: int) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    items, valid, invalid = [], [], []
    for i in range(BATCH_SIZE):
        external_id = f"b{client_no}-{n}-{i}"
        bad = i % (BATCH_SIZE // INVALID_PER_BATCH) == 0
        answers = {"overall": 9 if bad else 1 + i % 5}
        items.append(response_body(external_id=external_id, answers=answers))
        (invalid if bad else valid).append(external_id)
    return items, valid, invalid


async def _send(
    client: httpx.AsyncClient, key: str, load: Load, kind: str, client_no: int, n: int
) -> bool:
    """Send one request, note what happened; False when the server is gone."""
    loop = asyncio.get_running_loop()
    if kind == "batch":
        items, valid, invalid = _batch(client_no, n)
        url, body = "/v1/responses/batch", {"items": items}
    else:
        external_id = f"s{client_no}-{n}"
        url, body = "/v1/responses", response_body(external_id=external_id)
        valid, invalid = [external_id], []
    sent = Sent(kind, valid, invalid)
    load.sent.append(sent)

    async def trace(event: str, _: Any) -> None:
        if event == "http11.send_request_body.complete":
            sent.body_sent_at = loop.time()

    try:
        r = await client.post(url, json=body, headers=bearer(key), extensions={"trace": trace})
    except httpx.TransportError as exc:
        sent.error = type(exc).__name__
        return False
    sent.answered_at = loop.time()
    sent.status = r.status_code
    sent.result = r.json() if r.headers.get("content-type", "").endswith("json") else r.text
    sent.retry_after = r.headers.get("retry-after")
    return True


async def _client(base_url: str, key: str, load: Load, kind: str, client_no: int) -> None:
    # A connection per request: a keep-alive connection that the server closes at shutdown
    # would fail the next request for a reason that is not the server's.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        n = 0
        while not load.stop.is_set():
            await load.gate.wait()
            if load.stop.is_set() or not await _send(client, key, load, kind, client_no, n):
                break
            n += 1


async def _stored(url: str) -> Counter[str]:
    conn = await asyncpg.connect(_plain(url))
    try:
        rows = await conn.fetch("SELECT external_id FROM responses")
    finally:
        await conn.close()
    return Counter(row["external_id"] for row in rows)


@dataclass
class Outcome:
    load: Load
    locked_at: float
    sigterm_at: float
    exit_seconds: float
    returncode: int
    log: str
    stored: Counter[str]

    def in_flight(self) -> list[Sent]:
        """Requests fully sent after the lock was taken (so they cannot have committed before
        it), well before SIGTERM, and not answered before it."""
        return [
            s
            for s in self.load.sent
            if s.body_sent_at is not None
            and self.locked_at <= s.body_sent_at <= self.sigterm_at - IN_FLIGHT_MARGIN
            and (s.answered_at is None or s.answered_at > self.sigterm_at)
        ]

    def summary(self) -> str:
        statuses = Counter((s.kind, s.status or s.error) for s in self.load.sent)
        return (
            f"{len(self.load.sent)} requests {dict(statuses)}; {len(self.in_flight())} in flight "
            f"at SIGTERM; exit {self.returncode} after {self.exit_seconds:.1f} s; "
            f"{sum(self.stored.values())} stored"
        )


@pytest.fixture
async def database(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url) as url:
        yield url


async def _lock_waiters(conn: Any) -> int:
    waiting: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'cx-survey' AND wait_event_type = 'Lock'"
    )
    return waiting


async def _sigterm_under_load(
    database: str, tmp_path: Path, *, shutdown_timeout: int, hold_after_sigterm: float | None
) -> Outcome:
    """Serve and load it with batches and single posts; hold every insert on a table lock, so
    that requests are surely in flight; SIGTERM; release the lock `hold_after_sigterm` seconds
    later (None: only once the server has exited)."""
    env = cli_env(
        database,
        rate_limit_per_second="0",
        shutdown_timeout_seconds=str(shutdown_timeout),
        db_pool_size="10",
        db_max_overflow="10",
    )
    key = await cli_key(env, tmp_path, "admin", name="load")
    loop = asyncio.get_running_loop()
    load = Load()
    locker = await asyncpg.connect(_plain(database))
    lock = locker.transaction()
    locked = False
    try:
        async with served(env, tmp_path, workers=2) as api:
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
                await standard_setup(client, bearer(key))
            clients = [
                asyncio.create_task(_client(api.base_url, key, load, kind, i))
                for kind, count in (("batch", BATCH_CLIENTS), ("single", SINGLE_CLIENTS))
                for i in range(count)
            ]
            try:
                # Warm: a few batches answered before the signal.
                assert await until(
                    lambda: sum(1 for s in load.sent if s.kind == "batch" and s.status) >= 2, 180
                ), _state(api, load)
                # Let every request under way finish, so that none has committed unanswered
                # when the lock is taken; those sent after it all wait for it.
                load.gate.clear()
                assert await until(load.settled, 120), _state(api, load)
                await lock.start()
                await locker.execute("LOCK TABLE responses IN SHARE MODE")
                locked, locked_at = True, loop.time()
                load.gate.set()
                for _ in range(600):
                    if await _lock_waiters(locker) >= 4:
                        # No await between this count and the signal: what it sees is in flight.
                        margin = loop.time() - IN_FLIGHT_MARGIN
                        waiting = [
                            s
                            for s in load.sent
                            if s.kind == "batch"
                            and s.status is None
                            and s.error is None
                            and s.body_sent_at is not None
                            and locked_at <= s.body_sent_at <= margin
                        ]
                        if len(waiting) >= 2:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("no request waits for the lock\n" + _state(api, load))
                load.stop.set()
                sigterm_at = loop.time()
                api.process.send_signal(signal.SIGTERM)
                if hold_after_sigterm is not None:
                    await asyncio.sleep(hold_after_sigterm)
                    assert api.process.returncode is None, "exited without waiting for requests"
                    await lock.rollback()
                    locked = False
                try:
                    await asyncio.wait_for(api.process.wait(), shutdown_timeout + EXIT_SLACK)
                except TimeoutError:
                    raise AssertionError("the server did not exit in time:\n" + api.log()) from None
                exit_seconds = loop.time() - sigterm_at
                if locked:
                    await lock.rollback()
                    locked = False
                _, pending = await asyncio.wait(clients, timeout=60)
                assert not pending, _state(api, load)
            finally:
                load.stop.set()
                for task in clients:
                    task.cancel()
                await asyncio.gather(*clients, return_exceptions=True)
            returncode = api.process.returncode
            assert returncode is not None
            log = api.log()
    finally:
        if locked:
            await lock.rollback()
        await locker.close()
    # Sessions of the ended server that were cut short end (roll back) on their own.
    await asyncio.sleep(1)
    stored = await _stored(database)
    return Outcome(load, locked_at, sigterm_at, exit_seconds, returncode, log, stored)


def _state(api: Served, load: Load) -> str:
    statuses = Counter((s.kind, s.status or s.error) for s in load.sent)
    return f"{dict(statuses)}\n{api.log()[-5000:]}"


def _assert_nothing_half_written(outcome: Outcome) -> None:
    summary = outcome.summary()
    stored = outcome.stored
    for sent in outcome.load.sent:
        assert not any(stored[eid] for eid in sent.invalid), summary
        kept = sum(stored[eid] for eid in sent.valid)
        # All of a batch or none of it: never a part.
        assert kept in (0, len(sent.valid)), (sent.kind, kept, len(sent.valid), summary)
        if sent.status is not None:
            assert sent.status != 500, (sent.result, summary)  # a 500 is a bug
        if sent.kind == "batch" and sent.status == 200:
            assert kept == len(sent.valid), summary  # acknowledged: every valid item is stored
            assert sent.result["counts"]["created"] == len(sent.valid), summary
            assert sent.result["counts"]["invalid"] == len(sent.invalid), summary
        if sent.kind == "single" and sent.status == 201:
            assert kept == 1, summary
    assert max(stored.values(), default=1) == 1, summary


async def test_sigterm_finishes_requests_in_flight(database: str, tmp_path: Path) -> None:
    timeout, hold = 60, 3.0
    outcome = await _sigterm_under_load(
        database, tmp_path, shutdown_timeout=timeout, hold_after_sigterm=hold
    )
    summary = outcome.summary()
    print(summary)
    # The parent process waits for its workers and exits 0 (uvicorn's supervisor).
    assert outcome.returncode == 0, summary + "\n" + outcome.log[-5000:]
    assert hold <= outcome.exit_seconds <= timeout + EXIT_SLACK, summary
    assert outcome.log.count("Application shutdown complete") == 2, outcome.log[-5000:]
    assert "timeout graceful shutdown exceeded" not in outcome.log, summary
    _assert_nothing_half_written(outcome)
    # Every request in flight at SIGTERM was answered after the lock let it go, none dropped.
    in_flight = outcome.in_flight()
    assert sum(1 for s in in_flight if s.kind == "batch") >= 2, summary
    for sent in in_flight:
        assert sent.error is None, (sent.kind, sent.error, summary)
        assert sent.status in (200, 201), (sent.status, summary)
    # Those held by the lock were answered after it let them go, seconds after the signal.
    held = [s for s in in_flight if (s.answered_at or 0) >= outcome.sigterm_at + hold]
    assert held, summary


async def test_sigterm_timeout_cuts_requests_short_without_half_written_batches(
    database: str, tmp_path: Path
) -> None:
    # The lock outlasts the timeout: the requests in flight are cancelled, and roll back whole.
    timeout = 2
    outcome = await _sigterm_under_load(
        database, tmp_path, shutdown_timeout=timeout, hold_after_sigterm=None
    )
    summary = outcome.summary()
    print(summary)
    assert outcome.returncode == 0, summary + "\n" + outcome.log[-5000:]
    assert timeout <= outcome.exit_seconds <= timeout + EXIT_SLACK, summary
    assert "timeout graceful shutdown exceeded" in outcome.log, summary
    _assert_nothing_half_written(outcome)
    in_flight = outcome.in_flight()
    assert sum(1 for s in in_flight if s.kind == "batch") >= 2, summary
    for sent in in_flight:
        # Cut short, never acknowledged: a 503 to retry (or the connection closed), no trace.
        assert sent.status in (None, 503), (sent.status, sent.result, summary)
        if sent.status == 503:
            assert sent.result["type"] == "https://cx-survey.dev/problems/service-unavailable"
            assert sent.retry_after is not None
        assert not any(outcome.stored[eid] for eid in sent.valid), summary
