"""Scorecards against a brute force: random trees with dated moves, nested purviews, targets,
judged and measured tasks, schemes with stage weights, suppressed stages; then a close, whose
stored scorecards must equal the live ones and carry the fingerprint of the responses used.

The oracle knows nothing of the service: it walks each response's chain of parents on the
response's own date, filters raw scores, and applies PRODUCT.md's scorecard definitions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncConnection

from app.indices import store
from app.platform import clock
from app.platform.db import driver_connection
from tests.evaluations.conftest import MIN_N, issue
from tests.indices.brute import Placements, Raw, assert_close, brute_index

CODES = [f"O{i}" for i in range(6)]
PERIOD = "2026-Q1"
START, END = date(2026, 1, 1), date(2026, 4, 1)
FIRST_DAY = date(2025, 12, 20)
DAYS = 110
MOVE_DAYS = [date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 15), date(2026, 3, 10)]
TODAY = date(2026, 4, 10)
SURVEYS = {  # code: (stage, type, scale)
    "d-csat": ("delivery", "csat", (1, 5)),
    "d-ces": ("delivery", "ces", (1, 7)),
    "p-nps": ("purchase", "nps", (0, 10)),
}
CHANNELS = ["web", "store"]
TYPES = ["end_user", "business_partner", "internal"]
STATUSES = ["planned", "in_progress", "done", "dropped"]


@dataclass(frozen=True)
class Posted:
    id: int
    org: str
    day: date
    survey: str
    channel: str
    customer_type: str
    raw: Raw


@dataclass
class World(Placements):
    responses: list[Posted] = field(default_factory=list)

    def under(self, orgs: list[str], *, day_of_tree: date | None = None) -> list[Posted]:
        """Responses of the period counted for any of `orgs` in the history tree (or the
        tree of `day_of_tree`): each at most once."""
        out = []
        for r in self.responses:
            if not START <= r.day < END:
                continue
            chain = self.chain(r.org, day_of_tree or r.day)
            assert chain is not None
            if any(o in chain for o in orgs):
                out.append(r)
        return out


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _component(csi: float | None, target: float | None, cap: float) -> float | None:
    if csi is None:
        return None
    if target is None:
        return csi
    return cap if target == 0 else min(cap, 100 * csi / target)


def _attained(csi: float | None, target: float | None) -> bool | None:
    return None if csi is None or target is None else csi >= target


def _digest(world: World, used: list[Posted]) -> str:
    cells: dict[tuple[str, date], list[int]] = {}
    for r in used:
        cells.setdefault((r.org, r.day), []).append(r.id)
    text = "".join(
        f"{org}\t{day}\t{len(ids)}\t"
        + hashlib.sha256("\n".join(str(i) for i in sorted(ids)).encode()).hexdigest()
        + "\n"
        for (org, day), ids in sorted(cells.items())
    )
    return hashlib.sha256(text.encode()).hexdigest()


response = st.tuples(
    st.integers(0, 5),
    st.integers(0, DAYS - 1),
    st.sampled_from(sorted(SURVEYS)),
    st.integers(0, 10),
    st.sampled_from(CHANNELS),
    st.sampled_from(TYPES),
)
_measured = st.fixed_dictionaries(
    {"csi_target": st.sampled_from([0, 40, 55, 70, 100])},
    optional={
        "stages": st.sampled_from([["delivery"], ["purchase"], ["delivery", "purchase"]]),
        "customer_type": st.sampled_from(TYPES),
        "channel": st.sampled_from(CHANNELS),
        "survey": st.sampled_from(sorted(SURVEYS)),
    },
)
measure = st.one_of(st.none(), _measured, _measured)  # measured twice as often as judged
task = st.tuples(
    st.integers(0, 5),
    st.sampled_from(STATUSES),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    measure,
    st.sampled_from([PERIOD, PERIOD, "2026-01"]),
)
executive = st.tuples(
    st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True),
    st.none() | st.sampled_from([0, 50, 65, 80]),
)
scheme = st.none() | st.fixed_dictionaries(
    {
        "index_weight": st.sampled_from([0, 0.4, 1, 3]),
        "task_weight": st.sampled_from([0.5, 1, 0]),
        "cap": st.sampled_from([100, 120]),
    },
    optional={
        "stage_weights": st.sampled_from([{"delivery": 2}, {"purchase": 0}, {"delivery": 0.5}])
    },
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    parents=st.lists(st.integers(-1, 5), min_size=6, max_size=6),
    moves=st.lists(
        st.tuples(st.integers(0, 5), st.integers(-1, 5), st.sampled_from(MOVE_DAYS)), max_size=3
    ),
    responses=st.lists(response, min_size=10, max_size=120),
    people=st.lists(executive, min_size=1, max_size=3),
    tasks=st.lists(task, max_size=8),
    org_targets=st.dictionaries(st.integers(0, 5), st.sampled_from([0, 45, 60, 75]), max_size=3),
    weights_on=st.none() | st.tuples(st.integers(0, 5), st.sampled_from([{"delivery": 3}])),
    scheme_body=scheme,
    settle=st.sampled_from(["pending", "folded", "rebuilt"]),
)
async def test_scorecards_match_the_brute_force(
    eval_app: Any,
    eval_client: httpx.AsyncClient,
    connection: AsyncConnection,
    monkeypatch: pytest.MonkeyPatch,
    parents: list[int],
    moves: list[tuple[int, int, date]],
    responses: list[tuple[int, int, str, int, str, str]],
    people: list[tuple[list[int], int | None]],
    tasks: list[tuple[int, str, float, dict[str, Any] | None, str]],
    org_targets: dict[int, int],
    weights_on: tuple[int, dict[str, float]] | None,
    scheme_body: dict[str, Any] | None,
    settle: str,
) -> None:
    savepoint = await connection.begin_nested()
    try:
        monkeypatch.setattr(clock, "now", lambda: _at(TODAY))
        eval_app.state.tree_synced_for = None
        await _scenario(
            eval_app,
            eval_client,
            parents,
            moves,
            responses,
            people,
            tasks,
            org_targets,
            weights_on,
            scheme_body,
            settle,
        )
    finally:
        await savepoint.rollback()


async def _scenario(
    app: Any,
    client: httpx.AsyncClient,
    parents: list[int],
    moves: list[tuple[int, int, date]],
    responses: list[tuple[int, int, str, int, str, str]],
    people: list[tuple[list[int], int | None]],
    tasks: list[tuple[int, str, float, dict[str, Any] | None, str]],
    org_targets: dict[int, int],
    weights_on: tuple[int, dict[str, float]] | None,
    scheme_body: dict[str, Any] | None,
    settle: str,
) -> None:
    admin = await issue(app)
    world = World(created={})
    for i, code in enumerate(CODES):
        parent = CODES[parents[i] % i] if i and parents[i] >= 0 else None
        world.created[code] = parent
        r = await client.post(
            "/v1/orgs", json={"code": code, "name": code, "parent": parent}, headers=admin
        )
        assert r.status_code == 201, r.text
    for org_i, parent_i, day in moves:
        code, parent = CODES[org_i], CODES[parent_i] if parent_i >= 0 else None
        trial = {k: dict(v) for k, v in world.moves.items()}
        trial.setdefault(code, {})[day] = parent
        r = await client.patch(
            f"/v1/orgs/{code}", json={"parent": parent, "effective": str(day)}, headers=admin
        )
        if World(world.created, trial).acyclic():
            assert r.status_code == 200, r.text
            world.moves = trial
        else:
            assert r.status_code == 409, r.text
    for code, (stage, kind, _) in SURVEYS.items():
        body = {
            "code": code,
            "title": code,
            "stage": stage,
            "primary": "q",
            "questions": [{"key": "q", "type": kind, "prompt": "?"}],
        }
        assert (await client.post("/v1/surveys", json=body, headers=admin)).status_code == 201
    bodies = []
    for serial, (org_i, offset, survey, seed, channel, ctype) in enumerate(responses):
        lo, hi = SURVEYS[survey][2]
        day = FIRST_DAY + timedelta(days=offset)
        bodies.append(
            {
                "survey": survey,
                "org": CODES[org_i],
                "occurred_at": f"{day}T08:00:00+00:00",
                "source": "s",
                "external_id": f"r{serial}",
                "channel": channel,
                "customer": {"ref": "c", "type": ctype},
                "answers": {"q": lo + seed % (hi - lo + 1)},
            }
        )
    r = await client.post("/v1/responses/batch", json={"items": bodies}, headers=admin)
    results = r.json()["results"]
    for body, result in zip(bodies, results, strict=True):
        assert result["status"] == "created", result
        stage, kind, (lo, hi) = SURVEYS[body["survey"]]
        world.responses.append(
            Posted(
                id=int(result["id"]),
                org=body["org"],
                day=date.fromisoformat(body["occurred_at"][:10]),
                survey=body["survey"],
                channel=body["channel"],
                customer_type=body["customer"]["type"],
                raw=Raw(stage, body["answers"]["q"], lo, hi, is_nps=kind == "nps"),
            )
        )
    # The responses' sums: still pending deltas, folded into the rollups, or rebuilt from the rows.
    if settle != "pending":
        async with app.state.sessionmaker() as session, session.begin():
            conn = await driver_connection(session)
            if settle == "folded":
                while await store.fold(conn) > 0:
                    pass
            else:
                await store.rebuild(conn)
        event(f"sums {settle}")
    for org_i, csi in org_targets.items():
        r = await client.put(f"/v1/orgs/{CODES[org_i]}/targets/{PERIOD}", json={"csi": csi},
                             headers=admin)  # fmt: skip
        assert r.status_code == 200, r.text
    # A target of another period must not count: periods are exact labels.
    r = await client.put(f"/v1/orgs/{CODES[0]}/targets/2026", json={"csi": 1}, headers=admin)
    set_weights: dict[str, dict[str, float]] = {}
    if weights_on is not None:
        code = CODES[weights_on[0]]
        r = await client.put(f"/v1/orgs/{code}/stage-weights", json=weights_on[1], headers=admin)
        assert r.status_code == 200, r.text
        set_weights[code] = weights_on[1]
    if scheme_body is not None:
        r = await client.put(f"/v1/evaluations/{PERIOD}/scheme", json=scheme_body, headers=admin)
        if scheme_body["index_weight"] == 0 and scheme_body["task_weight"] == 0:
            assert r.status_code == 422, r.text
            scheme_body = None
        else:
            assert r.status_code == 201, r.text
    scheme_used = {"index_weight": 0.5, "task_weight": 0.5, "cap": 100, **(scheme_body or {})}

    executives = []
    for n, (orgs, target) in enumerate(people):
        code = f"E{n}"
        r = await client.post("/v1/executives", json={"code": code, "name": code}, headers=admin)
        assert r.status_code == 201, r.text
        purview = [CODES[i] for i in orgs]
        r = await client.put(
            f"/v1/executives/{code}/purview/{PERIOD}", json={"orgs": purview}, headers=admin
        )
        assert r.status_code == 201, r.text
        if target is not None:
            r = await client.put(
                f"/v1/executives/{code}/targets/{PERIOD}", json={"csi": target}, headers=admin
            )
            assert r.status_code == 201, r.text
        await client.put(f"/v1/executives/{code}/targets/2026", json={"csi": 99}, headers=admin)
        executives.append((code, purview, target))

    made = []
    for org_i, status, weight, measured, period in tasks:
        body: dict[str, Any] = {
            "title": "t",
            "period": period,
            "customer_group": "internal",
            "due": "2026-03-31",
            "weight": weight,
        }
        if measured is not None:
            body["measure"] = measured
        r = await client.post(f"/v1/orgs/{CODES[org_i]}/tasks", json=body, headers=admin)
        assert r.status_code == 201, r.text
        task_id = r.json()["id"]
        if status != "planned":
            r = await client.patch(f"/v1/tasks/{task_id}", json={"status": status}, headers=admin)
            assert r.status_code == 200, r.text
        made.append((int(task_id), CODES[org_i], status, weight, measured, period))

    def org_weights(org: str) -> dict[str, float]:
        chain = world.chain(org, TODAY)
        assert chain is not None
        for member in chain:  # nearest set along today's path
            if member in set_weights:
                return set_weights[member]
        return {}

    def measured_index(org: str, m: dict[str, Any]) -> dict[str, Any]:
        used = [
            r
            for r in world.under([org])
            if ("customer_type" not in m or r.customer_type == m["customer_type"])
            and ("channel" not in m or r.channel == m["channel"])
            and ("survey" not in m or r.survey == m["survey"])
        ]
        return brute_index(
            [r.raw for r in used], weights=org_weights(org), min_n=MIN_N, stages=m.get("stages")
        )

    expected = {}
    for code, purview, target in executives:
        used = world.under(purview)
        index = brute_index(
            [r.raw for r in used], weights=scheme_used.get("stage_weights", {}), min_n=MIN_N
        )
        chosen = target
        if chosen is None and len(purview) == 1:
            chosen = org_targets.get(CODES.index(purview[0]))
        component = _component(index["csi"], chosen, scheme_used["cap"])  # type: ignore[arg-type]
        orgs = []
        for org in purview:
            own = brute_index(
                [r.raw for r in world.under([org])], weights=org_weights(org), min_n=MIN_N
            )
            org_target = org_targets.get(CODES.index(org))
            orgs.append(
                {
                    "org": org,
                    "n": own["n"],
                    "csi": own["csi"],
                    "ci95": own["ci95"],
                    "suppressed": own["suppressed"],
                    "target": org_target,
                    "attained": _attained(own["csi"], org_target),  # type: ignore[arg-type]
                }
            )
        items = []
        for task_id, org, status, weight, measured, period in sorted(made):
            if org not in purview or period != PERIOD or status == "dropped":
                continue
            if measured is None:
                achieved, csi = status == "done", None
            else:
                csi = measured_index(org, measured)["csi"]
                achieved = None if csi is None else csi >= measured["csi_target"]
            items.append(
                {
                    "id": str(task_id),
                    "org": org,
                    "status": status,
                    "measured": measured is not None,
                    "achieved": achieved,
                    "weight": weight,
                    "csi": csi,
                }
            )
        decided = sum(i["weight"] for i in items if i["achieved"] is not None)
        won = sum(i["weight"] for i in items if i["achieved"] is True)
        task_component = 100 * won / decided if decided else None
        parts = [
            (scheme_used["index_weight"], component),
            (scheme_used["task_weight"], task_component),
        ]
        present = [(w, c) for w, c in parts if c is not None]
        weight_sum = sum(w for w, _ in present)
        total = sum(w * c for w, c in present) / weight_sum if present and weight_sum else None
        expected[code] = {
            "executive": code,
            "period": PERIOD,
            "from": str(START),
            "to": str(END),
            "tree": "history",
            "index": {
                "n": index["n"],
                "csi": index["csi"],
                "ci95": index["ci95"],
                "suppressed": index["suppressed"],
                "target": chosen,
                "attained": _attained(index["csi"], chosen),  # type: ignore[arg-type]
                "component": component,
            },
            "orgs": orgs,
            "tasks": {
                "count": len(items),
                "achieved": sum(1 for i in items if i["achieved"] is True),
                "weight": decided,
                "weight_achieved": won,
                "component": task_component,
                "items": items,
            },
            "total": total,
        }
        expected[code]["_digest"] = _digest(world, used)

    r = await client.get(f"/v1/evaluations/{PERIOD}", headers=admin)
    assert r.status_code == 200, r.text
    live = r.json()
    assert live["status"] == "open"
    assert live["version"] is None
    cards = live["scorecards"]
    assert sorted(c["executive"] for c in cards) == sorted(expected)
    for card in cards:
        event("index csi " + ("null" if card["index"]["csi"] is None else "set"))
        event("total " + ("null" if card["total"] is None else "set"))
        for item in card["tasks"]["items"]:
            event(f"task measured={item['measured']} achieved={item['achieved']}")
        want = {k: v for k, v in expected[card["executive"]].items() if k != "_digest"}
        assert_close(card, want, card["executive"])
        assert card["frozen"] is False
        assert card["fingerprint"] is None
        one = await client.get(
            f"/v1/executives/{card['executive']}/scorecard", params={"period": PERIOD},
            headers=admin,
        )  # fmt: skip
        assert one.json() == {k: v for k, v in card.items() if k != "rank"}
    # Order and ranks follow the totals the service answered (which match the brute force).
    totals = [c["total"] for c in cards]
    scored = [t for t in totals if t is not None]
    assert scored == sorted(scored, reverse=True)
    assert all(t is None for t in totals[len(scored) :])
    for card in cards:
        if card["total"] is None:
            assert card["rank"] is None
        else:
            assert card["rank"] == 1 + sum(1 for t in scored if t > card["total"])

    r = await client.post(f"/v1/evaluations/{PERIOD}/close", json={}, headers=admin)
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["status"] == "closed"
    assert closed["version"] == 1
    for live_card, after in zip(cards, closed["scorecards"], strict=True):
        assert after["frozen"] is True
        printed = after.pop("fingerprint")
        assert printed == {
            "count": live_card["index"]["n"],
            "digest": expected[live_card["executive"]]["_digest"],
        }
        assert {**after, "frozen": False} == {
            k: v for k, v in live_card.items() if k != "fingerprint"
        }
