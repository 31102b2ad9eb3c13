"""GET /v1/stages: the five journey stages, in order, for any valid key."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import KeyFactory, bearer

STAGES = [
    {"code": "purchase", "name": "Purchase", "position": 1},
    {"code": "consultation", "name": "Consultation", "position": 2},
    {"code": "rental", "name": "Rental", "position": 3},
    {"code": "delivery", "name": "Delivery", "position": 4},
    {"code": "after_service", "name": "After-service", "position": 5},
]


async def test_five_stages_in_journey_order(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.get("/v1/stages", headers=admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"items": STAGES}


@pytest.mark.parametrize(
    ("scopes", "org"),
    [
        (("surveys:read",), None),
        (("responses:write",), None),
        (("indices:read",), "HQ"),
        (("orgs:write", "indices:write"), None),
    ],
)
async def test_any_valid_key_may_read(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    make_key: KeyFactory,
    scopes: tuple[str, ...],
    org: str | None,
) -> None:
    if org is not None:
        r = await client.post("/v1/orgs", json={"code": org, "name": org}, headers=admin)
        assert r.status_code == 201, r.text
    r = await client.get("/v1/stages", headers=bearer(await make_key(*scopes, org=org)))
    assert r.status_code == 200
    assert r.json() == {"items": STAGES}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer cx_000000000000_nope"},
        {"Authorization": "Token abc"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "unknown", "other-scheme", "empty"],
)
async def test_without_a_valid_key_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await client.get("/v1/stages", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["type"] == "https://cx-survey.dev/problems/unauthenticated"
    assert body["status"] == 401
    assert body["title"]
    assert "items" not in body


async def test_stages_are_read_only(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/stages", json={"code": "x"}, headers=admin)
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 405
    assert r.json()["type"] == "https://cx-survey.dev/problems/method-not-allowed"
