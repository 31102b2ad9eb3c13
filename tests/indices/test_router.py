"""Index, children and series through HTTP, compared number by number with a brute force."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.indices import store
from app.platform.db import driver_connection
from tests.factories import create_orgs
from tests.indices.brute import Raw, assert_close, brute_index

# HQ ─┬─ A ─┬─ A1 ─┬─ A1a
#     │     │      └─ A1b
#     │     └─ A2
#     ├─ B ─── B1
#     └─ C
TREE: tuple[tuple[str, str | None], ...] = (
    ("HQ", None),
    ("A", "HQ"),
    ("B", "HQ"),
    ("C", "HQ"),
    ("A1", "A"),
    ("A2", "A"),
    ("A1a", "A1"),
    ("A1b", "A1"),
    ("B1", "B"),
)
SURVEYS: list[dict[str, Any]] = [
    {"code": "purchase-csat", "stage": "purchase", "q": {"type": "csat"}},
    {"code": "consult-nps", "stage": "consultation", "q": {"type": "nps"}},
    {"code": "rental-ces", "stage": "rental", "q": {"type": "ces"}},
    {
        "code": "delivery-rating",
        "stage": "delivery",
        "q": {"type": "rating", "scale": {"min": 0, "max": 4}},
    },
    {"code": "after-csat", "stage": "after_service", "q": {"type": "csat"}},
    {"code": "after-nps", "stage": "after_service", "q": {"type": "nps"}},
]
SCALES = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
CHANNELS = ["web", "mobile", "store", None]
CUSTOMER_TYPES = ["end_user", "business_partner", "internal"]


@dataclass(frozen=True)
class Posted:
    org: str
    stage: str
    day: date
    channel: str | None
    customer_type: str
    raw: Raw


class World:
    """What the test posted, and the tree as the test believes it to be."""

    def __init__(self) -> None:
        self.parent: dict[str, str | None] = dict(TREE)
        self.responses: list[Posted] = []
        self.weights: dict[str, dict[str, float]] = {}
        self.targets: dict[tuple[str, str], float] = {}

    def ancestors(self, code: str) -> list[str]:
        chain = [code]
        while (up := self.parent[chain[-1]]) is not None:
            chain.append(up)
        return chain  # self first, root last

    def in_subtree(self, code: str, root: str) -> bool:
        return root in self.ancestors(code)

    def children(self, code: str) -> list[str]:
        return sorted(c for c, p in self.parent.items() if p == code)

    def weights_of(self, code: str) -> dict[str, float]:
        for org in self.ancestors(code):
            if org in self.weights:
                return self.weights[org]
        return {}

    def select(
        self,
        org: str,
        start: date,
        end: date,
        *,
        descendants: bool = True,
        channels: Sequence[str] | None = None,
        customer_types: Sequence[str] | None = None,
    ) -> list[Raw]:
        return [
            r.raw
            for r in self.responses
            if (self.in_subtree(r.org, org) if descendants else r.org == org)
            and start <= r.day < end
            and (channels is None or (r.channel or "") in channels)
            and (customer_types is None or r.customer_type in customer_types)
        ]


def expected_index(
    world: World,
    org: str,
    start: date,
    end: date,
    prev: tuple[date, date],
    *,
    min_n: int,
    stages: Sequence[str] | None = None,
    period: str | None = None,
    **select: Any,
) -> dict[str, Any]:
    weights = world.weights_of(org)
    current = brute_index(
        world.select(org, start, end, **select), weights=weights, min_n=min_n, stages=stages
    )
    previous = brute_index(
        world.select(org, *prev, **select), weights=weights, min_n=min_n, stages=stages
    )
    delta = significant = None
    if current["csi"] is not None and previous["csi"] is not None:
        delta = current["csi"] - previous["csi"]
        if current["se"] is not None and previous["se"] is not None:
            significant = abs(delta) > 1.96 * (current["se"] ** 2 + previous["se"] ** 2) ** 0.5
    target = world.targets.get((org, period)) if period else None
    attained = None if target is None or current["csi"] is None else current["csi"] >= target
    body = {k: v for k, v in current.items() if k != "se"}
    body.update(
        org=org,
        **{"from": start.isoformat(), "to": end.isoformat()},
        previous={
            "from": prev[0].isoformat(),
            "to": prev[1].isoformat(),
            "n": previous["n"],
            "csi": previous["csi"],
            "ci95": previous["ci95"],
        },
        delta=delta,
        significant=significant,
        target=target,
        attained=attained,
    )
    return body


async def build_world(
    client: httpx.AsyncClient, headers: dict[str, str], *, n: int, seed: int
) -> World:
    world = World()
    await create_orgs(client, headers, *TREE)
    for survey in SURVEYS:
        body = {
            "code": survey["code"],
            "title": survey["code"],
            "stage": survey["stage"],
            "primary": "score",
            "questions": [
                {"key": "score", "prompt": "Score?", **survey["q"]},
                {"key": "why", "type": "text", "prompt": "Why?", "required": False},
            ],
        }
        r = await client.post("/v1/surveys", json=body, headers=headers)
        assert r.status_code == 201, r.text
    rng = random.Random(seed)
    orgs = [code for code, _ in TREE]
    # Each org leans its own way, so that subtrees really differ.
    lean = {org: rng.uniform(-0.3, 0.3) for org in orgs}
    start = datetime(2025, 10, 1, tzinfo=UTC)
    items = []
    for i in range(n):
        survey = rng.choice(SURVEYS)
        org = rng.choice(orgs)
        kind = survey["q"]["type"]
        low, high = SCALES.get(kind) or (survey["q"]["scale"]["min"], survey["q"]["scale"]["max"])
        position = min(max(rng.betavariate(4, 2) + lean[org], 0.0), 1.0)
        v = low + round(position * (high - low))
        when = start + timedelta(seconds=rng.randrange(0, 410 * 86400))
        channel = rng.choice(CHANNELS)
        customer_type = rng.choice(CUSTOMER_TYPES)
        item = {
            "survey": survey["code"],
            "org": org,
            "occurred_at": when.isoformat(),
            "source": "test",
            "external_id": f"r-{seed}-{i}",
            "customer": {"type": customer_type},
            "answers": {"score": v},
        }
        if channel is not None:
            item["channel"] = channel
        items.append(item)
        world.responses.append(
            Posted(
                org,
                survey["stage"],
                when.date(),
                channel,
                customer_type,
                Raw(survey["stage"], v, low, high, kind == "nps"),
            )
        )
    for chunk in range(0, len(items), 500):
        r = await client.post(
            "/v1/responses/batch", json={"items": items[chunk : chunk + 500]}, headers=headers
        )
        assert r.status_code == 200, r.text
        assert r.json()["counts"]["created"] == len(items[chunk : chunk + 500])
    return world


async def fold_all(app: Any) -> int:
    async with app.state.sessionmaker() as session, session.begin():
        conn = await driver_connection(session)
        total = 0
        while (folded := await store.fold(conn)) > 0:
            total += folded
        return total


@pytest.fixture
async def world(client: httpx.AsyncClient, admin: dict[str, str], app: Any) -> World:
    world = await build_world(client, admin, n=1200, seed=7)
    # Half of the data folded into the rollup, the other half still pending as deltas.
    assert await fold_all(app) > 0
    return await build_world_more(client, admin, world, n=400, seed=8)


async def build_world_more(
    client: httpx.AsyncClient, headers: dict[str, str], world: World, *, n: int, seed: int
) -> World:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        survey = rng.choice(SURVEYS)
        org = rng.choice([c for c, _ in TREE])
        kind = survey["q"]["type"]
        low, high = SCALES.get(kind) or (0, 4)
        v = rng.randint(low, high)
        when = datetime(2025, 10, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 410 * 86400))
        items.append(
            {
                "survey": survey["code"],
                "org": org,
                "occurred_at": when.isoformat(),
                "source": "more",
                "external_id": f"m-{i}",
                "channel": "web",
                "customer": {"type": "internal"},
                "answers": {"score": v},
            }
        )
        world.responses.append(
            Posted(
                org,
                survey["stage"],
                when.date(),
                "web",
                "internal",
                Raw(survey["stage"], v, low, high, kind == "nps"),
            )
        )
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=headers)
    assert r.json()["counts"]["created"] == n
    return world


CASES = [
    # (org, query, start, end, previous)
    (
        "HQ",
        {"period": "2026"},
        date(2026, 1, 1),
        date(2027, 1, 1),
        (date(2025, 1, 1), date(2026, 1, 1)),
    ),
    (
        "A",
        {"period": "2026-Q1"},
        date(2026, 1, 1),
        date(2026, 4, 1),
        (date(2025, 10, 1), date(2026, 1, 1)),
    ),
    (
        "A1",
        {"period": "2026-03"},
        date(2026, 3, 1),
        date(2026, 4, 1),
        (date(2026, 2, 1), date(2026, 3, 1)),
    ),
    (
        "HQ",
        {"from": "2025-11-17", "to": "2026-02-09"},
        date(2025, 11, 17),
        date(2026, 2, 9),
        (date(2025, 8, 25), date(2025, 11, 17)),
    ),
    (
        "B",
        {"from": "2026-01-01", "to": "2026-04-01"},
        date(2026, 1, 1),
        date(2026, 4, 1),
        (date(2025, 10, 1), date(2026, 1, 1)),
    ),
    (
        "A",
        {"from": "2026-02-10", "to": "2026-02-20"},
        date(2026, 2, 10),
        date(2026, 2, 20),
        (date(2026, 1, 31), date(2026, 2, 10)),
    ),
]


@pytest.mark.parametrize(("org", "query", "start", "end", "prev"), CASES)
async def test_index_matches_brute_force(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, org, query, start, end, prev
) -> None:
    r = await client.get(f"/v1/orgs/{org}/index", params={**query, "min_n": 5}, headers=admin)
    assert r.status_code == 200, r.text
    period = query.get("period") or (
        "2026-Q1" if (start, end) == (date(2026, 1, 1), date(2026, 4, 1)) else None
    )
    assert_close(r.json(), expected_index(world, org, start, end, prev, min_n=5, period=period))


async def test_filters_weights_and_targets(
    client: httpx.AsyncClient, admin: dict[str, str], world: World
) -> None:
    r = await client.put(
        "/v1/orgs/A/stage-weights", json={"purchase": 2.5, "rental": 0}, headers=admin
    )
    assert r.status_code == 200, r.text
    world.weights["A"] = {"purchase": 2.5, "rental": 0.0}
    r = await client.put("/v1/orgs/A1/targets/2026", json={"csi": 70}, headers=admin)
    assert r.status_code == 200, r.text
    world.targets[("A1", "2026")] = 70.0
    year, prev = (date(2026, 1, 1), date(2027, 1, 1)), (date(2025, 1, 1), date(2026, 1, 1))
    for org, params, select, stages in [
        ("A1", {"period": "2026"}, {}, None),  # inherits A's weights, has a target
        ("A", {"period": "2026", "channel": "web,mobile"}, {"channels": ["web", "mobile"]}, None),
        (
            "HQ",
            {"period": "2026", "customer_type": "internal"},
            {"customer_types": ["internal"]},
            None,
        ),
        ("A", {"period": "2026", "include_descendants": "false"}, {"descendants": False}, None),
        (
            "HQ",
            {"period": "2026", "stages": "purchase,after_service"},
            {},
            ["purchase", "after_service"],
        ),
    ]:
        r = await client.get(f"/v1/orgs/{org}/index", params={**params, "min_n": 5}, headers=admin)
        assert r.status_code == 200, r.text
        expected = expected_index(
            world, org, *year, prev, min_n=5, stages=stages, period="2026", **select
        )
        assert_close(r.json(), expected)


async def test_children_ranking(
    client: httpx.AsyncClient, admin: dict[str, str], world: World
) -> None:
    await client.put("/v1/orgs/B/stage-weights", json={"delivery": 3}, headers=admin)
    world.weights["B"] = {"delivery": 3.0}
    first = world.children("HQ")[0]
    r = await client.put(f"/v1/orgs/{first}/targets/2026", json={"csi": 60}, headers=admin)
    assert r.status_code == 200, r.text
    world.targets[(first, "2026")] = 60.0
    r = await client.get(
        "/v1/orgs/HQ/index/children", params={"period": "2026", "min_n": 5}, headers=admin
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    expected = []
    for child in world.children("HQ"):
        result = brute_index(
            world.select(child, date(2026, 1, 1), date(2027, 1, 1)),
            weights=world.weights_of(child),
            min_n=5,
        )
        expected.append((child, result))
    ranked = sorted(
        (e for e in expected if e[1]["csi"] is not None), key=lambda e: (-e[1]["csi"], e[0])
    )
    order = [c for c, _ in ranked] + sorted(c for c, res in expected if res["csi"] is None)
    assert [i["org"] for i in items] == order
    year, prev = (date(2026, 1, 1), date(2027, 1, 1)), (date(2025, 1, 1), date(2026, 1, 1))
    for item in items:
        result = dict(expected)[item["org"]]
        # The change against the previous period and the target, as the org index has them.
        org = expected_index(world, item["org"], *year, prev, min_n=5, period="2026")
        assert_close(
            item,
            {
                "n": result["n"],
                "csi": result["csi"],
                "ci95": result["ci95"],
                "suppressed": result["suppressed"],
                **{k: org[k] for k in ("delta", "significant", "target", "attained")},
            },
        )
    assert [i["rank"] for i in items if i["rank"] is not None] == list(range(1, len(ranked) + 1))
    assert sum(i["delta"] is not None for i in items) >= 2
    assert next(i for i in items if i["org"] == first)["target"] == 60.0


@pytest.mark.parametrize(
    ("granularity", "start", "end"),
    [
        ("month", "2025-10-01", "2026-12-01"),
        ("quarter", "2025-10-01", "2027-01-01"),
        ("year", "2025-01-01", "2027-01-01"),
    ],
)
async def test_series(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, granularity, start, end
) -> None:
    r = await client.get(
        "/v1/orgs/A/index/series",
        params={"granularity": granularity, "from": start, "to": end, "min_n": 5},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    for item in r.json()["items"]:
        lo, hi = date.fromisoformat(item["from"]), date.fromisoformat(item["to"])
        expected = brute_index(world.select("A", lo, hi), weights=world.weights_of("A"), min_n=5)
        assert_close(item, {k: v for k, v in expected.items() if k != "se"})


async def test_move_is_followed_at_once(
    client: httpx.AsyncClient, admin: dict[str, str], world: World, app: Any
) -> None:
    r = await client.patch("/v1/orgs/A1", json={"parent": "B"}, headers=admin)
    assert r.status_code == 200, r.text
    world.parent["A1"] = "B"
    year, prev = (date(2026, 1, 1), date(2027, 1, 1)), (date(2025, 1, 1), date(2026, 1, 1))
    for org in ("A", "B", "HQ", "A1"):
        r = await client.get(
            f"/v1/orgs/{org}/index", params={"period": "2026", "min_n": 5}, headers=admin
        )
        assert_close(r.json(), expected_index(world, org, *year, prev, min_n=5, period="2026"))
    # After folding the pending deltas (fanned out over the new tree) the numbers stay the same.
    await fold_all(app)
    for org in ("A", "B", "HQ"):
        r = await client.get(
            f"/v1/orgs/{org}/index", params={"period": "2026", "min_n": 5}, headers=admin
        )
        assert_close(r.json(), expected_index(world, org, *year, prev, min_n=5, period="2026"))


async def test_filters_on_a_custom_range(
    client: httpx.AsyncClient, admin: dict[str, str], world: World
) -> None:
    """Partial months from the day sums (stages) and from the raw rows (channel) alike."""
    start, end = date(2025, 11, 17), date(2026, 2, 9)
    prev = (date(2025, 8, 25), start)
    for org, params, select, stages in [
        ("HQ", {"stages": "purchase,after_service"}, {}, ["purchase", "after_service"]),
        ("A", {"channel": "web"}, {"channels": ["web"]}, None),
        ("HQ", {"stages": "delivery", "customer_type": "end_user"},
         {"customer_types": ["end_user"]}, ["delivery"]),
    ]:  # fmt: skip
        query = {"from": start.isoformat(), "to": end.isoformat(), **params, "min_n": 5}
        r = await client.get(f"/v1/orgs/{org}/index", params=query, headers=admin)
        assert r.status_code == 200, r.text
        expected = expected_index(world, org, start, end, prev, min_n=5, stages=stages, **select)
        assert_close(r.json(), expected)
