"""Small builders of valid request bodies and API set-up steps shared by the tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

CSAT_SURVEY: dict[str, Any] = {
    "code": "delivery-csat",
    "title": "Delivery satisfaction",
    "stage": "delivery",
    "primary": "overall",
    "questions": [
        {"key": "overall", "type": "csat", "prompt": "How satisfied are you?"},
        {
            "key": "reason",
            "type": "choice",
            "prompt": "Main reason?",
            "options": ["late", "damaged", "kind", "other"],
            "required": False,
        },
        {"key": "comment", "type": "text", "prompt": "Anything else?", "required": False},
    ],
}


def survey_body(**overrides: Any) -> dict[str, Any]:
    body = {**CSAT_SURVEY, "questions": [dict(q) for q in CSAT_SURVEY["questions"]]}
    body.update(overrides)
    return body


def response_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "survey": "delivery-csat",
        "org": "KR-DELIVERY-SEOUL",
        "occurred_at": "2026-11-20T10:00:00+09:00",
        "source": "delivery-app",
        "external_id": "order-123/delivery",
        "channel": "mobile",
        "customer": {"ref": "customer-42", "type": "end_user"},
        "answers": {"overall": 4, "reason": "late", "comment": "driver was kind"},
    }
    body.update(overrides)
    return body


async def create_orgs(
    client: httpx.AsyncClient, headers: dict[str, str], *tree: tuple[str, str | None]
) -> None:
    """Create orgs given as (code, parent) pairs, parents first."""
    for code, parent in tree:
        r = await client.post(
            "/v1/orgs",
            json={"code": code, "name": f"Org {code}", "parent": parent},
            headers=headers,
        )
        assert r.status_code == 201, r.text


# HQ ─┬─ KR ─┬─ KR-DELIVERY-SEOUL
#     │      └─ KR-DELIVERY-BUSAN
#     └─ US ─── US-SERVICE
STANDARD_TREE: tuple[tuple[str, str | None], ...] = (
    ("HQ", None),
    ("KR", "HQ"),
    ("KR-DELIVERY-SEOUL", "KR"),
    ("KR-DELIVERY-BUSAN", "KR"),
    ("US", "HQ"),
    ("US-SERVICE", "US"),
)


async def standard_setup(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """The standard org tree and the delivery CSAT survey."""
    await create_orgs(client, headers, *STANDARD_TREE)
    r = await client.post("/v1/surveys", json=survey_body(), headers=headers)
    assert r.status_code == 201, r.text


def cursor_of(value: Any) -> str:
    """A cursor as the API encodes one, of any JSON value (to forge bad ones)."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
