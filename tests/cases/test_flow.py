"""Cases through HTTP on real PostgreSQL: case rules, opening in every write path, the state
machine (every transition, forbidden ones 409), overdue on a controlled clock, subtree scoping,
erasure, bad input."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.cases.models import CaseStatus
from app.cases.rules import ALLOWED
from app.platform import clock
from tests.conftest import KeyFactory, bearer
from tests.factories import response_body, standard_setup

RULE = {"at_most": 2, "sla_hours": 48}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def moment(monkeypatch: pytest.MonkeyPatch) -> Clock:
    state = Clock()
    monkeypatch.setattr(clock, "now", lambda: state.now)
    return state


@pytest.fixture
async def setup(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    await standard_setup(client, admin)
    r = await client.put("/v1/surveys/delivery-csat/case-rule", json=RULE, headers=admin)
    assert r.status_code == 201, r.text
    return admin


RECENT = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()


def _recent(**overrides: Any) -> dict[str, Any]:
    return response_body(occurred_at=RECENT, **overrides)


async def post(client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any) -> Any:
    r = await client.post("/v1/responses", json=_recent(**overrides), headers=headers)
    assert r.status_code in (200, 201), r.text
    return r.json()


async def cases(client: httpx.AsyncClient, headers: dict[str, str], query: str = "") -> Any:
    r = await client.get(f"/v1/cases{query}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_the_case_rule_is_set_read_and_removed(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    url = "/v1/surveys/delivery-csat/case-rule"
    assert (await client.get(url, headers=setup)).json() == {
        "survey": "delivery-csat",
        "at_most": 2,
        "sla_hours": 48,
        "max_age_days": 30,
    }
    r = await client.put(url, json={**RULE, "max_age_days": 7}, headers=setup)
    assert r.status_code == 200
    assert r.json()["max_age_days"] == 7
    for bad, field in (
        ({"at_most": 6, "sla_hours": 1}, "at_most"),  # off the CSAT scale 1-5
        ({"at_most": 2, "sla_hours": 0}, "sla_hours"),
        ({"at_most": 2, "sla_hours": True}, "sla_hours"),
        ({"at_most": 2, "sla_hours": 1, "max_age_days": 0}, "max_age_days"),
        ({"sla_hours": 1}, "at_most"),
        ({"at_most": 2, "sla_hours": 1, "x": 1}, "x"),
    ):
        r = await client.put(url, json=bad, headers=setup)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["loc"] == ["body", field]
    assert (await client.get("/v1/surveys/nope/case-rule", headers=setup)).status_code == 404
    r = await client.put("/v1/surveys/nope/case-rule", json=RULE, headers=setup)
    assert r.status_code == 404
    assert (await client.delete(url, headers=setup)).status_code == 204
    assert (await client.delete(url, headers=setup)).status_code == 404
    assert (await client.get(url, headers=setup)).status_code == 404


async def test_a_low_score_opens_one_case_in_every_write_path(
    client: httpx.AsyncClient, setup: dict[str, str], connection: AsyncConnection
) -> None:
    low = await post(client, setup, external_id="low-1", answers={"overall": 2})
    await post(client, setup, external_id="high-1", answers={"overall": 3})
    # A duplicate opens nothing.
    await post(client, setup, external_id="low-1", answers={"overall": 2})
    (case,) = await cases(client, setup)
    assert case["response_id"] == low["id"]
    assert case["org"] == "KR-DELIVERY-SEOUL"
    assert case["survey"] == "delivery-csat"
    assert case["stage"] == "delivery"
    assert case["score"] == {"raw": 2, "normalized": 25.0}
    assert case["status"] == "open"
    assert case["overdue"] is False
    assert case["notes"] == []
    opened = datetime.fromisoformat(case["opened_at"])
    assert datetime.fromisoformat(case["due_at"]) - opened == timedelta(hours=48)
    # A batch: one case per low item, none for duplicates or invalid items.
    items = [
        _recent(external_id="b-1", answers={"overall": 1}),
        _recent(external_id="b-2", answers={"overall": 5}),
        _recent(external_id="b-1", answers={"overall": 1}),
        _recent(external_id="b-3", answers={"overall": 9}),
    ]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=setup)
    assert r.json()["counts"]["created"] == 2
    assert len(await cases(client, setup)) == 2
    # Too old when stored: no case (a backfill does not flood the desk).
    old = (datetime.now(UTC) - timedelta(days=31)).isoformat()
    r = await client.post(
        "/v1/responses",
        json=response_body(external_id="old", occurred_at=old, answers={"overall": 1}),
        headers=setup,
    )
    assert r.status_code == 201
    assert len(await cases(client, setup)) == 2
    # Another survey without a rule opens none; a rule set later opens none for earlier ones.
    count = (await connection.execute(text("SELECT count(*) FROM cases"))).scalar_one()
    assert count == 2


async def case_of(client: httpx.AsyncClient, headers: dict[str, str], response: Any) -> Any:
    (case,) = [
        c for c in await cases(client, headers, "?limit=500") if c["response_id"] == response["id"]
    ]
    return case


async def test_every_transition_and_the_forbidden_ones(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    statuses = list(CaseStatus)
    for n, (source, target) in enumerate(itertools.product(statuses, statuses)):
        low = await post(client, setup, external_id=f"t-{n}", answers={"overall": 1})
        url = f"/v1/cases/{(await case_of(client, setup, low))['id']}"
        await _bring(client, setup, url, source)
        body = {"status": target.value, "root_cause": "late driver"}
        r = await client.patch(url, json=body, headers=setup)
        if source is target or (source, target) in ALLOWED:
            assert r.status_code == 200, (source, target, r.text)
            assert r.json()["status"] == target.value
        else:
            assert r.status_code == 409, (source, target, r.text)
            assert r.json()["type"].endswith("/case-transition")
            got = (await client.get(url, headers=setup)).json()
            assert got["status"] == source.value
            assert got["root_cause"] == ("setup" if source is not CaseStatus.open else None)
    assert len(ALLOWED) == 7


async def _bring(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, status: CaseStatus
) -> None:
    if status is not CaseStatus.open:
        body = {"status": status.value, "root_cause": "setup"}
        r = await client.patch(url, json=body, headers=headers)
        assert r.status_code == 200, r.text


async def test_timestamps_root_causes_reopening_notes_and_assignees(
    client: httpx.AsyncClient, setup: dict[str, str], moment: Clock, make_key: KeyFactory
) -> None:
    low = await post(client, setup, external_id="x", answers={"overall": 1})
    url = f"/v1/cases/{(await case_of(client, setup, low))['id']}"
    moment.advance(hours=1)
    r = await client.patch(
        url, json={"status": "acknowledged", "assignee": "Ms. Park"}, headers=setup
    )
    assert r.status_code == 200
    case = r.json()
    assert case["acknowledged_at"] == moment.now.isoformat().replace("+00:00", "Z")
    assert case["assignee"] == "Ms. Park"
    # Resolving needs a root cause: in the request or before.
    r = await client.patch(url, json={"status": "resolved"}, headers=setup)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "root_cause"]
    r = await client.patch(url, json={"root_cause": "driver late"}, headers=setup)
    assert r.status_code == 200
    moment.advance(hours=2)
    r = await client.patch(url, json={"status": "resolved"}, headers=setup)
    assert r.status_code == 200
    assert r.json()["resolved_at"] is not None
    # Reopening clears resolved_at and closed_at.
    r = await client.patch(
        url, json={"status": "open", "note": "customer called again"}, headers=setup
    )
    case = r.json()
    assert (case["status"], case["resolved_at"], case["closed_at"]) == ("open", None, None)
    assert case["acknowledged_at"] is not None
    writer = bearer(await make_key("cases:write", "cases:read"))
    await client.patch(url, json={"status": "closed"}, headers=setup)
    # A note or an assignee in any status, closed included.
    r = await client.patch(url, json={"note": "thanked", "assignee": None}, headers=writer)
    assert r.status_code == 200
    case = r.json()
    assert case["status"] == "closed"
    assert case["assignee"] is None
    assert [n["text"] for n in case["notes"]] == ["customer called again", "thanked"]
    assert case["notes"][1]["actor"].startswith("key:")
    for bad in (
        {},
        {"status": "lost"},
        {"root_cause": ""},
        {"root_cause": "x" * 201},
        {"note": ""},
        {"x": 1},
    ):
        r = await client.patch(url, json=bad, headers=setup)
        assert r.status_code == 422, (bad, r.text)
    for bad_id in ("999999", "abc", "1" * 30):
        assert (await client.get(f"/v1/cases/{bad_id}", headers=setup)).status_code == 404
        r = await client.patch(f"/v1/cases/{bad_id}", json={"note": "n"}, headers=setup)
        assert r.status_code == 404


async def test_overdue_follows_the_clock_and_filters_lists(
    client: httpx.AsyncClient, setup: dict[str, str], moment: Clock
) -> None:
    first = await post(client, setup, external_id="a", answers={"overall": 1})
    second = await post(client, setup, external_id="b", answers={"overall": 2})
    case_a = await case_of(client, setup, first)
    case_b = await case_of(client, setup, second)
    assert not case_a["overdue"]
    moment.advance(hours=49)
    assert (await client.get(f"/v1/cases/{case_a['id']}", headers=setup)).json()["overdue"]
    await client.patch(
        f"/v1/cases/{case_b['id']}", json={"status": "resolved", "root_cause": "x"}, headers=setup
    )
    assert [c["id"] for c in await cases(client, setup, "?overdue=true")] == [case_a["id"]]
    assert [c["id"] for c in await cases(client, setup, "?overdue=false")] == [case_b["id"]]
    assert [c["id"] for c in await cases(client, setup, "?status=resolved")] == [case_b["id"]]
    assert [c["id"] for c in await cases(client, setup, "?org=KR")] == [case_a["id"], case_b["id"]]
    assert await cases(client, setup, "?org=US") == []
    assert await cases(client, setup, "?from=2999-01-01T00:00:00Z") == []
    r = await client.get("/v1/cases?org=NOPE", headers=setup)
    assert r.status_code == 422
    r = await client.get("/v1/cases?limit=1", headers=setup)
    assert r.json()["next_cursor"] is not None


async def test_org_bound_keys_see_and_change_only_their_subtree(
    client: httpx.AsyncClient, setup: dict[str, str], make_key: KeyFactory
) -> None:
    low = await post(client, setup, external_id="s", answers={"overall": 1})
    case = await case_of(client, setup, low)
    us = bearer(await make_key("cases:read", "cases:write", org="US"))
    kr = bearer(await make_key("cases:read", "cases:write", org="KR"))
    assert (await client.get(f"/v1/cases/{case['id']}", headers=us)).status_code == 404
    r = await client.patch(f"/v1/cases/{case['id']}", json={"note": "x"}, headers=us)
    assert r.status_code == 404
    assert await cases(client, us) == []
    assert (await client.get("/v1/orgs/KR/cases/stats?period=2026", headers=us)).status_code == 404
    assert [c["id"] for c in await cases(client, kr)] == [case["id"]]
    assert (
        await client.patch(f"/v1/cases/{case['id']}", json={"note": "x"}, headers=kr)
    ).status_code == 200
    reader = bearer(await make_key("cases:read"))
    r = await client.patch(f"/v1/cases/{case['id']}", json={"note": "x"}, headers=reader)
    assert r.status_code == 403


async def test_erasing_the_response_erases_its_case(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    low = await post(client, setup, external_id="e", answers={"overall": 1})
    other = await post(
        client,
        setup,
        external_id="f",
        answers={"overall": 1},
        customer={"ref": "c-9", "type": "end_user"},
    )
    case = await case_of(client, setup, low)
    assert (await client.delete(f"/v1/responses/{low['id']}", headers=setup)).status_code == 204
    assert (await client.get(f"/v1/cases/{case['id']}", headers=setup)).status_code == 404
    r = await client.delete("/v1/customers/c-9/responses", headers=setup)
    assert r.json() == {"deleted": 1}
    assert await cases(client, setup) == []
    del other


async def test_an_invitation_answered_low_opens_a_case(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    body = {
        "survey": "delivery-csat",
        "org": "KR-DELIVERY-SEOUL",
        "source": "shop",
        "external_id": "inv-1",
        "occurred_at": RECENT,
        "customer": {"ref": "c-1", "type": "end_user"},
    }
    token = (await client.post("/v1/invitations", json=body, headers=setup)).json()["token"]
    r = await client.post(
        f"/v1/public/invitations/{token}/response", json={"answers": {"overall": 1}}
    )
    assert r.status_code == 201
    (case,) = await cases(client, setup)
    assert case["score"]["raw"] == 1
    assert case["org"] == "KR-DELIVERY-SEOUL"
