"""The platform around the API: probes, HTTP-level errors, settings that refuse to start, CORS."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.platform.config import DEV_PSEUDONYM_KEY, Environment, Settings
from app.platform.db import create_engine
from app.platform.meta import TimezoneMismatch
from app.platform.migrate import upgrade
from tests.conftest import TEST_PSEUDONYM_KEY, _plain, bearer
from tests.factories import cursor_of
from tests.scratch import cli_env, cx_survey, free_port, scratch_database

PROBLEM = "application/problem+json"
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": Environment.test,
        "pseudonym_key": TEST_PSEUDONYM_KEY,
        "fold_interval_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def assert_problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["type"] == f"https://cx-survey.dev/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


# --- probes ------------------------------------------------------------------------------


async def test_livez_needs_no_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/livez")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_is_200_with_the_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.fixture
async def offline() -> AsyncIterator[httpx.AsyncClient]:
    """The API on a database that cannot be reached."""
    settings = _settings(database_url=UNREACHABLE)
    engine = create_engine(settings, UNREACHABLE)
    try:
        async with _client(create_app(settings, engine=engine)) as client:
            yield client
    finally:
        await engine.dispose()


async def test_readyz_is_503_when_the_database_is_unreachable(
    offline: httpx.AsyncClient,
) -> None:
    r = await offline.get("/readyz")
    assert_problem(r, 503, "service-unavailable")
    assert r.headers["retry-after"] == "1"
    assert (await offline.get("/livez")).status_code == 200  # alive, just not ready


async def test_api_calls_are_503_not_500_when_the_database_is_unreachable(
    offline: httpx.AsyncClient,
) -> None:
    key = "cx_0123456789ab_" + "A" * 43
    for url in ("/v1/stages", "/v1/orgs"):
        assert_problem(await offline.get(url, headers=bearer(key)), 503, "service-unavailable")


# --- HTTP-level errors ------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/nope", "/v1", "/v1/nope", "/v1/orgs/HQ/nope", "/V1/stages"])
async def test_unknown_path_is_404_problem(client: httpx.AsyncClient, url: str) -> None:
    assert_problem(await client.get(url), 404, "not-found")


def _served(app: Any) -> dict[str, set[str]]:
    """Each OpenAPI path with a concrete example ('1' for every parameter) → methods served."""
    paths: dict[str, set[str]] = {
        template: {m.upper() for m in operations}
        for template, operations in app.openapi()["paths"].items()
    }
    served: dict[str, set[str]] = {}
    for template in paths:
        concrete = re.sub(r"\{[^}]+\}", "1", template)
        if concrete in paths:  # a literal path is served by its own routes only:
            served[concrete] = paths[concrete]  # /v1/responses/batch, not /{response_id}
            continue
        served[concrete] = set().union(
            *(
                methods
                for other, methods in paths.items()
                if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", other), concrete)
            )
        )
    return served


async def test_wrong_method_is_405_with_every_allowed_method(
    app: Any, client: httpx.AsyncClient
) -> None:
    served = _served(app)
    assert served["/v1/orgs"] == {"GET", "POST"}
    for url, methods in served.items():
        method = next(m for m in ("PUT", "DELETE", "PATCH", "POST", "GET") if m not in methods)
        r = await client.request(method, url)
        body = assert_problem(r, 405, "method-not-allowed")
        allow = {m.strip() for m in r.headers["allow"].split(",")}
        assert allow == methods, f"{method} {url}: Allow {r.headers['allow']}"
        assert method in body["detail"]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "text/json",
    ],
)
async def test_non_json_body_is_415(
    client: httpx.AsyncClient, admin: dict[str, str], content_type: str
) -> None:
    body = b'{"code": "HQ", "name": "HQ", "parent": null}'
    headers = {**admin, "Content-Type": content_type}
    r = await client.post("/v1/orgs", content=body, headers=headers)
    assert "application/json" in assert_problem(r, 415, "unsupported-media-type")["detail"]
    r = await client.put("/v1/surveys/s", content=body, headers=headers)
    assert_problem(r, 415, "unsupported-media-type")
    assert_problem(await client.get("/v1/orgs/HQ", headers=admin), 404, "not-found")


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "Application/JSON"],
)
async def test_json_body_is_accepted_with_or_without_content_type(
    client: httpx.AsyncClient, admin: dict[str, str], content_type: str | None
) -> None:
    headers = {**admin, **({"Content-Type": content_type} if content_type else {})}
    body = b'{"code": "HQ", "name": "HQ", "parent": null}'
    r = await client.post("/v1/orgs", content=body, headers=headers)
    assert r.status_code == 201, r.text


# --- settings -----------------------------------------------------------------------------


@pytest.fixture
def no_cx_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment without any CX_* variable, to set some in the test."""
    import os

    for name in list(os.environ):
        if name.startswith("CX_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_production_refuses_the_development_pseudonym_key(no_cx_env: pytest.MonkeyPatch) -> None:
    no_cx_env.setenv("CX_ENV", "production")
    with pytest.raises(ValidationError, match="CX_PSEUDONYM_KEY must be set to a secret"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    no_cx_env.setenv("CX_PSEUDONYM_KEY", DEV_PSEUDONYM_KEY)
    with pytest.raises(ValidationError, match="CX_PSEUDONYM_KEY must be set to a secret"):
        Settings(_env_file=None)  # type: ignore[call-arg]

    no_cx_env.setenv("CX_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    with pytest.raises(ValidationError, match="CX_TOKEN_KEY must be set to a secret"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    no_cx_env.setenv("CX_TOKEN_KEY", TEST_PSEUDONYM_KEY)
    with pytest.raises(ValidationError, match="must be different secrets"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    no_cx_env.setenv("CX_TOKEN_KEY", "another-secret-0123456789abcdef0123456789")
    assert Settings(_env_file=None).env is Environment.production  # type: ignore[call-arg]
    no_cx_env.setenv("CX_TOKEN_KEY", "short")
    with pytest.raises(ValidationError, match="CX_TOKEN_KEY must be at least 32"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_settings_for_invitations_are_checked(no_cx_env: pytest.MonkeyPatch) -> None:
    no_cx_env.setenv("CX_SURVEY_URL_TEMPLATE", "https://s.example/answer")
    with pytest.raises(ValidationError, match="must contain \\{token\\}"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    no_cx_env.setenv("CX_SURVEY_URL_TEMPLATE", "https://s.example/answer/{token}")
    no_cx_env.setenv("CX_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7, ::1")
    loaded = Settings(_env_file=None)  # type: ignore[call-arg]
    assert [str(n) for n in loaded.trusted_proxies] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
    no_cx_env.setenv("CX_TRUSTED_PROXIES", "10.0.0.0/8, nonsense")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_development_accepts_the_development_pseudonym_key(no_cx_env: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).pseudonym_key == DEV_PSEUDONYM_KEY  # type: ignore[call-arg]


def test_production_refuses_cors_wildcard(no_cx_env: pytest.MonkeyPatch) -> None:
    no_cx_env.setenv("CX_ENV", "production")
    no_cx_env.setenv("CX_PSEUDONYM_KEY", TEST_PSEUDONYM_KEY)
    no_cx_env.setenv("CX_TOKEN_KEY", "another-secret-0123456789abcdef0123456789")
    no_cx_env.setenv("CX_CORS_ORIGINS", "https://app.example, *")
    with pytest.raises(ValidationError, match="CX_CORS_ORIGINS='\\*' is refused"):
        Settings(_env_file=None)  # type: ignore[call-arg]


# --- CORS ---------------------------------------------------------------------------------

ALLOWED = "https://dashboard.example.com"
OTHER = "https://evil.example.net"


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


@pytest.fixture
async def cors_client(
    no_cx_env: pytest.MonkeyPatch, database_url: str, engine: AsyncEngine
) -> AsyncIterator[httpx.AsyncClient]:
    no_cx_env.setenv("CX_CORS_ORIGINS", f"{ALLOWED}, https://other.example.com")
    settings = _settings(database_url=database_url)
    assert settings.cors_origins == [ALLOWED, "https://other.example.com"]
    async with _client(create_app(settings, engine=engine)) as client:
        yield client


async def test_cors_preflight_for_an_allowed_origin(cors_client: httpx.AsyncClient) -> None:
    r = await cors_client.options("/v1/orgs", headers=_preflight(ALLOWED))
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed_headers = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers


async def test_cors_preflight_for_another_origin_gets_no_grant(
    cors_client: httpx.AsyncClient,
) -> None:
    r = await cors_client.options("/v1/orgs", headers=_preflight(OTHER))
    assert r.status_code >= 400
    assert "access-control-allow-origin" not in r.headers


async def test_cors_headers_on_answers_including_errors(cors_client: httpx.AsyncClient) -> None:
    r = await cors_client.get("/livez", headers={"Origin": ALLOWED})
    assert r.headers["access-control-allow-origin"] == ALLOWED
    r = await cors_client.get("/v1/orgs", headers={"Origin": ALLOWED})  # 401, still readable
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == ALLOWED
    r = await cors_client.get("/livez", headers={"Origin": OTHER})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers


async def test_no_cors_without_configured_origins(client: httpx.AsyncClient) -> None:
    r = await client.options("/v1/orgs", headers=_preflight(ALLOWED))
    assert "access-control-allow-origin" not in r.headers
    r = await client.get("/livez", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in r.headers


# --- reporting time zone ---------------------------------------------------------------


async def _start(url: str, zone: str) -> None:
    """Run the app's start-up and shut-down, as a server would, on `url` with `zone`."""
    app = create_app(_settings(database_url=url, reporting_timezone=zone))
    async with app.router.lifespan_context(app), _client(app) as client:
        assert (await client.get("/readyz")).status_code == 200


async def _recorded_zone(url: str) -> str:
    conn = await asyncpg.connect(_plain(url))
    try:
        zone: str = await conn.fetchval("SELECT value FROM meta WHERE key = 'reporting_timezone'")
        return zone
    finally:
        await conn.close()


async def test_another_reporting_timezone_is_refused_until_rebuilt(
    server_url: str, tmp_path: Path
) -> None:
    async with scratch_database(server_url) as url:
        await upgrade(url)
        await _start(url, "UTC")  # the first start records the zone
        await _start(url, "UTC")
        assert await _recorded_zone(url) == "UTC"

        with pytest.raises(TimezoneMismatch) as refused:
            await _start(url, "Asia/Seoul")
        message = str(refused.value)
        assert "'UTC'" in message
        assert "'Asia/Seoul'" in message
        assert "cx-survey rebuild --reporting-timezone Asia/Seoul" in message
        assert await _recorded_zone(url) == "UTC"

        env = cli_env(url, reporting_timezone="Asia/Seoul")
        run = await cx_survey(
            "rebuild", "--reporting-timezone", "Asia/Seoul", env=env, cwd=tmp_path
        )
        assert run.code == 0, run.stderr
        assert "Asia/Seoul" in run.stderr
        assert await _recorded_zone(url) == "Asia/Seoul"

        await _start(url, "Asia/Seoul")
        with pytest.raises(TimezoneMismatch):
            await _start(url, "UTC")


async def test_serve_refuses_another_reporting_timezone(server_url: str, tmp_path: Path) -> None:
    async with scratch_database(server_url) as url:
        await upgrade(url)
        await _start(url, "UTC")
        env = cli_env(url, reporting_timezone="Europe/Berlin")
        run = await cx_survey("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
        assert run.code != 0
        assert "built for reporting time zone 'UTC'" in run.said
        assert "cx-survey rebuild --reporting-timezone Europe/Berlin" in run.said
        assert await _recorded_zone(url) == "UTC"
        assert "Traceback" not in run.stderr


async def test_openapi_declares_the_problem_answers_of_every_operation(app: Any) -> None:
    schema = app.openapi()
    assert "Problem" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            expected = {"404", "405", "500", "503"}
            if path.startswith("/v1/public/"):  # a token, no key: limited per address
                expected |= {"429"}
                assert "401" not in operation["responses"]
                assert "security" not in operation
            elif path.startswith("/v1/") or path == "/metrics":  # every one takes a key
                expected |= {"401", "403", "429"}
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
            if method in {"post", "put", "patch"}:
                expected |= {"400", "413", "415", "422"}
            if method != "get":
                expected.add("409")
            if operation.get("parameters"):
                expected.add("422")
            missing = expected - set(operation["responses"])
            assert not missing, f"{method.upper()} {path} does not declare {sorted(missing)}"
            for status, answer in operation["responses"].items():
                if status >= "400":
                    assert "application/problem+json" in answer["content"], f"{method} {path}"
    assert "410" in schema["paths"]["/v1/responses"]["post"]["responses"]
    assert "410" not in schema["paths"]["/v1/orgs"]["post"]["responses"]


@pytest.mark.parametrize("value", [True, "2", None])
async def test_weights_and_targets_are_json_numbers(
    client: httpx.AsyncClient, admin: dict[str, str], value: Any
) -> None:
    r = await client.post("/v1/orgs", json={"code": "HQ", "name": "HQ"}, headers=admin)
    assert r.status_code == 201
    r = await client.put("/v1/orgs/HQ/stage-weights", json={"purchase": value}, headers=admin)
    assert_problem(r, 422, "validation-error")
    r = await client.put("/v1/orgs/HQ/targets/2026", json={"csi": value}, headers=admin)
    assert_problem(r, 422, "validation-error")


@pytest.mark.parametrize(
    "period",
    ["\u0662\u0660\u0662\u0666", "\uff12\uff10\uff12\uff16", "2026-\u0660\u0669", "2026\n"],
)
async def test_periods_in_other_scripts_digits_or_with_a_newline_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], period: str
) -> None:
    # int() reads ARABIC-INDIC or FULLWIDTH digits as 2026, and re's $ matches before a final
    # newline: each was a second target for 2026, under a label GET /targets/2026 never finds.
    r = await client.post("/v1/orgs", json={"code": "HQ", "name": "HQ"}, headers=admin)
    assert r.status_code == 201
    r = await client.put(f"/v1/orgs/HQ/targets/{quote(period)}", json={"csi": 80}, headers=admin)
    assert_problem(r, 422, "validation-error")
    r = await client.get("/v1/orgs/HQ/index", params={"period": period}, headers=admin)
    assert_problem(r, 422, "validation-error")
    r = await client.get("/v1/orgs/HQ/targets", headers=admin)
    assert r.status_code == 200
    assert r.json()["items"] == []


@pytest.mark.parametrize(
    "start", ["2026-W01-1", "20260101", "2026-1-01", "\u0662026-01-01", "2026-01-01\n"]
)
async def test_dates_are_yyyy_mm_dd_only(
    client: httpx.AsyncClient, admin: dict[str, str], start: str
) -> None:
    r = await client.post("/v1/orgs", json={"code": "HQ", "name": "HQ"}, headers=admin)
    assert r.status_code == 201
    params = {"from": start, "to": "2026-02-01"}
    r = await client.get("/v1/orgs/HQ/index", params=params, headers=admin)
    problem = assert_problem(r, 422, "validation-error")
    assert problem["errors"] == [{"loc": ["query", "from"], "msg": "must be a date YYYY-MM-DD"}]
    r = await client.get(
        "/v1/orgs/HQ/index", params={**params, "from": "2026-01-01"}, headers=admin
    )
    assert r.status_code == 200, r.text


def _keywords(node: Any) -> set[str]:
    """Every key of every schema object under `node` (properties' names excluded)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            found.add(key)
            if key == "properties":
                for child in value.values():
                    found |= _keywords(child)
            else:
                found |= _keywords(value)
    elif isinstance(node, list):
        for child in node:
            found |= _keywords(child)
    return found


async def test_openapi_constraints_are_json_schema_keywords(app: Any) -> None:
    # Pydantic wrote `ge`/`le` (which no client reads) for numbers validated as JSON numbers.
    components = app.openapi()["components"]["schemas"]
    assert not _keywords(components) & {"ge", "le", "gt", "lt", "allow_inf_nan"}
    assert components["TargetIn"]["properties"]["csi"]["maximum"] == 100
    assert components["WeightsIn"]["additionalProperties"]["minimum"] == 0
    # PATCH may leave a name out, never set it to null: the schema does not offer null.
    assert components["OrgPatch"]["properties"]["name"]["type"] == "string"


async def test_index_filters_as_declared(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/orgs", json={"code": "HQ", "name": "HQ"}, headers=admin)
    assert r.status_code == 201
    declared = {
        p["name"]: re.compile(p["schema"]["pattern"])
        for p in (await client.get("/openapi.json")).json()["paths"]["/v1/orgs/{code}/index"][
            "get"
        ]["parameters"]
        if p["name"] in ("stages", "channel", "customer_type")
    }
    cases = [
        ({"stages": "purchase, rental ,delivery"}, 200),
        ({"stages": "purchase\t,\trental"}, 200),
        ({"channel": "web\xa0"}, 200),  # not a blank it strips: the channel "web\xa0"
        ({"stages": "purchase\xa0"}, 422),
        ({"stages": "", "channel": "", "customer_type": ""}, 200),  # empty: no filter
        ({"channel": "web, call center", "customer_type": "internal,end_user"}, 200),
        ({"channel": "x" * 64}, 200),
        ({"stages": "purchase,"}, 422),
        ({"stages": "Purchase"}, 422),
        ({"channel": "x" * 65}, 422),
        ({"channel": ",web"}, 422),
        ({"customer_type": "end_user,,internal"}, 422),
        ({"stages": ",".join(["rental"] * 51)}, 422),
    ]
    for params, status in cases:
        r = await client.get(
            "/v1/orgs/HQ/index", params={"period": "2026", **params}, headers=admin
        )
        assert r.status_code == status, (params, r.text)
        # What the service takes is exactly what the OpenAPI declares.
        matches = all(declared[name].fullmatch(value) for name, value in params.items())
        assert matches == (status == 200), params


@pytest.mark.parametrize(
    ("params", "previous"),
    [
        ({"period": "1900"}, ("1899-01-01", "1900-01-01")),
        ({"period": "1900-Q1"}, ("1899-10-01", "1900-01-01")),
        ({"period": "1900-01"}, ("1899-12-01", "1900-01-01")),
        ({"from": "1900-01-01", "to": "2100-01-01"}, ("1699-12-31", "1900-01-01")),
    ],
)
async def test_the_earliest_periods_have_a_previous_period(
    client: httpx.AsyncClient, admin: dict[str, str], params: dict[str, str], previous: Any
) -> None:
    # The period before 1900 was refused as a year out of range while computing it: a 500.
    r = await client.post("/v1/orgs", json={"code": "HQ", "name": "HQ"}, headers=admin)
    assert r.status_code == 201
    for route in ("index", "index/children"):
        r = await client.get(f"/v1/orgs/HQ/{route}", params=params, headers=admin)
        assert r.status_code == 200, r.text
    r = await client.get("/v1/orgs/HQ/index", params=params, headers=admin)
    body = r.json()
    assert (body["previous"]["from"], body["previous"]["to"]) == previous
    assert body["previous"]["n"] == 0


async def test_a_range_too_long_for_a_previous_period_is_422(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post("/v1/orgs", json={"code": "HQ", "name": "HQ"}, headers=admin)
    assert r.status_code == 201
    params = {"from": "1950-01-01", "to": "9999-01-01"}
    r = await client.get("/v1/orgs/HQ/index", params=params, headers=admin)
    problem = assert_problem(r, 422, "validation-error")
    assert "too long" in problem["detail"]


@pytest.mark.parametrize("route", ["/v1/responses", "/v1/audit"])
@pytest.mark.parametrize(
    "after",
    [
        ["2026-01-01T00:00:00+00:00", float("inf")],
        ["2026-01-01T00:00:00+00:00", True],
        ["2026-01-01T00:00:00+00:00", 1.5],
        ["2026-01-01T00:00:00+00:00", "2"],
        ["2026-01-01T00:00:00+00:00", 2**63],
        ["2026-01-01T00:00:00+00:00", 0],
        ["2026-01-01T00:00:00", 2],  # no offset
        [20260101, 2],
        ["2026-01-01T00:00:00+00:00"],
    ],
)
async def test_forged_time_cursors_are_422(
    client: httpx.AsyncClient, admin: dict[str, str], route: str, after: list[Any]
) -> None:
    # Infinity as the id was an OverflowError (500); true, 1.5 and "2" were read as ids.
    r = await client.get(route, params={"cursor": cursor_of(after)}, headers=admin)
    problem = assert_problem(r, 422, "validation-error")
    assert problem["errors"] == [{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
    good = cursor_of(["2026-01-01T00:00:00+00:00", 2])
    assert (await client.get(route, params={"cursor": good}, headers=admin)).status_code == 200
