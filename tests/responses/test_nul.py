"""U+0000 cannot be stored by PostgreSQL: it is refused with 422 at its field, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import response_body, survey_body
from tests.responses.conftest import assert_problem

NUL = "a\u0000b"


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"external_id": NUL}, ["body", "external_id"]),
        ({"channel": NUL}, ["body", "channel"]),
        ({"answers": {"overall": 4, "comment": NUL}}, ["body", "answers", "comment"]),
    ],
)
async def test_a_response_with_nul_is_422(
    client: httpx.AsyncClient, setup: dict[str, str], overrides: dict[str, Any], loc: list[Any]
) -> None:
    r = await client.post("/v1/responses", json=response_body(**overrides), headers=setup)
    body = assert_problem(r, 422, "validation-error")
    assert loc in [e["loc"] for e in body["errors"]]


async def test_one_nul_item_does_not_fail_its_batch(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    items = [response_body(external_id="fine"), response_body(external_id=NUL)]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=setup)
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["created", "invalid"]


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/orgs", {"code": "NULORG", "name": NUL}, ["body", "name"]),
        ("/v1/orgs", {"code": "NULORG", "name": "ok", "kind": NUL}, ["body", "kind"]),
        ("/v1/surveys", survey_body(code="nul-survey", title=NUL), ["body", "title"]),
    ],
)
async def test_names_with_nul_are_422(
    client: httpx.AsyncClient, setup: dict[str, str], path: str, body: Any, loc: list[Any]
) -> None:
    problem = assert_problem(await client.post(path, json=body, headers=setup), 422)
    assert loc in [e["loc"] for e in problem["errors"]]


async def test_prompts_and_options_with_nul_are_422(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    body = survey_body(code="nul-survey")
    body["questions"][0]["prompt"] = NUL
    body["questions"][1]["options"] = ["late", NUL]
    problem = assert_problem(await client.post("/v1/surveys", json=body, headers=setup), 422)
    locs = [e["loc"] for e in problem["errors"]]
    assert ["body", "questions", 0, "prompt"] in locs
    assert ["body", "questions", 1, "options", 1] in locs
