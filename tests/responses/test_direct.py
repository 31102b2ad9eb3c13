"""The single POST's direct path (app/responses/direct.py) answers exactly what the route
answers: the same requests, one app with it and one without, the same statuses, headers and
bodies. And it does answer the posts the route would accept (else it would be a detour)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.main import create_app
from app.platform.config import Settings
from app.responses import direct
from app.responses.direct import DirectPost
from tests.conftest import bearer
from tests.factories import response_body, standard_setup

VOLATILE = {"id", "received_at"}  # new for every stored response


@pytest.fixture
async def classic(settings: Settings, engine: AsyncEngine, connection: AsyncConnection) -> Any:
    """The app without the direct path, in the same test transaction as `app`."""
    application = create_app(settings, engine=engine)
    application.user_middleware = [
        m for m in application.user_middleware if m.cls is not DirectPost
    ]
    application.state.sessionmaker = async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    return application


@pytest.fixture
async def clients(app: Any, classic: Any) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=classic), base_url="http://t") as b,
    ):
        yield {"direct": a, "routed": b}


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many posts the direct path took to the coalescer itself."""
    calls: list[int] = []
    real = direct.post_single

    async def counted(*args: Any) -> Any:
        calls.append(1)
        return await real(*args)

    monkeypatch.setattr(direct, "post_single", counted)
    return calls


def _seen(r: httpx.Response, side: str) -> dict[str, Any]:
    """What a client sees of an answer, without what differs between two stored responses
    (their ids, when they were received, and the external ids, which name the side)."""
    assert int(r.headers["content-length"]) == len(r.content)
    # the length too: ids differ in length
    headers = {k: v for k, v in r.headers.items() if k not in {"x-request-id", "content-length"}}
    if "location" in headers:
        headers["location"] = headers["location"].rsplit("/", 1)[0]
    try:
        body = json.loads(r.text.replace(side, "SIDE"))
    except json.JSONDecodeError:
        body = r.text
    if isinstance(body, dict) and "external_id" in body:
        body = {k: v for k, v in body.items() if k not in VOLATILE}
        stored = r.headers["location"].rsplit("/", 1)[1]
        assert stored == r.json()["id"]
    return {"status": r.status_code, "headers": headers, "body": body}


async def _key(
    client: httpx.AsyncClient, admin: dict[str, str], *scopes: str, **extra: Any
) -> dict[str, str]:
    r = await client.post(
        "/v1/keys", json={"name": "k", "scopes": list(scopes), **extra}, headers=admin
    )
    assert r.status_code == 201, r.text
    return bearer(r.json()["key"])


Case = Callable[[str], tuple[dict[str, str], bytes | dict[str, Any]]]


async def test_every_answer_is_the_routes_own(
    clients: dict[str, httpx.AsyncClient], admin: dict[str, str], answered: list[int]
) -> None:
    direct_client = clients["direct"]
    await standard_setup(direct_client, admin)
    writer = await _key(direct_client, admin, "responses:write")
    reader = await _key(direct_client, admin, "responses:read")
    busan = await _key(direct_client, admin, "responses:write", org="KR-DELIVERY-BUSAN")
    revoked = await _key(direct_client, admin, "responses:write")
    revoked_id = revoked["Authorization"].split("_")[1]
    assert (await direct_client.delete(f"/v1/keys/{revoked_id}", headers=admin)).status_code == 200

    def body(side: str, n: int, **overrides: Any) -> dict[str, Any]:
        return response_body(external_id=f"{side}-{n}", **overrides)

    # (what is sent, whether the direct path answers it)
    cases: list[tuple[str, Callable[[str], dict[str, Any]], bool]] = [
        ("new", lambda s: {"headers": writer, "json": body(s, 1)}, True),
        ("retry", lambda s: {"headers": writer, "json": body(s, 1)}, True),
        ("conflict", lambda s: {"headers": writer, "json": body(s, 1, channel="web")}, True),
        ("nps", lambda s: {"headers": writer, "json": body(s, 2, answers={"overall": 1})}, True),
        ("unknown survey", lambda s: {"headers": writer, "json": body(s, 3, survey="x")}, True),
        ("unknown org", lambda s: {"headers": writer, "json": body(s, 4, org="NOPE")}, True),
        ("bad answer", lambda s: {"headers": writer, "json": body(s, 5, answers={"x": 1})}, True),
        ("other org", lambda s: {"headers": busan, "json": body(s, 6)}, True),
        (
            "own org",
            lambda s: {"headers": busan, "json": body(s, 7, org="KR-DELIVERY-BUSAN")},
            True,
        ),
        ("no key", lambda s: {"json": body(s, 8)}, False),
        (
            "basic",
            lambda s: {"headers": {"Authorization": "Basic eDp5"}, "json": body(s, 9)},
            False,
        ),
        (
            "empty bearer",
            lambda s: {"headers": {"Authorization": "Bearer "}, "json": body(s, 9)},
            False,
        ),
        ("unknown key", lambda s: {"headers": bearer("cx_nope_nope"), "json": body(s, 10)}, False),
        ("revoked key", lambda s: {"headers": revoked, "json": body(s, 11)}, False),
        ("no scope", lambda s: {"headers": reader, "json": body(s, 12)}, False),
        (
            "missing field",
            lambda s: {"headers": writer, "json": {"survey": "delivery-csat"}},
            False,
        ),
        ("extra field", lambda s: {"headers": writer, "json": body(s, 13, extra=1)}, False),
        ("not json", lambda s: {"headers": writer, "content": b"{nope"}, False),
        ("empty body", lambda s: {"headers": writer, "content": b""}, False),
        ("a list", lambda s: {"headers": writer, "json": [body(s, 14)]}, False),
        (
            "text/plain",
            lambda s: {"headers": {**writer, "Content-Type": "text/plain"}, "content": b"x"},
            False,
        ),
        (
            "idempotency key",
            lambda s: {"headers": {**writer, "Idempotency-Key": f"{s}-idem"}, "json": body(s, 15)},
            True,
        ),
        (
            "idempotent replay",
            lambda s: {"headers": {**writer, "Idempotency-Key": f"{s}-idem"}, "json": body(s, 15)},
            False,
        ),
    ]
    for name, request, answers_directly in cases:
        before = len(answered)
        seen = {}
        for side, client in clients.items():
            seen[side] = _seen(await client.post("/v1/responses", **request(side)), side)
        assert seen["direct"] == seen["routed"], name
        took = len(answered) - before
        assert took == (1 if answers_directly else 0), name


async def test_a_limited_key_gets_its_429_from_the_direct_path(
    client: httpx.AsyncClient, admin: dict[str, str], answered: list[int]
) -> None:
    await standard_setup(client, admin)
    limited = await _key(client, admin, "responses:write", rate=0.001, burst=2)
    statuses = [
        (
            await client.post(
                "/v1/responses", json=response_body(external_id=f"r{n}"), headers=limited
            )
        )
        for n in range(3)
    ]
    assert [r.status_code for r in statuses] == [201, 201, 429]
    assert statuses[2].headers["content-type"] == "application/problem+json"
    assert "retry-after" in statuses[2].headers
    assert len(answered) == 2  # the refused one never reached the coalescer
