"""Request ids and JSON logs: echoed ids, one access line per request, no personal data."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from app.platform.logs import JsonFormatter, request_id
from tests.factories import response_body, standard_setup


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cx_survey.access"]


async def test_a_well_formed_request_id_is_echoed_and_logged(
    client: httpx.AsyncClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cx_survey.access")
    r = await client.get("/v1/stages", headers={**admin, "X-Request-ID": "trace-42.a:b"})
    assert r.headers["x-request-id"] == "trace-42.a:b"
    (line,) = access_lines(caplog)
    assert line.route == "/v1/stages"  # type: ignore[attr-defined]
    assert line.status == 200  # type: ignore[attr-defined]
    assert line.method == "GET"  # type: ignore[attr-defined]
    assert line.key_id  # type: ignore[attr-defined]
    formatted = json.loads(JsonFormatter().format(line))
    assert formatted["msg"] == "request"
    assert formatted["route"] == "/v1/stages"


@pytest.mark.parametrize("given", [None, "", "x" * 129, "has space", "ünï".encode()])
async def test_a_missing_or_odd_request_id_is_replaced(
    client: httpx.AsyncClient, given: str | bytes | None
) -> None:
    headers: dict[str, str | bytes] = {} if given is None else {"X-Request-ID": given}
    r = await client.get("/livez", headers=headers)
    rid = r.headers["x-request-id"]
    assert rid != given
    assert len(rid) == 32
    assert int(rid, 16) >= 0


async def test_errors_carry_the_request_id_too(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/orgs", headers={"X-Request-ID": "err-1"})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == "err-1"
    r = await client.get("/nowhere", headers={"X-Request-ID": "err-2"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "err-2"


async def test_logs_name_the_route_not_the_path_nor_any_personal_data(
    client: httpx.AsyncClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await standard_setup(client, admin)
    caplog.set_level(logging.DEBUG)
    secret_ref = "kim.minji@example.com"
    comment = "the driver was rude to my mother"
    body = response_body(customer={"ref": secret_ref, "type": "end_user"})
    body["answers"]["comment"] = comment
    assert (await client.post("/v1/responses", json=body, headers=admin)).status_code == 201
    r = await client.delete(f"/v1/customers/{secret_ref}/responses", headers=admin)
    assert r.status_code == 200
    bad = await client.get("/v1/orgs", headers={"Authorization": "Bearer cx_abc_" + "s" * 40})
    assert bad.status_code == 401
    routes = [line.route for line in access_lines(caplog)]  # type: ignore[attr-defined]
    assert "/v1/customers/{ref}/responses" in routes
    ours = [record for record in caplog.records if record.name.startswith(("cx_survey", "uvicorn"))]
    assert ours
    everything = "\n".join(JsonFormatter().format(record) for record in ours)
    for secret in (secret_ref, comment, "s" * 40, admin["Authorization"].split()[1]):
        assert secret not in everything


def test_lines_outside_a_request_have_no_request_id() -> None:
    record = logging.makeLogRecord({"name": "cx_survey", "msg": "fold %d", "args": (3,)})
    assert request_id.get() is None
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "fold 3"
    assert "request_id" not in line


async def test_an_unexpected_error_is_a_500_with_its_request_id(
    app: Any, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    caplog.set_level(logging.INFO)
    r = await client.get("/boom", headers={"X-Request-ID": "bug-1"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["x-request-id"] == "bug-1"
    assert "a bug" not in r.text
    errors = [rec for rec in caplog.records if rec.name == "cx_survey.errors"]
    assert errors
    assert json.loads(JsonFormatter().format(errors[0]))["request_id"] == "bug-1"
    (line,) = access_lines(caplog)
    assert line.status == 500  # type: ignore[attr-defined]
