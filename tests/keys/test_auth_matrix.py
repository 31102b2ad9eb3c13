"""The authorization matrix: every operation, every kind of credential, every place in the tree.

MATRIX holds one row per operation (and per way it names an org or an object of an org); the
completeness test fails when the app has a route that MATRIX does not cover. Each row is sent
without a usable key (401), with a key lacking its scope (403), with the right scope (admitted),
and with an org-bound key naming its own org, a descendant, and orgs of other subtrees: those
must be answered exactly as if they did not exist, and nothing of another subtree may show.

The data (the standard tree, one response, key and target per org) is built once per module in
an outer transaction; every test runs in a savepoint that is rolled back after it.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from starlette.routing import Mount, Route

from app.keys.scopes import Scope
from app.keys.service import create_key
from app.main import create_app
from app.platform.config import Environment, Settings
from tests.conftest import TEST_PSEUDONYM_KEY, bearer
from tests.factories import STANDARD_TREE, response_body, standard_setup, survey_body

PROBLEM = "application/problem+json"
NON_ADMIN = [s for s in Scope if s is not Scope.admin]


class Names(Enum):
    """What a request names through its placeholder, and the status when that lies elsewhere."""

    org_in_path = ("{org}", 404)
    org_in_body = ("{org}", 422)
    org_in_query = ("{org}", 422)
    response = ("{response}", 404)  # a response id, of a response of the org
    key = ("{key}", 404)  # a key id, of a key bound to the org
    customer = ("{customer}", 200)  # a customer ref, of a customer of the org: erases nothing
    executive = ("{executive}", 404)  # an executive code, of the one whose purview is the org
    task = ("{task}", 404)  # a task id, of a task of the org
    invitation = ("{invitation}", 404)  # an invitation id, of an invitation of the org
    case = ("{case}", 404)  # a case id, of the case of the org's seeded response

    @property
    def placeholder(self) -> str:
        return self.value[0]

    @property
    def hidden_status(self) -> int:
        return self.value[1]


@dataclass(frozen=True)
class Row:
    """One operation: route, scope (None: any valid key), and a request that succeeds."""

    method: str
    route: str
    scope: Scope | None
    url: str
    body: Any = None
    ok: frozenset[int] = frozenset({200})
    names: Names | None = None
    # An org the request names besides its placeholder (it must be visible to the key).
    fixed_org: str | None = None
    hidden: int | None = None  # status when the named thing lies outside the key's subtree
    variant: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.route}" + (f" [{self.variant}]" if self.variant else "")

    @property
    def hidden_status(self) -> int:
        assert self.names is not None
        return self.hidden if self.hidden is not None else self.names.hidden_status

    def request(self, value: str) -> tuple[str, Any]:
        """URL and body with the placeholder replaced by `value`."""
        if self.names is None:
            return self.url, self.body
        return self.url.replace(self.names.placeholder, value), _fill(
            self.body, self.names.placeholder, value
        )


def _fill(body: Any, placeholder: str, value: str) -> Any:
    if isinstance(body, str):
        return body.replace(placeholder, value)
    if isinstance(body, dict):
        return {k: _fill(v, placeholder, value) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, placeholder, value) for v in body]
    return body


def row(
    method: str,
    route: str,
    scope: Scope | None,
    url: str | None = None,
    body: Any = None,
    *ok: int,
    **extra: Any,
) -> Row:
    return Row(method, route, scope, url or route, body, frozenset(ok or {200}), **extra)


ANY = None
ORGS_W, SURVEYS_R, SURVEYS_W = Scope.orgs_write, Scope.surveys_read, Scope.surveys_write
RESP_R, RESP_W = Scope.responses_read, Scope.responses_write
IDX_R, IDX_W, ADMIN = Scope.indices_read, Scope.indices_write, Scope.admin
EVAL_R, EVAL_W = Scope.evaluations_read, Scope.evaluations_write
EXEC, TASK = Names.executive, Names.task
INV_R, INV_W, INV = Scope.invitations_read, Scope.invitations_write, Names.invitation
CASES_R, CASES_W, CASE = Scope.cases_read, Scope.cases_write, Names.case
INS_R = Scope.insights_read
SEEDED_ID = 424242  # the seeded webhook's and its delivery's id (set by seed())
WEBHOOK = f"/v1/webhooks/{SEEDED_ID}"
ORG = "/v1/orgs/{code}"
PATH, BODY, QUERY = Names.org_in_path, Names.org_in_body, Names.org_in_query

# The authorization table of PRODUCT.md: one row per route and method (and per further way of
# naming an org), with a request that succeeds for a key with the right scope on the data below
# when the placeholder names an org (or an object of an org) that the key sees.
MATRIX: tuple[Row, ...] = (
    row("GET", "/v1/stages", ANY),
    row("GET", "/v1/orgs", ANY),
    row("GET", "/v1/orgs", ANY, "/v1/orgs?parent={org}", names=QUERY, variant="parent"),
    row(
        "POST",
        "/v1/orgs",
        ORGS_W,
        None,
        {"code": "NEW", "name": "New", "parent": "{org}"},
        201,
        names=BODY,
    ),
    row("GET", ORG, ANY, "/v1/orgs/{org}", names=PATH),
    row("GET", ORG + "/subtree", ANY, "/v1/orgs/{org}/subtree", names=PATH),
    row("GET", ORG, ANY, "/v1/orgs/{org}?as_of=1990-06-01", names=PATH, variant="as_of"),
    row(
        "GET",
        ORG + "/subtree",
        ANY,
        "/v1/orgs/{org}/subtree?as_of=1990-06-01",
        names=PATH,
        variant="as_of",
    ),
    row(
        "GET",
        "/v1/orgs",
        ANY,
        "/v1/orgs?parent={org}&as_of=1990-06-01",
        names=QUERY,
        variant="parent as_of",
    ),
    row("GET", ORG + "/history", ANY, "/v1/orgs/{org}/history", names=PATH),
    # A bound key may not remove placements of its own bound org (403, like moving it).
    row(
        "DELETE",
        ORG + "/history/{effective}",
        ORGS_W,
        "/v1/orgs/{org}/history/1990-01-01",
        None,
        204,
        403,
        names=PATH,
    ),
    row("PATCH", ORG, ORGS_W, "/v1/orgs/{org}", {"name": "Renamed"}, names=PATH),
    row(
        "PATCH",
        ORG,
        ORGS_W,
        "/v1/orgs/KR-DELIVERY-BUSAN",
        {"parent": "{org}"},
        names=BODY,
        fixed_org="KR-DELIVERY-BUSAN",
        variant="parent",
    ),
    row(
        "PATCH",
        ORG,
        ORGS_W,
        "/v1/orgs/KR-DELIVERY-BUSAN",
        {"parent": "{org}", "effective": "2026-01-01"},
        names=BODY,
        fixed_org="KR-DELIVERY-BUSAN",
        variant="dated move",
    ),
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
    row("POST", "/v1/responses", RESP_W, None, response_body(org="{org}"), 201, names=BODY),
    row(
        "POST",
        "/v1/responses/batch",
        RESP_W,
        None,
        {"items": [response_body(org="{org}")]},
        names=BODY,
        hidden=200,  # the item is `invalid`, as for an unknown org
    ),
    row("GET", "/v1/responses", RESP_R),
    row("GET", "/v1/responses", RESP_R, "/v1/responses?org={org}", names=QUERY, variant="org"),
    row(
        "GET",
        "/v1/responses/{response_id}",
        RESP_R,
        "/v1/responses/{response}",
        names=Names.response,
    ),
    row(
        "DELETE",
        "/v1/responses/{response_id}",
        ADMIN,
        "/v1/responses/{response}",
        None,
        204,
        names=Names.response,
    ),
    row(
        "DELETE",
        "/v1/customers/{ref}/responses",
        ADMIN,
        "/v1/customers/{customer}/responses",
        names=Names.customer,
    ),
    row("GET", ORG + "/index", IDX_R, "/v1/orgs/{org}/index?period=2026", names=PATH),
    row(
        "GET",
        ORG + "/index/children",
        IDX_R,
        "/v1/orgs/{org}/index/children?period=2026-Q1",
        names=PATH,
    ),
    row(
        "GET",
        ORG + "/index/series",
        IDX_R,
        "/v1/orgs/{org}/index/series?granularity=month&from=2026-01-01&to=2026-07-01",
        names=PATH,
    ),
    row("GET", ORG + "/stage-weights", IDX_R, "/v1/orgs/{org}/stage-weights", names=PATH),
    row(
        "PUT",
        ORG + "/stage-weights",
        IDX_W,
        "/v1/orgs/{org}/stage-weights",
        {"delivery": 2},
        names=PATH,
    ),
    row(
        "DELETE",
        ORG + "/stage-weights",
        IDX_W,
        "/v1/orgs/{org}/stage-weights",
        None,
        204,
        names=PATH,
    ),
    row("GET", ORG + "/targets", IDX_R, "/v1/orgs/{org}/targets", names=PATH),
    row("GET", ORG + "/targets/{period}", IDX_R, "/v1/orgs/{org}/targets/2026", names=PATH),
    row(
        "PUT",
        ORG + "/targets/{period}",
        IDX_W,
        "/v1/orgs/{org}/targets/2026",
        {"csi": 80.0},
        names=PATH,
    ),
    row(
        "DELETE",
        ORG + "/targets/{period}",
        IDX_W,
        "/v1/orgs/{org}/targets/2026",
        None,
        204,
        names=PATH,
    ),
    row(
        "POST",
        "/v1/keys",
        ADMIN,
        None,
        {"name": "k", "scopes": ["surveys:read"], "org": "{org}"},
        201,
        names=BODY,
    ),
    row("GET", "/v1/keys", ADMIN),
    row("DELETE", "/v1/keys/{key_id}", ADMIN, "/v1/keys/{key}", names=Names.key),
    row("GET", "/v1/audit", ADMIN),
    row("GET", "/metrics", ADMIN),
    # Executives, purviews, their targets, schemes and closes are the evaluation office's:
    # an org-bound key that may otherwise write them is refused (403), even for its own.
    row("POST", "/v1/executives", EVAL_W, None, {"code": "E-NEW", "name": "New"}, 201, 403),
    row("GET", "/v1/executives", EVAL_R),
    row("GET", "/v1/executives/{code}", EVAL_R, "/v1/executives/{executive}", names=EXEC),
    row(
        "PATCH",
        "/v1/executives/{code}",
        EVAL_W,
        "/v1/executives/{executive}",
        {"title": "Chief"},
        200,
        403,
        names=EXEC,
        hidden=403,
    ),
    row(
        "PUT",
        "/v1/executives/{code}/purview/{period}",
        EVAL_W,
        "/v1/executives/{executive}/purview/2026",
        {"orgs": ["KR-DELIVERY-SEOUL"]},
        200,
        403,
        names=EXEC,
        hidden=403,
    ),
    row(
        "GET",
        "/v1/executives/{code}/purview/{period}",
        EVAL_R,
        "/v1/executives/{executive}/purview/2026",
        names=EXEC,
    ),
    row(
        "DELETE",
        "/v1/executives/{code}/purview/{period}",
        EVAL_W,
        "/v1/executives/{executive}/purview/2026",
        None,
        204,
        403,
        names=EXEC,
        hidden=403,
    ),
    row(
        "PUT",
        "/v1/executives/{code}/targets/{period}",
        EVAL_W,
        "/v1/executives/{executive}/targets/2026",
        {"csi": 75},
        200,
        403,
        names=EXEC,
        hidden=403,
    ),
    row(
        "GET",
        "/v1/executives/{code}/targets/{period}",
        EVAL_R,
        "/v1/executives/{executive}/targets/2026",
        names=EXEC,
    ),
    row(
        "DELETE",
        "/v1/executives/{code}/targets/{period}",
        EVAL_W,
        "/v1/executives/{executive}/targets/2026",
        None,
        204,
        403,
        names=EXEC,
        hidden=403,
    ),
    row(
        "GET",
        "/v1/executives/{code}/scorecard",
        EVAL_R,
        "/v1/executives/{executive}/scorecard?period=2026",
        names=EXEC,
    ),
    row(
        "POST",
        ORG + "/tasks",
        EVAL_W,
        "/v1/orgs/{org}/tasks",
        {"title": "New task", "period": "2026", "customer_group": "internal", "due": "2026-12-01"},
        201,
        names=PATH,
    ),
    row("GET", ORG + "/tasks", EVAL_R, "/v1/orgs/{org}/tasks", names=PATH),
    row("GET", "/v1/tasks/{task_id}", EVAL_R, "/v1/tasks/{task}", names=TASK),
    row("PATCH", "/v1/tasks/{task_id}", EVAL_W, "/v1/tasks/{task}", {"evidence": "x"}, names=TASK),
    row("GET", "/v1/evaluations/{period}", EVAL_R, "/v1/evaluations/2026"),
    row(
        "POST", "/v1/evaluations/{period}/close", EVAL_W, "/v1/evaluations/2026/close", {}, 200, 403
    ),
    row(
        "POST",
        "/v1/evaluations/{period}/reopen",
        EVAL_W,
        "/v1/evaluations/2025-12/reopen",
        {"reason": "a correction"},
        200,
        403,
    ),
    row(
        "GET",
        "/v1/evaluations/{period}/versions/{version}",
        EVAL_R,
        "/v1/evaluations/2025-12/versions/1",
    ),
    row("GET", "/v1/evaluations/{period}/scheme", EVAL_R, "/v1/evaluations/2026/scheme"),
    row(
        "PUT",
        "/v1/evaluations/{period}/scheme",
        EVAL_W,
        "/v1/evaluations/2026/scheme",
        {"index_weight": 1, "task_weight": 1},
        200,
        201,
        403,
    ),
    row(
        "POST",
        "/v1/invitations",
        INV_W,
        None,
        {
            "survey": "delivery-csat",
            "org": "{org}",
            "source": "matrix",
            "external_id": "new-invitation",
            "occurred_at": "2026-02-10T10:00:00+00:00",
            "customer": {"ref": "someone-new", "type": "end_user"},
        },
        201,
        names=BODY,
    ),
    row("GET", "/v1/invitations", INV_R),
    row("GET", "/v1/invitations", INV_R, "/v1/invitations?org={org}", names=QUERY, variant="org"),
    row("GET", "/v1/invitations/{invitation_id}", INV_R, "/v1/invitations/{invitation}", names=INV),
    row(
        "DELETE",
        "/v1/invitations/{invitation_id}",
        INV_W,
        "/v1/invitations/{invitation}",
        None,
        204,
        names=INV,
    ),
    row(
        "GET",
        ORG + "/invitations/stats",
        INV_R,
        "/v1/orgs/{org}/invitations/stats?period=2026",
        names=PATH,
    ),
    row("GET", "/v1/sampling", ADMIN),
    row("PUT", "/v1/sampling/{source}", ADMIN, "/v1/sampling/shop", {"rate": 0.5}, 200, 201),
    row("GET", "/v1/sampling/{source}", ADMIN, "/v1/sampling/seeded"),
    row("DELETE", "/v1/sampling/{source}", ADMIN, "/v1/sampling/seeded", None, 204),
    row("PUT", "/v1/contact-rules", ADMIN, None, {"min_days": 1}),
    row("GET", "/v1/contact-rules", ADMIN),
    row("GET", "/v1/surveys/{code}/case-rule", SURVEYS_R, "/v1/surveys/delivery-csat/case-rule"),
    row(
        "PUT",
        "/v1/surveys/{code}/case-rule",
        SURVEYS_W,
        "/v1/surveys/delivery-csat/case-rule",
        {"at_most": 2, "sla_hours": 24},
    ),
    row(
        "DELETE",
        "/v1/surveys/{code}/case-rule",
        SURVEYS_W,
        "/v1/surveys/delivery-csat/case-rule",
        None,
        204,
    ),
    row(
        "POST",
        "/v1/webhooks",
        ADMIN,
        None,
        {"url": "https://93.184.216.34/hook", "events": ["case.opened"]},
        201,
        403,
    ),
    row("GET", "/v1/webhooks", ADMIN, None, None, 200, 403),
    row("GET", "/v1/webhooks/{webhook_id}", ADMIN, WEBHOOK, None, 200, 403),
    row("PATCH", "/v1/webhooks/{webhook_id}", ADMIN, WEBHOOK, {"enabled": True}, 200, 403),
    row("DELETE", "/v1/webhooks/{webhook_id}", ADMIN, WEBHOOK, None, 204, 403),
    row(
        "POST",
        "/v1/webhooks/{webhook_id}/rotate-secret",
        ADMIN,
        WEBHOOK + "/rotate-secret",
        None,
        200,
        403,
    ),
    row(
        "GET",
        "/v1/webhooks/{webhook_id}/deliveries",
        ADMIN,
        WEBHOOK + "/deliveries",
        None,
        200,
        403,
    ),
    row(
        "POST",
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
        ADMIN,
        f"{WEBHOOK}/deliveries/{SEEDED_ID}/retry",
        None,
        200,
        403,
    ),
    row(
        "GET",
        ORG + "/index/segments",
        INS_R,
        "/v1/orgs/{org}/index/segments?period=2026&key=tier",
        names=PATH,
    ),
    row("GET", ORG + "/pain-points", INS_R, "/v1/orgs/{org}/pain-points?period=2026", names=PATH),
    row(
        "GET",
        ORG + "/drivers",
        INS_R,
        "/v1/orgs/{org}/drivers?period=2026&survey=delivery-csat",
        names=PATH,
    ),
    row("GET", "/v1/cases", CASES_R),
    row("GET", "/v1/cases", CASES_R, "/v1/cases?org={org}", names=QUERY, variant="org"),
    row("GET", "/v1/cases/{case_id}", CASES_R, "/v1/cases/{case}", names=CASE),
    row("PATCH", "/v1/cases/{case_id}", CASES_W, "/v1/cases/{case}", {"note": "x"}, names=CASE),
    row(
        "GET",
        ORG + "/cases/stats",
        CASES_R,
        "/v1/orgs/{org}/cases/stats?period=2026",
        names=PATH,
    ),
)
SCOPED = [r for r in MATRIX if r.scope is not None]

# Routes that answer without a key, on purpose.
PROBES = frozenset(
    {"/livez", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
# A customer's browser, with an invitation's token instead of a key (tests/invitations/).
TOKEN_ROUTES = frozenset(
    {
        "/v1/public/invitations/{token}",
        "/v1/public/invitations/{token}/response",
        "/v1/public/invitations/{token}/opt-out",
    }
)
# The dashboard: a browser with a session cookie instead of a key. Its signed-out, scope and
# bound-key behaviour is held route by route in tests/ui/test_pages.py
# (test_every_dashboard_route_is_signed_in_or_public_on_purpose).
DASHBOARD = frozenset(
    {"/ui", "/ui/sign-in", "/ui/sign-out", "/ui/tree", "/ui/orgs/{code}", "/ui/evaluations",
     "/ui/static"}
)  # fmt: skip
PUBLIC = PROBES | TOKEN_ROUTES | DASHBOARD


# Completeness: every route of the app has a row (or is public on purpose).


def _walk(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI >= 0.16x keeps included routers as branches
            yield from _walk(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                yield method, prefix + route.path_format  # {ref:path} is {ref}
        elif isinstance(route, Mount) and not getattr(route, "routes", None):
            yield "*", prefix + route.path  # a mounted ASGI app answers every method
        elif hasattr(route, "routes"):  # a mounted router
            yield from _walk(route.routes, prefix + getattr(route, "path", ""))


def app_operations() -> set[tuple[str, str]]:
    """Every (method, path) the app serves outside PUBLIC, by app.routes and by OpenAPI."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/unused",
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )
    application = create_app(settings)
    served = {(m, p) for m, p in _walk(application.routes) if p not in PUBLIC}
    documented = {
        (method.upper(), path)
        for path, ops in application.openapi()["paths"].items()
        if path not in PUBLIC
        for method in ops
    }
    # OpenAPI may leave a route out (include_in_schema=False) but may not name one the walk missed.
    assert documented <= served, sorted(documented - served)
    return served


def test_matrix_covers_every_route() -> None:
    operations = app_operations()
    assert len(operations) >= 30
    rows = [(r.method, r.route, r.variant) for r in MATRIX]
    assert len(rows) == len(set(rows)), "duplicate rows"
    table = {(r.method, r.route) for r in MATRIX}
    missing = {
        (m, p)
        for m, p in operations
        if not ((m, p) in table or (m == "*" and any(route == p for _, route in table)))
    }
    assert not missing, f"routes without a row in the authorization matrix: {sorted(missing)}"
    served_paths = {p for m, p in operations if m == "*"}
    stale = {(m, p) for m, p in table if (m, p) not in operations and p not in served_paths}
    assert not stale, f"rows for routes that do not exist: {sorted(stale)}"


def test_every_org_bound_row_has_a_placeholder() -> None:
    for r in MATRIX:
        if r.names is None:
            assert "{org}" not in r.url + json.dumps(r.body), r.id
        else:
            assert r.names.placeholder in r.url + json.dumps(r.body), r.id


# The data every test starts from, built once per module.

TREE = dict(STANDARD_TREE)
CODES = tuple(TREE)
GHOST = {
    "{org}": "GHOST",
    "{response}": "999999999999",
    "{key}": "ffffffffffff",
    "{customer}": "cust-GHOST",
    "{executive}": "E-GHOST",
    "{task}": "999999999999",
    "{invitation}": "999999999999",
    "{case}": "999999999999",
}


def subtree(code: str) -> set[str]:
    return {c for c in CODES if c == code or code in ancestors(c)}


def ancestors(code: str) -> list[str]:
    out = []
    parent = TREE[code]
    while parent is not None:
        out.append(parent)
        parent = TREE[parent]
    return out


@dataclass
class World:
    """The seeded data: per org one response (ext-CODE, cust-CODE), one key and a 2026 target."""

    conn: AsyncConnection
    app: Any
    client: httpx.AsyncClient
    admin: dict[str, str]
    admin_key_id: str
    responses: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)
    invitations: dict[str, str] = field(default_factory=dict)
    cases: dict[str, str] = field(default_factory=dict)
    unbound_key_id: str = ""

    def value(self, names: Names, code: str) -> str:
        """What a request puts in the placeholder to name `code` (or its object)."""
        if names is Names.response:
            return self.responses[code]
        if names is Names.key:
            return self.keys[code]
        if names is Names.customer:
            return f"cust-{code}"
        if names is Names.executive:
            return f"E-{code}"
        if names is Names.task:
            return self.tasks[code]
        if names is Names.invitation:
            return self.invitations[code]
        if names is Names.case:
            return self.cases[code]
        return code

    def foreign_tokens(self, bound: str) -> set[str]:
        """Words that name something outside `bound`'s subtree."""
        tokens = {self.admin_key_id, self.unbound_key_id, "key-of-nobody"}
        for code in set(CODES) - subtree(bound):
            tokens |= {code, f"Org {code}", f"ext-{code}", f"said-in-{code}", f"key-of-{code}"}
            tokens.add(f"inv-{code}")
            tokens.add(self.keys[code])
        return tokens

    async def key(self, *scopes: Scope, org: str | None = None) -> dict[str, str]:
        async with self.app.state.sessionmaker() as session, session.begin():
            issued = await create_key(session, name="case", scopes=list(scopes), org_code=org)
        return bearer(issued.secret_key)


def seeded_item(code: str, **overrides: Any) -> dict[str, Any]:
    return response_body(
        org=code,
        external_id=f"ext-{code}",
        occurred_at="2026-02-10T10:00:00+00:00",
        customer={"ref": f"cust-{code}", "type": "end_user"},
        answers={"overall": 4, "comment": f"said-in-{code}"},
        **overrides,
    )


async def seed(world: World) -> None:
    client, admin = world.client, world.admin
    await standard_setup(client, admin)
    # Every seeded response (overall 4) opens a case.
    r = await client.put(
        "/v1/surveys/delivery-csat/case-rule",
        json={"at_most": 4, "sla_hours": 24, "max_age_days": 3650},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/responses/batch", json={"items": [seeded_item(c) for c in CODES]}, headers=admin
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created"] * len(CODES), r.text
    world.responses = {c: x["id"] for c, x in zip(CODES, results, strict=True)}
    r = await client.get("/v1/cases?limit=500", headers=admin)
    by_response = {c["response_id"]: c["id"] for c in r.json()["items"]}
    world.cases = {code: by_response[rid] for code, rid in world.responses.items()}
    for code in (*CODES, None):
        r = await client.post(
            "/v1/keys",
            json={"name": f"key-of-{code or 'nobody'}", "scopes": ["surveys:read"], "org": code},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        if code is None:
            world.unbound_key_id = r.json()["id"]
        else:
            world.keys[code] = r.json()["id"]
    for code in CODES:
        r = await client.put(f"/v1/orgs/{code}/targets/2026", json={"csi": 70}, headers=admin)
        assert r.status_code == 200, r.text
    # A past with other placements: in 1990 every org was a root.
    for effective, parents in (("1990-01-01", dict.fromkeys(CODES)), ("1991-01-01", TREE)):
        for code in CODES[1:]:
            r = await client.patch(
                f"/v1/orgs/{code}",
                json={"parent": parents[code], "effective": effective},
                headers=admin,
            )
            assert r.status_code == 200, r.text
    for code, weight in (("HQ", 2), ("US", 3)):
        r = await client.put(
            f"/v1/orgs/{code}/stage-weights", json={"delivery": weight}, headers=admin
        )
        assert r.status_code == 200, r.text
    # Per org: an executive answering for it in 2026 (with a target), and a task of it.
    for i, code in enumerate(CODES):
        r = await client.post(
            "/v1/executives", json={"code": f"E-{code}", "name": f"Person {i}"}, headers=admin
        )
        assert r.status_code == 201, r.text
        for url, body in (
            (f"/v1/executives/E-{code}/purview/2026", {"orgs": [code]}),
            (f"/v1/executives/E-{code}/targets/2026", {"csi": 70}),
        ):
            r = await client.put(url, json=body, headers=admin)
            assert r.status_code == 201, r.text
        r = await client.post(
            f"/v1/orgs/{code}/tasks",
            json={
                "title": f"Task {i}",
                "period": "2026",
                "customer_group": "internal",
                "due": "2026-12-31",
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        world.tasks[code] = r.json()["id"]
    # Per org: a pending invitation; a sampling rule to read and delete.
    for code in CODES:
        r = await client.post(
            "/v1/invitations",
            json={
                "survey": "delivery-csat",
                "org": code,
                "source": "matrix",
                "external_id": f"inv-{code}",
                "occurred_at": "2026-02-10T10:00:00+00:00",
                "customer": {"ref": f"cust-{code}", "type": "end_user"},
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        world.invitations[code] = r.json()["id"]
    r = await client.put("/v1/sampling/seeded", json={"rate": 0.5}, headers=admin)
    assert r.status_code == 201, r.text
    # A webhook with one delivery, both under a known id.
    r = await client.post(
        "/v1/webhooks",
        json={"url": "https://93.184.216.34/hook", "events": ["evaluation.closed"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    hook_id = int(r.json()["id"])
    await world.conn.exec_driver_sql(
        "UPDATE webhooks SET id = $1 WHERE id = $2", (SEEDED_ID, hook_id)
    )
    # A closed period, with HQ's executive in it.
    r = await client.put("/v1/executives/E-HQ/purview/2025-12", json={"orgs": ["HQ"]},
                         headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.post("/v1/evaluations/2025-12/close", json={}, headers=admin)
    assert r.status_code == 200, r.text
    # The close made the webhook's one delivery.
    await world.conn.exec_driver_sql("UPDATE webhook_deliveries SET id = $1", (SEEDED_ID,))


@pytest.fixture(scope="module")
async def world(settings: Settings, engine: AsyncEngine) -> AsyncIterator[World]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        try:
            application = create_app(settings, engine=engine)
            application.state.sessionmaker = async_sessionmaker(
                bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
            )
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                async with application.state.sessionmaker() as session, session.begin():
                    issued = await create_key(session, name="world-admin", scopes=[Scope.admin])
                w = World(
                    conn=conn,
                    app=application,
                    client=client,
                    admin=bearer(issued.secret_key),
                    admin_key_id=issued.key.id,
                )
                await seed(w)
                yield w
        finally:
            await outer.rollback()


@pytest.fixture
async def w(world: World) -> AsyncIterator[World]:
    """The world, with whatever the test does rolled back after it."""
    savepoint = await world.conn.begin_nested()
    try:
        yield world
    finally:
        await savepoint.rollback()


# Helpers.

_SNAPSHOT = text(
    "SELECT "
    + ", ".join(
        f"(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t)"
        for table in (
            "orgs",
            "org_placements",
            "surveys",
            "survey_versions",
            "responses",
            "tombstones",
            "stage_weights",
            "targets",
            "api_keys",
            "executives",
            "purviews",
            "executive_targets",
            "tasks",
            "evaluation_schemes",
            "evaluation_periods",
            "evaluation_versions",
            "evaluation_scorecards",
            "invitations",
            "sampling_rules",
            "contact_rules",
            "opt_outs",
            "cases",
            "case_rules",
            "webhooks",
            "webhook_deliveries",
        )
    )
)


async def snapshot(w: World) -> tuple[Any, ...]:
    """A digest of every table a request could change."""
    return tuple((await w.conn.execute(_SNAPSHOT)).one())


def _word(token: str) -> str:
    return rf"(?<![A-Za-z0-9._-]){re.escape(token)}(?![A-Za-z0-9._-])"


def mentions(text_: str, token: str) -> bool:
    return re.search(_word(token), text_) is not None


def assert_no_foreign(text_: str, w: World, bound: str, named: str | None = None) -> None:
    """Nothing of another subtree in `text_`, except what the client named itself."""
    leaked = sorted(t for t in w.foreign_tokens(bound) - {named} if mentions(text_, t))
    assert not leaked, f"{leaked} leaked in {text_}"


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


async def send(
    w: World, r: Row, headers: dict[str, str], code: str = "KR", *, value: str | None = None
) -> httpx.Response:
    """Send row `r` naming org `code` (or its object), or the literal placeholder `value`."""
    url, body = r.request(value if value is not None else w.value(r.names or PATH, code))
    return await w.client.request(r.method, url, json=body, headers=headers)


# 401: every route, every unusable credential.

CREDENTIALS = ("none", "wrong scheme", "malformed", "unknown id", "wrong secret", "revoked")


async def credential(w: World, kind: str, scope: Scope) -> dict[str, str]:
    """Headers with a credential of `kind`; real keys among them hold `scope`."""
    if kind == "none":
        return {}
    if kind == "wrong scheme":
        valid = (await w.key(scope))["Authorization"].removeprefix("Bearer ")
        return {"Authorization": f"Basic {valid}"}
    if kind == "malformed":
        return {"Authorization": "Bearer not-a-cx-key"}
    if kind == "unknown id":
        return bearer(f"cx_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}")
    key = (await w.key(scope))["Authorization"].removeprefix("Bearer ")
    key_id = key.split("_")[1]
    if kind == "wrong secret":
        return bearer(f"cx_{key_id}_{secrets.token_urlsafe(32)}")
    assert kind == "revoked"
    r = await w.client.delete(f"/v1/keys/{key_id}", headers=w.admin)
    assert r.status_code == 200, r.text
    return bearer(key)


@pytest.mark.parametrize("kind", CREDENTIALS)
@pytest.mark.parametrize("r", MATRIX, ids=lambda r: r.id)
async def test_unusable_credential_is_401(w: World, r: Row, kind: str) -> None:
    headers = await credential(w, kind, r.scope or Scope.admin)
    before = await snapshot(w)
    assert_401(await send(w, r, headers))
    assert await snapshot(w) == before


# 403: a valid key without the scope, bound or not, whatever the org it names.


@pytest.mark.parametrize("r", SCOPED, ids=lambda r: r.id)
async def test_other_scopes_are_403(w: World, r: Row) -> None:
    others = [s for s in NON_ADMIN if s is not r.scope]
    keys = [await w.key(scope) for scope in others]
    # Even every other scope together is not enough, bound or not, inside or outside the subtree.
    keys.append(await w.key(*others))
    bound = await w.key(*others, org="KR")
    before = await snapshot(w)
    for headers in keys:
        assert_403(await send(w, r, headers))
    for code in ("KR", "US", "HQ"):
        assert_403(await send(w, r, bound, code))
    assert await snapshot(w) == before


# Admitted: the right scope, admin, any valid key where no scope is needed.


@pytest.mark.parametrize("r", MATRIX, ids=lambda r: r.id)
async def test_the_right_scope_is_admitted(w: World, r: Row) -> None:
    response = await send(w, r, await w.key(r.scope or Scope.responses_write))
    assert response.status_code in r.ok, response.text


@pytest.mark.parametrize("r", MATRIX, ids=lambda r: r.id)
async def test_admin_is_admitted(w: World, r: Row) -> None:
    response = await send(w, r, await w.key(Scope.admin))
    assert response.status_code in r.ok, response.text


@pytest.mark.parametrize("r", [r for r in MATRIX if r.scope is None], ids=lambda r: r.id)
@pytest.mark.parametrize("scope", NON_ADMIN, ids=str)
async def test_any_valid_key_is_admitted(w: World, r: Row, scope: Scope) -> None:
    response = await send(w, r, await w.key(scope))
    assert response.status_code in r.ok, response.text


# Org-bound keys: the subtree is the whole world.


@dataclass(frozen=True)
class Case:
    bound: str  # the org of the key
    relation: str
    target: str  # the org the request names (or whose object it names)

    @property
    def visible(self) -> bool:
        return self.target in subtree(self.bound)

    @property
    def id(self) -> str:
        return f"{self.bound}:{self.relation}"


CASES = (
    Case("KR", "own", "KR"),
    Case("KR", "descendant", "KR-DELIVERY-SEOUL"),
    Case("KR", "sibling", "US"),
    Case("KR", "sibling's child", "US-SERVICE"),
    Case("KR", "ancestor", "HQ"),
    Case("KR-DELIVERY-SEOUL", "sibling", "KR-DELIVERY-BUSAN"),
    Case("KR-DELIVERY-SEOUL", "ancestor", "KR"),
)
BOUND_CASES = [
    pytest.param(r, c, id=f"{r.id}-{c.id}")
    for r in MATRIX
    if r.names is not None
    for c in CASES
    if r.fixed_org is None or r.fixed_org in subtree(c.bound)
]


@pytest.mark.parametrize(("r", "case"), BOUND_CASES)
async def test_bound_key(w: World, r: Row, case: Case) -> None:
    assert r.names is not None
    headers = await w.key(r.scope or Scope.responses_read, org=case.bound)
    named = w.value(r.names, case.target)
    if case.visible:
        response = await send(w, r, headers, case.target)
        assert response.status_code in r.ok, response.text
        assert_no_foreign(response.text, w, case.bound)
        return
    before = await snapshot(w)
    response = await send(w, r, headers, case.target)
    assert response.status_code == r.hidden_status, response.text
    assert await snapshot(w) == before, "a request outside the subtree changed something"
    assert_no_foreign(response.text, w, case.bound, named)
    # Exactly the answer for something that does not exist at all, but for the name asked for.
    ghost_value = GHOST[r.names.placeholder]
    ghost = await send(w, r, headers, value=ghost_value)
    assert ghost.status_code == response.status_code, ghost.text
    assert re.sub(_word(named), ghost_value, response.text) == ghost.text
    assert ghost.headers["content-type"] == response.headers["content-type"]


@pytest.mark.parametrize("bound", ["KR", "KR-DELIVERY-SEOUL"])
@pytest.mark.parametrize("r", [r for r in MATRIX if r.names is None], ids=lambda r: r.id)
async def test_bound_key_naming_no_org(w: World, r: Row, bound: str) -> None:
    headers = await w.key(r.scope or Scope.responses_read, org=bound)
    response = await send(w, r, headers)
    assert response.status_code in r.ok, response.text
    assert_no_foreign(response.text, w, bound)


# Leaks: lists, rankings, batch results and erasure of an org-bound key hold its subtree only.


async def pages(w: World, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a paginated list, one item per page, with each decoded cursor after its page
    (as {"cursor": ...}): a cursor must not leak either."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        sep = "&" if "?" in url else "?"
        query = f"{sep}limit=1" + (f"&cursor={cursor}" if cursor else "")
        r = await w.client.get(url + query, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        items.append({"cursor": base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))})
        assert len(items) <= 1000, "pagination does not end"


def _items(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for x in listed if "cursor" not in x]


def _codes(node: dict[str, Any]) -> list[str]:
    return [node["code"], *(c for child in node["children"] for c in _codes(child))]


@pytest.mark.parametrize("bound", [None, "KR", "KR-DELIVERY-SEOUL"], ids=str)
async def test_lists_and_rankings_hold_exactly_the_subtree(w: World, bound: str | None) -> None:
    # None: an unbound admin, who sees everything (so that the checks are not vacuous).
    headers = await w.key(Scope.admin, org=bound)
    top = bound or "HQ"
    seen = subtree(top)
    texts: list[str] = []

    orgs = await pages(w, "/v1/orgs", headers)
    assert [o["code"] for o in _items(orgs)] == sorted(seen)
    texts.append(repr(orgs))
    children = (await w.client.get(f"/v1/orgs?parent={top}", headers=headers)).json()["items"]
    assert {o["code"] for o in children} == {c for c in CODES if TREE[c] == top}
    tree = (await w.client.get(f"/v1/orgs/{top}/subtree", headers=headers)).json()
    assert sorted(_codes(tree)) == sorted(seen)
    texts.append(json.dumps([children, tree]))

    responses = await pages(w, "/v1/responses", headers)
    assert sorted(x["id"] for x in _items(responses)) == sorted(w.responses[c] for c in seen)
    assert {x["external_id"] for x in _items(responses)} == {f"ext-{c}" for c in seen}
    texts.append(repr(responses))

    keys = (await w.client.get("/v1/keys", headers=headers)).json()["items"]
    expected_keys = {w.keys[c] for c in seen}
    if bound is None:
        expected_keys |= {w.admin_key_id, w.unbound_key_id}
    assert {k["id"] for k in keys if k["name"] != "case"} == expected_keys
    assert {k["org"] for k in keys if k["name"] == "case"} == {bound}
    texts.append(json.dumps(keys))

    index = (await w.client.get(f"/v1/orgs/{top}/index?period=2026", headers=headers)).json()
    assert index["n"] == len(seen), index
    ranking = (
        await w.client.get(f"/v1/orgs/{top}/index/children?period=2026", headers=headers)
    ).json()
    assert [c["org"] for c in ranking["items"]] == sorted(c for c in CODES if TREE[c] == top)
    assert sum(c["n"] for c in ranking["items"]) == len(seen) - 1
    series = (
        await w.client.get(
            f"/v1/orgs/{top}/index/series?granularity=quarter&from=2026-01-01&to=2027-01-01",
            headers=headers,
        )
    ).json()
    assert sum(p["n"] for p in series["items"]) == len(seen)
    weights = (await w.client.get(f"/v1/orgs/{top}/stage-weights", headers=headers)).json()
    targets = (await w.client.get(f"/v1/orgs/{top}/targets", headers=headers)).json()
    texts.append(json.dumps([index, ranking, series, weights, targets]))

    executives = await pages(w, "/v1/executives", headers)
    assert [e["code"] for e in _items(executives)] == sorted(f"E-{c}" for c in seen)
    evaluation = (await w.client.get("/v1/evaluations/2026", headers=headers)).json()
    assert sorted(c["executive"] for c in evaluation["scorecards"]) == sorted(
        f"E-{c}" for c in seen
    )
    closed = (await w.client.get("/v1/evaluations/2025-12", headers=headers)).json()
    assert [c["executive"] for c in closed["scorecards"]] == (["E-HQ"] if bound is None else [])
    tasks = await pages(w, f"/v1/orgs/{top}/tasks", headers)
    assert sorted(t["id"] for t in _items(tasks)) == sorted(w.tasks[c] for c in seen)
    texts.append(json.dumps([executives, evaluation, closed, tasks], default=str))

    everything = "\n".join(texts)
    if bound is None:
        assert all(mentions(everything, t) for t in ("US", "ext-US-SERVICE", "Org HQ"))
    else:
        assert_no_foreign(everything, w, bound)


@pytest.mark.parametrize("bound", [None, "KR", "KR-DELIVERY-SEOUL"], ids=str)
async def test_audit_log_holds_exactly_the_subtree(w: World, bound: str | None) -> None:
    headers = await w.key(Scope.admin, org=bound)
    seen = subtree(bound or "HQ")
    events = await pages(w, "/v1/audit", headers)
    orgs = {e["org"] for e in _items(events)}
    if bound is None:
        assert orgs == seen | {None}  # the unbound keys' events concern no org
        assert mentions(json.dumps(events, default=str), w.unbound_key_id)
    else:
        assert orgs == seen
        assert_no_foreign(json.dumps(events, default=str), w, bound)


async def test_batch_item_for_another_subtree_is_invalid_like_an_unknown_org(w: World) -> None:
    headers = await w.key(Scope.responses_write, org="KR")
    targets = ["KR", "KR-DELIVERY-SEOUL", "US", "US-SERVICE", "HQ", "GHOST"]
    items = [response_body(org=code, external_id=f"new-{code}") for code in targets]
    before = await snapshot(w)
    r = await w.client.post("/v1/responses/batch", json={"items": items}, headers=headers)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created"] * 2 + ["invalid"] * 4
    assert r.json()["counts"]["invalid"] == 4
    ghost = results[-1]
    assert ghost["errors"] == [{"loc": ["body", "items", 5, "org"], "msg": "unknown org 'GHOST'"}]
    for index, code in enumerate(targets[2:5], start=2):
        result = results[index]
        assert result.get("id") is None
        assert result["errors"] == [
            {"loc": ["body", "items", index, "org"], "msg": f"unknown org {code!r}"}
        ]
        assert_no_foreign(json.dumps(result), w, "KR", code)
    # Only the two valid items were stored.
    after = {x["external_id"] for x in _items(await pages(w, "/v1/responses", w.admin))}
    assert after - {f"ext-{c}" for c in CODES} == {"new-KR", "new-KR-DELIVERY-SEOUL"}
    assert await snapshot(w) != before


async def test_conflict_with_a_response_of_another_subtree_shows_nothing_of_it(w: World) -> None:
    # (source, external_id) is unique across the tree, so a key bound to KR that reuses the key
    # of a US response cannot be told "created"; but it must learn nothing more than the clash.
    headers = await w.key(Scope.responses_write, org="KR")
    clash = response_body(org="KR", external_id="ext-US")
    before = await snapshot(w)
    r = await w.client.post("/v1/responses/batch", json={"items": [clash]}, headers=headers)
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["status"] == "conflict"
    assert result.get("id") in (None, ""), f"the id of a US response leaked: {result}"
    single = await w.client.post("/v1/responses", json=clash, headers=headers)
    assert single.status_code == 409, single.text
    assert w.responses["US"] not in re.findall(r"\d+", single.json()["detail"])
    assert_no_foreign(single.text, w, "KR", "ext-US")
    assert await snapshot(w) == before


async def test_customer_erasure_by_a_bound_admin_stays_in_its_subtree(w: World) -> None:
    shared = {"ref": "cust-shared", "type": "end_user"}
    items = [
        response_body(org="KR-DELIVERY-SEOUL", external_id="shared-1", customer=shared),
        response_body(org="US-SERVICE", external_id="shared-2", customer=shared),
    ]
    r = await w.client.post("/v1/responses/batch", json={"items": items}, headers=w.admin)
    ids = [x["id"] for x in r.json()["results"]]
    headers = await w.key(Scope.admin, org="KR")
    r = await w.client.delete("/v1/customers/cust-shared/responses", headers=headers)
    assert r.json() == {"deleted": 1}
    assert (await w.client.get(f"/v1/responses/{ids[0]}", headers=w.admin)).status_code == 404
    assert (await w.client.get(f"/v1/responses/{ids[1]}", headers=w.admin)).status_code == 200
    # Erasing a US response by id from KR is not found, and leaves it (and no tombstone) alone.
    r = await w.client.delete(f"/v1/responses/{ids[1]}", headers=headers)
    assert r.status_code == 404
    again = await w.client.post("/v1/responses", json=items[1], headers=w.admin)
    assert again.status_code == 200, again.text


async def test_a_key_issued_by_a_bound_admin_is_bound_to_its_subtree(w: World) -> None:
    headers = await w.key(Scope.admin, org="KR")
    for body in (
        {"name": "k", "scopes": ["admin"]},
        {"name": "k", "scopes": ["admin"], "org": None},
    ):
        r = await w.client.post("/v1/keys", json=body, headers=headers)
        assert r.status_code == 201, r.text
        issued = r.json()
        assert issued["org"] == "KR"
        child = bearer(issued["key"])
        assert (await w.client.get("/v1/orgs/US", headers=child)).status_code == 404
        assert (await w.client.get("/v1/orgs/KR", headers=child)).json()["path"] == ["KR"]
    # Keys that are not bound lie outside every subtree.
    r = await w.client.delete(f"/v1/keys/{w.unbound_key_id}", headers=headers)
    assert r.status_code == 404
    r = await w.client.delete(f"/v1/keys/{w.admin_key_id}", headers=headers)
    assert r.status_code == 404
    assert (await w.client.get("/v1/stages", headers=w.admin)).status_code == 200


@pytest.mark.parametrize("path", sorted(PROBES))
async def test_public_routes_need_no_key(w: World, path: str) -> None:
    assert (await w.client.get(path)).status_code == 200


@pytest.mark.parametrize("path", sorted(TOKEN_ROUTES))
async def test_token_routes_take_a_token_not_a_key(w: World, path: str) -> None:
    method = "GET" if path.endswith("{token}") else "POST"
    body = {"answers": {"overall": 3}} if path.endswith("/response") else None
    before = await snapshot(w)
    for headers in ({}, w.admin):
        r = await w.client.request(
            method, path.replace("{token}", "A" * 32), json=body, headers=headers
        )
        assert r.status_code == 404, r.text  # a forged token; never a 401 asking for a key
        assert "www-authenticate" not in r.headers
    assert await snapshot(w) == before
