"""Helpers shared by the tests of the responses endpoints."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import standard_setup, survey_body

PROBLEM_BASE = "https://cx-survey.dev/problems/"

RESPONSE_KEYS = {
    "id",
    "survey",
    "survey_version",
    "stage",
    "org",
    "occurred_at",
    "received_at",
    "source",
    "external_id",
    "channel",
    "customer",
    "answers",
    "score",
    "segments",  # contract v1.1 (null when the response carries none)
}

NPS_SURVEY = {
    "code": "purchase-nps",
    "title": "Purchase recommendation",
    "stage": "purchase",
    "primary": "likely",
    "questions": [{"key": "likely", "type": "nps", "prompt": "Would you recommend us?"}],
}
CES_SURVEY = {
    "code": "service-ces",
    "title": "Repair effort",
    "stage": "after_service",
    "primary": "effort",
    "questions": [{"key": "effort", "type": "ces", "prompt": "How easy was it?"}],
}
RATING_SURVEY = {
    "code": "rental-rating",
    "title": "Rental rating",
    "stage": "rental",
    "primary": "grade",
    "questions": [
        {"key": "grade", "type": "rating", "prompt": "Grade us", "scale": {"min": -2, "max": 2}}
    ],
}


def assert_problem(r: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status (and type slug); its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["type"], str)
    assert body["type"].startswith(PROBLEM_BASE)
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug
    return body


def locs(body: dict[str, Any]) -> list[list[str | int]]:
    return [e["loc"] for e in body.get("errors") or []]


def assert_invalid_at(r: httpx.Response, loc: list[str | int]) -> dict[str, Any]:
    """A 422 validation problem with an error at exactly `loc`."""
    body = assert_problem(r, 422, "validation-error")
    assert loc in locs(body), body
    for error in body["errors"]:
        assert isinstance(error["msg"], str)
        assert error["msg"]
    return body


async def list_all(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every response the key sees (walking all pages)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 500, **params}
        if cursor:
            query["cursor"] = cursor
        r = await client.get("/v1/responses", params=query, headers=headers)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return len(await list_all(client, headers))


async def create_survey(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> None:
    r = await client.post("/v1/surveys", json=body, headers=headers)
    assert r.status_code == 201, r.text


@pytest.fixture
async def setup(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    """The standard tree and the delivery CSAT survey; the admin headers."""
    await standard_setup(client, admin)
    return admin


async def publish_next_version(
    client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any
) -> int:
    r = await client.put(
        "/v1/surveys/delivery-csat", json=survey_body(**overrides), headers=headers
    )
    assert r.status_code == 201, r.text
    version: int = r.json()["version"]
    return version
