"""The evaluation loop through HTTP: executives, purviews, tasks, scorecards, close and reopen."""

from __future__ import annotations

import httpx

from tests.factories import response_body, standard_setup

PROBLEM = "application/problem+json"


async def _post_responses(
    client: httpx.AsyncClient, headers: dict[str, str], org: str, scores: list[int], day: str
) -> None:
    for i, score in enumerate(scores):
        body = response_body(
            org=org,
            external_id=f"{org}-{day}-{i}-{score}",
            occurred_at=f"{day}T10:00:00+00:00",
            answers={"overall": score},
        )
        r = await client.post("/v1/responses", json=body, headers=headers)
        assert r.status_code == 201, r.text


async def _setup(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await standard_setup(client, admin)
    for code, name in (("E-KIM", "Kim"), ("E-LEE", "Lee")):
        r = await client.post("/v1/executives", json={"code": code, "name": name}, headers=admin)
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/v1/executives/{code}"
    r = await client.put(
        "/v1/executives/E-KIM/purview/2026",
        json={"orgs": ["KR", "KR-DELIVERY-SEOUL"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.put("/v1/executives/E-LEE/purview/2026", json={"orgs": ["US"]}, headers=admin)
    assert r.status_code == 201, r.text
    await _post_responses(client, admin, "KR-DELIVERY-SEOUL", [5, 4, 4, 3, 5] * 2, "2026-03-02")
    await _post_responses(client, admin, "KR-DELIVERY-BUSAN", [2, 3, 4] * 2, "2026-04-02")
    await _post_responses(client, admin, "US-SERVICE", [5, 5, 4] * 2, "2026-05-02")


async def test_scorecards_close_and_reopen(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await _setup(client, admin)
    r = await client.post(
        "/v1/orgs/KR/tasks",
        json={
            "title": "Call back",
            "period": "2026",
            "customer_group": "internal",
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
            "title": "Delivery at 60",
            "period": "2026",
            "customer_group": "end_user",
            "due": "2026-12-31",
            "measure": {"csi_target": 60, "stages": ["delivery"]},
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.patch(
        f"/v1/tasks/{judged['id']}", json={"status": "done", "evidence": "x"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert [h["status"] for h in r.json()["history"]] == ["planned", "done"]
    r = await client.get("/v1/executives/E-KIM/scorecard?period=2026&min_n=5", headers=admin)
    assert r.status_code == 200, r.text
    card = r.json()
    print(card)
    r = await client.get("/v1/evaluations/2026", headers=admin)
    assert r.status_code == 200, r.text
    print(r.json())
    r = await client.post("/v1/evaluations/2026/close", json={"note": "Q"}, headers=admin)
    assert r.status_code == 200, r.text
    closed = r.content
    print(r.json())
    r = await client.get("/v1/evaluations/2026", headers=admin)
    assert r.content == closed
    r = await client.post("/v1/evaluations/2026/close", json={}, headers=admin)
    assert r.status_code == 409, r.text
    r = await client.get("/v1/executives/E-KIM/scorecard?period=2026", headers=admin)
    assert r.json()["frozen"] is True
    r = await client.post("/v1/evaluations/2026/reopen", json={"reason": "fix"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "open"
    r = await client.get("/v1/evaluations/2026/versions/1", headers=admin)
    assert r.content == closed
