"""POST /v1/responses: the stored shape, scores, versions, idempotent retries, validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.factories import response_body
from tests.responses.conftest import (
    CES_SURVEY,
    NPS_SURVEY,
    RATING_SURVEY,
    RESPONSE_KEYS,
    assert_invalid_at,
    assert_problem,
    count,
    create_survey,
    publish_next_version,
)


async def post(client: httpx.AsyncClient, headers: dict[str, str], body: Any) -> httpx.Response:
    return await client.post("/v1/responses", json=body, headers=headers)


# --- 201 and the stored shape -------------------------------------------------------------------


async def test_created_response_has_exactly_the_contract_shape(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    r = await post(client, setup, response_body())
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == RESPONSE_KEYS
    assert isinstance(body["id"], str)
    assert body["id"]
    assert body["survey"] == "delivery-csat"
    assert body["survey_version"] == 1
    assert body["stage"] == "delivery"
    assert body["org"] == "KR-DELIVERY-SEOUL"
    # The instant is kept; it is rendered in UTC.
    assert body["occurred_at"] == "2026-11-20T01:00:00Z"
    received = datetime.fromisoformat(body["received_at"])
    assert received.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - received) < timedelta(minutes=5)
    assert body["source"] == "delivery-app"
    assert body["external_id"] == "order-123/delivery"
    assert body["channel"] == "mobile"
    assert body["customer"] == {"type": "end_user"}
    assert body["answers"] == {"overall": 4, "reason": "late", "comment": "driver was kind"}
    assert body["score"] == {"raw": 4, "normalized": 75.0}
    assert "customer-42" not in r.text
    assert "pseudonym" not in r.text
    assert r.headers["location"] == f"/v1/responses/{body['id']}"

    got = await client.get(f"/v1/responses/{body['id']}", headers=setup)
    assert got.status_code == 200
    assert got.json() == body


async def test_optional_fields_may_be_left_out(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    body = response_body(answers={"overall": 5, "comment": None}, customer={"type": "internal"})
    del body["channel"]
    r = await post(client, setup, body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["channel"] is None
    assert out["customer"] == {"type": "internal"}
    # null for an optional question is the same as leaving it out
    assert out["answers"] == {"overall": 5}
    assert out["score"] == {"raw": 5, "normalized": 100.0}


@pytest.mark.parametrize(
    ("survey", "key", "value", "normalized"),
    [
        (None, "overall", 1, 0.0),
        (None, "overall", 4, 75.0),
        (None, "overall", 5, 100.0),
        (NPS_SURVEY, "likely", 9, 90.0),
        (NPS_SURVEY, "likely", 0, 0.0),
        (NPS_SURVEY, "likely", 10, 100.0),
        (CES_SURVEY, "effort", 7, 100.0),
        (CES_SURVEY, "effort", 1, 0.0),
        (CES_SURVEY, "effort", 4, 50.0),
        (RATING_SURVEY, "grade", 1, 75.0),
        (RATING_SURVEY, "grade", -2, 0.0),
        (RATING_SURVEY, "grade", 0, 50.0),
    ],
)
async def test_score_is_normalized_on_the_scale_of_the_primary_question(
    client: httpx.AsyncClient,
    setup: dict[str, str],
    survey: dict[str, Any] | None,
    key: str,
    value: int,
    normalized: float,
) -> None:
    code = "delivery-csat"
    if survey is not None:
        await create_survey(client, setup, survey)
        code = survey["code"]
    r = await post(client, setup, response_body(survey=code, answers={key: value}))
    assert r.status_code == 201, r.text
    assert r.json()["score"] == {"raw": value, "normalized": normalized}
    assert r.json()["stage"] == (survey or {"stage": "delivery"})["stage"]
    stored = await client.get(f"/v1/responses/{r.json()['id']}", headers=setup)
    assert stored.json()["score"] == {"raw": value, "normalized": normalized}


async def test_integral_float_is_the_integer(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    r = await post(client, setup, response_body(answers={"overall": 4.0}))
    assert r.status_code == 201, r.text
    assert r.json()["answers"] == {"overall": 4}
    assert r.json()["score"] == {"raw": 4, "normalized": 75.0}
    # 4.0 and 4 are the same answer
    again = await post(client, setup, response_body(answers={"overall": 4}))
    assert again.status_code == 200, again.text
    assert again.json()["id"] == r.json()["id"]


# --- survey versions --------------------------------------------------------------------------


async def test_version_defaults_to_latest_and_an_older_one_can_be_named(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    # Version 2 adds a required question: answers are checked against the resolved version.
    questions = [
        {"key": "overall", "type": "csat", "prompt": "How satisfied are you?"},
        {"key": "speed", "type": "csat", "prompt": "How fast?"},
    ]
    assert await publish_next_version(client, setup, questions=questions) == 2

    latest = await post(
        client, setup, response_body(external_id="a", answers={"overall": 3, "speed": 5})
    )
    assert latest.status_code == 201, latest.text
    assert latest.json()["survey_version"] == 2
    assert latest.json()["answers"] == {"overall": 3, "speed": 5}

    older = await post(client, setup, response_body(external_id="b", survey_version=1))
    assert older.status_code == 201, older.text
    assert older.json()["survey_version"] == 1
    assert older.json()["answers"] == {"overall": 4, "reason": "late", "comment": "driver was kind"}

    # v1's answers do not fit v2, which is the default
    r = await post(client, setup, response_body(external_id="c"))
    body = assert_invalid_at(r, ["body", "answers", "speed"])
    assert ["body", "answers", "reason"] in [e["loc"] for e in body["errors"]]
    # and v2's answers do not fit v1
    r = await post(
        client,
        setup,
        response_body(external_id="d", survey_version=1, answers={"overall": 3, "speed": 5}),
    )
    assert_invalid_at(r, ["body", "answers", "speed"])
    assert await count(client, setup) == 2


# --- idempotent retries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry",
    [
        {},
        {"occurred_at": "2026-11-20T01:00:00Z"},
        {"occurred_at": "2026-11-19T20:00:00-05:00"},
        {"occurred_at": "2026-11-20T01:00:00.000000+00:00"},
        {"survey_version": 1},
        {"answers": {"overall": 4.0, "reason": "late", "comment": "driver was kind"}},
        {"answers": {"comment": "driver was kind", "reason": "late", "overall": 4}},
    ],
)
async def test_retry_with_the_same_content_returns_the_stored_response(
    client: httpx.AsyncClient, setup: dict[str, str], retry: dict[str, Any]
) -> None:
    first = await post(client, setup, response_body())
    assert first.status_code == 201, first.text
    again = await post(client, setup, response_body(**retry))
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == f"/v1/responses/{first.json()['id']}"
    assert await count(client, setup) == 1


async def test_explicit_latest_then_implicit_is_the_same_content(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    assert await publish_next_version(client, setup, title="Delivery satisfaction v2") == 2
    first = await post(client, setup, response_body(survey_version=2))
    assert first.status_code == 201, first.text
    again = await post(client, setup, response_body())
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await count(client, setup) == 1


async def test_implicit_version_resolves_anew_on_each_post(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    first = await post(client, setup, response_body())
    assert first.status_code == 201
    assert await publish_next_version(client, setup, title="Delivery satisfaction v2") == 2
    # the same body now resolves to version 2: a different content
    assert_problem(await post(client, setup, response_body()), 409, "response-conflict")
    # naming version 1 is the stored content
    again = await post(client, setup, response_body(survey_version=1))
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert await count(client, setup) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"answers": {"overall": 5, "reason": "late", "comment": "driver was kind"}},
        {"answers": {"overall": 4, "reason": "late"}},
        {"answers": {"overall": 4, "reason": "kind", "comment": "driver was kind"}},
        {"occurred_at": "2026-11-20T10:00:00+00:00"},
        {"occurred_at": "2026-11-20T10:00:00.000001+09:00"},
        {"org": "KR-DELIVERY-BUSAN"},
        {"channel": "web"},
        {"channel": None},
        {"customer": {"ref": "customer-42", "type": "business_partner"}},
        {"customer": {"ref": "customer-43", "type": "end_user"}},
        {"customer": {"type": "end_user"}},
    ],
)
async def test_same_key_with_different_content_is_a_conflict(
    client: httpx.AsyncClient, setup: dict[str, str], change: dict[str, Any]
) -> None:
    first = await post(client, setup, response_body())
    assert first.status_code == 201
    r = await post(client, setup, response_body(**change))
    body = assert_problem(r, 409, "response-conflict")
    assert "errors" not in body
    assert await count(client, setup) == 1
    stored = await client.get(f"/v1/responses/{first.json()['id']}", headers=setup)
    assert stored.json() == first.json()


async def test_same_external_id_of_another_source_is_another_response(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    a = await post(client, setup, response_body())
    b = await post(client, setup, response_body(source="web-shop", answers={"overall": 1}))
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert await count(client, setup) == 2


# --- validation -----------------------------------------------------------------------------


def _without(key: str) -> dict[str, Any]:
    body = response_body()
    del body[key]
    return body


_FUTURE_MARKER = "FUTURE"

INVALID: list[tuple[str, Any, list[str | int]]] = [
    ("unknown survey", response_body(survey="no-such-survey"), ["body", "survey"]),
    ("unknown version", response_body(survey_version=2), ["body", "survey_version"]),
    ("version zero", response_body(survey_version=0), ["body", "survey_version"]),
    ("unknown org", response_body(org="NOWHERE"), ["body", "org"]),
    ("bad org code", response_body(org="-bad code"), ["body", "org"]),
    (
        "unknown answer key",
        response_body(answers={"overall": 4, "bogus": 1}),
        ["body", "answers", "bogus"],
    ),
    (
        "missing required answer",
        response_body(answers={"reason": "late"}),
        ["body", "answers", "overall"],
    ),
    (
        "null required answer",
        response_body(answers={"overall": None}),
        ["body", "answers", "overall"],
    ),
    ("above the scale", response_body(answers={"overall": 6}), ["body", "answers", "overall"]),
    ("below the scale", response_body(answers={"overall": 0}), ["body", "answers", "overall"]),
    ("fraction", response_body(answers={"overall": 4.5}), ["body", "answers", "overall"]),
    ("string number", response_body(answers={"overall": "4"}), ["body", "answers", "overall"]),
    ("boolean", response_body(answers={"overall": True}), ["body", "answers", "overall"]),
    ("list", response_body(answers={"overall": [4]}), ["body", "answers", "overall"]),
    (
        "option not among choices",
        response_body(answers={"overall": 4, "reason": "rude"}),
        ["body", "answers", "reason"],
    ),
    (
        "option not a string",
        response_body(answers={"overall": 4, "reason": 1}),
        ["body", "answers", "reason"],
    ),
    (
        "text too long",
        response_body(answers={"overall": 4, "comment": "x" * 2001}),
        ["body", "answers", "comment"],
    ),
    (
        "text not a string",
        response_body(answers={"overall": 4, "comment": 12}),
        ["body", "answers", "comment"],
    ),
    ("answers not an object", response_body(answers=[4]), ["body", "answers"]),
    (
        "occurred_at without offset",
        response_body(occurred_at="2026-11-20T10:00:00"),
        ["body", "occurred_at"],
    ),
    ("occurred_at a date", response_body(occurred_at="2026-11-20"), ["body", "occurred_at"]),
    ("occurred_at garbage", response_body(occurred_at="yesterday"), ["body", "occurred_at"]),
    ("occurred_at in the future", _FUTURE_MARKER, ["body", "occurred_at"]),
    (
        "bad customer type",
        response_body(customer={"ref": "c", "type": "vip"}),
        ["body", "customer", "type"],
    ),
    ("missing customer type", response_body(customer={"ref": "c"}), ["body", "customer", "type"]),
    ("missing customer", _without("customer"), ["body", "customer"]),
    (
        "extra customer field",
        response_body(customer={"type": "end_user", "name": "Kim"}),
        ["body", "customer", "name"],
    ),
    ("missing external_id", _without("external_id"), ["body", "external_id"]),
    ("empty external_id", response_body(external_id=""), ["body", "external_id"]),
    ("long external_id", response_body(external_id="x" * 257), ["body", "external_id"]),
    ("missing survey", _without("survey"), ["body", "survey"]),
    ("missing org", _without("org"), ["body", "org"]),
    ("missing occurred_at", _without("occurred_at"), ["body", "occurred_at"]),
    ("missing answers", _without("answers"), ["body", "answers"]),
    ("missing source", _without("source"), ["body", "source"]),
    ("long channel", response_body(channel="c" * 65), ["body", "channel"]),
    ("extra top-level field", response_body(pseudonym="x"), ["body", "pseudonym"]),
    ("stage is not posted", response_body(stage="delivery"), ["body", "stage"]),
    ("not an object", [response_body()], ["body"]),
]


@pytest.mark.parametrize(
    ("body", "loc"), [(b, loc) for _, b, loc in INVALID], ids=[name for name, _, _ in INVALID]
)
async def test_invalid_response_is_422_at_its_field_and_stores_nothing(
    client: httpx.AsyncClient, setup: dict[str, str], body: Any, loc: list[str | int]
) -> None:
    if body == _FUTURE_MARKER:
        future = datetime.now(UTC) + timedelta(days=1, minutes=5)
        body = response_body(occurred_at=future.isoformat())
    assert_invalid_at(await post(client, setup, body), loc)
    assert await count(client, setup) == 0


async def test_several_errors_are_reported_together(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    r = await post(
        client,
        setup,
        response_body(org="NOWHERE", answers={"overall": 9, "reason": "rude", "extra": 1}),
    )
    body = assert_invalid_at(r, ["body", "org"])
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("body", "org"),
        ("body", "answers", "overall"),
        ("body", "answers", "reason"),
        ("body", "answers", "extra"),
    }
    assert await count(client, setup) == 0


async def test_boundaries_that_are_accepted(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    soon = (datetime.now(UTC) + timedelta(days=1) - timedelta(minutes=5)).astimezone(
        ZoneInfo("Asia/Seoul")
    )
    cases = [
        response_body(external_id="soon", occurred_at=soon.isoformat()),
        response_body(external_id="text", answers={"overall": 1, "comment": "y" * 2000}),
        response_body(external_id="x" * 256, channel="c" * 64),
        response_body(external_id="old", occurred_at="1999-01-01T00:00:00-12:00"),
    ]
    for body in cases:
        r = await post(client, setup, body)
        assert r.status_code == 201, r.text
    assert await count(client, setup) == len(cases)


async def test_malformed_json_is_400(client: httpx.AsyncClient, setup: dict[str, str]) -> None:
    r = await client.post(
        "/v1/responses",
        content=b'{"survey": "delivery-csat",',
        headers={**setup, "Content-Type": "application/json"},
    )
    assert_problem(r, 400, "malformed-request")
    assert await count(client, setup) == 0


async def test_text_plain_is_415(client: httpx.AsyncClient, setup: dict[str, str]) -> None:
    r = await client.post(
        "/v1/responses",
        content=json.dumps(response_body()).encode(),
        headers={**setup, "Content-Type": "text/plain"},
    )
    assert_problem(r, 415, "unsupported-media-type")
    assert await count(client, setup) == 0


async def test_body_without_content_type_is_read_as_json(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/responses", content=json.dumps(response_body()).encode(), headers=setup
    )
    assert r.status_code == 201, r.text
