"""Leaves keep no tree rows: random creations under leaves, moves that make and unmake leaves,
posts and folds in any order; after every step each org's index equals the brute force over its
current subtree, and after every fold the rollups hold tree rows exactly for the orgs with
children, each the sum of the own rows of its subtree, with the own rows equal to the raw rows.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.indices import store
from tests.factories import STANDARD_TREE, response_body, standard_setup
from tests.indices.brute import Raw, assert_close, brute_index
from tests.indices.test_router import fold_all

PERIOD = "2026-09"


def _nonzero(stats: tuple[str, ...]) -> str:
    return " OR ".join(f"{c} <> 0" for c in stats)


async def _storage_holds(session: Any) -> None:
    """The rollups' tree rows against their own rows, and the own rows against the responses."""
    for rollup in store.ROLLUPS:
        leaves = await session.scalar(
            text(
                f"SELECT count(*) FROM {rollup.table} r WHERE r.tree"
                " AND NOT EXISTS (SELECT 1 FROM orgs c WHERE c.parent_id = r.org_id)"
            )
        )
        assert leaves == 0, f"{rollup.table}: tree rows of a leaf"
        table, keys, stats = rollup.table, rollup.key, rollup.stats
        if rollup.packed:  # each element of the array as a row of its own, keyed by position
            table = (
                f"(SELECT m.*, e.t, e.v FROM {rollup.table} m"
                f" CROSS JOIN LATERAL unnest(m.{stats[0]}) WITH ORDINALITY AS e(v, t))"
            )
            keys, stats = (*keys, "t"), ("v",)
        key = ", ".join(keys)
        # Per org with children: Σ own rows of the orgs whose path holds it, key by key.
        expected = (
            f"SELECT a.id AS org_id, {', '.join(f'r.{c}' for c in keys)},"
            f" {', '.join(f'sum(r.{c})::bigint AS {c}' for c in stats)}"
            f" FROM {table} r JOIN orgs o ON o.id = r.org_id"
            " CROSS JOIN LATERAL unnest(o.path) AS a(id)"
            " WHERE NOT r.tree AND EXISTS (SELECT 1 FROM orgs c WHERE c.parent_id = a.id)"
            f" GROUP BY a.id, {', '.join(f'r.{c}' for c in keys)}"
        )
        actual = f"SELECT org_id, {key}, {', '.join(stats)} FROM {table} r WHERE tree"
        for left, right in ((expected, actual), (actual, expected)):
            missing = await session.scalar(
                text(f"SELECT count(*) FROM (({left}) EXCEPT ({right})) d WHERE {_nonzero(stats)}")
            )
            assert missing == 0, f"{rollup.table}: tree rows differ from their subtree's"
    # Own rows of the coarse rollup against the raw responses, counted here.
    differ = await session.scalar(
        text(
            """
            SELECT count(*) FROM (
                (SELECT org_id, stage, date_trunc('month', occurred_on)::date AS month,
                        scale_min, scale_max, count(*) AS n, sum(score - scale_min) AS sum_d
                 FROM responses GROUP BY 1, 2, 3, 4, 5)
                EXCEPT
                (SELECT org_id, stage, month, scale_min, scale_max, n, sum_d
                 FROM index_rollup_stage WHERE NOT tree AND n <> 0)
            ) d
            """
        )
    )
    assert differ == 0


def _subtree(parents: dict[str, str | None], org: str) -> set[str]:
    def under(o: str) -> bool:
        while o is not None:
            if o == org:
                return True
            o = parents[o]  # type: ignore[assignment]
        return False

    return {o for o in parents if under(o)}


@pytest.mark.parametrize("seed", range(6))
async def test_leafness_changes_keep_the_index_and_the_rollups_exact(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    await standard_setup(client, admin)
    parents: dict[str, str | None] = dict(STANDARD_TREE)
    posted: list[tuple[str, int]] = []
    serial = 0

    async def post(count: int) -> None:
        nonlocal serial
        items = []
        for _ in range(count):
            serial += 1
            org, value = rng.choice(sorted(parents)), rng.randint(1, 5)
            items.append(
                response_body(
                    org=org,
                    external_id=f"leaf-{serial}",
                    occurred_at=f"{PERIOD}-{rng.randint(1, 30):02d}T08:00:00Z",
                    answers={"overall": value, "reason": rng.choice(["late", "kind"])},
                    segments={"tier": rng.choice(["gold", "silver"])},
                )
            )
            posted.append((org, value))
        r = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
        assert r.json()["counts"]["created"] == count, r.text

    async def check() -> None:
        for org in sorted(parents):
            scope = _subtree(parents, org)
            raw = [Raw("delivery", v, 1, 5) for o, v in posted if o in scope]
            r = await client.get(
                f"/v1/orgs/{org}/index?period={PERIOD}&min_n=5&tree=current", headers=admin
            )
            assert r.status_code == 200, r.text
            expected = brute_index(raw, weights={}, min_n=5)
            expected.pop("se")
            assert_close(r.json(), expected, org)

    await post(60)
    await fold_all(app)
    for step in range(10):
        kind = rng.choice(["create", "create", "move", "move", "post", "fold"])
        if kind == "create":  # under any org, often a leaf holding folded and pending sums
            parent = rng.choice(sorted(parents))
            code = f"NEW-{step}"
            r = await client.post(
                "/v1/orgs", json={"code": code, "name": code, "parent": parent}, headers=admin
            )
            assert r.status_code == 201, r.text
            parents[code] = parent
        elif kind == "move":  # under an org outside its subtree, or to the top
            org = rng.choice(sorted(parents))
            outside = sorted(set(parents) - _subtree(parents, org))
            parent = rng.choice([*outside, None]) if outside else None
            r = await client.patch(f"/v1/orgs/{org}", json={"parent": parent}, headers=admin)
            assert r.status_code == 200, r.text
            parents[org] = parent
        elif kind == "post":
            await post(rng.randint(3, 15))
        else:
            await fold_all(app)
        await check()
    await fold_all(app)
    async with app.state.sessionmaker() as session:
        await _storage_holds(session)
    await check()


async def test_two_creations_under_one_leaf_copy_its_sums_once(
    committed_app: Any, committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    client, admin = committed_client, committed_admin
    await standard_setup(client, admin)
    items = [
        response_body(external_id=f"two-{i}", occurred_at=f"{PERIOD}-0{1 + i}T08:00:00Z")
        for i in range(6)
    ]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
    assert r.json()["counts"]["created"] == 6
    await fold_all(committed_app)

    async def create(code: str) -> None:
        body = {"code": code, "name": code, "parent": "KR-DELIVERY-SEOUL"}
        r = await client.post("/v1/orgs", json=body, headers=admin)
        assert r.status_code == 201, r.text

    await asyncio.gather(create("A"), create("B"))
    async with committed_app.state.sessionmaker() as session:
        await _storage_holds(session)
    for org in ("HQ", "KR-DELIVERY-SEOUL"):
        r = await client.get(f"/v1/orgs/{org}/index?period={PERIOD}&min_n=5", headers=admin)
        assert r.json()["n"] == 6, r.text
