"""Racing writers of the same responses: each is stored once, every answer agrees, never a 500.

These tests run on committed transactions (each request its own connection), so that the
writers really race inside PostgreSQL; the database is emptied after each test.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.keys.scopes import Scope
from app.keys.service import Principal
from app.responses import ingest
from app.responses.coalescer import Coalescer
from app.responses.erasure import erase_customer, erase_response
from app.responses.prepare import Prepared
from tests.factories import response_body, standard_setup
from tests.responses.conftest import assert_problem

WRITERS = 20
SOURCE = "delivery-app"


async def post(client: httpx.AsyncClient, headers: dict[str, str], body: Any) -> httpx.Response:
    return await client.post("/v1/responses", json=body, headers=headers)


async def post_batch(
    client: httpx.AsyncClient, headers: dict[str, str], items: list[Any]
) -> list[dict[str, Any]]:
    """The per-item results of a batch, checked to be a 200 in item order."""
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=headers)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    assert [x["index"] for x in results] == list(range(len(items)))
    return results


async def stored_rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Every stored response of SOURCE, by external_id, read straight from the table."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, external_id, answers FROM responses WHERE source = :source"),
            {"source": SOURCE},
        )
        by_key: dict[str, dict[str, Any]] = {}
        for row in rows.mappings():
            assert row["external_id"] not in by_key, "two rows for one (source, external_id)"
            by_key[row["external_id"]] = {"id": str(row["id"]), "answers": row["answers"]}
    return by_key


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch, committed_app: Any) -> Callable[[int], None]:
    """gate(n): the write path holds each group of n calls until all n are in, so they race.

    Single posts then go in one transaction each, as if each had come to another worker (in
    one worker, posts that arrive together share one: see test_group_commit.py)."""

    def close(parties: int) -> None:
        committed_app.state.coalescer = Coalescer(committed_app.state, max_items=1, flushes=parties)
        barrier = asyncio.Barrier(parties)
        store = ingest.store

        async def gated(
            session: AsyncSession, items: Sequence[Prepared], **options: Any
        ) -> list[ingest.Stored]:
            async with asyncio.timeout(60):
                await barrier.wait()
            return await store(session, items, **options)

        monkeypatch.setattr(ingest, "store", gated)

    return close


@pytest.fixture
async def ready(committed_client: httpx.AsyncClient, committed_admin: dict[str, str]) -> None:
    """The standard tree and the delivery CSAT survey, committed."""
    await standard_setup(committed_client, committed_admin)


# --- single posts -------------------------------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_identical_posts_store_one_row_and_all_return_it(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    gate: Callable[[int], None],
) -> None:
    body = response_body()
    gate(WRITERS)
    replies = await asyncio.gather(
        *(post(committed_client, committed_admin, body) for _ in range(WRITERS))
    )
    assert Counter(r.status_code for r in replies) == {201: 1, 200: WRITERS - 1}, [
        r.text for r in replies if r.status_code not in (200, 201)
    ]
    created = next(r for r in replies if r.status_code == 201).json()
    for r in replies:
        assert r.json() == created
        assert r.headers["location"] == f"/v1/responses/{created['id']}"

    rows = await stored_rows(engine)
    assert list(rows) == [body["external_id"]]
    assert rows[body["external_id"]]["id"] == created["id"]
    got = await committed_client.get(f"/v1/responses/{created['id']}", headers=committed_admin)
    assert got.json() == created


@pytest.mark.usefixtures("ready")
async def test_same_key_with_differing_content_stores_one_and_refuses_the_others(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    gate: Callable[[int], None],
) -> None:
    # Five contents, four writers each: the winner's twins are retries, the rest conflicts.
    bodies = [response_body(answers={"overall": 1 + i % 5}) for i in range(WRITERS)]
    gate(WRITERS)
    replies = await asyncio.gather(*(post(committed_client, committed_admin, b) for b in bodies))
    statuses = Counter(r.status_code for r in replies)
    assert set(statuses) <= {200, 201, 409}, [r.text for r in replies]
    assert statuses[201] == 1

    winner_index = next(i for i, r in enumerate(replies) if r.status_code == 201)
    winner = replies[winner_index].json()
    for body, r in zip(bodies, replies, strict=True):
        if body["answers"] == bodies[winner_index]["answers"]:
            assert r.status_code in (200, 201), r.text
            assert r.json() == winner
        else:
            assert_problem(r, 409, "response-conflict")
    assert statuses == {201: 1, 200: WRITERS // 5 - 1, 409: WRITERS - WRITERS // 5}

    rows = await stored_rows(engine)
    assert list(rows) == [bodies[0]["external_id"]]
    assert rows[bodies[0]["external_id"]] == {"id": winner["id"], "answers": winner["answers"]}


# --- batches ------------------------------------------------------------------------------------


def _item(n: int, overall: int = 4, prefix: str = "order") -> dict[str, Any]:
    return response_body(external_id=f"{prefix}-{n:04d}", answers={"overall": overall})


BATCH = 300
HALF = BATCH // 2


@pytest.mark.usefixtures("ready")
async def test_overlapping_batches_store_each_item_once(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    gate: Callable[[int], None],
) -> None:
    # A holds 0-299; B holds 150-449 in reverse order, so that a writer keeping item order
    # would deadlock against A. On 150-224 B repeats A's content, on 225-299 it differs.
    same_until = HALF + HALF // 2
    gate(2)
    for round_ in range(3):
        prefix = f"round-{round_}"
        first = [_item(n, prefix=prefix) for n in range(BATCH)]
        second = [
            _item(n, overall=4 if n < same_until else 1, prefix=prefix)
            for n in reversed(range(HALF, HALF + BATCH))
        ]
        results_a, results_b = await asyncio.gather(
            post_batch(committed_client, committed_admin, first),
            post_batch(committed_client, committed_admin, second),
        )
        by_key_a = {i["external_id"]: r for i, r in zip(first, results_a, strict=True)}
        by_key_b = {i["external_id"]: r for i, r in zip(second, results_b, strict=True)}

        rows = {k: v for k, v in (await stored_rows(engine)).items() if k.startswith(prefix)}
        assert len(rows) == HALF + BATCH
        for n in range(HALF + BATCH):
            key = f"{prefix}-{n:04d}"
            row = rows[key]
            outcomes = [by_key[key] for by_key in (by_key_a, by_key_b) if key in by_key]
            # every item names the one row stored under its key
            assert all(o["id"] == row["id"] for o in outcomes), (key, outcomes, row)
            statuses = sorted(o["status"] for o in outcomes)
            if n < HALF or n >= BATCH:
                assert statuses == ["created"], (key, outcomes)
            elif n < same_until:
                assert statuses == ["created", "duplicate"], (key, outcomes)
            else:
                assert statuses == ["conflict", "created"], (key, outcomes)
                a_won = by_key_a[key]["status"] == "created"
                winner = first[n] if a_won else second[HALF + BATCH - 1 - n]
                assert winner["external_id"] == key
                assert row["answers"] == winner["answers"]


@pytest.mark.usefixtures("ready")
async def test_single_posts_and_batches_of_the_same_item_race_to_one_row(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    gate: Callable[[int], None],
) -> None:
    shared = _item(0)
    batches = [[_item(100 * b + k) for k in range(1, 10)] + [shared] for b in range(1, 4)]
    gate(10 + len(batches))
    replies, *batch_results = await asyncio.gather(
        asyncio.gather(*(post(committed_client, committed_admin, shared) for _ in range(10))),
        *(post_batch(committed_client, committed_admin, items) for items in batches),
    )
    singles = Counter(r.status_code for r in replies)
    assert set(singles) <= {200, 201}, [r.text for r in replies]
    shared_results = [results[-1] for results in batch_results]
    creations = singles[201] + sum(1 for x in shared_results if x["status"] == "created")
    assert creations == 1, (singles, shared_results)
    assert all(x["status"] in ("created", "duplicate") for x in shared_results)

    rows = await stored_rows(engine)
    assert len(rows) == 1 + 3 * 9
    shared_id = rows[shared["external_id"]]["id"]
    assert {r.json()["id"] for r in replies} == {shared_id}
    assert {x["id"] for x in shared_results} == {shared_id}
    for results in batch_results:
        assert [x["status"] for x in results[:-1]] == ["created"] * 9


# --- erasure against writers ------------------------------------------------------------------

ERASER = Principal(key_id="test", name="eraser", scopes=frozenset({Scope.admin}))


async def _until_a_writer_waits_on_a_lock(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        for _ in range(600):
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting:
                return
            await conn.rollback()
            await asyncio.sleep(0.05)
    pytest.fail("the writer never waited on the erasure")


@pytest.mark.parametrize("erase_by", ["id", "customer"])
@pytest.mark.parametrize("write_as", ["single", "batch"])
@pytest.mark.usefixtures("ready")
async def test_a_retry_racing_its_erasure_is_gone_and_not_stored_again(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    committed_app: Any,
    engine: AsyncEngine,
    erase_by: str,
    write_as: str,
) -> None:
    body = response_body()
    first = await post(committed_client, committed_admin, body)
    assert first.status_code == 201, first.text

    async def retry() -> str:
        if write_as == "single":
            r = await post(committed_client, committed_admin, body)
            if r.status_code == 410:
                assert_problem(r, 410, "response-erased")
                return "gone"
            return f"HTTP {r.status_code}: {r.text}"
        (result,) = await post_batch(committed_client, committed_admin, [body])
        return str(result["status"])

    # The erasure deletes the row but has not committed when the retry arrives; the retry
    # waits on the deleted row, and must then see the tombstone the erasure left.
    async with committed_app.state.sessionmaker() as session, session.begin():
        if erase_by == "id":
            await erase_response(session, response_id=first.json()["id"], principal=ERASER)
        else:
            erased = await erase_customer(
                session,
                ref=body["customer"]["ref"],
                principal=ERASER,
                pseudonym_key=committed_app.state.settings.pseudonym_key,
            )
            assert erased == 1
        retrying = asyncio.create_task(retry())
        await _until_a_writer_waits_on_a_lock(engine)
    assert await retrying == "gone"
    assert await stored_rows(engine) == {}

    again = await post(committed_client, committed_admin, body)
    assert_problem(again, 410, "response-erased")
    assert await stored_rows(engine) == {}


@pytest.mark.usefixtures("ready")
async def test_concurrent_posts_of_an_erased_response_are_all_gone(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str], engine: AsyncEngine
) -> None:
    body = response_body()
    first = await post(committed_client, committed_admin, body)
    assert first.status_code == 201
    erased = await committed_client.delete(
        f"/v1/responses/{first.json()['id']}", headers=committed_admin
    )
    assert erased.status_code == 204
    bodies = [body if i % 2 else response_body(answers={"overall": 1}) for i in range(WRITERS)]
    replies = await asyncio.gather(*(post(committed_client, committed_admin, b) for b in bodies))
    for r in replies:
        assert_problem(r, 410, "response-erased")
    assert await stored_rows(engine) == {}


async def test_a_retry_whose_response_is_erased_before_it_is_read_back_is_gone(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    ready: None,
) -> None:
    first = await post(committed_client, committed_admin, response_body())
    assert first.status_code == 201
    store = ingest.store

    async def store_then_erase(
        session: AsyncSession, items: Sequence[Prepared], **options: Any
    ) -> Any:
        # The write path has found the stored row; an erasure commits before it is read back.
        results = await store(session, items, **options)
        erased = await committed_client.delete(
            f"/v1/responses/{first.json()['id']}", headers=committed_admin
        )
        assert erased.status_code == 204
        return results

    monkeypatch.setattr(ingest, "store", store_then_erase)
    assert_problem(await post(committed_client, committed_admin, response_body()), 410)
    assert await stored_rows(engine) == {}
