"""Every change is visible at once: late data, erasure, the reporting time zone, concurrency."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.indices import store, worker
from app.main import create_app
from app.platform.config import Settings
from tests.conftest import bearer
from tests.factories import response_body, standard_setup


def csat(i: int, value: int, **overrides: Any) -> dict[str, Any]:
    return response_body(external_id=f"e-{i}", answers={"overall": value}, **overrides)


async def index(
    client: httpx.AsyncClient, headers: dict[str, str], org: str, **params: Any
) -> dict[str, Any]:
    r = await client.get(f"/v1/orgs/{org}/index", params={"min_n": 5, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def stage(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in body["stages"] if s["stage"] == name)


async def test_late_response_updates_its_own_period(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await standard_setup(client, admin)
    items = [csat(i, 5, occurred_at="2026-09-15T12:00:00+00:00") for i in range(5)]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
    assert r.json()["counts"]["created"] == 5
    before = await index(client, admin, "HQ", period="2026-09")
    assert before["n"] == 5
    assert before["csi"] == 100.0
    # A response that occurred in September arrives in November: September changes at once.
    r = await client.post(
        "/v1/responses", json=csat(99, 1, occurred_at="2026-09-30T23:59:59+00:00"), headers=admin
    )
    assert r.status_code == 201
    after = await index(client, admin, "HQ", period="2026-09")
    assert after["n"] == 6
    assert after["csi"] == 100 * 5 / 6
    assert (await index(client, admin, "HQ", period="2026-10"))["n"] == 0


async def test_erasure_removes_responses_from_every_index(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await standard_setup(client, admin)
    items = [
        csat(i, 1 + i % 5, customer={"ref": "alice" if i < 3 else f"c{i}", "type": "end_user"})
        for i in range(10)
    ]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
    ids = [x["id"] for x in r.json()["results"]]
    assert (await index(client, admin, "HQ", period="2026-11"))["n"] == 10

    r = await client.delete(f"/v1/responses/{ids[9]}", headers=admin)
    assert r.status_code == 204
    assert (await index(client, admin, "HQ", period="2026-11"))["n"] == 9
    assert (await client.get(f"/v1/responses/{ids[9]}", headers=admin)).status_code == 404
    assert (await client.delete(f"/v1/responses/{ids[9]}", headers=admin)).status_code == 404

    r = await client.delete("/v1/customers/alice/responses", headers=admin)
    assert r.status_code == 200
    assert r.json() == {"deleted": 3}
    body = await index(client, admin, "KR", period="2026-11")
    assert body["n"] == 6
    assert stage(body, "delivery")["score"] == 100 * sum((i % 5) / 4 for i in range(3, 9)) / 6
    assert (await client.delete("/v1/customers/alice/responses", headers=admin)).json() == {
        "deleted": 0
    }

    # Posting an erased response again is refused, alone or in a batch.
    again = await client.post("/v1/responses", json=items[0], headers=admin)
    assert again.status_code == 410
    assert again.headers["content-type"] == "application/problem+json"
    batch = await client.post("/v1/responses/batch", json={"items": items[:4]}, headers=admin)
    assert [x["status"] for x in batch.json()["results"]] == ["gone", "gone", "gone", "duplicate"]
    assert (await index(client, admin, "HQ", period="2026-11"))["n"] == 6


async def test_erasure_needs_admin_and_respects_the_subtree(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: Any
) -> None:
    await standard_setup(client, admin)
    r = await client.post("/v1/responses", json=csat(1, 4), headers=admin)
    response_id = r.json()["id"]
    writer = bearer(await make_key("responses:write", "responses:read"))
    assert (await client.delete(f"/v1/responses/{response_id}", headers=writer)).status_code == 403
    us_admin = bearer(await make_key("admin", org="US"))
    assert (
        await client.delete(f"/v1/responses/{response_id}", headers=us_admin)
    ).status_code == 404
    r = await client.delete("/v1/customers/customer-42/responses", headers=us_admin)
    assert r.json() == {"deleted": 0}
    assert (await client.get(f"/v1/responses/{response_id}", headers=admin)).status_code == 200


async def test_reporting_time_zone_decides_the_date(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> None:
    seoul = create_app(
        settings.model_copy(update={"reporting_timezone": "Asia/Seoul"}), engine=engine
    )
    seoul.state.sessionmaker = async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    from app.keys.scopes import Scope
    from app.keys.service import create_key

    async with seoul.state.sessionmaker() as session, session.begin():
        key = (await create_key(session, name="t", scopes=[Scope.admin])).secret_key
    headers = bearer(key)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=seoul), base_url="http://t"
    ) as client:
        await standard_setup(client, headers)
        # 2026-03-31T20:00Z is 2026-04-01 05:00 in Seoul: an April response there.
        items = [csat(i, 5, occurred_at="2026-03-31T20:00:00Z") for i in range(5)]
        items += [
            csat(10 + i, 1, occurred_at="2026-03-31T14:59:59Z") for i in range(5)
        ]  # 23:59 KST
        r = await client.post("/v1/responses/batch", json={"items": items}, headers=headers)
        assert r.json()["counts"]["created"] == 10
        april = await index(client, headers, "HQ", period="2026-04")
        march = await index(client, headers, "HQ", period="2026-03")
        assert (april["n"], april["csi"]) == (5, 100.0)
        assert (march["n"], march["csi"]) == (5, 0.0)
        # A day range cutting at the same boundary agrees (raw rows for partial months).
        day = await index(client, headers, "HQ", **{"from": "2026-04-01", "to": "2026-04-02"})
        assert day["n"] == 5


async def test_writers_and_readers_concurrently(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    committed_app: Any,
    engine: AsyncEngine,
) -> None:
    """Posts, reads and folds race; afterwards every acknowledged response is counted once."""
    await standard_setup(committed_client, committed_admin)
    rng = random.Random(3)
    acknowledged: set[str] = set()
    stop = asyncio.Event()
    seen: list[int] = []

    async def writer(w: int) -> None:
        for b in range(6):
            items = [
                csat(
                    w * 1000 + b * 50 + i,
                    rng.randint(1, 5),
                    org=rng.choice(["KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN", "US-SERVICE"]),
                )
                for i in range(50)
            ]
            items += items[:5]  # retries inside the batch
            r = await committed_client.post(
                "/v1/responses/batch", json={"items": items}, headers=committed_admin
            )
            assert r.status_code == 200, r.text
            for result in r.json()["results"]:
                assert result["status"] in {"created", "duplicate"}
                acknowledged.add(result["id"])

    async def reader() -> None:
        while not stop.is_set():
            body = await index(committed_client, committed_admin, "HQ", period="2026-11")
            seen.append(body["n"])

    async def folder() -> None:
        while not stop.is_set():
            await worker.fold_once(engine)
            await asyncio.sleep(0.01)

    background = [asyncio.create_task(reader()), asyncio.create_task(folder())]
    await asyncio.gather(*(writer(w) for w in range(4)))
    stop.set()
    await asyncio.gather(*background)
    assert len(acknowledged) == 4 * 6 * 50
    final = await index(committed_client, committed_admin, "HQ", period="2026-11")
    assert final["n"] == len(acknowledged)
    await worker.fold_all(engine)
    assert (await index(committed_client, committed_admin, "HQ", period="2026-11"))["n"] == len(
        acknowledged
    )
    assert seen, "the reader ran"
    assert all(0 <= n <= len(acknowledged) for n in seen)


async def test_rebuild_gives_the_same_numbers_and_follows_a_new_zone(
    client: httpx.AsyncClient, admin: dict[str, str], app: Any, settings: Settings
) -> None:
    from app.indices import store
    from app.platform.db import driver_connection

    await standard_setup(client, admin)
    rng = random.Random(5)
    items = [
        csat(
            i,
            rng.randint(1, 5),
            occurred_at=(
                f"2026-0{rng.randint(1, 9)}-{rng.randint(10, 28)}T{rng.randint(0, 23):02d}:30:00Z"
            ),
            org=rng.choice(["KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN", "US-SERVICE"]),
            channel=rng.choice(["web", "store"]),
        )
        for i in range(300)
    ]
    assert (await client.post("/v1/responses/batch", json={"items": items}, headers=admin)).json()[
        "counts"
    ]["created"] == 300
    queries = [
        ("HQ", {"period": "2026"}),
        ("KR", {"period": "2026-Q2", "channel": "web"}),
        ("US", {"from": "2026-02-03", "to": "2026-07-19"}),
    ]
    before = [await index(client, admin, org, **q) for org, q in queries]
    async with app.state.sessionmaker() as session, session.begin():
        await store.rebuild(await driver_connection(session))
    assert [await index(client, admin, org, **q) for org, q in queries] == before

    # Rebuilt for Seoul, a response at 2026-03-31T20:00Z moves from March to April.
    late = csat(999, 5, occurred_at="2026-03-31T20:00:00Z")
    assert (await client.post("/v1/responses", json=late, headers=admin)).status_code == 201
    march_utc = (await index(client, admin, "HQ", period="2026-03"))["n"]
    async with app.state.sessionmaker() as session, session.begin():
        await store.rebuild(await driver_connection(session), zone="Asia/Seoul")
    assert march_utc == sum(1 for it in [*items, late] if it["occurred_at"][:7] == "2026-03")
    seoul_march = sum(
        1
        for it in [*items, late]
        if (it["occurred_at"] >= "2026-02-28T15:00:00Z")
        and (it["occurred_at"] < "2026-03-31T15:00:00Z")
    )
    assert (await index(client, admin, "HQ", period="2026-03"))["n"] == seoul_march


async def _analyzed(engine: Any, table: str) -> Any:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = $1", (table,)
        )
        return result.scalar_one()


async def test_a_folded_backlog_ends_with_fresh_statistics(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str], engine: Any
) -> None:
    """After a catch-up the worker analyzes the rollups, so that reads are planned on the
    tables as they are (autovacuum may be off); below the threshold it does not."""
    await standard_setup(committed_client, committed_admin)
    items = [csat(i, 1 + i % 5) for i in range(30)]
    r = await committed_client.post(
        "/v1/responses/batch", json={"items": items}, headers=committed_admin
    )
    assert r.status_code == 200, r.text
    before = await _analyzed(engine, "index_rollup_survey")

    async def run_once(analyze_after: int) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            worker.run(engine, interval=0.05, stop=stop, analyze_after=analyze_after)
        )
        await asyncio.sleep(0.5)
        stop.set()
        await task

    await run_once(analyze_after=10**9)
    assert await _analyzed(engine, "index_rollup_survey") == before
    more = [csat(100 + i, 1 + i % 5) for i in range(30)]
    r = await committed_client.post(
        "/v1/responses/batch", json={"items": more}, headers=committed_admin
    )
    await run_once(analyze_after=1)
    after = await _analyzed(engine, "index_rollup_survey")
    assert after is not None
    assert before is None or after > before


async def test_every_fold_round_is_planned_afresh(engine: Any) -> None:
    """A statement without parameters keeps the plan it first got: one planned on empty
    deltas (a server that started before a bulk load, autovacuum off) nested loops over a
    50,000-row chunk for minutes (bench/run_replan.py: past a 120 s timeout, against 8.7 s
    replanned).
    So each round discards the connection's plans before its fold statements."""
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        seen: list[str] = []

        def log(record: Any) -> None:
            seen.append(record.query)

        raw.add_query_logger(log)
        try:
            for _ in range(3):
                async with raw.transaction():
                    await store.fold(raw)
        finally:
            raw.remove_query_logger(log)
    rounds = [i for i, query in enumerate(seen) if "pg_try_advisory_xact_lock" in query]
    assert len(rounds) == 3
    for start, end in zip(rounds, [*rounds[1:], len(seen)], strict=True):
        statements = seen[start + 1 : end]
        folds = [i for i, q in enumerate(statements) if "WITH batch AS (" in q]
        assert folds, statements
        assert statements.index("DISCARD PLANS") < folds[0]


async def test_the_workers_vacuum_leaves_a_table_another_process_is_vacuuming(
    engine: Any,
) -> None:
    """An import that ends vacuums and analyzes the same tables as the worker after a
    catch-up; the worker skips a table it cannot lock at once instead of waiting past its
    statement timeout (it did: "index fold failed … statement timeout")."""
    async with engine.connect() as holder:
        raw = (await holder.get_raw_connection()).driver_connection
        async with raw.transaction():
            await raw.execute("LOCK TABLE index_deltas IN SHARE UPDATE EXCLUSIVE MODE")
            await asyncio.wait_for(worker.analyze_rollups(engine), timeout=20)


async def test_a_failed_statistics_refresh_is_logged_as_what_it_is(
    engine: Any, monkeypatch: Any, caplog: Any
) -> None:
    async def folded(_engine: Any) -> int:
        return 5

    async def refused(_engine: Any) -> None:
        raise OSError("database away")

    monkeypatch.setattr(worker, "fold_once", folded)
    monkeypatch.setattr(worker, "analyze_rollups", refused)
    stop = asyncio.Event()
    with caplog.at_level("WARNING", logger="cx_survey.indices"):
        task = asyncio.create_task(worker.run(engine, interval=0.05, stop=stop, analyze_after=1))
        await asyncio.sleep(0.2)
        stop.set()
        await task
    messages = [r.getMessage() for r in caplog.records]
    assert messages
    assert all(m.startswith("vacuum and analyze of the index tables failed") for m in messages)
