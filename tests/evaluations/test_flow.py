"""The evaluation loop through HTTP: executives, purviews, tasks, closing a period (frozen byte
for byte against late responses, erasures, moves and edits), reopening, and bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.evaluations.conftest import issue
from tests.factories import response_body, standard_setup

PROBLEM = "application/problem+json"


async def _post(
    client: httpx.AsyncClient, headers: dict[str, str], org: str, scores: list[int], day: str
) -> list[str]:
    ids = []
    for i, score in enumerate(scores):
        body = response_body(
            org=org,
            external_id=f"{org}-{day}-{i}-{score}",
            occurred_at=f"{day}T10:00:00+00:00",
            answers={"overall": score},
            customer={"ref": f"cust-{org}-{i}", "type": "end_user"},
        )
        r = await client.post("/v1/responses", json=body, headers=headers)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


async def _setup(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    """Kim answers for KR and its Seoul branch (nested), Lee for US; responses in 2026."""
    await standard_setup(client, admin)
    for code, name in (("E-KIM", "Kim"), ("E-LEE", "Lee")):
        r = await client.post(
            "/v1/executives", json={"code": code, "name": name, "title": "VP"}, headers=admin
        )
        assert r.status_code == 201, r.text
    r = await client.put(
        "/v1/executives/E-KIM/purview/2026",
        json={"orgs": ["KR", "KR-DELIVERY-SEOUL"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"executive": "E-KIM", "period": "2026", "orgs": ["KR", "KR-DELIVERY-SEOUL"]}
    r = await client.put("/v1/executives/E-LEE/purview/2026", json={"orgs": ["US"]}, headers=admin)
    assert r.status_code == 201, r.text
    seoul = await _post(client, admin, "KR-DELIVERY-SEOUL", [5, 4, 4, 3, 5], "2026-03-02")
    busan = await _post(client, admin, "KR-DELIVERY-BUSAN", [2, 3, 4], "2026-04-02")
    await _post(client, admin, "US-SERVICE", [5, 5, 4, 2], "2026-05-02")
    r = await client.post(
        "/v1/orgs/KR/tasks",
        json={
            "title": "Call back every complaint",
            "period": "2026",
            "customer_group": "internal",
            "customers": "logistics planning department",
            "due": "2026-06-30",
            "weight": 2,
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    judged = r.json()
    r = await client.post(
        "/v1/orgs/KR-DELIVERY-SEOUL/tasks",
        json={
            "title": "Delivery CSI 60",
            "period": "2026",
            "customer_group": "end_user",
            "due": "2026-12-31",
            "measure": {"csi_target": 60, "stages": ["delivery"]},
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return {"judged": judged, "measured": r.json(), "seoul": seoul, "busan": busan}


async def test_task_history_and_live_achievement(
    eval_client: httpx.AsyncClient, eval_app: Any
) -> None:
    admin = await issue(eval_app)
    made = await _setup(eval_client, admin)
    judged, measured = made["judged"], made["measured"]
    assert judged["status"] == "planned"
    assert judged["achieved"] is False
    assert judged["measure"] is None
    assert [h["status"] for h in judged["history"]] == ["planned"]
    # Seoul: 5,4,4,3,5 on csat 1-5 → 100,75,75,50,100: mean 80 ≥ 60.
    assert measured["achieved"] is True
    assert measured["csi"] == pytest.approx(80.0, abs=1e-9)
    r = await eval_client.patch(
        f"/v1/tasks/{judged['id']}", json={"status": "in_progress"}, headers=admin
    )
    r = await eval_client.patch(
        f"/v1/tasks/{judged['id']}",
        json={"status": "done", "evidence": "all 41 complaints called back"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    task = r.json()
    assert task["achieved"] is True
    assert [(h["status"], h["evidence"]) for h in task["history"]] == [
        ("planned", None),
        ("in_progress", None),
        ("done", "all 41 complaints called back"),
    ]
    assert task["history"][-1]["changed"] == ["status", "evidence"]
    assert task["history"][-1]["actor"].startswith("key:")
    # The same values again change nothing, and record nothing.
    r = await eval_client.patch(f"/v1/tasks/{judged['id']}", json={"status": "done"}, headers=admin)
    assert len(r.json()["history"]) == 3
    r = await eval_client.patch(
        f"/v1/tasks/{judged['id']}", json={"status": "dropped"}, headers=admin
    )
    assert r.status_code == 200, r.text
    for change in ({"status": "planned"}, {"evidence": "late"}, {"title": "x"}):
        r = await eval_client.patch(f"/v1/tasks/{judged['id']}", json=change, headers=admin)
        assert r.status_code == 409, r.text
        assert r.json()["type"].endswith("/task-dropped")
    r = await eval_client.get(f"/v1/tasks/{judged['id']}", headers=admin)
    assert len(r.json()["history"]) == 4
    # Listing: the subtree by default, filters by status and period.
    r = await eval_client.get("/v1/orgs/KR/tasks", headers=admin)
    assert [t["id"] for t in r.json()["items"]] == [judged["id"], measured["id"]]
    r = await eval_client.get("/v1/orgs/KR/tasks?include_descendants=false", headers=admin)
    assert [t["id"] for t in r.json()["items"]] == [judged["id"]]
    r = await eval_client.get("/v1/orgs/KR/tasks?status=planned&period=2026", headers=admin)
    assert [t["id"] for t in r.json()["items"]] == [measured["id"]]
    r = await eval_client.get("/v1/orgs/KR/tasks?period=2026-Q1", headers=admin)
    assert r.json()["items"] == []
    r = await eval_client.get("/v1/orgs/HQ/tasks?limit=1", headers=admin)
    page = r.json()
    assert len(page["items"]) == 1
    r = await eval_client.get(f"/v1/orgs/HQ/tasks?limit=1&cursor={page['next_cursor']}",
                              headers=admin)  # fmt: skip
    assert [t["id"] for t in r.json()["items"]] == [measured["id"]]
    assert r.json()["next_cursor"] is None


async def test_external_id_makes_creates_repeatable(
    eval_client: httpx.AsyncClient, eval_app: Any
) -> None:
    admin = await issue(eval_app)
    await standard_setup(eval_client, admin)
    body = {
        "title": "Shorter waits",
        "period": "2026-Q3",
        "customer_group": "business_partner",
        "due": "2026-09-30",
        "external_id": "plan-7",
    }
    first = await eval_client.post("/v1/orgs/KR/tasks", json=body, headers=admin)
    assert first.status_code == 201, first.text
    r = await eval_client.patch(
        f"/v1/tasks/{first.json()['id']}", json={"status": "in_progress"}, headers=admin
    )
    again = await eval_client.post("/v1/orgs/KR/tasks", json=body, headers=admin)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "in_progress"
    r = await eval_client.post("/v1/orgs/KR/tasks", json={**body, "weight": 3}, headers=admin)
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/task-exists")
    # The same external id on another org is another task.
    r = await eval_client.post("/v1/orgs/US/tasks", json=body, headers=admin)
    assert r.status_code == 201, r.text


async def test_close_freezes_byte_for_byte(eval_client: httpx.AsyncClient, eval_app: Any) -> None:
    admin = await issue(eval_app)
    made = await _setup(eval_client, admin)
    r = await eval_client.put("/v1/executives/E-KIM/targets/2026", json={"csi": 70},
                              headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    r = await eval_client.post(
        "/v1/evaluations/2026/close", json={"note": "annual review"}, headers=admin
    )
    assert r.status_code == 200, r.text
    closed = r.content
    body = r.json()
    assert body["status"] == "closed"
    assert body["version"] == 1
    assert body["note"] == "annual review"
    assert body["closed_by"]
    assert sorted(c["executive"] for c in body["scorecards"]) == ["E-KIM", "E-LEE"]
    kim = await eval_client.get("/v1/executives/E-KIM/scorecard?period=2026", headers=admin)
    assert kim.json()["frozen"] is True
    frozen_kim = kim.content
    kim_n = kim.json()["index"]["n"]
    assert kim.json()["fingerprint"]["count"] == kim_n == 8  # Seoul 5 + Busan 3, once each

    # Everything that would change a grade is refused while closed ...
    writes = [
        ("PUT", "/v1/executives/E-KIM/purview/2026", {"orgs": ["KR"]}),
        ("DELETE", "/v1/executives/E-KIM/purview/2026", None),
        ("PUT", "/v1/executives/E-KIM/targets/2026", {"csi": 10}),
        ("DELETE", "/v1/executives/E-KIM/targets/2026", None),
        ("PUT", "/v1/evaluations/2026/scheme", {"index_weight": 1, "task_weight": 0}),
        ("PATCH", f"/v1/tasks/{made['judged']['id']}", {"status": "done"}),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {"title": "t", "period": "2026", "customer_group": "internal", "due": "2026-12-01"},
        ),
    ]
    for method, url, json_body in writes:
        r = await eval_client.request(method, url, json=json_body, headers=admin)
        assert r.status_code == 409, (method, url, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("/period-closed")
    # ... while other periods stay open and the executive's name may change.
    r = await eval_client.put("/v1/executives/E-KIM/purview/2027", json={"orgs": ["KR"]},
                              headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    r = await eval_client.patch("/v1/executives/E-KIM", json={"name": "Kim J."}, headers=admin)
    assert r.status_code == 200, r.text

    # Late responses are accepted, an erasure and a move happen: the frozen view does not move.
    await _post(eval_client, admin, "KR-DELIVERY-SEOUL", [1, 1, 1], "2026-06-01")
    r = await eval_client.delete(f"/v1/responses/{made['seoul'][0]}", headers=admin)
    assert r.status_code == 204, r.text
    r = await eval_client.patch(
        "/v1/orgs/KR-DELIVERY-BUSAN", json={"parent": "US", "effective": "2026-01-01"},
        headers=admin,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert (await eval_client.get("/v1/evaluations/2026", headers=admin)).content == closed
    again = await eval_client.get("/v1/executives/E-KIM/scorecard?period=2026", headers=admin)
    assert again.content == frozen_kim
    assert (
        await eval_client.get(
            "/v1/executives/E-KIM/scorecard?period=2026&tree=history", headers=admin
        )
    ).content == frozen_kim
    # The live view shows the late data: 3 late ones, one erased, Busan gone to US since Jan 1.
    live = await eval_client.get(
        "/v1/executives/E-KIM/scorecard?period=2026&live=true", headers=admin
    )
    assert live.json()["frozen"] is False
    assert live.json()["index"]["n"] == kim_n + 3 - 1 - 3
    current = await eval_client.get(
        "/v1/executives/E-KIM/scorecard?period=2026&tree=current", headers=admin
    )
    assert current.json()["tree"] == "current"
    assert current.json()["frozen"] is False

    # Reopen, then close again: version 2; version 1 stays readable as it was.
    r = await eval_client.post("/v1/evaluations/2026/reopen", json={}, headers=admin)
    assert r.status_code == 422, r.text
    r = await eval_client.post("/v1/evaluations/2026/reopen", json={"reason": "erasure"},
                               headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "open"
    assert r.json()["version"] == 1
    r = await eval_client.post("/v1/evaluations/2026/reopen", json={"reason": "x"}, headers=admin)
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/period-open")
    r = await eval_client.put("/v1/executives/E-KIM/targets/2026", json={"csi": 60},
                              headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    r = await eval_client.post("/v1/evaluations/2026/close", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    second = r.content
    assert (await eval_client.get("/v1/evaluations/2026/versions/1", headers=admin)).content == (
        closed
    )
    assert (await eval_client.get("/v1/evaluations/2026/versions/2", headers=admin)).content == (
        second
    )
    r = await eval_client.get("/v1/evaluations/2026/versions/3", headers=admin)
    assert r.status_code == 404, r.text
    cards = (await eval_client.get("/v1/evaluations/2026", headers=admin)).json()["scorecards"]
    kim2 = next(c for c in cards if c["executive"] == "E-KIM")
    assert kim2["index"]["target"] == 60
    assert kim2["fingerprint"]["count"] == kim2["index"]["n"]
    assert kim2["fingerprint"]["digest"] != kim.json()["fingerprint"]["digest"]
    # The audit log has both closes and the reopen with its reason.
    r = await eval_client.get("/v1/audit?action=evaluation.reopen", headers=admin)
    events = r.json()["items"]
    assert [e["details"]["reason"] for e in events] == ["erasure"]
    r = await eval_client.get("/v1/audit?action=evaluation.close", headers=admin)
    assert sorted(e["details"]["version"] for e in r.json()["items"]) == [1, 2]


async def test_scorecard_definitions_by_hand(eval_client: httpx.AsyncClient, eval_app: Any) -> None:
    """A worked example: target from the single purview org, cap, task weights, the scheme."""
    admin = await issue(eval_app)
    await _setup(eval_client, admin)
    r = await eval_client.put("/v1/orgs/US/targets/2026", json={"csi": 50}, headers=admin)
    r = await eval_client.put(
        "/v1/evaluations/2026/scheme",
        json={"index_weight": 3, "task_weight": 1, "cap": 120},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"index_weight": 3, "task_weight": 1, "cap": 120, "stage_weights": None}
    r = await eval_client.get("/v1/executives/E-LEE/scorecard?period=2026", headers=admin)
    lee = r.json()
    # US-SERVICE 5,5,4,2 → (100+100+75+25)/4 = 75; target 50 (US alone) → 150, capped at 120.
    assert lee["index"]["csi"] == pytest.approx(75.0, abs=1e-9)
    assert lee["index"]["target"] == 50
    assert lee["index"]["attained"] is True
    assert lee["index"]["component"] == 120
    assert lee["tasks"]["component"] is None
    assert lee["total"] == 120  # the task component is null: the index alone
    r = await eval_client.get("/v1/executives/E-KIM/scorecard?period=2026", headers=admin)
    kim = r.json()
    # Union of KR and Seoul: Seoul 5,4,4,3,5 and Busan 2,3,4, each once → n 8.
    assert kim["index"]["n"] == 8
    assert kim["index"]["target"] is None  # two purview orgs, no executive target
    assert [o["org"] for o in kim["orgs"]] == ["KR", "KR-DELIVERY-SEOUL"]
    assert [o["n"] for o in kim["orgs"]] == [8, 5]
    # Judged (weight 2) not done, measured (weight 1) achieved → 100·1/3.
    assert kim["tasks"]["weight"] == 3
    assert kim["tasks"]["weight_achieved"] == 1
    assert kim["total"] == pytest.approx((3 * kim["index"]["csi"] + 100 / 3) / 4, abs=1e-9)
    r = await eval_client.get("/v1/evaluations/2026", headers=admin)
    ranked = [(c["executive"], c["rank"]) for c in r.json()["scorecards"]]
    assert ranked == [("E-LEE", 1), ("E-KIM", 2)]


async def test_bound_keys_see_their_subtree(eval_client: httpx.AsyncClient, eval_app: Any) -> None:
    admin = await issue(eval_app)
    made = await _setup(eval_client, admin)
    kr = await issue(eval_app, "evaluations:read", "evaluations:write", org="KR")
    r = await eval_client.get("/v1/executives", headers=kr)
    assert [e["code"] for e in r.json()["items"]] == ["E-KIM"]
    r = await eval_client.get("/v1/executives/E-LEE", headers=kr)
    assert r.status_code == 404, r.text
    r = await eval_client.get("/v1/executives/E-LEE/scorecard?period=2026", headers=kr)
    assert r.status_code == 404, r.text
    r = await eval_client.get("/v1/executives/E-KIM/scorecard?period=2026", headers=kr)
    assert r.status_code == 200, r.text
    r = await eval_client.get("/v1/evaluations/2026", headers=kr)
    assert [c["executive"] for c in r.json()["scorecards"]] == ["E-KIM"]
    full = await eval_client.get("/v1/evaluations/2026", headers=admin)
    kim_rank = next(c["rank"] for c in full.json()["scorecards"] if c["executive"] == "E-KIM")
    assert r.json()["scorecards"][0]["rank"] == kim_rank  # ranks of the whole evaluation
    # The evaluation office's records need an unbound key; tasks of the subtree do not.
    for method, url, body in [
        ("POST", "/v1/executives", {"code": "E-X", "name": "X"}),
        ("PUT", "/v1/executives/E-KIM/purview/2027", {"orgs": ["KR"]}),
        ("PUT", "/v1/executives/E-KIM/targets/2026", {"csi": 1}),
        ("PUT", "/v1/evaluations/2026/scheme", {"index_weight": 1, "task_weight": 1}),
        ("POST", "/v1/evaluations/2026/close", {}),
        ("POST", "/v1/evaluations/2026/reopen", {"reason": "r"}),
    ]:
        r = await eval_client.request(method, url, json=body, headers=kr)
        assert r.status_code == 403, (url, r.text)
    r = await eval_client.patch(
        f"/v1/tasks/{made['judged']['id']}", json={"status": "done"}, headers=kr
    )
    assert r.status_code == 200, r.text
    seoul = await issue(eval_app, "evaluations:read", "evaluations:write", org="KR-DELIVERY-SEOUL")
    r = await eval_client.get(f"/v1/tasks/{made['judged']['id']}", headers=seoul)
    assert r.status_code == 404, r.text  # a task of KR, above the key's subtree
    r = await eval_client.get("/v1/executives", headers=seoul)
    assert r.json()["items"] == []  # Kim's purview reaches above Seoul
    r = await eval_client.post(
        "/v1/orgs/US/tasks",
        json={"title": "t", "period": "2026", "customer_group": "internal", "due": "2026-12-01"},
        headers=kr,
    )
    assert r.status_code == 404, r.text
    r = await eval_client.post("/v1/evaluations/2026/close", headers=admin)
    r = await eval_client.get("/v1/evaluations/2026", headers=kr)
    assert [c["executive"] for c in r.json()["scorecards"]] == ["E-KIM"]


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "loc"),
    [
        ("POST", "/v1/executives", {"code": "bad code", "name": "x"}, 422, ["body", "code"]),
        ("POST", "/v1/executives", {"code": "E-KIM", "name": "dup"}, 409, None),
        ("GET", "/v1/executives/E-NOBODY", None, 404, None),
        ("PATCH", "/v1/executives/E-KIM", {"name": None}, 422, ["body", "name"]),
        ("PUT", "/v1/executives/E-KIM/purview/2026-13", {"orgs": ["KR"]}, 422, ["path", "period"]),
        ("PUT", "/v1/executives/E-KIM/purview/2026", {"orgs": []}, 422, ["body", "orgs"]),
        ("PUT", "/v1/executives/E-KIM/purview/2026", {"orgs": ["NOPE"]}, 422, ["body", "orgs", 0]),
        (
            "PUT",
            "/v1/executives/E-KIM/purview/2026",
            {"orgs": ["KR", "KR"]},
            422,
            ["body", "orgs", 1],
        ),
        ("PUT", "/v1/executives/E-KIM/purview/2026", {"orgs": ["KR"] * 51}, 422, ["body", "orgs"]),
        ("GET", "/v1/executives/E-KIM/purview/2025", None, 404, None),
        ("PUT", "/v1/executives/E-KIM/targets/2026", {"csi": 101}, 422, ["body", "csi"]),
        ("GET", "/v1/executives/E-KIM/targets/2026", None, 404, None),
        ("DELETE", "/v1/executives/E-KIM/targets/2026", None, 404, None),
        ("GET", "/v1/executives/E-KIM/scorecard?period=2025", None, 404, None),
        ("GET", "/v1/executives/E-KIM/scorecard", None, 422, ["query", "period"]),
        (
            "GET",
            "/v1/executives/E-KIM/scorecard?period=2026&tree=someday",
            None,
            422,
            ["query", "tree"],
        ),
        ("GET", "/v1/executives/E-KIM/scorecard?period=2026-W1", None, 422, ["query", "period"]),
        (
            "PUT",
            "/v1/evaluations/2026/scheme",
            {"index_weight": 0, "task_weight": 0},
            422,
            ["body", "task_weight"],
        ),
        (
            "PUT",
            "/v1/evaluations/2026/scheme",
            {"index_weight": -1, "task_weight": 1},
            422,
            ["body", "index_weight"],
        ),
        (
            "PUT",
            "/v1/evaluations/2026/scheme",
            {"index_weight": 1, "task_weight": 1, "cap": 99},
            422,
            ["body", "cap"],
        ),
        (
            "PUT",
            "/v1/evaluations/2026/scheme",
            {"index_weight": 1, "task_weight": 1, "stage_weights": {"nope": 1}},
            422,
            None,
        ),
        ("GET", "/v1/evaluations/20x6", None, 422, ["path", "period"]),
        ("GET", "/v1/evaluations/2026/versions/1", None, 404, None),
        ("POST", "/v1/evaluations/2026/reopen", {"reason": "x"}, 409, None),
        ("POST", "/v1/evaluations/2026/reopen", {"reason": ""}, 422, ["body", "reason"]),
        ("GET", "/v1/tasks/999999", None, 404, None),
        ("GET", "/v1/tasks/abc", None, 404, None),
        ("PATCH", "/v1/tasks/999999", {"status": "done"}, 404, None),
        (
            "POST",
            "/v1/orgs/NOPE/tasks",
            {"title": "t", "period": "2026", "customer_group": "internal", "due": "2026-01-01"},
            404,
            None,
        ),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {"title": "t", "period": "2026", "customer_group": "nobody", "due": "2026-01-01"},
            422,
            ["body", "customer_group"],
        ),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {
                "title": "t",
                "period": "2026",
                "customer_group": "internal",
                "due": "2026-01-01",
                "weight": 0,
            },
            422,
            ["body", "weight"],
        ),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {"title": "t", "period": "2026", "customer_group": "internal", "due": "1767225600"},
            422,
            ["body", "due"],
        ),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {"title": "", "period": "2026", "customer_group": "internal", "due": "2026-01-01"},
            422,
            ["body", "title"],
        ),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {"title": "t", "period": "2026-Q5", "customer_group": "internal", "due": "2026-01-01"},
            422,
            ["body", "period"],
        ),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {
                "title": "t",
                "period": "2026",
                "customer_group": "internal",
                "due": "2026-01-01",
                "measure": {"csi_target": 50, "survey": "nope"},
            },
            422,
            ["body", "measure", "survey"],
        ),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {
                "title": "t",
                "period": "2026",
                "customer_group": "internal",
                "due": "2026-01-01",
                "measure": {"csi_target": 150},
            },
            422,
            ["body", "measure", "csi_target"],
        ),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {
                "title": "t",
                "period": "2026",
                "customer_group": "internal",
                "due": "2026-01-01",
                "description": "x" * 2001,
            },
            422,
            ["body", "description"],
        ),
        ("GET", "/v1/orgs/KR/tasks?status=nope", None, 422, ["query", "status"]),
        ("GET", "/v1/orgs/KR/tasks?period=nope", None, 422, ["query", "period"]),
    ],
)
async def test_bad_input_changes_nothing(
    eval_client: httpx.AsyncClient,
    eval_app: Any,
    method: str,
    url: str,
    body: Any,
    status: int,
    loc: list[Any] | None,
) -> None:
    admin = await issue(eval_app)
    await standard_setup(eval_client, admin)
    r = await eval_client.post("/v1/executives", json={"code": "E-KIM", "name": "K"}, headers=admin)
    assert r.status_code == 201
    r = await eval_client.put("/v1/executives/E-KIM/purview/2026", json={"orgs": ["KR"]},
                              headers=admin)  # fmt: skip
    before = await eval_client.get("/v1/audit", headers=admin)
    r = await eval_client.request(method, url, json=body, headers=admin)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    if loc is not None:
        assert loc in [e["loc"] for e in r.json()["errors"]], r.json()
    after = await eval_client.get("/v1/audit", headers=admin)
    assert after.json()["items"] == before.json()["items"]
