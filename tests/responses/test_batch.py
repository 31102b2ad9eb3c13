"""POST /v1/responses/batch: per-item outcomes in item order, counts, in-batch repeats."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from app.responses.ingest import REPLAN_ROWS
from tests.conftest import KeyFactory, bearer
from tests.factories import response_body
from tests.responses.conftest import assert_invalid_at, assert_problem, list_all

STATUSES = ("created", "duplicate", "conflict", "invalid", "gone")


def item(external_id: str, **overrides: Any) -> dict[str, Any]:
    return response_body(external_id=external_id, **overrides)


async def batch(
    client: httpx.AsyncClient, headers: dict[str, str], items: list[Any]
) -> dict[str, Any]:
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"results", "counts"}
    assert [x["index"] for x in body["results"]] == list(range(len(items)))
    assert set(body["counts"]) == set(STATUSES)
    for status in STATUSES:
        assert body["counts"][status] == sum(1 for x in body["results"] if x["status"] == status)
    return body


def only(result: dict[str, Any], loc: list[str | int]) -> None:
    assert result["status"] == "invalid"
    assert "id" not in result or result["id"] is None
    assert loc in [e["loc"] for e in result["errors"]], result
    assert all(isinstance(e["msg"], str) and e["msg"] for e in result["errors"])


async def test_one_batch_with_every_outcome(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    stored = await client.post("/v1/responses", json=item("stored"), headers=setup)
    assert stored.status_code == 201
    erased = await client.post("/v1/responses", json=item("erased"), headers=setup)
    assert (
        await client.delete(f"/v1/responses/{erased.json()['id']}", headers=setup)
    ).status_code == 204

    items: list[Any] = [
        item("new-1"),  # 0 created
        item("bad-scale", answers={"overall": 9}),  # 1 invalid: answer
        item("stored"),  # 2 duplicate of a stored response
        item("bad-ext", answers={"overall": 4, "reason": "rude"}),  # 3 invalid: option
        item("stored-2", org="NOWHERE"),  # 4 invalid: org
        item("stored", answers={"overall": 1}),  # 5 conflict with the stored response
        item("erased"),  # 6 gone
        item("new-1"),  # 7 repeat of 0, same content → duplicate, same id
        item("new-1", channel="web"),  # 8 repeat of 0, other content → conflict
        item("new-2", occurred_at="2026-11-20T10:00:00"),  # 9 invalid: no offset
        item("new-3", customer={"type": "vip"}),  # 10 invalid: customer type
        {k: v for k, v in item("x").items() if k != "external_id"},  # 11 invalid: missing
        {**item("new-4"), "extra": 1},  # 12 invalid: extra field
        "not an object",  # 13 invalid
        item("new-5", survey="no-such-survey"),  # 14 invalid: survey
        item("new-6", answers={"overall": 5}, customer={"ref": "c9", "type": "internal"}),  # 15
        item("erased", answers={"overall": 1}),  # 16 gone, whatever its content
    ]
    body = await batch(client, setup, items)
    results = body["results"]
    assert [x["status"] for x in results] == [
        "created",
        "invalid",
        "duplicate",
        "invalid",
        "invalid",
        "conflict",
        "gone",
        "duplicate",
        "conflict",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "created",
        "gone",
    ]
    assert body["counts"] == {
        "created": 2,
        "duplicate": 2,
        "conflict": 2,
        "invalid": 9,
        "gone": 2,
    }
    only(results[1], ["body", "items", 1, "answers", "overall"])
    only(results[3], ["body", "items", 3, "answers", "reason"])
    only(results[4], ["body", "items", 4, "org"])
    only(results[9], ["body", "items", 9, "occurred_at"])
    only(results[10], ["body", "items", 10, "customer", "type"])
    only(results[11], ["body", "items", 11, "external_id"])
    only(results[12], ["body", "items", 12, "extra"])
    only(results[13], ["body", "items", 13])
    only(results[14], ["body", "items", 14, "survey"])
    assert results[2]["id"] == stored.json()["id"]
    assert results[7]["id"] == results[0]["id"]
    for ok in (0, 15):
        assert isinstance(results[ok]["id"], str)
        assert not results[ok].get("errors")
    assert results[0]["id"] != results[15]["id"]

    # valid items are stored even though others failed; nothing else is
    everything = await list_all(client, setup)
    assert sorted(r["external_id"] for r in everything) == ["new-1", "new-6", "stored"]
    new1 = await client.get(f"/v1/responses/{results[0]['id']}", headers=setup)
    assert new1.status_code == 200
    assert new1.json()["channel"] == "mobile"  # the first of the repeated items won
    new6 = await client.get(f"/v1/responses/{results[15]['id']}", headers=setup)
    assert new6.json()["score"] == {"raw": 5, "normalized": 100.0}
    assert new6.json()["customer"] == {"type": "internal"}
    # the stored response was not changed by the conflicting item
    again = await client.get(f"/v1/responses/{stored.json()['id']}", headers=setup)
    assert again.json() == stored.json()


async def test_a_batch_stored_is_the_same_as_single_posts(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    body = await batch(client, setup, [item("a", answers={"overall": 2})])
    (result,) = body["results"]
    assert result["status"] == "created"
    assert isinstance(result["id"], str)
    assert result["id"]
    assert not result.get("errors")
    single = await client.post(
        "/v1/responses", json=item("a", answers={"overall": 2.0}), headers=setup
    )
    assert single.status_code == 200
    assert single.json()["id"] == body["results"][0]["id"]
    assert single.json()["score"] == {"raw": 2, "normalized": 25.0}
    # and a retry of the whole batch is all duplicates
    retry = await batch(client, setup, [item("a", answers={"overall": 2})])
    assert retry["results"][0]["status"] == "duplicate"
    assert retry["results"][0]["id"] == body["results"][0]["id"]
    assert len(await list_all(client, setup)) == 1


async def test_repeat_of_a_stored_duplicate_and_of_a_conflict(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    stored = (await client.post("/v1/responses", json=item("s"), headers=setup)).json()
    body = await batch(
        client,
        setup,
        [
            item("s"),  # duplicate
            item("s", occurred_at="2026-11-20T01:00:00Z"),  # same instant → duplicate
            item("s", answers={"overall": 2}),  # differs from the earlier item → conflict
        ],
    )
    assert [x["status"] for x in body["results"]] == ["duplicate", "duplicate", "conflict"]
    assert body["results"][0]["id"] == body["results"][1]["id"] == stored["id"]

    body = await batch(client, setup, [item("s", channel="web"), item("s", channel="web")])
    assert [x["status"] for x in body["results"]] == ["conflict", "conflict"]
    # A repeat is judged against the row its key holds, not against an earlier item that
    # conflicted with that row: the stored content again is a duplicate.
    body = await batch(client, setup, [item("s", channel="web"), item("s")])
    assert [x["status"] for x in body["results"]] == ["conflict", "duplicate"]
    assert body["results"][1]["id"] == stored["id"]
    assert len(await list_all(client, setup)) == 1


async def test_repeat_of_an_invalid_item_is_judged_on_its_own(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    body = await batch(
        client,
        setup,
        [item("k", answers={"overall": 0}), item("k"), item("k", answers={"overall": 0})],
    )
    assert [x["status"] for x in body["results"]] == ["invalid", "created", "invalid"]
    only(body["results"][2], ["body", "items", 2, "answers", "overall"])
    assert [r["external_id"] for r in await list_all(client, setup)] == ["k"]


async def test_all_items_invalid_is_still_200(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    body = await batch(client, setup, [item("a", org="NOWHERE"), 42, None])
    assert body["counts"] == {"created": 0, "duplicate": 0, "conflict": 0, "invalid": 3, "gone": 0}
    only(body["results"][1], ["body", "items", 1])
    only(body["results"][2], ["body", "items", 2])
    assert await list_all(client, setup) == []


async def test_a_thousand_items_are_accepted(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    items = [item(f"e-{i}", answers={"overall": 1 + i % 5}) for i in range(1000)]
    body = await batch(client, setup, items)
    assert body["counts"]["created"] == 1000
    assert len({x["id"] for x in body["results"]}) == 1000
    assert len(await list_all(client, setup)) == 1000


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"items": []}, ["body", "items"]),
        ({"items": [response_body(external_id=f"e-{i}") for i in range(1001)]}, ["body", "items"]),
        ({}, ["body", "items"]),
        ({"items": response_body()}, ["body", "items"]),
        ({"items": [response_body()], "extra": 1}, ["body", "extra"]),
        ([response_body()], ["body"]),
    ],
    ids=["empty", "1001", "missing", "not-a-list", "extra", "a-list"],
)
async def test_batch_of_wrong_size_or_shape_is_422(
    client: httpx.AsyncClient, setup: dict[str, str], payload: Any, loc: list[str | int]
) -> None:
    r = await client.post("/v1/responses/batch", json=payload, headers=setup)
    assert_invalid_at(r, loc)
    assert await list_all(client, setup) == []


async def test_malformed_batch_is_400_and_text_is_415(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/responses/batch",
        content=b'{"items": [',
        headers={**setup, "Content-Type": "application/json"},
    )
    assert_problem(r, 400, "malformed-request")
    r = await client.post(
        "/v1/responses/batch",
        content=b'{"items": []}',
        headers={**setup, "Content-Type": "text/plain"},
    )
    assert_problem(r, 415, "unsupported-media-type")


async def test_org_outside_the_keys_subtree_is_invalid_like_an_unknown_org(
    client: httpx.AsyncClient, setup: dict[str, str], make_key: KeyFactory
) -> None:
    kr = bearer(await make_key("responses:write", "responses:read", org="KR"))
    body = await batch(
        client,
        kr,
        [
            item("a", org="KR-DELIVERY-SEOUL"),
            item("b", org="US-SERVICE"),
            item("c", org="NO-SUCH-ORG"),
            item("d", org="HQ"),
            item("e", org="KR"),
        ],
    )
    results = body["results"]
    assert [x["status"] for x in results] == ["created", "invalid", "invalid", "invalid", "created"]
    outside, unknown, above = results[1]["errors"], results[2]["errors"], results[3]["errors"]
    assert outside == [{"loc": ["body", "items", 1, "org"], "msg": "unknown org 'US-SERVICE'"}]
    assert unknown == [{"loc": ["body", "items", 2, "org"], "msg": "unknown org 'NO-SUCH-ORG'"}]
    assert above == [{"loc": ["body", "items", 3, "org"], "msg": "unknown org 'HQ'"}]
    assert sorted(r["external_id"] for r in await list_all(client, setup)) == ["a", "e"]


async def test_source_bound_key_in_a_batch(
    client: httpx.AsyncClient, setup: dict[str, str], make_key: KeyFactory
) -> None:
    shop = bearer(await make_key("responses:write", source="web-shop"))
    without = item("a")
    del without["source"]
    body = await batch(
        client,
        shop,
        [without, item("b", source="web-shop"), item("c", source="delivery-app")],
    )
    assert [x["status"] for x in body["results"]] == ["created", "created", "invalid"]
    only(body["results"][2], ["body", "items", 2, "source"])
    stored = await list_all(client, setup)
    assert sorted((r["source"], r["external_id"]) for r in stored) == [
        ("web-shop", "a"),
        ("web-shop", "b"),
    ]


async def test_unbound_key_needs_a_source(client: httpx.AsyncClient, setup: dict[str, str]) -> None:
    without = item("a")
    del without["source"]
    body = await batch(client, setup, [without])
    only(body["results"][0], ["body", "items", 0, "source"])


@pytest.mark.parametrize("size", [REPLAN_ROWS - 1, REPLAN_ROWS])
async def test_a_bulk_insert_is_planned_afresh(
    client: httpx.AsyncClient, setup: dict[str, str], connection: AsyncConnection, size: int
) -> None:
    """The triggers keep the plans they first got in a session; a batch of at least
    REPLAN_ROWS discards them first, so that plans made for the few rows of single posts do not
    nest loops over a thousand (bench/run_replan.py: 1,422 ms against 74 ms)."""
    raw = (await connection.get_raw_connection()).driver_connection
    seen: list[str] = []

    def log(record: Any) -> None:
        seen.append(record.query)

    raw.add_query_logger(log)
    try:
        result = await batch(client, setup, [item(f"bulk-{n}") for n in range(size)])
    finally:
        raw.remove_query_logger(log)
    assert result["counts"]["created"] == size
    inserts = [i for i, q in enumerate(seen) if q.lstrip().startswith("INSERT INTO responses (")]
    assert len(inserts) == 1
    assert ("DISCARD PLANS" in seen[: inserts[0]]) == (size >= REPLAN_ROWS)
