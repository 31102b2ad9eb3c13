"""Authentication (401), authorization by scope (403) over every route, and org-bound keys."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from app.config import Environment, Settings
from app.keys.scopes import Scope
from app.main import create_app
from tests.conftest import TEST_PSEUDONYM_KEY, KeyFactory, bearer
from tests.factories import response_body, standard_setup, survey_body

PROBLEM = "application/problem+json"
NON_ADMIN = [s for s in Scope if s is not Scope.admin]


@dataclass(frozen=True)
class Row:
    """One operation: its route, the scope it needs (None: any valid key), a request to send."""

    method: str
    route: str
    scope: Scope | None
    url: str
    body: Any = None
    ok: frozenset[int] = field(default_factory=lambda: frozenset({200}))

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}"


def row(
    method: str, route: str, scope: Scope | None, url: str | None = None, body: Any = None, *ok: int
) -> Row:
    return Row(method, route, scope, url or route, body, frozenset(ok or {200}))


ANY = None
ORGS_W, SURVEYS_R, SURVEYS_W = Scope.orgs_write, Scope.surveys_read, Scope.surveys_write
RESP_R, RESP_W = Scope.responses_read, Scope.responses_write
IDX_R, IDX_W, ADMIN = Scope.indices_read, Scope.indices_write, Scope.admin
ORG = "/v1/orgs/{code}"

# The authorization table of PRODUCT.md, one row per route and method, with a request that
# succeeds (status in `ok`) for a key with the right scope on the standard set-up.
MATRIX: tuple[Row, ...] = (
    row("GET", "/v1/stages", ANY),
    row("GET", "/v1/orgs", ANY),
    row("POST", "/v1/orgs", ORGS_W, None, {"code": "NEW", "name": "New", "parent": "KR"}, 201),
    row("GET", ORG, ANY, "/v1/orgs/KR"),
    row("GET", ORG + "/subtree", ANY, "/v1/orgs/KR/subtree"),
    row("PATCH", ORG, ORGS_W, "/v1/orgs/KR-DELIVERY-BUSAN", {"name": "Busan"}),
    row("GET", "/v1/surveys", SURVEYS_R),
    row("POST", "/v1/surveys", SURVEYS_W, None, survey_body(code="other-csat"), 201),
    row("GET", "/v1/surveys/{code}", SURVEYS_R, "/v1/surveys/delivery-csat"),
    row("PUT", "/v1/surveys/{code}", SURVEYS_W, "/v1/surveys/delivery-csat", survey_body()),
    row(
        "GET",
        "/v1/surveys/{code}/versions/{version}",
        SURVEYS_R,
        "/v1/surveys/delivery-csat/versions/1",
    ),
    row("POST", "/v1/responses", RESP_W, None, response_body(), 201),
    row("POST", "/v1/responses/batch", RESP_W, None, {"items": [response_body()]}),
    row("GET", "/v1/responses", RESP_R),
    row("GET", "/v1/responses/{response_id}", RESP_R, "/v1/responses/1", None, 404),
    row("DELETE", "/v1/responses/{response_id}", ADMIN, "/v1/responses/1", None, 404),
    row("DELETE", "/v1/customers/{ref}/responses", ADMIN, "/v1/customers/customer-42/responses"),
    row("GET", ORG + "/index", IDX_R, "/v1/orgs/KR/index?period=2026"),
    row("GET", ORG + "/index/children", IDX_R, "/v1/orgs/KR/index/children?period=2026-Q3"),
    row(
        "GET",
        ORG + "/index/series",
        IDX_R,
        "/v1/orgs/KR/index/series?granularity=month&from=2026-01-01&to=2026-07-01",
    ),
    row("GET", ORG + "/stage-weights", IDX_R, "/v1/orgs/KR/stage-weights"),
    row("PUT", ORG + "/stage-weights", IDX_W, "/v1/orgs/KR/stage-weights", {"delivery": 2}),
    row("DELETE", ORG + "/stage-weights", IDX_W, "/v1/orgs/KR/stage-weights", None, 204),
    row("GET", ORG + "/targets", IDX_R, "/v1/orgs/KR/targets"),
    row("GET", ORG + "/targets/{period}", IDX_R, "/v1/orgs/KR/targets/2026", None, 404),
    row("PUT", ORG + "/targets/{period}", IDX_W, "/v1/orgs/KR/targets/2026", {"csi": 80.0}),
    row("DELETE", ORG + "/targets/{period}", IDX_W, "/v1/orgs/KR/targets/2026", None, 404),
    row("POST", "/v1/keys", ADMIN, None, {"name": "k", "scopes": ["surveys:read"]}, 201),
    row("GET", "/v1/keys", ADMIN),
    row("DELETE", "/v1/keys/{key_id}", ADMIN, "/v1/keys/000000000000", None, 404),
)
SCOPED = [r for r in MATRIX if r.scope is not None]


def _walk(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI >= 0.16x keeps included routers as branches
            yield from _walk(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            for method in route.methods:
                yield method, prefix + route.path_format  # {ref:path} is {ref}
        elif hasattr(route, "routes"):  # a mounted router
            yield from _walk(route.routes, prefix + getattr(route, "path", ""))


def v1_operations() -> set[tuple[str, str]]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/unused",
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )
    application = create_app(settings)
    operations = {(m, p) for m, p in _walk(application.routes) if p.startswith("/v1")}
    schema_paths = application.openapi()["paths"]
    documented = {
        (method.upper(), path)
        for path, ops in schema_paths.items()
        if path.startswith("/v1")
        for method in ops
    }
    # The walk over app.routes and the OpenAPI document must agree, so neither can miss a route.
    assert operations == documented
    return operations


def test_matrix_covers_every_v1_route() -> None:
    operations = v1_operations()
    assert len(operations) >= 30
    table = [(r.method, r.route) for r in MATRIX]
    assert len(table) == len(set(table)), "duplicate rows"
    missing = operations - set(table)
    assert not missing, f"routes without a row in the authorization matrix: {sorted(missing)}"
    stale = set(table) - operations
    assert not stale, f"rows for routes that do not exist: {sorted(stale)}"


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].split()[0] == "Bearer"
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == 401
    assert body["type"].endswith("/unauthenticated")
    assert body["detail"]


def assert_403(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["type"].endswith("/forbidden")
    assert "www-authenticate" not in r.headers


async def send(client: httpx.AsyncClient, r: Row, headers: dict[str, str]) -> httpx.Response:
    return await client.request(r.method, r.url, json=r.body, headers=headers)


@pytest.mark.parametrize("r", MATRIX, ids=lambda r: r.id)
async def test_without_a_key_every_route_is_401(client: httpx.AsyncClient, r: Row) -> None:
    assert_401(await send(client, r, {}))


@pytest.mark.parametrize("r", SCOPED, ids=lambda r: r.id)
async def test_other_scopes_are_403(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, r: Row
) -> None:
    await standard_setup(client, admin)
    for scope in NON_ADMIN:
        if scope is r.scope:
            continue
        assert_403(await send(client, r, bearer(await make_key(scope.value))))
    # Even every other scope together is not enough.
    others = [s.value for s in NON_ADMIN if s is not r.scope]
    assert_403(await send(client, r, bearer(await make_key(*others))))


@pytest.mark.parametrize("r", MATRIX, ids=lambda r: r.id)
async def test_the_right_scope_is_admitted(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, r: Row
) -> None:
    await standard_setup(client, admin)
    scope = r.scope or Scope.responses_write  # any valid key will do
    response = await send(client, r, bearer(await make_key(scope.value)))
    assert response.status_code in r.ok, response.text


@pytest.mark.parametrize("r", [r for r in MATRIX if r.scope is None], ids=lambda r: r.id)
async def test_any_valid_key_is_admitted(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, r: Row
) -> None:
    await standard_setup(client, admin)
    for scope in NON_ADMIN:
        response = await send(client, r, bearer(await make_key(scope.value)))
        assert response.status_code in r.ok, (scope, response.text)


@pytest.mark.parametrize("r", MATRIX, ids=lambda r: r.id)
async def test_admin_is_admitted(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, r: Row
) -> None:
    await standard_setup(client, admin)
    response = await send(client, r, bearer(await make_key("admin")))
    assert response.status_code in r.ok, response.text


# 401: missing, malformed, unknown, revoked.


async def test_no_authorization_header(client: httpx.AsyncClient) -> None:
    assert_401(await client.get("/v1/stages"))


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer garbage",
        "Bearer",
        "Bearer ",
        "Token cx_0123456789ab_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "cx_0123456789ab_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "Bearer cx__abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "Bearer cx_0123456789ab_",
        "Bearer cx_0123456789ab_short",
    ],
)
async def test_malformed_authorization_is_401(client: httpx.AsyncClient, header: str) -> None:
    assert_401(await client.get("/v1/stages", headers={"Authorization": header}))


async def test_wrong_secret_and_unknown_id_are_401_alike(
    client: httpx.AsyncClient, make_key: KeyFactory
) -> None:
    key = await make_key("admin")
    assert (await client.get("/v1/stages", headers=bearer(key))).status_code == 200
    prefix, _, secret = key.rpartition("_")
    wrong_secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    unknown_id = f"cx_{secrets.token_hex(6)}_{secret}"
    answers = []
    for presented in (wrong_secret, unknown_id, key[:-1], key + "x"):
        r = await client.get("/v1/stages", headers=bearer(presented))
        assert_401(r)
        answers.append(r.json())
    # A wrong secret is not told apart from an unknown id.
    assert answers[0] == answers[1]


async def test_revoked_key_is_401(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    key = await make_key("surveys:read")
    assert (await client.get("/v1/surveys", headers=bearer(key))).status_code == 200
    key_id = key.split("_")[1]
    assert (await client.delete(f"/v1/keys/{key_id}", headers=admin)).status_code == 200
    for method, url in (("GET", "/v1/surveys"), ("GET", "/v1/stages"), ("GET", "/v1/orgs")):
        assert_401(await client.request(method, url, headers=bearer(key)))


async def test_health_needs_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


# Org-bound keys: the subtree is the whole world.


def mentions(text: str, code: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9._-]){re.escape(code)}(?![A-Za-z0-9._-])", text) is not None


ORG_READS = ("/v1/orgs/{}", "/v1/orgs/{}/index?period=2026", "/v1/orgs/{}/stage-weights")


@pytest.mark.parametrize("code", ["KR", "KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN"])
async def test_bound_key_sees_its_subtree(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, code: str
) -> None:
    await standard_setup(client, admin)
    headers = bearer(await make_key("indices:read", org="KR"))
    for template in ORG_READS:
        r = await client.get(template.format(code), headers=headers)
        assert r.status_code == 200, (template, r.text)
        assert not mentions(r.text, "HQ"), r.text
        assert not mentions(r.text, "US"), r.text
    org = (await client.get(f"/v1/orgs/{code}", headers=headers)).json()
    assert org["code"] == code
    assert org["path"][0] == "KR"
    assert org["path"][-1] == code


async def test_bound_key_sees_its_org_as_a_root(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    await standard_setup(client, admin)
    headers = bearer(await make_key("indices:read", org="KR"))
    kr = (await client.get("/v1/orgs/KR", headers=headers)).json()
    assert kr["parent"] is None
    assert kr["path"] == ["KR"]
    listed = (await client.get("/v1/orgs", headers=headers)).json()["items"]
    assert [o["code"] for o in listed] == ["KR", "KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    # Weights inherited from above the subtree are shown without telling where they come from.
    put = await client.put("/v1/orgs/HQ/stage-weights", json={"delivery": 3}, headers=admin)
    assert put.status_code == 200, put.text
    weights = (await client.get("/v1/orgs/KR/stage-weights", headers=headers)).json()
    assert weights["weights"]["delivery"] == 3
    assert weights["from_org"] is None


@pytest.mark.parametrize("code", ["US", "HQ", "US-SERVICE"])
async def test_bound_key_outside_its_subtree_is_404(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, code: str
) -> None:
    await standard_setup(client, admin)
    headers = bearer(await make_key("indices:read", "indices:write", "orgs:write", org="KR"))
    for template in (*ORG_READS, "/v1/orgs/{}/subtree", "/v1/orgs/{}/index/children?period=2026"):
        r = await client.get(template.format(code), headers=headers)
        assert r.status_code == 404, (template, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
        # Exactly the answer for an org that does not exist at all (the detail may echo the
        # code the client asked for, as it does for any unknown code) ...
        ghost = await client.get(template.format("GHOST"), headers=headers)
        assert ghost.status_code == 404
        assert r.text.replace(code, "GHOST") == ghost.text
        # ... and no other code outside the subtree is told.
        for other in ("HQ", "US", "US-SERVICE"):
            if other != code:
                assert not mentions(r.text, other), r.text
    for method, url, body in (
        ("PATCH", f"/v1/orgs/{code}", {"name": "mine now"}),
        ("PUT", f"/v1/orgs/{code}/stage-weights", {"delivery": 0}),
        ("PUT", f"/v1/orgs/{code}/targets/2026", {"csi": 10}),
    ):
        r = await client.request(method, url, json=body, headers=headers)
        assert r.status_code == 404, (method, url, r.text)
        ghost = await client.request(method, url.replace(code, "GHOST"), json=body, headers=headers)
        assert r.text.replace(code, "GHOST") == ghost.text
    unchanged = (await client.get(f"/v1/orgs/{code}", headers=admin)).json()
    assert unchanged["name"] == f"Org {code}"
    assert (await client.get(f"/v1/orgs/{code}/targets/2026", headers=admin)).status_code == 404
