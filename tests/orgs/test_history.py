"""The tree over time through HTTP: dated moves, the history, as_of reads, cycles on any day,
planned moves taking effect at midnight, bad input, org-bound keys, indices in each tree."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from app.platform import clock
from tests.conftest import KeyFactory, bearer
from tests.factories import STANDARD_TREE, create_orgs, response_body, survey_body

TODAY = date(2026, 12, 1)


@pytest.fixture
def today(monkeypatch: pytest.MonkeyPatch) -> dict[str, date]:
    """A controlled clock: set `today["day"]` to move time (noon UTC of that day)."""
    state = {"day": TODAY}

    def now() -> datetime:
        day = state["day"]
        return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)

    monkeypatch.setattr(clock, "now", now)
    return state


async def _tree(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_orgs(client, admin, *STANDARD_TREE)
    r = await client.post("/v1/surveys", json=survey_body(), headers=admin)
    assert r.status_code == 201, r.text


async def _history(client: httpx.AsyncClient, headers: dict[str, str], code: str) -> Any:
    r = await client.get(f"/v1/orgs/{code}/history", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def _move(
    client: httpx.AsyncClient, headers: dict[str, str], code: str, parent: str | None, day: str
) -> httpx.Response:
    return await client.patch(
        f"/v1/orgs/{code}", json={"parent": parent, "effective": day}, headers=headers
    )


async def test_dated_moves_form_a_timeline_read_on_any_day(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    today: dict[str, date],
    connection: AsyncConnection,
) -> None:
    await _tree(client, admin)
    assert await _history(client, admin, "KR-DELIVERY-SEOUL") == [
        {"effective": None, "parent": "KR"}
    ]
    # Recorded late: Seoul has been under US since March; and it moves back next January.
    r = await _move(client, admin, "KR-DELIVERY-SEOUL", "US", "2026-03-01")
    assert r.status_code == 200, r.text
    assert r.json()["parent"] == "US"
    assert r.json()["path"] == ["HQ", "US", "KR-DELIVERY-SEOUL"]
    r = await _move(client, admin, "KR-DELIVERY-SEOUL", "KR", "2027-01-01")
    assert r.status_code == 200, r.text
    assert r.json()["parent"] == "US"  # the answer shows the org as it is today
    assert await _history(client, admin, "KR-DELIVERY-SEOUL") == [
        {"effective": None, "parent": "KR"},
        {"effective": "2026-03-01", "parent": "US"},
        {"effective": "2027-01-01", "parent": "KR"},
    ]
    for day, parent in (
        ("2026-02-28", "KR"),
        ("2026-03-01", "US"),
        ("2027-01-01", "KR"),
        ("1900-01-01", "KR"),
    ):
        r = await client.get("/v1/orgs/KR-DELIVERY-SEOUL", params={"as_of": day}, headers=admin)
        assert r.json()["parent"] == parent, day
        assert r.json()["path"] == ["HQ", parent, "KR-DELIVERY-SEOUL"], day
    r = await client.get("/v1/orgs", params={"parent": "KR", "as_of": "2026-02-01"}, headers=admin)
    assert [o["code"] for o in r.json()["items"]] == ["KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    r = await client.get("/v1/orgs", params={"parent": "KR"}, headers=admin)
    assert [o["code"] for o in r.json()["items"]] == ["KR-DELIVERY-BUSAN"]
    r = await client.get("/v1/orgs/US/subtree", params={"as_of": "2026-02-01"}, headers=admin)
    assert [c["code"] for c in r.json()["children"]] == ["US-SERVICE"]
    r = await client.get("/v1/orgs/US/subtree", headers=admin)
    assert [c["code"] for c in r.json()["children"]] == ["KR-DELIVERY-SEOUL", "US-SERVICE"]

    # The same day again replaces that day's move; the parent already in force records nothing.
    r = await _move(client, admin, "KR-DELIVERY-SEOUL", "HQ", "2026-03-01")
    assert r.status_code == 200, r.text
    r = await _move(client, admin, "KR-DELIVERY-SEOUL", "HQ", "2026-05-01")
    assert r.status_code == 200, r.text
    assert await _history(client, admin, "KR-DELIVERY-SEOUL") == [
        {"effective": None, "parent": "KR"},
        {"effective": "2026-03-01", "parent": "HQ"},
        {"effective": "2027-01-01", "parent": "KR"},
    ]
    # Removing a placement: the one before holds again.
    r = await client.delete("/v1/orgs/KR-DELIVERY-SEOUL/history/2026-03-01", headers=admin)
    assert r.status_code == 204, r.text
    r = await client.get("/v1/orgs/KR-DELIVERY-SEOUL", headers=admin)
    assert r.json()["parent"] == "KR"
    # Both are audited.
    r = await client.get("/v1/audit", params={"limit": 6}, headers=admin)
    actions = [(e["action"], e["details"]) for e in r.json()["items"]]
    assert ("org.history_delete", {"effective": "2026-03-01", "parent": "HQ"}) in actions
    assert ("org.move", {"from": "US", "to": "HQ", "effective": "2026-03-01"}) in actions


async def test_a_planned_move_takes_effect_at_midnight_without_a_call(
    client: httpx.AsyncClient, admin: dict[str, str], today: dict[str, date]
) -> None:
    await _tree(client, admin)
    today["day"] = date(2026, 12, 31)
    items = [
        response_body(
            external_id=f"e{i}",
            org="KR-DELIVERY-SEOUL",
            answers={"overall": 5},
            occurred_at="2026-12-31T10:00:00+00:00",
        )
        for i in range(5)
    ]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
    assert r.json()["counts"]["created"] == 5
    r = await _move(client, admin, "KR", "US", "2027-01-01")
    assert r.status_code == 200, r.text
    assert r.json()["parent"] == "HQ"

    async def us(tree: str) -> int:
        r = await client.get(
            "/v1/orgs/US/index",
            headers=admin,
            params={"period": "2026-12", "tree": tree, "min_n": 5},
        )
        assert r.status_code == 200, r.text
        assert r.json()["tree"] == tree
        n: int = r.json()["n"]
        return n

    assert await us("current") == 0
    assert (await client.get("/v1/orgs/KR", headers=admin)).json()["path"] == ["HQ", "KR"]
    today["day"] = date(2027, 1, 1)  # the same process, the next morning
    assert (await client.get("/v1/orgs/KR", headers=admin)).json()["path"] == ["HQ", "US", "KR"]
    assert await us("current") == 5
    assert await us("history") == 0  # in December, KR was not under US
    assert await us("2026-12-31") == 0
    assert await us("2027-01-01") == 5


async def test_a_cycle_on_any_day_is_409_and_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], today: dict[str, date]
) -> None:
    await _tree(client, admin)
    # From 2027-01-01 US is under KR; moving KR under US from 2026-06-01 would make 2027 cyclic.
    assert (await _move(client, admin, "US", "KR", "2027-01-01")).status_code == 200
    r = await _move(client, admin, "KR", "US", "2026-06-01")
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/org-cycle")
    assert await _history(client, admin, "KR") == [{"effective": None, "parent": "HQ"}]
    # Under its own descendant on that very day: 409 as in v1.
    r = await _move(client, admin, "KR", "KR-DELIVERY-SEOUL", "2026-01-01")
    assert r.status_code == 409
    # A removal that would make a day cyclic: KR under US until US moves under KR.
    assert (await _move(client, admin, "KR", "US", "2026-06-01")).status_code == 409
    assert (await client.delete("/v1/orgs/US/history/2027-01-01", headers=admin)).status_code == 204
    assert (await _move(client, admin, "KR", "US", "2026-06-01")).status_code == 200
    assert (await _move(client, admin, "KR", "HQ", "2027-01-01")).status_code == 200
    assert (await _move(client, admin, "US", "KR", "2027-01-01")).status_code == 200
    r = await client.delete("/v1/orgs/KR/history/2027-01-01", headers=admin)
    assert r.status_code == 409, r.text
    assert len(await _history(client, admin, "KR")) == 3


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"effective": "2026-01-01"}, ["body", "effective"]),
        ({"parent": "US", "effective": "2026-1-01"}, ["body", "effective"]),
        ({"parent": "US", "effective": "2026-02-30"}, ["body", "effective"]),
        ({"parent": "US", "effective": "1899-12-31"}, ["body", "effective"]),
        ({"parent": "US", "effective": "2028-01-06"}, ["body", "effective"]),  # 401 days ahead
        ({"parent": "US", "effective": None}, ["body", "effective"]),
        ({"parent": "US", "effective": 20260101}, ["body", "effective"]),
        ({"parent": "NOPE", "effective": "2026-01-01"}, ["body", "parent"]),
    ],
)
async def test_bad_moves_are_422_at_the_field_and_change_nothing(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    today: dict[str, date],
    body: dict[str, Any],
    loc: list[str],
) -> None:
    await _tree(client, admin)
    r = await client.patch("/v1/orgs/KR", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["loc"] for e in r.json()["errors"]] == [loc]
    assert await _history(client, admin, "KR") == [{"effective": None, "parent": "HQ"}]


async def test_the_date_limits_are_inclusive(
    client: httpx.AsyncClient, admin: dict[str, str], today: dict[str, date]
) -> None:
    await _tree(client, admin)
    ahead = (TODAY + timedelta(days=400)).isoformat()
    assert (await _move(client, admin, "KR", "US", ahead)).status_code == 200
    assert (await _move(client, admin, "KR", "US", "1900-01-01")).status_code == 200
    assert [i["effective"] for i in await _history(client, admin, "KR")] == [
        None,
        "1900-01-01",
        ahead,
    ]


@pytest.mark.parametrize(
    ("effective", "status"),
    [("null", 409), ("2026-01-01", 404), ("2026-13-01", 422), ("yesterday", 422)],
)
async def test_removing_what_is_no_dated_placement(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    today: dict[str, date],
    effective: str,
    status: int,
) -> None:
    await _tree(client, admin)
    r = await client.delete(f"/v1/orgs/KR/history/{effective}", headers=admin)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await _history(client, admin, "KR") == [{"effective": None, "parent": "HQ"}]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/orgs/KR", {"as_of": "2026-02-30"}),
        ("/v1/orgs", {"as_of": "1899-12-31"}),
        ("/v1/orgs/KR/subtree", {"as_of": "x"}),
        ("/v1/orgs/KR/index", {"period": "2026", "tree": "yesterday"}),
        (
            "/v1/orgs/KR/index/series",
            {"granularity": "year", "from": "2025-01-01", "to": "2026-01-01", "tree": "2026-1-1"},
        ),
        ("/v1/orgs/KR/index/children", {"period": "2026", "tree": "history"}),
    ],
)
async def test_bad_tree_and_as_of_are_422(
    client: httpx.AsyncClient, admin: dict[str, str], path: str, params: dict[str, str]
) -> None:
    await _tree(client, admin)
    r = await client.get(path, params=params, headers=admin)
    assert r.status_code == 422, r.text
    name = "tree" if "tree" in params else "as_of"
    assert [e["loc"] for e in r.json()["errors"]] == [["query", name]]


async def test_org_bound_keys_read_other_trees_of_their_subtree_only(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    make_key: KeyFactory,
    today: dict[str, date],
) -> None:
    await _tree(client, admin)
    # US-SERVICE sat under KR in the first half of 2026.
    assert (await _move(client, admin, "US-SERVICE", "KR", "2026-01-01")).status_code == 200
    assert (await _move(client, admin, "US-SERVICE", "US", "2026-07-01")).status_code == 200
    items = [
        response_body(
            external_id=f"u{i}",
            org="US-SERVICE",
            answers={"overall": 1 + i % 5},
            occurred_at="2026-03-10T10:00:00+00:00",
        )
        for i in range(6)
    ]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
    assert r.json()["counts"]["created"] == 6
    kr = bearer(await make_key("indices:read", org="KR"))
    # Its numbers count US-SERVICE's responses in the trees where it sat under KR ...
    r = await client.get(
        "/v1/orgs/KR/index", headers=kr, params={"period": "2026-Q1", "tree": "history", "min_n": 5}
    )
    assert r.json()["n"] == 6
    r = await client.get("/v1/orgs/KR/index", headers=kr, params={"period": "2026-Q1", "min_n": 5})
    assert r.json()["n"] == 0
    # ... but a listing in that tree leaves the org out, and its history does not name US.
    r = await client.get(
        "/v1/orgs/KR/index/children",
        headers=kr,
        params={"period": "2026-Q1", "tree": "2026-03-01", "min_n": 5},
    )
    assert r.json()["tree"] == "2026-03-01"
    assert [i["org"] for i in r.json()["items"]] == ["KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    r = await client.get("/v1/orgs", params={"parent": "KR", "as_of": "2026-03-01"}, headers=kr)
    assert [o["code"] for o in r.json()["items"]] == ["KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    r = await client.get("/v1/orgs/KR/subtree", params={"as_of": "2026-03-01"}, headers=kr)
    assert [c["code"] for c in r.json()["children"]] == ["KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    assert (await client.get("/v1/orgs/US-SERVICE/history", headers=kr)).status_code == 404
    r = await client.get("/v1/orgs/KR", params={"as_of": "2026-03-01"}, headers=kr)
    assert r.json()["path"] == ["KR"]
    assert r.json()["parent"] is None
    assert (
        await client.get(
            "/v1/orgs/US/index", params={"period": "2026", "tree": "history"}, headers=kr
        )
    ).status_code == 404
    # The admin sees US-SERVICE under KR on that day, with its path.
    r = await client.get("/v1/orgs/US-SERVICE", params={"as_of": "2026-03-01"}, headers=admin)
    assert r.json()["path"] == ["HQ", "KR", "US-SERVICE"]
    writer = bearer(await make_key("orgs:write", org="KR"))
    assert (await _move(client, writer, "KR", "US", "2026-01-01")).status_code == 403
    r = await _move(client, writer, "KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL", "2026-01-01")
    assert r.status_code == 200, r.text
    r = await _move(client, writer, "KR-DELIVERY-BUSAN", "US", "2026-01-01")
    assert r.status_code == 422, r.text
    r = await client.delete("/v1/orgs/KR/history/2026-01-01", headers=writer)
    assert r.status_code == 403, r.text  # its own bound org: that would reach outside
    # KR's parent lies above the key's subtree: it is not named.
    assert await _history(client, writer, "KR") == [{"effective": None, "parent": None}]
    assert await _history(client, writer, "KR-DELIVERY-BUSAN") == [
        {"effective": None, "parent": "KR"},
        {"effective": "2026-01-01", "parent": "KR-DELIVERY-SEOUL"},
    ]


async def test_a_read_planned_on_a_tree_that_moved_meanwhile_is_planned_again(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.indices import store
    from app.orgs import tree
    from app.platform.db import driver_connection

    await _tree(client, admin)
    items = [
        response_body(external_id=f"s{i}", org="KR-DELIVERY-SEOUL", answers={"overall": 4})
        for i in range(5)
    ]
    assert (await client.post("/v1/responses/batch", json={"items": items}, headers=admin)).json()[
        "counts"
    ]["created"] == 5
    async with app.state.sessionmaker() as session, session.begin():
        while await store.fold(await driver_connection(session)) > 0:
            pass
        before = await tree.load(session)
    assert (
        await client.patch("/v1/orgs/KR-DELIVERY-SEOUL", json={"parent": "US"}, headers=admin)
    ).status_code == 200
    # The read plans on the tree from before the move (as a process that had it cached would):
    # the sums come with the version they were read under, and it plans again.
    real = tree.load
    calls: list[int] = []

    async def stale_first(session: Any) -> tree.TreeView:
        calls.append(1)
        return before if len(calls) == 1 else await real(session)

    monkeypatch.setattr(tree, "load", stale_first)
    r = await client.get(
        "/v1/orgs/US/index", params={"period": "2026-11", "min_n": 5}, headers=admin
    )
    assert r.json()["n"] == 5
    assert len(calls) == 2
