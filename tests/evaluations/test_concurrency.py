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
