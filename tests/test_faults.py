"""Database faults: with PostgreSQL away every endpoint answers 503 (never 500) and the service
recovers by itself when it returns; a crash of the database under load loses nothing acknowledged
and doubles nothing retried."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.keys.scopes import Scope
from app.keys.service import create_key
from app.main import create_app
from app.platform.config import Environment, Settings
from app.platform.db import create_engine, create_sessionmaker
from app.platform.migrate import upgrade
from tests.conftest import TEST_PSEUDONYM_KEY, bearer
from tests.factories import response_body, standard_setup
from tests.scratch import (
    ThrowawayPostgres,
    cli_env,
    cli_key,
    served,
    throwaway_postgres,
    until,
)

PROBLEM = "application/problem+json"
DATABASE = "cx_faults"
# Operations that answer without the database; every other one needs it (if only for the key).
WITHOUT_DATABASE = {("GET", "/livez")}
# Path parameters by name, plausible enough that a route gets as far as the database.
PATH_VALUES = {
    "code": "HQ",
    "version": "1",
    "period": "2026",
    "response_id": "999999999",  # none: its DELETE must not erase a response of the test
    "ref": "nobody",  # the erasure of a customer who has no responses
    "key_id": "0123456789ab",
    "token": "A" * 32,  # well-formed: only the database can say that it names nothing
}


async def _create_database(server: ThrowawayPostgres) -> str:
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()
    url = server.database_url(DATABASE)
    await upgrade(url)
    return url


def _settings(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": Environment.test,
        "database_url": url,
        "pseudonym_key": TEST_PSEUDONYM_KEY,
        "fold_interval_seconds": 0.2,
        "rate_limit_per_second": 0,
        "db_pool_timeout": 5,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _operations(app: Any) -> list[tuple[str, str]]:
    """(method, concrete path) of every operation the OpenAPI document lists."""
    operations = []
    for template, methods in app.openapi()["paths"].items():
        path = re.sub(r"\{([^}]+)\}", lambda m: PATH_VALUES.get(m[1], "1"), template)
        operations += [(method.upper(), path) for method in methods]
    return operations


async def _call(client: httpx.AsyncClient, method: str, path: str, key: str) -> httpx.Response:
    # An empty JSON object where a body is allowed: the key is checked before the body is. The
    # public routes take no key: their body is checked first, so it must be a valid one.
    content: dict[str, Any] = {"answers": {"overall": 3}} if path.endswith("/response") else {}
    body = {"json": content} if method in {"POST", "PUT", "PATCH"} else {}
    return await client.request(method, path, headers=bearer(key), **body)  # type: ignore[arg-type]


@dataclass
class Offline:
    server: ThrowawayPostgres
    engine: AsyncEngine
    app: Any
    client: httpx.AsyncClient
    key: str


@pytest.fixture
async def offline_setup() -> AsyncIterator[Offline]:
    """An app (with its lifespan: the fold worker runs) on a throwaway server, with an admin key
    and the standard org tree and survey."""
    async with throwaway_postgres() as server:
        url = await _create_database(server)
        settings = _settings(url)
        engine = create_engine(settings, url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                key = (await create_key(session, name="admin", scopes=[Scope.admin])).secret_key
            app = create_app(settings, engine=engine)
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            ):
                await standard_setup(client, bearer(key))
                yield Offline(server, engine, app, client, key)
        finally:
            await engine.dispose()


async def _pending_deltas(server: ThrowawayPostgres) -> int:
    conn = await asyncpg.connect(server.dsn(DATABASE))
    try:
        pending: int = await conn.fetchval("SELECT count(*) FROM index_deltas")
        return pending
    finally:
        await conn.close()


async def _until_folded(server: ThrowawayPostgres) -> None:
    for _ in range(300):
        if await _pending_deltas(server) == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the fold worker did not fold the pending deltas")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_every_operation_is_503_without_the_database_and_recovers(
    offline_setup: Offline, mode: str
) -> None:
    setup = offline_setup
    client, key = setup.client, setup.key
    operations = _operations(setup.app)
    assert ("POST", "/v1/responses/batch") in operations
    # Warm the pool: its connections die with the server and must not poison it afterwards.
    r = await client.post(
        "/v1/responses", json=response_body(external_id="before"), headers=bearer(key)
    )
    assert r.status_code == 201, r.text
    for method, path in operations:
        assert (await _call(client, method, path, key)).status_code < 500, (method, path)
    await _until_folded(setup.server)

    await asyncio.to_thread(setup.server.stop, mode)

    for method, path in operations:
        r = await _call(client, method, path, key)
        if (method, path) in WITHOUT_DATABASE:
            assert r.status_code == 200, (method, path, r.text)
            continue
        assert r.status_code == 503, (method, path, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM), (method, path)
        assert int(r.headers["retry-after"]) >= 1, (method, path)
        body = r.json()
        assert body["status"] == 503
        assert body["type"] == "https://cx-survey.dev/problems/service-unavailable"
    # With an Idempotency-Key too: the replay store is in the database as well.
    headers = {**bearer(key), "Idempotency-Key": "faults-1"}
    r = await client.post("/v1/responses", json=response_body(external_id="idem"), headers=headers)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert "retry-after" in r.headers
    assert (await client.get("/livez")).status_code == 200
    assert (await client.get("/readyz")).status_code == 503
    await asyncio.sleep(1)  # a few folds fail meanwhile

    await asyncio.to_thread(setup.server.start)

    # The same app, no restart: the first requests may still meet a dead pooled connection.
    for _ in range(50):
        if (await client.get("/readyz")).status_code == 200:
            break
        await asyncio.sleep(0.2)
    assert (await client.get("/readyz")).status_code == 200
    statuses = Counter[int]()
    for method, path in operations:
        for _attempt in range(3):
            r = await _call(client, method, path, key)
            if r.status_code != 503:
                break
        statuses[r.status_code] += 1
        assert r.status_code < 500, (method, path, r.status_code, r.text)
    assert statuses[200] >= 10, statuses
    r = await client.post(
        "/v1/responses", json=response_body(external_id="after"), headers=bearer(key)
    )
    assert r.status_code == 201, r.text
    r = await client.get(
        "/v1/orgs/HQ/index", params={"period": "2026", "min_n": 5}, headers=bearer(key)
    )
    assert r.status_code == 200, r.text
    assert r.json()["n"] == 2
    await _until_folded(setup.server)  # the fold worker survived the outage


# --- a crash of the database under load ---------------------------------------------------

CLIENTS = 200
RUN_TIMEOUT = 240  # seconds for the whole load, outage included; a bound, not a target
INVALID_EVERY = 7  # every 7th post of a client is off the scale: 422, never stored


@dataclass
class Tally:
    """What the clients saw: the final answer per external_id, and every answer on the way."""

    final: dict[str, int] = field(default_factory=dict)  # external_id → final status
    seen: Counter[str] = field(default_factory=Counter)  # "201", "503", "transport", ...
    created_after_restart: int = 0
    restarted: bool = False

    def acknowledged(self) -> int:
        return sum(1 for status in self.final.values() if 200 <= status < 300)


def _item(client_no: int, n: int) -> dict[str, Any]:
    # Offset by client: some clients' first posts are invalid, however few posts a slow run has.
    invalid = (client_no + n) % INVALID_EVERY == INVALID_EVERY - 1
    return response_body(
        external_id=f"c{client_no}-{n}",
        customer={"ref": f"customer-{client_no}", "type": "end_user"},
        answers={"overall": 9 if invalid else 1 + (client_no + n) % 5},
    )


async def _post_until_answered(
    client: httpx.AsyncClient, body: dict[str, Any], key: str, tally: Tally, deadline: float
) -> None:
    """Post `body` again and again (same body) until an answer that is not a 503 or 429."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            r = await client.post("/v1/responses", json=body, headers=bearer(key))
        except httpx.TransportError as exc:
            tally.seen[f"transport:{type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)
            continue
        tally.seen[str(r.status_code)] += 1
        if r.status_code in (429, 503):
            assert "retry-after" in r.headers, r.text
            await asyncio.sleep(min(float(r.headers["retry-after"]), 1.0))
            continue
        tally.final[body["external_id"]] = r.status_code
        if r.status_code == 201 and tally.restarted:
            tally.created_after_restart += 1
        return
    tally.seen["unanswered"] += 1


async def _client_loop(
    base_url: str, key: str, client_no: int, tally: Tally, stop: asyncio.Event, deadline: float
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        n = 0
        while not stop.is_set():
            await _post_until_answered(client, _item(client_no, n), key, tally, deadline)
            n += 1


async def _stored(server: ThrowawayPostgres) -> Counter[str]:
    conn = await asyncpg.connect(server.dsn(DATABASE))
    try:
        rows = await conn.fetch("SELECT external_id FROM responses WHERE source = 'delivery-app'")
    finally:
        await conn.close()
    return Counter(row["external_id"] for row in rows)


async def test_a_database_crash_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    async with throwaway_postgres() as server:
        conn = await asyncpg.connect(server.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await conn.close()
        env = cli_env(
            server.database_url(DATABASE),
            rate_limit_per_second="0",
            db_pool_size="20",
            db_max_overflow="10",
            db_pool_timeout="5",
            fold_interval_seconds="0.5",
        )
        admin = await cli_key(env, tmp_path, "admin", name="setup")
        writer = await cli_key(env, tmp_path, "responses:write", name="touchpoint")

        async with served(env, tmp_path, workers=2) as api:
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
                await standard_setup(client, bearer(admin))

            loop = asyncio.get_running_loop()
            started = loop.time()
            deadline = started + RUN_TIMEOUT
            tally, stop = Tally(), asyncio.Event()
            clients = [
                asyncio.create_task(_client_loop(api.base_url, writer, i, tally, stop, deadline))
                for i in range(CLIENTS)
            ]
            try:
                # Some load first, then a crash of the database in the middle of it.
                assert await until(lambda: tally.acknowledged() >= 400, 120), tally.seen
                crashed_after = tally.acknowledged()
                await asyncio.to_thread(server.stop, "immediate")
                down_at = loop.time()
                await asyncio.sleep(4)
                await asyncio.to_thread(server.start)
                tally.restarted = True
                up_at = loop.time()
                # The service must come back by itself: fresh responses are created again.
                recovered = await until(lambda: tally.created_after_restart >= 400, 120)
                recovered_at = loop.time()
                assert recovered, (tally.created_after_restart, tally.seen, api.log()[-3000:])
            finally:
                stop.set()
                done, pending = await asyncio.wait(clients, timeout=RUN_TIMEOUT)
                for task in pending:
                    task.cancel()
            assert not pending, f"{len(pending)} clients did not finish"
            for task in done:
                task.result()  # a client that failed fails the test

            assert api.process.returncode is None, api.log()  # no restart of the service
            async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
                assert (await client.get("/readyz")).status_code == 200
            log = api.log()
            assert "died" not in log, log[-5000:]  # no worker process was replaced either
            # The fold worker of each process outlived the crash: every delta gets folded.
            folded = await _until_async(lambda: _pending_deltas(server), 60)

        stored = await _stored(server)
        acknowledged = {eid for eid, status in tally.final.items() if 200 <= status < 300}
        refused = {eid for eid, status in tally.final.items() if 400 <= status < 500}
        finals = Counter(tally.final.values())
        summary = (
            f"{len(tally.final)} posts, finals {dict(finals)}, seen {dict(tally.seen)}, "
            f"{sum(stored.values())} stored; {crashed_after} acknowledged before the crash, "
            f"down {up_at - down_at:.1f} s, recovered {recovered_at - up_at:.1f} s after, "
            f"{loop.time() - started:.1f} s in all"
        )
        print(summary)
        assert tally.seen["500"] == 0, summary  # a 500 is a bug, even with the database away
        assert tally.seen["unanswered"] == 0, summary
        assert set(finals) <= {200, 201, 422}, summary
        assert finals[422] > 0, summary
        assert all(stored[eid] == 1 for eid in acknowledged), summary  # nothing lost
        assert not refused & set(stored), summary  # nothing refused was stored
        assert set(stored) <= acknowledged, summary  # nothing unasked stored
        assert max(stored.values()) == 1, summary  # nothing doubled
        # The crash was felt: requests met the database away (503) or a dropped connection.
        assert tally.seen["503"] > 0, summary
        assert folded, summary


async def _until_async(pending: Any, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await pending() == 0:
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_statement_timeout_is_503_and_the_next_request_succeeds(
    settings: Settings,
    database_url: str,
    engine: AsyncEngine,
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
) -> None:
    """A database too slow (here: a table locked by someone else) is "not now", not a bug."""
    await standard_setup(committed_client, committed_admin)
    # Long enough for the follow-up request's statements on a busy machine; the locked one waits
    # exactly this long.
    impatient = settings.model_copy(update={"db_statement_timeout_ms": 1500})
    slow_engine = create_engine(impatient, database_url)
    try:
        app = create_app(impatient, engine=slow_engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            async with engine.connect() as blocker:
                await blocker.execute(text("LOCK TABLE responses IN ACCESS EXCLUSIVE MODE"))
                slow = await client.post(
                    "/v1/responses", json=response_body(), headers=committed_admin
                )
                await blocker.rollback()
            assert slow.status_code == 503, slow.text
            assert slow.headers["content-type"] == "application/problem+json"
            assert slow.headers["retry-after"] == "1"
            again = await client.post(
                "/v1/responses", json=response_body(), headers=committed_admin
            )
            assert again.status_code == 201, again.text
    finally:
        await slow_engine.dispose()
