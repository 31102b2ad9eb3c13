"""Closing a period under concurrency, each request on its own connection and commit."""

from __future__ import annotations

import asyncio

import httpx

from tests.factories import response_body, standard_setup


async def test_two_closes_at_once_one_wins(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    admin = committed_admin
    await standard_setup(committed_client, admin)
    r = await committed_client.post("/v1/executives", json={"code": "E1", "name": "One"},
                                    headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    r = await committed_client.put("/v1/executives/E1/purview/2026-10", json={"orgs": ["KR"]},
                                   headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    for i in range(5):
        body = response_body(org="KR-DELIVERY-SEOUL", external_id=f"c{i}",
                             occurred_at="2026-10-05T10:00:00+00:00")  # fmt: skip
        assert (await committed_client.post("/v1/responses", json=body, headers=admin)).is_success
    for round_ in range(3):
        answers = await asyncio.gather(
            *(
                committed_client.post("/v1/evaluations/2026-10/close", json={}, headers=admin)
                for _ in range(2)
            )
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409], [a.text for a in answers]
        won = next(a for a in answers if a.status_code == 200)
        assert won.json()["version"] == round_ + 1
        assert (
            await committed_client.get(
                f"/v1/evaluations/2026-10/versions/{round_ + 1}", headers=admin
            )
        ).content == won.content
        r = await committed_client.post(
            "/v1/evaluations/2026-10/reopen", json={"reason": f"round {round_}"}, headers=admin
        )
        assert r.status_code == 200, r.text


async def test_a_write_racing_a_close_is_in_the_snapshot_or_refused(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    """Purview writes and a close at once: every acknowledged write is in the stored version,
    every later one is refused with 409."""
    admin = committed_admin
    await standard_setup(committed_client, admin)
    codes = [f"E{i}" for i in range(8)]
    for code in codes:
        r = await committed_client.post("/v1/executives", json={"code": code, "name": code},
                                        headers=admin)  # fmt: skip
        assert r.status_code == 201, r.text
    writes = [
        committed_client.put(
            f"/v1/executives/{code}/purview/2026", json={"orgs": ["US"]}, headers=admin
        )
        for code in codes
    ]
    close = committed_client.post("/v1/evaluations/2026/close", json={}, headers=admin)
    done = await asyncio.gather(*writes[:4], close, *writes[4:])
    closed = done[4]
    results = dict(zip(codes, [*done[:4], *done[5:]], strict=True))
    assert closed.status_code == 200, closed.text
    stored = {c["executive"] for c in closed.json()["scorecards"]}
    for code, answer in results.items():
        if answer.status_code == 201:
            assert code in stored, code
        else:
            assert answer.status_code == 409, answer.text
            assert code not in stored, code


async def test_concurrent_changes_queue_and_none_is_lost(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    admin = committed_admin
    client = committed_client
    await standard_setup(client, admin)
    body = {
        "title": "t",
        "period": "2026",
        "customer_group": "internal",
        "due": "2026-12-01",
        "external_id": "same",
    }
    # The same create at once: one creates, the others get that very task (200), never a 409.
    creates = await asyncio.gather(
        *(client.post("/v1/orgs/KR/tasks", json=body, headers=admin) for _ in range(6))
    )
    assert sorted(r.status_code for r in creates) == [200] * 5 + [201], [r.text for r in creates]
    assert len({r.json()["id"] for r in creates}) == 1
    task = f"/v1/tasks/{creates[0].json()['id']}"
    # Evidence from ten requests at once: ten history entries, none overwritten.
    answers = await asyncio.gather(
        *(client.patch(task, json={"evidence": f"e{i}"}, headers=admin) for i in range(10))
    )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    history = (await client.get(task, headers=admin)).json()["history"]
    assert sorted(h["evidence"] for h in history[1:]) == sorted(f"e{i}" for i in range(10))
    # A drop racing other changes: nothing is recorded after the drop, and it stays dropped.
    answers = await asyncio.gather(
        client.patch(task, json={"status": "in_progress"}, headers=admin),
        client.patch(task, json={"status": "dropped"}, headers=admin),
        *(client.patch(task, json={"status": "done"}, headers=admin) for _ in range(4)),
    )
    assert answers[1].status_code == 200, answers[1].text
    assert all(r.status_code in (200, 409) for r in answers), [r.text for r in answers]
    final = (await client.get(task, headers=admin)).json()
    assert final["status"] == "dropped"
    statuses = [h["status"] for h in final["history"]]
    assert statuses.index("dropped") == len(statuses) - 1
    # Purview replacements at once: each succeeds, and the stored one is one of them, whole.
    r = await client.post("/v1/executives", json={"code": "E1", "name": "One"}, headers=admin)
    assert r.status_code == 201, r.text
    lists = [["KR"], ["US", "KR"], ["HQ"], ["KR-DELIVERY-SEOUL", "US-SERVICE", "US"]]
    puts = await asyncio.gather(
        *(
            client.put("/v1/executives/E1/purview/2026", json={"orgs": orgs}, headers=admin)
            for orgs in lists * 2
        )
    )
    assert all(r.status_code in (200, 201) for r in puts), [r.text for r in puts]
    stored = (await client.get("/v1/executives/E1/purview/2026", headers=admin)).json()["orgs"]
    assert stored in lists
