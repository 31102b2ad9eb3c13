"""The main flow end to end: orgs, a survey, a response, its retry."""

from __future__ import annotations

import httpx

from tests.factories import response_body, standard_setup


async def test_main_flow(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await standard_setup(client, admin)
    first = await client.post("/v1/responses", json=response_body(), headers=admin)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/responses", json=response_body(), headers=admin)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["score"] == {"raw": 4, "normalized": 75.0}
