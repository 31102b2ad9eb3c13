"""Racing on invitations with committed transactions (each request its own connection): one
response per invitation, one invitation per customer under a contact rule, one invitation per
key, cancel against submit."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import standard_setup
from tests.invitations.conftest import invitation_body

WRITERS = 20
PUBLIC = "/v1/public/invitations"


async def _count(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def test_twenty_concurrent_submits_store_one_response(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str], engine: AsyncEngine
) -> None:
    await standard_setup(committed_client, committed_admin)
    tokens = []
    for i in range(3):  # three rounds, to give the race a few chances
        r = await committed_client.post(
            "/v1/invitations", json=invitation_body(external_id=f"o-{i}"), headers=committed_admin
        )
        assert r.status_code == 201, r.text
        tokens.append(r.json()["token"])
    for token in tokens:
        answers = await asyncio.gather(
            *(
                committed_client.post(
                    f"{PUBLIC}/{token}/response", json={"answers": {"overall": 1 + i % 5}}
                )
                for i in range(WRITERS)
            )
        )
        statuses = Counter(r.status_code for r in answers)
        assert statuses == {201: 1, 409: WRITERS - 1}, statuses
        shown = await committed_client.get(f"{PUBLIC}/{token}")
        assert shown.json()["status"] == "answered"
    assert await _count(engine, "SELECT count(*) FROM responses") == len(tokens)
    assert await _count(
        engine, "SELECT count(*) FROM invitations WHERE answered_at IS NOT NULL"
    ) == len(tokens)


async def test_concurrent_invitations_of_one_customer_pass_a_contact_rule_once(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    await standard_setup(committed_client, committed_admin)
    r = await committed_client.put(
        "/v1/contact-rules", json={"min_days": 30}, headers=committed_admin
    )
    assert r.status_code == 200
    answers = await asyncio.gather(
        *(
            committed_client.post(
                "/v1/invitations",
                json=invitation_body(external_id=f"x-{i}"),
                headers=committed_admin,
            )
            for i in range(10)
        )
    )
    reasons = Counter((r.status_code, r.json()["reason"]) for r in answers)
    assert reasons == {(201, None): 1, (200, "contact_rule"): 9}, reasons


async def test_identical_concurrent_creates_answer_one_invitation(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    await standard_setup(committed_client, committed_admin)
    answers = await asyncio.gather(
        *(
            committed_client.post(
                "/v1/invitations", json=invitation_body(), headers=committed_admin
            )
            for _ in range(10)
        )
    )
    assert Counter(r.status_code for r in answers) == {201: 1, 200: 9}
    assert len({(r.json()["id"], r.json()["token"]) for r in answers}) == 1
    # The same key for other customers at once: one wins, the others are 409 (or see it).
    others = await asyncio.gather(
        *(
            committed_client.post(
                "/v1/invitations",
                json=invitation_body(
                    external_id="shared", customer={"ref": f"c-{i}", "type": "end_user"}
                ),
                headers=committed_admin,
            )
            for i in range(10)
        )
    )
    assert Counter(r.status_code for r in others) == {201: 1, 409: 9}


async def test_cancel_racing_a_submit_never_keeps_a_response_of_a_cancelled_invitation(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str], engine: AsyncEngine
) -> None:
    await standard_setup(committed_client, committed_admin)
    outcomes = Counter()
    for i in range(10):
        created = await committed_client.post(
            "/v1/invitations", json=invitation_body(external_id=f"r-{i}"), headers=committed_admin
        )
        invitation = created.json()
        submit, cancel = await asyncio.gather(
            committed_client.post(
                f"{PUBLIC}/{invitation['token']}/response", json={"answers": {"overall": 2}}
            ),
            committed_client.delete(f"/v1/invitations/{invitation['id']}", headers=committed_admin),
        )
        pair = (submit.status_code, cancel.status_code)
        assert pair in {(201, 409), (404, 204)}, (pair, submit.text, cancel.text)
        outcomes[pair] += 1
    stored = await _count(engine, "SELECT count(*) FROM responses")
    assert stored == outcomes[(201, 409)]
    cancelled_with_answer = await _count(
        engine,
        "SELECT count(*) FROM invitations i JOIN responses r"
        " ON (r.source, r.external_id) = (i.source, i.external_id)"
        " WHERE i.cancelled_at IS NOT NULL",
    )
    assert cancelled_with_answer == 0
