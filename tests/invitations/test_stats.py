"""Response rates against a brute-force count over random invitations: every state, windows,
tree modes (with a dated move), filters, include_descendants; bad queries."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.indices.brute import Placements
from tests.invitations.conftest import NOW, Clock, invitation_body

PURCHASE = {
    "code": "purchase-nps",
    "title": "Purchase",
    "stage": "purchase",
    "primary": "nps",
    "questions": [{"key": "nps", "type": "nps", "prompt": "Recommend us?"}],
}
ORGS = ["KR", "KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN", "US", "US-SERVICE"]
MOVE_DAY = date(2026, 11, 15)


@dataclass
class Made:
    org: str
    day: date
    stage: str
    channel: str | None
    customer_type: str
    state: str  # pending | answered | cancelled | expired | sampled_out


def _expected(
    made: list[Made],
    placements: Placements,
    *,
    org: str,
    start: date,
    end: date,
    tree: str,
    today: date,
    stages: set[str] | None = None,
    channels: set[str] | None = None,
    descendants: bool = True,
) -> dict[str, Any]:
    def inside(m: Made) -> bool:
        if not start <= m.day < end:
            return False
        if stages is not None and m.stage not in stages:
            return False
        if channels is not None and m.channel not in channels:
            return False
        if not descendants:
            return m.org == org
        day = {"current": today, "history": m.day}.get(tree) or date.fromisoformat(tree)
        chain = placements.chain(m.org, day)
        assert chain is not None
        return org in chain

    chosen = [m for m in made if inside(m)]
    count = {
        s: sum(1 for m in chosen if m.state == s)
        for s in ("pending", "answered", "cancelled", "expired", "sampled_out")
    }
    sent = len(chosen) - count["sampled_out"]
    return {
        "created": len(chosen),
        "suppressed": {"sampled_out": count["sampled_out"], "contact_rule": 0, "opted_out": 0},
        "sent": sent,
        "answered": count["answered"],
        "expired": count["expired"],
        "pending": count["pending"],
        "cancelled": count["cancelled"],
        "response_rate": count["answered"] / sent if sent else None,
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_stats_equal_a_brute_force_count(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], moment: Clock, seed: int
) -> None:
    rng = random.Random(seed)
    assert (
        await inv_client.post("/v1/surveys", json=PURCHASE, headers=inv_admin)
    ).status_code == 201
    moved = await inv_client.patch(
        "/v1/orgs/KR-DELIVERY-BUSAN",
        json={"parent": "US", "effective": MOVE_DAY.isoformat()},
        headers=inv_admin,
    )
    assert moved.status_code == 200, moved.text
    placements = Placements(
        created={
            "HQ": None,
            "KR": "HQ",
            "KR-DELIVERY-SEOUL": "KR",
            "KR-DELIVERY-BUSAN": "KR",
            "US": "HQ",
            "US-SERVICE": "US",
        },
        moves={"KR-DELIVERY-BUSAN": {MOVE_DAY: "US"}},
    )
    await inv_client.put("/v1/sampling/sampled", json={"rate": 0}, headers=inv_admin)
    made: list[Made] = []
    short: list[str] = []
    for i in range(45):
        day = date(2026, 11, 1) + timedelta(days=rng.randrange(30))
        state = rng.choice(["pending", "answered", "cancelled", "expired", "sampled_out"])
        survey, stage = rng.choice([("delivery-csat", "delivery"), ("purchase-nps", "purchase")])
        channel = rng.choice(["mobile", "web", None])
        customer_type = rng.choice(["end_user", "business_partner"])
        body = invitation_body(
            survey=survey,
            org=rng.choice(ORGS),
            source="sampled" if state == "sampled_out" else "shop",
            external_id=f"e-{i}",
            occurred_at=f"{day.isoformat()}T12:00:00Z",
            channel=channel,
            customer={"ref": f"c-{i}", "type": customer_type},
        )
        if state == "expired":
            body["expires_at"] = (NOW + timedelta(days=1)).isoformat()
        if channel is None:
            del body["channel"]
        r = await inv_client.post("/v1/invitations", json=body, headers=inv_admin)
        assert r.status_code == (200 if state == "sampled_out" else 201), r.text
        invitation = r.json()
        if state == "answered":
            answers = {"overall": 3} if stage == "delivery" else {"nps": 9}
            submitted = await inv_client.post(
                f"/v1/public/invitations/{invitation['token']}/response", json={"answers": answers}
            )
            assert submitted.status_code == 201, submitted.text
        elif state == "cancelled":
            cancelled = await inv_client.delete(
                f"/v1/invitations/{invitation['id']}", headers=inv_admin
            )
            assert cancelled.status_code == 204
        elif state == "expired":
            short.append(invitation["id"])
        made.append(Made(body["org"], day, stage, channel, customer_type, state))
    moment.advance(days=2)  # the short ones expire; the others (14 days) stay pending
    today = moment.now.date()

    queries: list[tuple[str, dict[str, Any]]] = []
    for org in ("HQ", "KR", "US", "KR-DELIVERY-BUSAN"):
        for tree in ("current", "history", "2026-11-10"):
            queries.append((f"{org}?period=2026-11&tree={tree}", {"org": org, "tree": tree}))
        queries.append(
            (
                f"{org}?from=2026-11-10&to=2026-11-20&tree=history",
                {
                    "org": org,
                    "tree": "history",
                    "start": date(2026, 11, 10),
                    "end": date(2026, 11, 20),
                },
            )
        )
        queries.append(
            (
                f"{org}?period=2026-Q4&stages=purchase",
                {"org": org, "tree": "current", "stages": {"purchase"}},
            )
        )
        queries.append(
            (
                f"{org}?period=2026&channel=mobile,web&tree=history",
                {"org": org, "tree": "history", "channels": {"mobile", "web"}},
            )
        )
        queries.append(
            (
                f"{org}?period=2026-11&include_descendants=false",
                {"org": org, "tree": "current", "descendants": False},
            )
        )
    for query, spec in queries:
        r = await inv_client.get(
            f"/v1/orgs/{query.replace('?', '/invitations/stats?', 1)}", headers=inv_admin
        )
        assert r.status_code == 200, (query, r.text)
        got = r.json()
        spec.setdefault("start", date(2026, 11, 1))
        spec.setdefault("end", date(2026, 12, 1))
        if "2026-Q4" in query:
            spec["start"], spec["end"] = date(2026, 10, 1), date(2027, 1, 1)
        if "period=2026&" in query:
            spec["start"], spec["end"] = date(2026, 1, 1), date(2027, 1, 1)
        expected = _expected(made, placements, today=today, **spec)
        assert {k: got[k] for k in expected} == expected, query
        assert got["org"] == spec["org"]
        assert got["from"] == spec["start"].isoformat()
        assert got["to"] == spec["end"].isoformat()
        assert got["tree"] == spec["tree"]


async def test_stats_refuse_bad_queries(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str]
) -> None:
    for query, field in (
        ("", "from"),
        ("period=2026&from=2026-01-01&to=2026-02-01", "period"),
        ("period=26", "period"),
        ("from=2026-02-01&to=2026-01-01", "to"),
        ("period=2026&tree=yesterday", "tree"),
        ("period=2026&stages=nowhere", "stages"),
        ("period=2026&customer_type=robot", "customer_type"),
    ):
        r = await inv_client.get(f"/v1/orgs/HQ/invitations/stats?{query}", headers=inv_admin)
        assert r.status_code == 422, (query, r.text)
        assert r.json()["errors"][0]["loc"] == ["query", field], (query, r.json())
    r = await inv_client.get("/v1/orgs/NOPE/invitations/stats?period=2026", headers=inv_admin)
    assert r.status_code == 404
    empty = await inv_client.get("/v1/orgs/HQ/invitations/stats?period=2026", headers=inv_admin)
    assert empty.json()["response_rate"] is None
    assert empty.json()["sent"] == 0
