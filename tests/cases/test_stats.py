"""Case stats against a brute-force computation over random cases: windows, tree modes (with a
dated move), what happened inside the window, medians and root causes; bad queries."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.platform import clock
from tests.factories import response_body, standard_setup
from tests.indices.brute import Placements

START = datetime(2026, 10, 20, 8, tzinfo=UTC)
ORGS = ["KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN", "US-SERVICE", "KR"]
MOVE_DAY = date(2026, 11, 10)
CAUSES = ["late", "damaged", "rude"]


@dataclass
class Made:
    org: str
    opened: datetime
    due: datetime
    status: str = "open"
    acknowledged: datetime | None = None
    resolved: datetime | None = None
    closed: datetime | None = None
    root_cause: str | None = None
    log: list[str] = field(default_factory=list)


def expected(
    made: list[Made], placements: Placements, *, org: str, start: date, end: date, tree: str,
    now: datetime,
) -> dict[str, Any]:  # fmt: skip
    lo = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    hi = datetime.combine(end, datetime.min.time(), tzinfo=UTC)

    def inside(m: Made) -> bool:
        if not lo <= m.opened < hi:
            return False
        day = now.date() if tree == "current" else m.opened.date()
        chain = placements.chain(m.org, day)
        assert chain is not None
        return org in chain

    def within(at: datetime | None) -> bool:
        return at is not None and lo <= at < hi

    chosen = [m for m in made if inside(m)]
    resolved = [m for m in chosen if within(m.resolved)]
    hours = [(m.resolved - m.opened).total_seconds() / 3600 for m in resolved if m.resolved]
    causes: dict[str, int] = {}
    for m in resolved:
        assert m.root_cause is not None
        causes[m.root_cause] = causes.get(m.root_cause, 0) + 1
    still = [m for m in chosen if m.status in ("open", "acknowledged")]
    return {
        "opened": len(chosen),
        "acknowledged": sum(within(m.acknowledged) for m in chosen),
        "resolved": len(resolved),
        "closed": sum(within(m.closed) for m in chosen),
        "open_now": len(still),
        "overdue_now": sum(now > m.due for m in still),
        "median_hours_to_resolve": statistics.median(hours) if hours else None,
        "root_causes": [
            {"root_cause": c, "n": n}
            for c, n in sorted(causes.items(), key=lambda i: (-i[1], i[0]))
        ],
    }


@pytest.mark.parametrize("seed", [5, 6, 7])
async def test_case_stats_equal_a_brute_force_computation(
    client: httpx.AsyncClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    state = {"now": START}
    monkeypatch.setattr(clock, "now", lambda: state["now"])
    await standard_setup(client, admin)
    r = await client.put(
        "/v1/surveys/delivery-csat/case-rule", json={"at_most": 2, "sla_hours": 24}, headers=admin
    )
    assert r.status_code == 201
    moved = await client.patch(
        "/v1/orgs/KR-DELIVERY-BUSAN",
        json={"parent": "US", "effective": MOVE_DAY.isoformat()},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    placements = Placements(
        created={"HQ": None, "KR": "HQ", "KR-DELIVERY-SEOUL": "KR", "KR-DELIVERY-BUSAN": "KR",
                 "US": "HQ", "US-SERVICE": "US"},
        moves={"KR-DELIVERY-BUSAN": {MOVE_DAY: "US"}},
    )  # fmt: skip
    made: list[Made] = []
    ids: list[str] = []
    for i in range(40):
        state["now"] += timedelta(hours=rng.randrange(1, 40))
        org = rng.choice(ORGS)
        body = response_body(
            org=org,
            external_id=f"s-{i}",
            occurred_at=(state["now"] - timedelta(hours=2)).isoformat(),
            answers={"overall": rng.choice([1, 2])},
        )
        r = await client.post("/v1/responses", json=body, headers=admin)
        assert r.status_code == 201, r.text
        made.append(Made(org, state["now"], state["now"] + timedelta(hours=24)))
        listed = await client.get("/v1/cases?limit=500", headers=admin)
        (case,) = [c for c in listed.json()["items"] if c["response_id"] == r.json()["id"]]
        ids.append(case["id"])
        # Now and then, move an earlier case on.
        for _ in range(rng.randrange(3)):
            k = rng.randrange(len(made))
            m = made[k]
            state["now"] += timedelta(minutes=rng.randrange(1, 300))
            target = rng.choice(["acknowledged", "resolved", "closed", "open"])
            patch: dict[str, Any] = {"status": target}
            cause = rng.choice(CAUSES)
            if target in ("resolved", "closed"):
                patch["root_cause"] = cause
            r = await client.patch(f"/v1/cases/{ids[k]}", json=patch, headers=admin)
            if r.status_code == 409:
                continue
            assert r.status_code == 200, r.text
            now = state["now"]
            if target in ("resolved", "closed"):
                m.root_cause = cause
            if target != m.status:
                if target == "acknowledged":
                    m.acknowledged = now
                elif target == "resolved":
                    m.resolved = now
                elif target == "closed":
                    m.closed = now
                else:
                    m.resolved = m.closed = None
                m.status = target
    state["now"] += timedelta(hours=5)
    now = state["now"]
    for org in ("HQ", "KR", "US", "KR-DELIVERY-BUSAN"):
        for query, start, end in (
            ("period=2026-11", date(2026, 11, 1), date(2026, 12, 1)),
            ("period=2026", date(2026, 1, 1), date(2027, 1, 1)),
            ("from=2026-10-25&to=2026-11-15", date(2026, 10, 25), date(2026, 11, 15)),
        ):
            for tree in ("current", "history"):
                r = await client.get(
                    f"/v1/orgs/{org}/cases/stats?{query}&tree={tree}", headers=admin
                )
                assert r.status_code == 200, r.text
                got = r.json()
                want = expected(made, placements, org=org, start=start, end=end, tree=tree, now=now)
                median = got.pop("median_hours_to_resolve")
                wanted_median = want.pop("median_hours_to_resolve")
                assert median == pytest.approx(wanted_median), (org, query, tree)
                assert {k: got[k] for k in want} == want, (org, query, tree)
                assert (got["org"], got["from"], got["to"], got["tree"]) == (
                    org, start.isoformat(), end.isoformat(), tree
                )  # fmt: skip


async def test_case_stats_refuse_bad_queries(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await standard_setup(client, admin)
    for query, name in (("", "from"), ("period=2026&tree=someday", "tree"), ("period=x", "period")):
        r = await client.get(f"/v1/orgs/HQ/cases/stats?{query}", headers=admin)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["query", name]
    assert (
        await client.get("/v1/orgs/NOPE/cases/stats?period=2026", headers=admin)
    ).status_code == 404
    empty = (await client.get("/v1/orgs/HQ/cases/stats?period=2026", headers=admin)).json()
    assert empty["opened"] == 0
    assert empty["median_hours_to_resolve"] is None
    assert empty["root_causes"] == []
