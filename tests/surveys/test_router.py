"""Survey definitions through HTTP: create, publish versions, read, list, and who may do what."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import KeyFactory, bearer
from tests.factories import cursor_of, survey_body

PROBLEM_BASE = "https://cx-survey.dev/problems/"

# The delivery CSAT survey of tests/factories.py as the API renders it: defaults filled in,
# the fixed csat scale made explicit.
DELIVERY_V1: dict[str, Any] = {
    "code": "delivery-csat",
    "version": 1,
    "title": "Delivery satisfaction",
    "stage": "delivery",
    "primary": "overall",
    "questions": [
        {
            "key": "overall",
            "type": "csat",
            "prompt": "How satisfied are you?",
            "required": True,
            "options": None,
            "scale": {"min": 1, "max": 5},
        },
        {
            "key": "reason",
            "type": "choice",
            "prompt": "Main reason?",
            "required": False,
            "options": ["late", "damaged", "kind", "other"],
            "scale": None,
        },
        {
            "key": "comment",
            "type": "text",
            "prompt": "Anything else?",
            "required": False,
            "options": None,
            "scale": None,
        },
    ],
}


def assert_problem(
    r: httpx.Response, status: int, slug: str | None = None, *, loc: list[Any] | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem of this status (and kind); with `loc`, a validation error there."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["type"].startswith(PROBLEM_BASE)
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug
    if loc is not None:
        assert loc in [e["loc"] for e in body["errors"]], body
        assert all(isinstance(e["msg"], str) and e["msg"] for e in body["errors"])
    return body


def without_published_at(survey: dict[str, Any]) -> dict[str, Any]:
    """The survey with its publication time checked (RFC 3339 with an offset) and removed."""
    published_at = datetime.fromisoformat(survey["published_at"])
    assert published_at.utcoffset() is not None, survey["published_at"]
    return {k: v for k, v in survey.items() if k != "published_at"}


def question(key: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": kind, "prompt": f"Question {key}?", **extra}


def rendered(key: str, kind: str, **extra: Any) -> dict[str, Any]:
    """A question as the API returns it."""
    return {
        "key": key,
        "type": kind,
        "prompt": f"Question {key}?",
        "required": True,
        "options": None,
        "scale": None,
        **extra,
    }


def one_question_survey(code: str, stage: str, q: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": code,
        "title": f"Survey {code}",
        "stage": stage,
        "primary": q["key"],
        "questions": [q],
    }


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    r = await client.post("/v1/surveys", json=body, headers=headers)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def walk(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[list[str]]:
    """The codes of every page of GET /v1/surveys, following next_cursor to the end."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, "cursor": cursor} if cursor else params
        r = await client.get("/v1/surveys", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "next_cursor"}
        pages.append([item["code"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


async def assert_no_surveys(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    r = await client.get("/v1/surveys", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [], "next_cursor": None}


@pytest.fixture
async def delivery(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    """The delivery CSAT survey, version 1, as created."""
    return await create(client, admin, survey_body())


# --- create ---------------------------------------------------------------------------------


async def test_create_returns_version_1(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/surveys", json=survey_body(), headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["location"] == "/v1/surveys/delivery-csat/versions/1"
    created = r.json()
    assert without_published_at(created) == DELIVERY_V1

    r = await client.get(r.headers["location"], headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == created
    r = await client.get("/v1/surveys/delivery-csat", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == created


@pytest.mark.parametrize(
    ("q", "scale"),
    [
        (question("q", "csat"), {"min": 1, "max": 5}),
        (question("q", "nps"), {"min": 0, "max": 10}),
        (question("q", "ces"), {"min": 1, "max": 7}),
        (question("q", "csat", scale={"min": 1, "max": 5}), {"min": 1, "max": 5}),
        (question("q", "nps", scale={"min": 0, "max": 10}), {"min": 0, "max": 10}),
        (question("q", "ces", scale={"min": 1, "max": 7}), {"min": 1, "max": 7}),
        (question("q", "rating", scale={"min": -2, "max": 2}), {"min": -2, "max": 2}),
        (question("q", "rating", scale={"min": 0, "max": 1}), {"min": 0, "max": 1}),
        (question("q", "rating", scale={"min": 0, "max": 100}), {"min": 0, "max": 100}),
        (question("q", "rating", scale={"min": -1000, "max": -900}), {"min": -1000, "max": -900}),
        (question("q", "rating", scale={"min": 900, "max": 1000}), {"min": 900, "max": 1000}),
        (question("q", "csat", required=True, scale=None, options=None), {"min": 1, "max": 5}),
        # A whole number written as a float is that integer, as in answers.
        (question("q", "rating", scale={"min": 1.0, "max": 4.0}), {"min": 1, "max": 4}),
    ],
)
async def test_every_rating_kind_may_be_primary(
    client: httpx.AsyncClient, admin: dict[str, str], q: dict[str, Any], scale: dict[str, int]
) -> None:
    created = await create(client, admin, one_question_survey("s1", "purchase", q))
    assert without_published_at(created) == {
        "code": "s1",
        "version": 1,
        "title": "Survey s1",
        "stage": "purchase",
        "primary": "q",
        "questions": [rendered("q", q["type"], scale=scale)],
    }


async def test_primary_may_be_any_question(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = {
        "code": "rental",
        "title": "Rental",
        "stage": "rental",
        "primary": "effort",
        "questions": [
            question("note", "text", required=False),
            question("pick", "choice", options=["a"]),
            question("effort", "ces"),
            question("score", "nps", required=False),
        ],
    }
    created = await create(client, admin, body)
    assert created["primary"] == "effort"
    assert [q["key"] for q in created["questions"]] == ["note", "pick", "effort", "score"]
    assert created["questions"][1] == rendered("pick", "choice", options=["a"])
    assert created["questions"][3] == rendered(
        "score", "nps", required=False, scale={"min": 0, "max": 10}
    )


async def test_one_survey_per_stage_is_not_a_rule(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for code in ("d1", "d2"):
        await create(client, admin, survey_body(code=code))
    r = await client.get("/v1/surveys", params={"stage": "delivery"}, headers=admin)
    assert [s["code"] for s in r.json()["items"]] == ["d1", "d2"]


async def test_title_is_stripped(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    created = await create(client, admin, survey_body(title="  Delivery  "))
    assert created["title"] == "Delivery"


async def test_code_edge_cases_are_accepted(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for code in ("a" * 64, "0", "A.b_c-D", "9-"):
        created = await create(client, admin, survey_body(code=code))
        assert created["code"] == code
        r = await client.get(f"/v1/surveys/{code}", headers=admin)
        assert r.json()["code"] == code


async def test_codes_are_case_sensitive(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    await create(client, admin, survey_body(code="Delivery-CSAT", stage="purchase"))
    r = await client.get("/v1/surveys/Delivery-CSAT", headers=admin)
    assert r.json()["stage"] == "purchase"
    r = await client.get("/v1/surveys/delivery-csat", headers=admin)
    assert r.json()["stage"] == "delivery"
    assert_problem(await client.get("/v1/surveys/DELIVERY-CSAT", headers=admin), 404, "not-found")


async def test_duplicate_code_is_409(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    r = await client.post(
        "/v1/surveys", json=survey_body(title="Other", stage="rental"), headers=admin
    )
    body = assert_problem(r, 409, "duplicate-survey")
    assert "delivery-csat" in body["detail"]
    # Nothing changed: still version 1 of the original definition.
    r = await client.get("/v1/surveys/delivery-csat", headers=admin)
    assert r.json() == delivery
    assert_problem(
        await client.get("/v1/surveys/delivery-csat/versions/2", headers=admin), 404, "not-found"
    )


def _with_question(index: int, **changes: Any) -> dict[str, Any]:
    body = survey_body()
    body["questions"][index].update(changes)
    return body


def _without(index: int, field: str) -> dict[str, Any]:
    body = survey_body()
    del body["questions"][index][field]
    return body


def _rating(scale: Any) -> dict[str, Any]:
    return survey_body(
        primary="grade",
        questions=[question("grade", "rating", scale=scale)],
    )


# Each body is the delivery survey with one thing wrong; loc is where the error must point.
INVALID_BODIES: list[tuple[str, dict[str, Any], list[Any]]] = [
    # keys and the primary question
    (
        "duplicate key",
        survey_body(questions=[*survey_body()["questions"], question("reason", "text")]),
        ["body", "questions", 3, "key"],
    ),
    (
        "duplicate key of the primary",
        _with_question(2, key="overall"),
        ["body", "questions", 2, "key"],
    ),
    ("primary not a question", survey_body(primary="nope"), ["body", "primary"]),
    ("primary of another case", survey_body(primary="Overall"), ["body", "primary"]),
    ("primary is choice", survey_body(primary="reason"), ["body", "primary"]),
    ("primary is text", survey_body(primary="comment"), ["body", "primary"]),
    ("primary optional", _with_question(0, required=False), ["body", "primary"]),
    (
        "primary missing",
        {k: v for k, v in survey_body().items() if k != "primary"},
        ["body", "primary"],
    ),
    ("primary null", survey_body(primary=None), ["body", "primary"]),
    ("primary bad code", survey_body(primary="a b"), ["body", "primary"]),
    ("bad key", _with_question(1, key="-reason"), ["body", "questions", 1, "key"]),
    ("key too long", _with_question(1, key="k" * 65), ["body", "questions", 1, "key"]),
    ("missing key", _without(1, "key"), ["body", "questions", 1, "key"]),
    # scales
    ("rating without scale", _rating(None), ["body", "questions", 0, "scale"]),
    ("rating min == max", _rating({"min": 3, "max": 3}), ["body", "questions", 0, "scale"]),
    ("rating min > max", _rating({"min": 5, "max": 1}), ["body", "questions", 0, "scale"]),
    ("rating span > 100", _rating({"min": 0, "max": 101}), ["body", "questions", 0, "scale"]),
    (
        "rating min < -1000",
        _rating({"min": -1001, "max": -1000}),
        ["body", "questions", 0, "scale", "min"],
    ),
    (
        "rating max > 1000",
        _rating({"min": 1000, "max": 1001}),
        ["body", "questions", 0, "scale", "max"],
    ),
    (
        "rating fractional",
        _rating({"min": 0.5, "max": 5}),
        ["body", "questions", 0, "scale", "min"],
    ),
    ("rating string", _rating({"min": 1, "max": "five"}), ["body", "questions", 0, "scale", "max"]),
    (
        "rating numeric string",
        _rating({"min": 1, "max": "5"}),
        ["body", "questions", 0, "scale", "max"],
    ),
    ("rating boolean", _rating({"min": True, "max": 5}), ["body", "questions", 0, "scale", "min"]),
    (
        "rating null bound",
        _rating({"min": None, "max": 5}),
        ["body", "questions", 0, "scale", "min"],
    ),
    ("rating without max", _rating({"min": 1}), ["body", "questions", 0, "scale", "max"]),
    (
        "rating scale extra",
        _rating({"min": 1, "max": 5, "step": 1}),
        ["body", "questions", 0, "scale", "step"],
    ),
    ("rating scale a list", _rating([1, 5]), ["body", "questions", 0, "scale"]),
    (
        "csat other scale",
        _with_question(0, scale={"min": 1, "max": 10}),
        ["body", "questions", 0, "scale"],
    ),
    ("csat 0-4", _with_question(0, scale={"min": 0, "max": 4}), ["body", "questions", 0, "scale"]),
    (
        "nps 1-10",
        _rating(None) | {"questions": [question("grade", "nps", scale={"min": 1, "max": 10})]},
        ["body", "questions", 0, "scale"],
    ),
    (
        "ces 1-5",
        _rating(None) | {"questions": [question("grade", "ces", scale={"min": 1, "max": 5})]},
        ["body", "questions", 0, "scale"],
    ),
    (
        "scale on text",
        _with_question(2, scale={"min": 1, "max": 5}),
        ["body", "questions", 2, "scale"],
    ),
    (
        "scale on choice",
        _with_question(1, scale={"min": 1, "max": 5}),
        ["body", "questions", 1, "scale"],
    ),
    # options
    ("choice without options", _without(1, "options"), ["body", "questions", 1, "options"]),
    ("choice options null", _with_question(1, options=None), ["body", "questions", 1, "options"]),
    ("choice options empty", _with_question(1, options=[]), ["body", "questions", 1, "options"]),
    (
        "choice duplicate options",
        _with_question(1, options=["late", "kind", "late"]),
        ["body", "questions", 1, "options"],
    ),
    (
        "choice empty option",
        _with_question(1, options=["late", ""]),
        ["body", "questions", 1, "options", 1],
    ),
    (
        "choice 101 options",
        _with_question(1, options=[f"o{i}" for i in range(101)]),
        ["body", "questions", 1, "options"],
    ),
    (
        "choice option not a string",
        _with_question(1, options=["late", 3]),
        ["body", "questions", 1, "options", 1],
    ),
    ("options on csat", _with_question(0, options=["1", "2"]), ["body", "questions", 0, "options"]),
    ("options on text", _with_question(2, options=["a"]), ["body", "questions", 2, "options"]),
    (
        "options on rating",
        _rating({"min": 1, "max": 3})
        | {"questions": [question("grade", "rating", scale={"min": 1, "max": 3}, options=["a"])]},
        ["body", "questions", 0, "options"],
    ),
    # other fields of a question
    ("unknown type", _with_question(2, type="essay"), ["body", "questions", 2, "type"]),
    ("missing type", _without(2, "type"), ["body", "questions", 2, "type"]),
    ("missing prompt", _without(2, "prompt"), ["body", "questions", 2, "prompt"]),
    ("empty prompt", _with_question(2, prompt=""), ["body", "questions", 2, "prompt"]),
    ("prompt too long", _with_question(2, prompt="p" * 1001), ["body", "questions", 2, "prompt"]),
    ("required null", _with_question(2, required=None), ["body", "questions", 2, "required"]),
    ("required a word", _with_question(2, required="maybe"), ["body", "questions", 2, "required"]),
    ("required a yes", _with_question(2, required="yes"), ["body", "questions", 2, "required"]),
    ("required a one", _with_question(2, required=1), ["body", "questions", 2, "required"]),
    ("question extra field", _with_question(2, hint="x"), ["body", "questions", 2, "hint"]),
    (
        "question not an object",
        survey_body(questions=[*survey_body()["questions"], "q"]),
        ["body", "questions", 3],
    ),
    # the survey itself
    ("no questions", survey_body(questions=[]), ["body", "questions"]),
    (
        "questions missing",
        {k: v for k, v in survey_body().items() if k != "questions"},
        ["body", "questions"],
    ),
    (
        "101 questions",
        survey_body(
            questions=[question("overall", "csat")]
            + [question(f"q{i}", "text") for i in range(100)]
        ),
        ["body", "questions"],
    ),
    ("unknown stage", survey_body(stage="checkout"), ["body", "stage"]),
    ("stage of another case", survey_body(stage="Delivery"), ["body", "stage"]),
    ("missing stage", {k: v for k, v in survey_body().items() if k != "stage"}, ["body", "stage"]),
    ("bad code", survey_body(code="delivery csat"), ["body", "code"]),
    ("code too long", survey_body(code="c" * 65), ["body", "code"]),
    ("code a number", survey_body(code=12), ["body", "code"]),
    ("missing code", {k: v for k, v in survey_body().items() if k != "code"}, ["body", "code"]),
    ("missing title", {k: v for k, v in survey_body().items() if k != "title"}, ["body", "title"]),
    ("blank title", survey_body(title="   "), ["body", "title"]),
    ("title too long", survey_body(title="t" * 201), ["body", "title"]),
    ("survey extra field", survey_body(version=1), ["body", "version"]),
]


@pytest.mark.parametrize(
    ("body", "loc"),
    [pytest.param(body, loc, id=why) for why, body, loc in INVALID_BODIES],
)
async def test_invalid_definition_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], loc: list[Any]
) -> None:
    r = await client.post("/v1/surveys", json=body, headers=admin)
    assert_problem(r, 422, "validation-error", loc=loc)
    await assert_no_surveys(client, admin)


@pytest.mark.parametrize("body", [[], "survey", 12, None])
async def test_body_not_an_object_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], body: Any
) -> None:
    r = await client.post("/v1/surveys", json=body, headers=admin)
    problem = assert_problem(r, 422, "validation-error")
    assert [e["loc"] for e in problem["errors"]] == [["body"]]
    await assert_no_surveys(client, admin)


async def test_validation_reports_every_field(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = survey_body(code="a b", stage="checkout")
    body["questions"][1]["options"] = []
    body["questions"][2]["scale"] = {"min": 1, "max": 5}
    r = await client.post("/v1/surveys", json=body, headers=admin)
    problem = assert_problem(r, 422, "validation-error")
    assert sorted(e["loc"] for e in problem["errors"]) == sorted(
        [
            ["body", "code"],
            ["body", "stage"],
            ["body", "questions", 1, "options"],
            ["body", "questions", 2, "scale"],
        ]
    )


async def test_malformed_json_is_400(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    headers = {**admin, "Content-Type": "application/json"}
    r = await client.post("/v1/surveys", content=b'{"code": "delivery-csat", ', headers=headers)
    assert_problem(r, 400, "malformed-request")
    await create(client, admin, survey_body())
    r = await client.put("/v1/surveys/delivery-csat", content=b"{'code': 1}", headers=headers)
    assert_problem(r, 400, "malformed-request")
    assert_problem(
        await client.get("/v1/surveys/delivery-csat/versions/2", headers=admin), 404, "not-found"
    )


async def test_body_without_content_type_is_read_as_json(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post("/v1/surveys", content=json.dumps(survey_body()).encode(), headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1


async def test_form_body_is_415(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/surveys", data={"code": "x", "title": "X"}, headers=admin)
    assert_problem(r, 415, "unsupported-media-type")
    await assert_no_surveys(client, admin)


# --- publish a new version ------------------------------------------------------------------


def _v2_body() -> dict[str, Any]:
    """The delivery survey, re-titled, with a new optional nps question and one option fewer."""
    body = survey_body(title="Delivery satisfaction 2027")
    body["questions"][1]["options"] = ["late", "damaged", "other"]
    body["questions"].append(question("recommend", "nps", required=False))
    return body


async def test_put_publishes_the_next_version(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    r = await client.put("/v1/surveys/delivery-csat", json=_v2_body(), headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/surveys/delivery-csat/versions/2"
    v2 = r.json()
    expected_questions = copy.deepcopy(DELIVERY_V1["questions"])
    expected_questions[1]["options"] = ["late", "damaged", "other"]
    expected_questions.append(
        rendered("recommend", "nps", required=False, scale={"min": 0, "max": 10})
    )
    assert without_published_at(v2) == {
        **DELIVERY_V1,
        "version": 2,
        "title": "Delivery satisfaction 2027",
        "questions": expected_questions,
    }
    assert v2["published_at"] >= delivery["published_at"]

    # The latest is version 2; version 1 is unchanged.
    assert (await client.get("/v1/surveys/delivery-csat", headers=admin)).json() == v2
    r = await client.get("/v1/surveys/delivery-csat/versions/2", headers=admin)
    assert r.json() == v2
    r = await client.get("/v1/surveys/delivery-csat/versions/1", headers=admin)
    assert r.status_code == 200
    assert r.json() == delivery


async def test_versions_count_up_and_stay_immutable(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    published = {1: delivery}
    bodies = [
        survey_body(title="Second"),
        survey_body(title="Third", primary="grade", questions=[question("grade", "nps")]),
        survey_body(),  # back to the first definition: still a new version
    ]
    for number, body in enumerate(bodies, start=2):
        r = await client.put("/v1/surveys/delivery-csat", json=body, headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["version"] == number
        published[number] = r.json()

    assert without_published_at(published[3])["questions"] == [
        rendered("grade", "nps", scale={"min": 0, "max": 10})
    ]
    assert published[3]["primary"] == "grade"
    assert without_published_at(published[4]) == {**DELIVERY_V1, "version": 4}
    for number, survey in published.items():
        r = await client.get(f"/v1/surveys/delivery-csat/versions/{number}", headers=admin)
        assert r.json() == survey
    assert (await client.get("/v1/surveys/delivery-csat", headers=admin)).json() == published[4]
    assert_problem(
        await client.get("/v1/surveys/delivery-csat/versions/5", headers=admin), 404, "not-found"
    )


async def test_put_of_the_latest_definition_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    r = await client.put("/v1/surveys/delivery-csat", json=survey_body(), headers=admin)
    assert r.status_code == 200, r.text
    assert r.headers["location"] == "/v1/surveys/delivery-csat/versions/1"
    assert r.json() == delivery

    # The same definition with its defaults spelt out is the same definition.
    spelt_out = survey_body()
    spelt_out["questions"][0].update(required=True, scale={"min": 1, "max": 5}, options=None)
    spelt_out["questions"][2].update(scale=None)
    r = await client.put("/v1/surveys/delivery-csat", json=spelt_out, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == delivery

    assert_problem(
        await client.get("/v1/surveys/delivery-csat/versions/2", headers=admin), 404, "not-found"
    )
    r = await client.get("/v1/surveys", headers=admin)
    assert r.json()["items"] == [delivery]


@pytest.mark.parametrize(
    "change",
    [
        {"title": "Delivery satisfaction!"},
        {"questions": [*survey_body()["questions"][:2]]},
        {"questions": [survey_body()["questions"][i] for i in (0, 2, 1)]},
    ],
    ids=["title", "question removed", "questions reordered"],
)
async def test_any_change_is_a_new_version(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    delivery: dict[str, Any],
    change: dict[str, Any],
) -> None:
    r = await client.put("/v1/surveys/delivery-csat", json=survey_body(**change), headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2


@pytest.mark.parametrize(
    ("index", "change"),
    [
        (0, {"prompt": "How happy are you?"}),
        (1, {"required": True}),
        (1, {"options": ["late", "kind", "damaged", "other"]}),
        (2, {"type": "choice", "options": ["fine"]}),
    ],
    ids=["prompt", "required", "option order", "type"],
)
async def test_a_changed_question_is_a_new_version(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    delivery: dict[str, Any],
    index: int,
    change: dict[str, Any],
) -> None:
    r = await client.put(
        "/v1/surveys/delivery-csat", json=_with_question(index, **change), headers=admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2
    for field, value in change.items():
        assert r.json()["questions"][index][field] == value
    r = await client.get("/v1/surveys/delivery-csat/versions/1", headers=admin)
    assert r.json() == delivery


async def test_put_may_change_the_primary(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    body = survey_body(primary="effort")
    body["questions"].append(question("effort", "rating", scale={"min": 0, "max": 10}))
    r = await client.put("/v1/surveys/delivery-csat", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["primary"] == "effort"
    assert r.json()["questions"][3] == rendered("effort", "rating", scale={"min": 0, "max": 10})
    r = await client.get("/v1/surveys/delivery-csat/versions/1", headers=admin)
    assert r.json()["primary"] == "overall"


@pytest.mark.parametrize("code", ["NOPE", "Delivery-csat", "delivery-csat2"])
async def test_put_unknown_survey_is_404(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any], code: str
) -> None:
    r = await client.put(f"/v1/surveys/{code}", json=survey_body(code=code), headers=admin)
    body = assert_problem(r, 404, "not-found")
    assert code in body["detail"]
    assert_problem(await client.get(f"/v1/surveys/{code}", headers=admin), 404, "not-found")
    r = await client.get("/v1/surveys", headers=admin)
    assert r.json()["items"] == [delivery]


async def test_put_code_must_match_the_path(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    await create(client, admin, survey_body(code="other"))
    r = await client.put("/v1/surveys/delivery-csat", json=survey_body(code="other"), headers=admin)
    assert_problem(r, 422, "validation-error", loc=["body", "code"])
    for code in ("delivery-csat", "other"):
        r = await client.get(f"/v1/surveys/{code}", headers=admin)
        assert r.json()["version"] == 1


async def test_put_cannot_change_the_stage(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    r = await client.put(
        "/v1/surveys/delivery-csat", json=survey_body(stage="rental"), headers=admin
    )
    body = assert_problem(r, 422, "validation-error", loc=["body", "stage"])
    assert "delivery" in body["detail"]
    assert (await client.get("/v1/surveys/delivery-csat", headers=admin)).json() == delivery


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param(body, loc, id=why)
        for why, body, loc in INVALID_BODIES
        # Bodies whose code is not delivery-csat are checked against the path.
        if "code" in body and body["code"] == "delivery-csat"
    ],
)
async def test_put_invalid_definition_is_422(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    delivery: dict[str, Any],
    body: dict[str, Any],
    loc: list[Any],
) -> None:
    r = await client.put("/v1/surveys/delivery-csat", json=body, headers=admin)
    assert_problem(r, 422, "validation-error", loc=loc)
    assert (await client.get("/v1/surveys/delivery-csat", headers=admin)).json() == delivery


async def test_concurrent_publishes_get_distinct_versions(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    client, admin = committed_client, committed_admin
    await create(client, admin, survey_body())
    titles = [f"Title {i}" for i in range(4)]
    results = await asyncio.gather(
        *(
            client.put("/v1/surveys/delivery-csat", json=survey_body(title=t), headers=admin)
            for t in titles
        )
    )
    assert [r.status_code for r in results] == [201] * 4, [r.text for r in results]
    versions = {r.json()["version"]: r.json() for r in results}
    assert sorted(versions) == [2, 3, 4, 5]
    assert sorted(v["title"] for v in versions.values()) == titles
    for number, survey in versions.items():
        r = await client.get(f"/v1/surveys/delivery-csat/versions/{number}", headers=admin)
        assert r.json() == survey
    assert (await client.get("/v1/surveys/delivery-csat", headers=admin)).json() == versions[5]


async def test_concurrent_identical_publishes_make_one_version(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    client, admin = committed_client, committed_admin
    await create(client, admin, survey_body())
    results = await asyncio.gather(
        *(client.put("/v1/surveys/delivery-csat", json=_v2_body(), headers=admin) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [200, 200, 200, 201], [r.text for r in results]
    assert {r.json()["version"] for r in results} == {2}
    assert_problem(
        await client.get("/v1/surveys/delivery-csat/versions/3", headers=admin), 404, "not-found"
    )


async def test_concurrent_creates_of_one_code_make_one_survey(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str]
) -> None:
    client, admin = committed_client, committed_admin
    results = await asyncio.gather(
        *(
            client.post("/v1/surveys", json=survey_body(title=f"Title {i}"), headers=admin)
            for i in range(4)
        )
    )
    created = [r for r in results if r.status_code == 201]
    assert len(created) == 1, [r.text for r in results]
    for r in results:
        if r.status_code != 201:
            # The loser of the race learns it lost; which check caught it does not matter.
            body = assert_problem(r, 409)
            assert body["type"] in (PROBLEM_BASE + "duplicate-survey", PROBLEM_BASE + "conflict")
    r = await client.get("/v1/surveys", headers=admin)
    assert r.json()["items"] == [created[0].json()]


# --- read -----------------------------------------------------------------------------------


async def test_get_latest_and_given_version(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    r = await client.get("/v1/surveys/delivery-csat", headers=admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert without_published_at(r.json()) == DELIVERY_V1
    r = await client.get("/v1/surveys/delivery-csat/versions/1", headers=admin)
    assert r.status_code == 200
    assert r.json() == delivery


@pytest.mark.parametrize(
    "code", ["NOPE", "Delivery-csat", "delivery", "a%20b", "-x", "%00", "x%00", "%FF", "x" * 300]
)
async def test_unknown_survey_is_404(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any], code: str
) -> None:
    r = await client.get(f"/v1/surveys/{code}", headers=admin)
    assert_problem(r, 404, "not-found")
    r = await client.get(f"/v1/surveys/{code}/versions/1", headers=admin)
    assert_problem(r, 404, "not-found")
    assert (await client.get("/v1/surveys/delivery-csat", headers=admin)).json() == delivery


@pytest.mark.parametrize("version", [2, 3, 999, 1_000_000])
async def test_unknown_version_is_404(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any], version: int
) -> None:
    r = await client.get(f"/v1/surveys/delivery-csat/versions/{version}", headers=admin)
    body = assert_problem(r, 404, "not-found")
    assert str(version) in body["detail"]


async def test_version_of_another_survey_is_404(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    await create(client, admin, survey_body(code="other"))
    r = await client.put(
        "/v1/surveys/other", json=survey_body(code="other", title="2"), headers=admin
    )
    assert r.json()["version"] == 2
    assert (await client.get("/v1/surveys/other/versions/2", headers=admin)).status_code == 200
    r = await client.get("/v1/surveys/delivery-csat/versions/2", headers=admin)
    assert_problem(r, 404, "not-found")


@pytest.mark.parametrize("version", ["0", "-1", "one", "1.5", "1000001", "9" * 30])
async def test_version_not_a_version_number_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any], version: str
) -> None:
    r = await client.get(f"/v1/surveys/delivery-csat/versions/{version}", headers=admin)
    assert_problem(r, 422, "validation-error", loc=["path", "version"])


async def test_unknown_routes_and_methods(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    assert_problem(await client.get("/v1/surveys/delivery-csat/versions", headers=admin), 404)
    assert_problem(await client.get("/v1/surveys/delivery-csat/x/y", headers=admin), 404)
    r = await client.delete("/v1/surveys/delivery-csat", headers=admin)
    assert_problem(r, 405, "method-not-allowed")
    r = await client.put("/v1/surveys", json=survey_body(), headers=admin)
    assert_problem(r, 405, "method-not-allowed")
    r = await client.post("/v1/surveys/delivery-csat", json=survey_body(), headers=admin)
    assert_problem(r, 405, "method-not-allowed")
    r = await client.put("/v1/surveys/delivery-csat/versions/1", json=survey_body(), headers=admin)
    assert_problem(r, 405, "method-not-allowed")
    assert (await client.get("/v1/surveys/delivery-csat", headers=admin)).json() == delivery


# --- list -----------------------------------------------------------------------------------


SURVEYS_BY_STAGE = {
    "purchase-nps": "purchase",
    "consult-ces": "consultation",
    "rental-a": "rental",
    "rental-b": "rental",
    "delivery-csat": "delivery",
    "repair": "after_service",
}


@pytest.fixture
async def surveys(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One survey per stage, two of rental; created out of order; their latest versions."""
    latest: dict[str, dict[str, Any]] = {}
    for code in reversed(SURVEYS_BY_STAGE):
        latest[code] = await create(
            client, admin, survey_body(code=code, stage=SURVEYS_BY_STAGE[code])
        )
    r = await client.put(
        "/v1/surveys/rental-b",
        json=survey_body(code="rental-b", stage="rental", title="B2"),
        headers=admin,
    )
    assert r.status_code == 201, r.text
    latest["rental-b"] = r.json()
    return latest


async def test_list_empty(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await assert_no_surveys(client, admin)


async def test_list_all_latest_versions_ordered_by_code(
    client: httpx.AsyncClient, admin: dict[str, str], surveys: dict[str, dict[str, Any]]
) -> None:
    r = await client.get("/v1/surveys", headers=admin)
    assert r.status_code == 200
    assert r.json() == {"items": [surveys[code] for code in sorted(surveys)], "next_cursor": None}
    by_code = {s["code"]: s for s in r.json()["items"]}
    assert by_code["rental-b"]["version"] == 2
    assert by_code["rental-b"]["title"] == "B2"
    assert by_code["rental-a"]["version"] == 1


@pytest.mark.parametrize(
    ("stage", "codes"),
    [
        ("purchase", ["purchase-nps"]),
        ("consultation", ["consult-ces"]),
        ("rental", ["rental-a", "rental-b"]),
        ("delivery", ["delivery-csat"]),
        ("after_service", ["repair"]),
    ],
)
async def test_list_by_stage(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    surveys: dict[str, dict[str, Any]],
    stage: str,
    codes: list[str],
) -> None:
    r = await client.get("/v1/surveys", params={"stage": stage}, headers=admin)
    assert r.status_code == 200
    assert r.json() == {"items": [surveys[c] for c in codes], "next_cursor": None}


async def test_list_stage_without_surveys_is_empty(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    r = await client.get("/v1/surveys", params={"stage": "rental"}, headers=admin)
    assert r.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("stage", ["checkout", "Delivery", "", "delivery,rental"])
async def test_list_unknown_stage_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any], stage: str
) -> None:
    r = await client.get("/v1/surveys", params={"stage": stage}, headers=admin)
    assert_problem(r, 422, "validation-error", loc=["query", "stage"])


async def test_list_is_paginated(
    client: httpx.AsyncClient, admin: dict[str, str], surveys: dict[str, dict[str, Any]]
) -> None:
    codes = sorted(surveys)
    pages = await walk(client, admin, limit=2)
    assert pages == [codes[0:2], codes[2:4], codes[4:6]]
    pages = await walk(client, admin, limit=4)
    assert pages == [codes[0:4], codes[4:]]
    pages = await walk(client, admin, limit=1)
    assert [c for p in pages for c in p] == codes
    # A page that ends exactly at the last survey says so: no cursor to an empty page.
    r = await client.get("/v1/surveys", params={"limit": 6}, headers=admin)
    assert [s["code"] for s in r.json()["items"]] == codes
    assert r.json()["next_cursor"] is None


async def test_list_by_stage_is_paginated(
    client: httpx.AsyncClient, admin: dict[str, str], surveys: dict[str, dict[str, Any]]
) -> None:
    for code in ("rental-0", "rental-c", "rental-z"):
        await create(client, admin, survey_body(code=code, stage="rental"))
    pages = await walk(client, admin, stage="rental", limit=2)
    assert pages == [["rental-0", "rental-a"], ["rental-b", "rental-c"], ["rental-z"]]
    r = await client.get("/v1/surveys", params={"stage": "rental", "limit": 2}, headers=admin)
    assert r.json()["items"][1] == surveys["rental-a"]


async def test_list_cursor_survives_a_new_version(
    client: httpx.AsyncClient, admin: dict[str, str], surveys: dict[str, dict[str, Any]]
) -> None:
    r = await client.get("/v1/surveys", params={"limit": 3}, headers=admin)
    cursor = r.json()["next_cursor"]
    r = await client.put(
        "/v1/surveys/repair",
        json=survey_body(code="repair", stage="after_service", title="Repair v2"),
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.get("/v1/surveys", params={"limit": 3, "cursor": cursor}, headers=admin)
    items = r.json()["items"]
    assert [s["code"] for s in items] == sorted(surveys)[3:]
    assert {s["code"]: s["version"] for s in items}["repair"] == 2


async def test_pagination_default_limit_is_50(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for i in range(51):
        await create(client, admin, survey_body(code=f"s{i:03d}"))
    r = await client.get("/v1/surveys", headers=admin)
    body = r.json()
    assert len(body["items"]) == 50
    assert body["next_cursor"] is not None
    r = await client.get("/v1/surveys", params={"cursor": body["next_cursor"]}, headers=admin)
    assert [s["code"] for s in r.json()["items"]] == ["s050"]
    assert r.json()["next_cursor"] is None
    r = await client.get("/v1/surveys", params={"limit": 500}, headers=admin)
    assert len(r.json()["items"]) == 51
    assert r.json()["next_cursor"] is None


@pytest.mark.parametrize("limit", ["501", "0", "-1", "ten", "1.5"])
async def test_bad_limit_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any], limit: str
) -> None:
    r = await client.get("/v1/surveys", params={"limit": limit}, headers=admin)
    assert_problem(r, 422, "validation-error", loc=["query", "limit"])


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "%%%",
        "not-base64-at-all",
        cursor_of({"a": 1}),
        cursor_of("delivery-csat"),
        cursor_of(["\u0000"]),
        cursor_of(["delivery\u0000"]),
        cursor_of([{"code": "delivery-csat"}]),
        cursor_of([12]),
        cursor_of([None]),
        cursor_of(["delivery-csat", "rental-a"]),
        "x" * 513,
    ],
)
async def test_garbage_cursor_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any], cursor: str
) -> None:
    r = await client.get("/v1/surveys", params={"cursor": cursor}, headers=admin)
    assert_problem(r, 422, "validation-error", loc=["query", "cursor"])


# --- auth -----------------------------------------------------------------------------------


ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/surveys", None),
    ("GET", "/v1/surveys/delivery-csat", None),
    ("GET", "/v1/surveys/delivery-csat/versions/1", None),
    ("POST", "/v1/surveys", survey_body(code="new-survey")),
    ("PUT", "/v1/surveys/delivery-csat", survey_body(title="Changed")),
]
READS = [e for e in ENDPOINTS if e[0] == "GET"]
WRITES = [e for e in ENDPOINTS if e[0] != "GET"]


async def assert_nothing_written(
    client: httpx.AsyncClient, admin: dict[str, str], delivery: dict[str, Any]
) -> None:
    r = await client.get("/v1/surveys", headers=admin)
    assert r.json() == {"items": [delivery], "next_cursor": None}


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer cx_000000000000_nope"},
        {"Authorization": "Bearer not-a-key"},
    ],
    ids=["missing", "empty", "blank", "basic", "unknown", "malformed"],
)
async def test_without_a_valid_key_is_401(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    delivery: dict[str, Any],
    method: str,
    url: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> None:
    r = await client.request(method, url, json=body, headers=headers)
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    await assert_nothing_written(client, admin, delivery)


async def test_unauthenticated_comes_before_validation_and_404(
    client: httpx.AsyncClient, delivery: dict[str, Any]
) -> None:
    r = await client.post("/v1/surveys", json={"code": "a b"})
    assert_problem(r, 401, "unauthenticated")
    r = await client.get("/v1/surveys/NOPE")
    assert_problem(r, 401, "unauthenticated")
    r = await client.put("/v1/surveys/NOPE", json=survey_body(code="NOPE"))
    assert_problem(r, 401, "unauthenticated")


async def test_revoked_key_is_401(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    make_key: KeyFactory,
    delivery: dict[str, Any],
) -> None:
    key = await make_key("surveys:read", "surveys:write")
    assert (await client.get("/v1/surveys", headers=bearer(key))).status_code == 200
    r = await client.delete(f"/v1/keys/{key.split('_')[1]}", headers=admin)
    assert r.status_code == 200, r.text
    for method, url, body in ENDPOINTS:
        r = await client.request(method, url, json=body, headers=bearer(key))
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"].startswith("Bearer")
    await assert_nothing_written(client, admin, delivery)


@pytest.mark.parametrize(("method", "url", "body"), READS)
@pytest.mark.parametrize(
    "scopes",
    [
        ("surveys:write",),
        ("orgs:write",),
        ("responses:write", "responses:read"),
        ("indices:read", "indices:write"),
    ],
)
async def test_reads_need_surveys_read(
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    delivery: dict[str, Any],
    method: str,
    url: str,
    body: None,
    scopes: tuple[str, ...],
) -> None:
    r = await client.request(method, url, headers=bearer(await make_key(*scopes)))
    problem = assert_problem(r, 403, "forbidden")
    assert "surveys:read" in problem["detail"]


@pytest.mark.parametrize(("method", "url", "body"), WRITES)
@pytest.mark.parametrize(
    "scopes",
    [
        ("surveys:read",),
        ("orgs:write",),
        ("responses:write",),
        ("indices:write",),
    ],
)
async def test_writes_need_surveys_write(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    make_key: KeyFactory,
    delivery: dict[str, Any],
    method: str,
    url: str,
    body: dict[str, Any],
    scopes: tuple[str, ...],
) -> None:
    r = await client.request(method, url, json=body, headers=bearer(await make_key(*scopes)))
    problem = assert_problem(r, 403, "forbidden")
    assert "surveys:write" in problem["detail"]
    await assert_nothing_written(client, admin, delivery)


async def test_forbidden_comes_before_validation_and_404(
    client: httpx.AsyncClient, make_key: KeyFactory
) -> None:
    reader = bearer(await make_key("surveys:read"))
    assert_problem(await client.post("/v1/surveys", json={}, headers=reader), 403, "forbidden")
    r = await client.put("/v1/surveys/NOPE", json=survey_body(code="NOPE"), headers=reader)
    assert_problem(r, 403, "forbidden")
    writer = bearer(await make_key("surveys:write"))
    assert_problem(await client.get("/v1/surveys/NOPE", headers=writer), 403, "forbidden")


async def test_surveys_read_key_reads(
    client: httpx.AsyncClient, make_key: KeyFactory, delivery: dict[str, Any]
) -> None:
    headers = bearer(await make_key("surveys:read"))
    r = await client.get("/v1/surveys", headers=headers)
    assert r.json() == {"items": [delivery], "next_cursor": None}
    r = await client.get("/v1/surveys", params={"stage": "delivery"}, headers=headers)
    assert r.json()["items"] == [delivery]
    assert (await client.get("/v1/surveys/delivery-csat", headers=headers)).json() == delivery
    r = await client.get("/v1/surveys/delivery-csat/versions/1", headers=headers)
    assert r.json() == delivery


async def test_surveys_write_key_writes(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    headers = bearer(await make_key("surveys:write"))
    r = await client.post("/v1/surveys", json=survey_body(), headers=headers)
    assert r.status_code == 201, r.text
    r = await client.put("/v1/surveys/delivery-csat", json=_v2_body(), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2
    r = await client.get("/v1/surveys/delivery-csat", headers=admin)
    assert r.json()["version"] == 2


async def test_org_bound_key_uses_the_shared_surveys(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    r = await client.post("/v1/orgs", json={"code": "KR", "name": "Korea"}, headers=admin)
    assert r.status_code == 201, r.text
    headers = bearer(await make_key("surveys:read", "surveys:write", org="KR"))
    created = await create(client, headers, survey_body())
    r = await client.get("/v1/surveys", headers=headers)
    assert r.json()["items"] == [created]
    r = await client.get("/v1/surveys/delivery-csat", headers=admin)
    assert r.json() == created
