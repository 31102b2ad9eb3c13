"""Segments through every write path (part of "same content"), the segment= filter on index
endpoints and insights against brute force, the breakdown ranked like children, bad input."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import KeyFactory, bearer
from tests.factories import response_body, standard_setup
from tests.indices.brute import Raw, assert_close, brute_index
from tests.indices.test_router import fold_all
from tests.insights.test_router import settle

TIERS = ["gold", "silver", "bronze"]
REGIONS = ["north", "south"]


async def _world(
    client: httpx.AsyncClient, admin: dict[str, str], seed: int
) -> list[dict[str, Any]]:
    await standard_setup(client, admin)
    rng = random.Random(seed)
    items = []
    for i in range(90):
        segments: dict[str, str] = {}
        if rng.random() < 0.85:
            segments["tier"] = rng.choice(TIERS)
        if rng.random() < 0.6:
            segments["region"] = rng.choice(REGIONS)
        body = response_body(
            org=rng.choice(["KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN", "US-SERVICE"]),
            external_id=f"s-{i}",
            occurred_at=f"2026-09-{1 + i % 28:02d}T08:00:00Z",
            answers={"overall": rng.randint(1, 5), "reason": rng.choice(["late", "kind"])},
        )
        if segments:
            body["segments"] = segments
        items.append(body)
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
    assert r.json()["counts"]["created"] == 90, r.text
    return items


def _raw(items: list[dict[str, Any]]) -> list[Raw]:
    return [Raw("delivery", i["answers"]["overall"], 1, 5) for i in items]


@pytest.mark.parametrize(
    ("seed", "state"), [(4, "pending"), (9, "folded"), (5, "moved"), (6, "rebuilt")]
)
async def test_the_segment_filter_and_breakdown_equal_brute_force(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str], seed: int, state: str
) -> None:
    items = await _world(client, admin, seed)
    under = await settle(app, client, admin, state)
    kr = under["KR"]
    for org, orgs in (("HQ", None), ("KR", kr)):
        mine = [i for i in items if orgs is None or i["org"] in orgs]
        for filters in (
            [("tier", "gold")],
            [("tier", "silver"), ("region", "north")],
            [("region", "south")],
        ):
            chosen = [i for i in mine if all(i.get("segments", {}).get(k) == v for k, v in filters)]
            query = "".join(f"&segment={k}:{v}" for k, v in filters)
            r = await client.get(
                f"/v1/orgs/{org}/index?period=2026-09&min_n=5{query}", headers=admin
            )
            assert r.status_code == 200, r.text
            expected = brute_index(_raw(chosen), weights={}, min_n=5)
            expected.pop("se")
            assert_close(r.json(), expected, f"{org}{query}")
            pains = await client.get(
                f"/v1/orgs/{org}/pain-points?period=2026-09&min_n=5{query}", headers=admin
            )
            assert pains.json()["n"] == len(chosen)
            series = await client.get(
                f"/v1/orgs/{org}/index/series?granularity=month&from=2026-09-01&to=2026-10-01&min_n=5{query}",
                headers=admin,
            )
            assert series.json()["items"][0]["n"] == len(chosen)
        # A whole month (rollup and deltas) and days inside it (raw responses).
        for window, start, end, days in (
            ("period=2026-09", "2026-09-01", "2026-10-01", range(1, 31)),
            ("from=2026-09-05&to=2026-09-25", "2026-09-05", "2026-09-25", range(5, 25)),
        ):
            r = await client.get(
                f"/v1/orgs/{org}/index/segments?key=tier&{window}&min_n=5", headers=admin
            )
            assert r.status_code == 200, r.text
            got = r.json()
            assert (got["org"], got["key"], got["from"], got["to"]) == (
                org,
                "tier",
                start,
                end,
            )
            expected_items = []
            for tier in TIERS:
                rows = [
                    i
                    for i in mine
                    if i.get("segments", {}).get("tier") == tier
                    and int(i["occurred_at"][8:10]) in days
                ]
                if rows:
                    e = brute_index(_raw(rows), weights={}, min_n=5)
                    expected_items.append(
                        {
                            "value": tier,
                            "n": e["n"],
                            "csi": e["csi"],
                            "ci95": e["ci95"],
                            "suppressed": e["suppressed"],
                        }
                    )
            ranked = sorted(
                (e for e in expected_items if e["csi"] is not None),
                key=lambda e: (-e["csi"], e["value"]),
            )
            ranks, previous, rank = [], None, 0
            for position, e in enumerate(ranked, start=1):
                if e["csi"] != previous:
                    rank, previous = position, e["csi"]
                ranks.append({**e, "rank": rank})
            ranks += [
                {**e, "rank": None}
                for e in sorted(expected_items, key=lambda e: e["value"])
                if e["csi"] is None
            ]
            assert [i["value"] for i in got["items"]] == [e["value"] for e in ranks]
            assert_close(got["items"], ranks)


async def test_segments_are_part_of_same_content_on_every_write_path(
    client: httpx.AsyncClient, admin: dict[str, str], tmp_path: Path
) -> None:
    await standard_setup(client, admin)
    body = response_body(segments={"tier": "gold"})
    first = await client.post("/v1/responses", json=body, headers=admin)
    assert first.status_code == 201
    assert first.json()["segments"] == {"tier": "gold"}
    assert (await client.post("/v1/responses", json=body, headers=admin)).status_code == 200
    other = {**body, "segments": {"tier": "silver"}}
    assert (await client.post("/v1/responses", json=other, headers=admin)).status_code == 409
    bare = {k: v for k, v in body.items() if k != "segments"}
    assert (await client.post("/v1/responses", json=bare, headers=admin)).status_code == 409
    got = await client.get(f"/v1/responses/{first.json()['id']}", headers=admin)
    assert got.json()["segments"] == {"tier": "gold"}
    # Without segments: stored as none, shown as null, the same as before segments existed.
    plain = await client.post("/v1/responses", json=response_body(external_id="p"), headers=admin)
    assert plain.json()["segments"] is None
    empty = await client.post(
        "/v1/responses", json=response_body(external_id="p", segments={}), headers=admin
    )
    assert empty.status_code == 200  # {} is no segments: the same content
    r = await client.post(
        "/v1/responses/batch",
        json={
            "items": [
                response_body(external_id="b", segments={"region": "north"}),
                response_body(external_id="b", segments={"region": "south"}),
            ]
        },
        headers=admin,
    )
    assert [x["status"] for x in r.json()["results"]] == ["created", "conflict"]
    # An invitation's segments are copied to its response.
    invite = {
        "survey": "delivery-csat",
        "org": "KR-DELIVERY-SEOUL",
        "source": "shop",
        "external_id": "i-1",
        "occurred_at": "2026-11-20T10:00:00Z",
        "customer": {"ref": "c-1", "type": "end_user"},
        "segments": {"tier": "bronze"},
    }
    token = (await client.post("/v1/invitations", json=invite, headers=admin)).json()["token"]
    r = await client.post(
        f"/v1/public/invitations/{token}/response", json={"answers": {"overall": 4}}
    )
    assert r.status_code == 201
    listed = (await client.get("/v1/responses?org=KR-DELIVERY-SEOUL", headers=admin)).json()[
        "items"
    ]
    assert {x["external_id"]: x["segments"] for x in listed}["i-1"] == {"tier": "bronze"}


async def test_bad_segments_are_422_at_the_field(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    await standard_setup(client, admin)
    for segments, loc in (
        ({f"k{i}": "v" for i in range(9)}, ["body", "segments"]),
        ({"bad key": "v"}, ["body", "segments"]),
        ({"tier": ""}, ["body", "segments", "tier"]),
        ({"tier": "x" * 65}, ["body", "segments", "tier"]),
        ({"tier": 3}, ["body", "segments", "tier"]),
        ("gold", ["body", "segments"]),
    ):
        r = await client.post("/v1/responses", json=response_body(segments=segments), headers=admin)
        assert r.status_code == 422, (segments, r.text)
        assert r.json()["errors"][0]["loc"] == loc, (segments, r.json())
    bad_queries = (
        "segment=tier",
        "segment=:x",
        "segment=bad%20key:x",
        "segment=tier:" + "x" * 65,
        "segment=tier:a&segment=tier:b",
        "&".join(f"segment=k{i}:v" for i in range(9)),
    )
    for query in bad_queries:
        for url in ("/v1/orgs/HQ/index?period=2026", "/v1/orgs/HQ/pain-points?period=2026"):
            r = await client.get(f"{url}&{query}", headers=admin)
            assert r.status_code == 422, (url, query, r.text)
            assert r.json()["errors"][0]["loc"] == ["query", "segment"]
    for query, field in (("", "key"), ("&key=bad%20key", "key")):
        r = await client.get(f"/v1/orgs/HQ/index/segments?period=2026{query}", headers=admin)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["query", field]
    reader = bearer(await make_key("indices:read"))
    assert (
        await client.get("/v1/orgs/HQ/index/segments?period=2026&key=tier", headers=reader)
    ).status_code == 403
    us = bearer(await make_key("insights:read", org="US"))
    assert (
        await client.get("/v1/orgs/KR/index/segments?period=2026&key=tier", headers=us)
    ).status_code == 404


async def test_an_erased_response_leaves_no_segment_value_in_the_rollup(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await standard_setup(client, admin)
    kept = await client.post(
        "/v1/responses", json=response_body(segments={"tier": "gold"}), headers=admin
    )
    assert kept.status_code == 201
    body = response_body(external_id="to-erase", segments={"tier": "value-to-erase-7f3a"})
    erased = await client.post("/v1/responses", json=body, headers=admin)
    assert erased.status_code == 201
    assert await fold_all(app) > 0
    assert (
        await client.delete(f"/v1/responses/{erased.json()['id']}", headers=admin)
    ).status_code == 204
    await fold_all(app)
    async with app.state.sessionmaker() as session:
        values = set(
            await session.scalars(text("SELECT DISTINCT seg_value FROM index_rollup_segment"))
        )
    assert values == {"gold"}
    r = await client.get("/v1/orgs/HQ/index/segments?key=tier&period=2026-11", headers=admin)
    assert [i["value"] for i in r.json()["items"]] == ["gold"]
