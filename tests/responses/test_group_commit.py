"""Single posts that arrive together share one transaction (app/responses/coalescer.py), and
each caller still gets exactly the answer its post gets alone.

Committed mode: the coalescer's transactions are real, so the rows read afterwards are what
was committed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.keys.scopes import Scope
from app.keys.service import Principal
from app.responses import service
from app.responses.schemas import ResponseIn
from tests.conftest import bearer
from tests.factories import response_body, standard_setup
from tests.responses.conftest import assert_problem

SOURCE = "delivery-app"


@pytest.fixture
async def ready(committed_client: httpx.AsyncClient, committed_admin: dict[str, str]) -> None:
    await standard_setup(committed_client, committed_admin)


Hook = Callable[[AsyncSession, Sequence[tuple[ResponseIn, Principal]]], Awaitable[None]]


def on_write(monkeypatch: pytest.MonkeyPatch, hook: Hook) -> None:
    """Run `hook` in each of the coalescer's transactions, after its posts were written."""
    post_responses = service.post_responses

    async def wrapped(
        session: AsyncSession, asks: Sequence[tuple[ResponseIn, Principal]], **options: Any
    ) -> Any:
        result = await post_responses(session, asks, **options)
        await hook(session, asks)
        return result

    monkeypatch.setattr(service, "post_responses", wrapped)


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of posts in each transaction the coalescer opened."""
    sizes: list[int] = []

    async def count(_session: AsyncSession, asks: Sequence[Any]) -> None:
        sizes.append(len(asks))

    on_write(monkeypatch, count)
    return sizes


async def _rows(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT external_id, answers FROM responses WHERE source = :s"), {"s": SOURCE}
        )
        return {r.external_id: r.answers for r in rows}


async def _key(app: Any, *scopes: Scope, org: str | None = None) -> dict[str, str]:
    from app.keys.service import create_key

    async with app.state.sessionmaker() as session, session.begin():
        issued = await create_key(session, name="t", scopes=list(scopes), org_code=org)
    return bearer(issued.secret_key)


@pytest.mark.usefixtures("ready")
async def test_posts_that_arrive_together_share_a_transaction_and_each_gets_its_own_answer(
    committed_client: httpx.AsyncClient,
    committed_app: Any,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    flushes: list[int],
) -> None:
    writer = await _key(committed_app, Scope.responses_write)
    # Seoul's key sees its own subtree only: Busan is not an org it knows.
    seoul = await _key(committed_app, Scope.responses_write, org="KR-DELIVERY-SEOUL")
    reader = await _key(committed_app, Scope.responses_read)
    cases: list[tuple[dict[str, str], dict[str, Any], int]] = []
    for n in range(12):
        cases.append((writer, response_body(external_id=f"ok-{n}"), 201))
    cases += [
        (writer, response_body(external_id="bad-score", answers={"overall": 9}), 422),
        (writer, response_body(external_id="bad-org", org="NOWHERE"), 422),
        (seoul, response_body(external_id="other-subtree", org="KR-DELIVERY-BUSAN"), 422),
        (seoul, response_body(external_id="own-subtree"), 201),
        (reader, response_body(external_id="no-scope"), 403),
        # a key stored before: the same content is a retry, another a conflict
        (writer, response_body(external_id="taken"), 200),
        (writer, response_body(external_id="taken", answers={"overall": 1}), 409),
    ]
    # one key posted twice at once: one is stored, the other is its retry (either order)
    twice = [(writer, response_body(external_id="twice"), 0)] * 2
    first = await committed_client.post(
        "/v1/responses", json=response_body(external_id="taken"), headers=writer
    )
    assert first.status_code == 201
    flushes.clear()
    replies = await asyncio.gather(
        *(committed_client.post("/v1/responses", json=b, headers=h) for h, b, _ in cases + twice)
    )
    assert sorted(r.status_code for r in replies[len(cases) :]) == [200, 201]
    assert replies[-1].json() == replies[-2].json()
    for (_, body, status), reply in zip(cases, replies[: len(cases)], strict=True):
        assert reply.status_code == status, (body["external_id"], reply.text)
        if status in (200, 201):
            got = reply.json()
            assert got["external_id"] == body["external_id"]
            assert reply.headers["location"] == f"/v1/responses/{got['id']}"
        else:
            assert_problem(reply, status)
    bad = replies[[b["external_id"] for _, b, _ in cases].index("bad-score")]
    assert bad.json()["errors"][0]["loc"] == ["body", "answers", "overall"]

    rows = await _rows(engine)
    assert set(rows) == {f"ok-{n}" for n in range(12)} | {"own-subtree", "taken", "twice"}
    assert rows["taken"]["overall"] == 4
    # Posts did share transactions (the 403 never reached the write path).
    assert sum(flushes) == len(cases) + len(twice) - 1
    assert max(flushes) > 1, flushes


@pytest.mark.usefixtures("ready")
async def test_a_failing_shared_transaction_retries_each_post_alone(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    flushes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A database error in any transaction holding more than one post: the coalescer must
    # answer every post from a transaction of its own, and none may be stored twice.
    async def fragile(session: AsyncSession, asks: Sequence[Any]) -> None:
        if len(asks) > 1:
            await session.execute(text("SELECT 1/0"))

    on_write(monkeypatch, fragile)
    bodies = [response_body(external_id=f"retry-{n}") for n in range(10)]
    replies = await asyncio.gather(
        *(committed_client.post("/v1/responses", json=b, headers=committed_admin) for b in bodies)
    )
    assert Counter(r.status_code for r in replies) == {201: 10}, [r.text for r in replies]
    assert {r.json()["external_id"] for r in replies} == {b["external_id"] for b in bodies}
    assert set(await _rows(engine)) == {b["external_id"] for b in bodies}
    assert max(flushes) > 1, flushes  # a shared one was tried (and rolled back)


@pytest.mark.usefixtures("ready")
async def test_a_post_whose_own_transaction_fails_gets_that_error_and_the_others_are_stored(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def poisoned(session: AsyncSession, asks: Sequence[tuple[ResponseIn, Any]]) -> None:
        if any(body.external_id == "poison" for body, _ in asks):
            await session.execute(text("SELECT 1/0"))

    on_write(monkeypatch, poisoned)
    bodies = [response_body(external_id=f"fine-{n}") for n in range(6)]
    bodies.insert(3, response_body(external_id="poison"))
    replies = await asyncio.gather(
        *(committed_client.post("/v1/responses", json=b, headers=committed_admin) for b in bodies)
    )
    by_id = {b["external_id"]: r for b, r in zip(bodies, replies, strict=True)}
    poison = by_id.pop("poison")  # what its database error maps to, alone (422 for 1/0)
    assert_problem(poison, 422)
    assert {k: r.status_code for k, r in by_id.items()} == dict.fromkeys(by_id, 201)
    assert set(await _rows(engine)) == set(by_id)


@pytest.mark.usefixtures("ready")
async def test_no_post_is_answered_before_its_commit(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every commit of the write path fails: no caller may have been told 2xx, nothing is stored.
    def refuse(_session: Any) -> None:
        raise RuntimeError("the commit failed")

    async def doomed(session: AsyncSession, _asks: Sequence[Any]) -> None:
        event.listen(session.sync_session, "before_commit", refuse)

    on_write(monkeypatch, doomed)
    bodies = [response_body(external_id=f"doomed-{n}") for n in range(8)]
    replies = await asyncio.gather(
        *(committed_client.post("/v1/responses", json=b, headers=committed_admin) for b in bodies)
    )
    assert all(r.status_code >= 500 for r in replies), [r.status_code for r in replies]
    assert await _rows(engine) == {}


@pytest.mark.usefixtures("ready")
async def test_with_the_database_away_every_post_gets_its_503_at_once(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    flushes: list[int],
) -> None:
    calls = 0

    async def away(*_args: Any, **_kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("no database")

    bodies = [response_body(external_id=f"away-{n}") for n in range(8)]
    # Authenticate first, then take the database away from the write path only.
    monkeypatch.setattr(service, "post_responses", away)
    replies = await asyncio.gather(
        *(committed_client.post("/v1/responses", json=b, headers=committed_admin) for b in bodies)
    )
    for r in replies:
        assert_problem(r, 503, "service-unavailable")
        assert r.headers["retry-after"] == "1"
    assert calls < len(bodies)  # a shared flush failed, and was not retried post by post
