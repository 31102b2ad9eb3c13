"""GET /v1/responses and /v1/responses/{id}: filters, order, cursor pagination, not found."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import response_body
from tests.responses.conftest import (
    NPS_SURVEY,
    RESPONSE_KEYS,
    assert_invalid_at,
    assert_problem,
    create_survey,
    list_all,
)

# (external_id, org, survey, occurred_at)
ROWS = [
    ("seoul-1", "KR-DELIVERY-SEOUL", "delivery-csat", "2026-11-20T10:00:00+09:00"),  # 01:00Z
    ("busan-1", "KR-DELIVERY-BUSAN", "delivery-csat", "2026-11-20T00:30:00Z"),
    ("kr-1", "KR", "purchase-nps", "2026-11-19T22:00:00-03:00"),  # 2026-11-20T01:00Z
    ("us-1", "US-SERVICE", "delivery-csat", "2026-11-21T00:00:00Z"),
    ("hq-1", "HQ", "purchase-nps", "2026-11-19T00:00:00Z"),
    ("seoul-2", "KR-DELIVERY-SEOUL", "purchase-nps", "2026-11-20T01:00:00Z"),
    ("us-2", "US", "delivery-csat", "2026-11-20T01:00:00.000001Z"),
]


@pytest.fixture
async def stored(client: httpx.AsyncClient, setup: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The rows above, stored one by one; by external id."""
    await create_survey(client, setup, NPS_SURVEY)
    out = {}
    for external_id, org, survey, occurred_at in ROWS:
        answers = {"overall": 3} if survey == "delivery-csat" else {"likely": 7}
        r = await client.post(
            "/v1/responses",
            json=response_body(
                external_id=external_id,
                org=org,
                survey=survey,
                occurred_at=occurred_at,
                answers=answers,
            ),
            headers=setup,
        )
        assert r.status_code == 201, r.text
        out[external_id] = r.json()
    return out


def ordered(items: list[dict[str, Any]]) -> list[str]:
    return [x["external_id"] for x in items]


def expected_order(stored: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    from datetime import datetime

    return sorted(
        names,
        key=lambda n: (datetime.fromisoformat(stored[n]["occurred_at"]), int(stored[n]["id"])),
    )


async def test_list_is_ordered_by_occurred_at_then_id(
    client: httpx.AsyncClient, setup: dict[str, str], stored: dict[str, dict[str, Any]]
) -> None:
    r = await client.get("/v1/responses", headers=setup)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    # seoul-1, kr-1 and seoul-2 share an instant: then by id, i.e. posting order here
    assert ordered(body["items"]) == [
        "hq-1",
        "busan-1",
        "seoul-1",
        "kr-1",
        "seoul-2",
        "us-2",
        "us-1",
    ]
    assert ordered(body["items"]) == expected_order(stored, list(stored))
    for x in body["items"]:
        assert set(x) == RESPONSE_KEYS
        assert x == stored[x["external_id"]]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"org": "HQ"}, [r[0] for r in ROWS]),
        ({"org": "KR"}, ["seoul-1", "busan-1", "kr-1", "seoul-2"]),
        ({"org": "KR", "include_descendants": "false"}, ["kr-1"]),
        ({"org": "KR", "include_descendants": "true"}, ["seoul-1", "busan-1", "kr-1", "seoul-2"]),
        ({"org": "HQ", "include_descendants": "false"}, ["hq-1"]),
        ({"org": "KR-DELIVERY-SEOUL"}, ["seoul-1", "seoul-2"]),
        ({"org": "US"}, ["us-1", "us-2"]),
        ({"stage": "purchase"}, ["kr-1", "hq-1", "seoul-2"]),
        ({"stage": "delivery", "org": "KR"}, ["seoul-1", "busan-1"]),
        ({"stage": "rental"}, []),
        # half-open [from, to) on the instant; offsets honoured
        ({"from": "2026-11-20T10:00:00+09:00"}, ["seoul-1", "kr-1", "seoul-2", "us-2", "us-1"]),
        ({"to": "2026-11-20T10:00:00+09:00"}, ["busan-1", "hq-1"]),
        (
            {"from": "2026-11-20T01:00:00Z", "to": "2026-11-20T01:00:00.000001Z"},
            ["seoul-1", "kr-1", "seoul-2"],
        ),
        (
            {"from": "2026-11-20T01:00:00.000001+00:00", "to": "2026-11-21T00:00:00Z"},
            ["us-2"],
        ),
        (
            {"from": "2026-11-19T00:00:00Z", "to": "2026-11-21T00:00:00.000001Z", "org": "US"},
            ["us-1", "us-2"],
        ),
    ],
)
async def test_filters(
    client: httpx.AsyncClient,
    setup: dict[str, str],
    stored: dict[str, dict[str, Any]],
    params: dict[str, str],
    names: list[str],
) -> None:
    items = await list_all(client, setup, **params)
    assert ordered(items) == expected_order(stored, names)


async def test_from_window_boundary_math(
    client: httpx.AsyncClient, setup: dict[str, str], stored: dict[str, dict[str, Any]]
) -> None:
    # 2026-11-19T19:00-05:00 is 2026-11-20T00:00Z; 2026-11-21T09:00+09:00 is 2026-11-21T00:00Z
    items = await list_all(
        client, setup, **{"from": "2026-11-19T19:00:00-05:00", "to": "2026-11-21T09:00:00+09:00"}
    )
    assert ordered(items) == ["busan-1", "seoul-1", "kr-1", "seoul-2", "us-2"]


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
async def test_cursor_pagination_walks_every_page(
    client: httpx.AsyncClient,
    setup: dict[str, str],
    stored: dict[str, dict[str, Any]],
    limit: int,
) -> None:
    full = (await client.get("/v1/responses", headers=setup)).json()["items"]
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        r = await client.get("/v1/responses", params=params, headers=setup)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        assert 1 <= len(page["items"]) <= limit
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
        assert len(page["items"]) == limit
    assert seen == full
    assert pages == -(-len(ROWS) // limit)


async def test_pagination_with_filters_and_an_exact_last_page(
    client: httpx.AsyncClient, setup: dict[str, str], stored: dict[str, dict[str, Any]]
) -> None:
    first = (
        await client.get("/v1/responses", params={"org": "KR", "limit": 2}, headers=setup)
    ).json()
    assert ordered(first["items"]) == ["busan-1", "seoul-1"]
    assert first["next_cursor"]
    second = (
        await client.get(
            "/v1/responses",
            params={"org": "KR", "limit": 2, "cursor": first["next_cursor"]},
            headers=setup,
        )
    ).json()
    assert ordered(second["items"]) == ["kr-1", "seoul-2"]
    assert second["next_cursor"] is None


async def test_default_limit_is_50(client: httpx.AsyncClient, setup: dict[str, str]) -> None:
    items = [response_body(external_id=f"e-{i}") for i in range(51)]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=setup)
    assert r.json()["counts"]["created"] == 51
    page = (await client.get("/v1/responses", headers=setup)).json()
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None
    rest = (
        await client.get("/v1/responses", params={"cursor": page["next_cursor"]}, headers=setup)
    ).json()
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
    # same instant everywhere: ordered by id
    ids = [int(x["id"]) for x in page["items"] + rest["items"]]
    assert ids == sorted(ids)
    assert len(set(ids)) == 51


async def test_empty_list(client: httpx.AsyncClient, setup: dict[str, str]) -> None:
    r = await client.get("/v1/responses", headers=setup)
    assert r.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": "many"}, ["query", "limit"]),
        ({"from": "2026-11-20T10:00:00"}, ["query", "from"]),
        ({"to": "2026-11-20T10:00:00"}, ["query", "to"]),
        ({"from": "2026-11-20"}, ["query", "from"]),
        ({"from": "2026-11-21T00:00:00Z", "to": "2026-11-20T00:00:00Z"}, ["query", "to"]),
        ({"org": "NOWHERE"}, ["query", "org"]),
        ({"stage": "billing"}, ["query", "stage"]),
        ({"include_descendants": "perhaps"}, ["query", "include_descendants"]),
        ({"cursor": "!!!not-a-cursor!!!"}, ["query", "cursor"]),
        ({"cursor": "bm90LWpzb24"}, ["query", "cursor"]),  # "not-json"
        ({"cursor": "WyJ4IiwxXQ"}, ["query", "cursor"]),  # ["x",1]
        ({"cursor": "e30"}, ["query", "cursor"]),  # {}
    ],
)
async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient,
    setup: dict[str, str],
    params: dict[str, Any],
    loc: list[str | int],
) -> None:
    r = await client.get("/v1/responses", params=params, headers=setup)
    assert_invalid_at(r, loc)


async def test_get_one(
    client: httpx.AsyncClient, setup: dict[str, str], stored: dict[str, dict[str, Any]]
) -> None:
    for name, response in stored.items():
        r = await client.get(f"/v1/responses/{response['id']}", headers=setup)
        assert r.status_code == 200, name
        assert r.json() == response


@pytest.mark.parametrize(
    "response_id",
    [
        "999999999",
        "0",
        "abc",
        "-1",
        "1.0",
        "1e3",
        " 1",
        "%C2%B2",  # superscript two: a "digit" that is no number
        "1" * 19,
        "9" * 40,
        "%00",
    ],
)
async def test_unknown_or_weird_id_is_404(
    client: httpx.AsyncClient,
    setup: dict[str, str],
    stored: dict[str, dict[str, Any]],
    response_id: str,
) -> None:
    r = await client.get(f"/v1/responses/{response_id}", headers=setup)
    assert_problem(r, 404, "not-found")


async def test_id_in_other_unicode_digits_is_not_the_id(
    client: httpx.AsyncClient, setup: dict[str, str], stored: dict[str, dict[str, Any]]
) -> None:
    response_id = stored["seoul-1"]["id"]
    arabic_indic = response_id.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    fullwidth = response_id.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    for weird in (arabic_indic, fullwidth):
        assert weird != response_id
        r = await client.get(f"/v1/responses/{weird}", headers=setup)
        assert_problem(r, 404, "not-found")
        r = await client.delete(f"/v1/responses/{weird}", headers=setup)
        assert_problem(r, 404, "not-found")
    assert (await client.get(f"/v1/responses/{response_id}", headers=setup)).status_code == 200
