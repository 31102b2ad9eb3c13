"""API fuzzing: schemathesis drives every operation of the app's own OpenAPI, in process (ASGI).

Every operation the document lists becomes one test; each starts from a freshly seeded database
(the standard org tree, a survey, responses, weights, a target, a spare key) so that generated
requests get past 404s. Schemathesis's default checks must all pass: no 5xx; statuses, content
types and bodies as the document declares them; schema-invalid input refused with a 4xx; no
operation that declares a key answering without one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.ext.asyncio import AsyncEngine

from app.invitations import tokens
from app.main import create_app
from app.platform.config import DEV_TOKEN_KEY, Environment, Settings
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.factories import STANDARD_TREE, response_body, standard_setup

ORGS = [code for code, _ in STANDARD_TREE]
SPARE_KEY_ID = "0000000000aa"  # the key the fuzzer may revoke; its own key is never guessed
SEEDED_RESPONSES = len(ORGS)  # ids 1..6: every test starts on tables emptied with RESTART IDENTITY
CUSTOMER = "customer-42"
# The seeded invitation (id 1) gets this salt, so that its token is known before the run.
INVITATION_SALT = bytes(16)
INVITATION_TOKEN = tokens.make(DEV_TOKEN_KEY, invitation_id=1, salt=INVITATION_SALT)


class DeferredApp:
    """An ASGI app that forwards to the one `fuzz_app` binds.

    The schema is loaded when the module is collected, the database exists only once fixtures run.
    """

    def __init__(self) -> None:
        self.target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "fuzz_app binds the application first"
        await self.target(scope, receive, send)


def _document() -> dict[str, Any]:
    """The app's OpenAPI document (building it touches no database)."""
    placeholder = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        pseudonym_key=TEST_PSEUDONYM_KEY,
        database_url="postgresql+asyncpg://postgres@127.0.0.1:1/unused",
    )
    return create_app(placeholder).openapi()


DEFERRED = DeferredApp()
CONFIG = schemathesis.Config.from_dict(
    {
        # Realistic values for path parameters, drawn often enough to reach real resources; the
        # generator still draws its own values (and only invalid ones in negative cases).
        "dictionaries": {
            "orgs": {"values": ORGS},
            "surveys": {"values": ["delivery-csat"]},
            "responses": {"values": [str(i) for i in range(1, SEEDED_RESPONSES + 1)]},
            "periods": {"values": ["2026", "2026-Q4", "2026-11"]},
            "keys": {"values": [SPARE_KEY_ID]},
            "customers": {"values": [CUSTOMER]},
            "versions": {"values": [1]},
            "years": {"values": ["2026-01-01"]},
            "next-years": {"values": ["2027-01-01"]},
            "stage-lists": {"values": ["delivery", "purchase,delivery"]},
            "customer-types": {"values": ["end_user", "end_user,internal"]},
            "min-ns": {"values": [5, 30]},
            "channels": {"values": ["mobile", "mobile,web"]},
            "executives": {"values": ["E-KIM"]},
            "tasks": {"values": ["1"]},
            "invitations": {"values": ["1"]},
            "cases": {"values": ["1", "2"]},
            "webhooks": {"values": ["1"]},
            "segment-keys": {"values": ["tier"]},
            "deliveries": {"values": ["1"]},
            "tokens": {"values": [INVITATION_TOKEN]},
            "sources": {"values": ["delivery-app"]},
        },
        # OpenAPI does not close the set of query parameters, and the service ignores unknown
        # ones (as clients expect of an evolving API): an extra parameter is not invalid data.
        "generation": {"allow-extra-parameters": False},
        "parameters": {
            "path.response_id": {"dictionary": "responses", "probability": 0.6},
            "path.period": {"dictionary": "periods", "probability": 0.6},
            "path.key_id": {"dictionary": "keys", "probability": 0.5},
            "path.ref": {"dictionary": "customers", "probability": 0.5},
            "path.version": {"dictionary": "versions", "probability": 0.6},
            "path.task_id": {"dictionary": "tasks", "probability": 0.6},
            "path.invitation_id": {"dictionary": "invitations", "probability": 0.6},
            "path.case_id": {"dictionary": "cases", "probability": 0.6},
            "path.webhook_id": {"dictionary": "webhooks", "probability": 0.6},
            "path.delivery_id": {"dictionary": "deliveries", "probability": 0.6},
            "path.token": {"dictionary": "tokens", "probability": 0.7},
            "path.source": {"dictionary": "sources", "probability": 0.6},
            # Query parameters of the index operations (`from`/`to` elsewhere are instants,
            # which these dates do not match: there they are left to the generator).
            "query.period": {"dictionary": "periods", "probability": 0.6},
            "query.from": {"dictionary": "years", "probability": 0.5},
            "query.to": {"dictionary": "next-years", "probability": 0.5},
            "query.stages": {"dictionary": "stage-lists", "probability": 0.8},
            "query.channel": {"dictionary": "channels", "probability": 0.8},
            "query.customer_type": {"dictionary": "customer-types", "probability": 0.8},
            "query.min_n": {"dictionary": "min-ns", "probability": 0.8},
            "body.org": {"dictionary": "orgs", "probability": 0.7},
            "body.parent": {"dictionary": "orgs", "probability": 0.5},
            "body.survey": {"dictionary": "surveys", "probability": 0.7},
            "query.survey": {"dictionary": "surveys", "probability": 0.7},
            "query.key": {"dictionary": "segment-keys", "probability": 0.7},
        },
        "operations": [
            {
                "include-path-regex": "^/v1/orgs/",
                "parameters": {"path.code": {"dictionary": "orgs", "probability": 0.7}},
            },
            {
                "include-path-regex": "^/v1/executives/",
                "parameters": {"path.code": {"dictionary": "executives", "probability": 0.7}},
            },
            {
                "include-path-regex": "^/v1/surveys/",
                "parameters": {"path.code": {"dictionary": "surveys", "probability": 0.7}},
            },
        ],
    }
)
schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)
schema.app = DEFERRED


@pytest.fixture(scope="module")
def fuzz_app(settings: Settings) -> Iterator[Any]:
    """The app under test; schemathesis runs it on an event loop of its own, so its own engine."""
    # No background fold: the teardown's TRUNCATE must not wait on it.
    DEFERRED.target = create_app(
        settings.model_copy(update={"fold_interval_seconds": 0, "webhook_poll_seconds": 0})
    )
    try:
        yield DEFERRED
    finally:
        asgi.shutdown_lifespans()  # disposes the app's engine
        DEFERRED.target = None


@pytest.fixture
async def fuzz_headers(
    fuzz_app: Any,
    engine: AsyncEngine,
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
) -> dict[str, str]:
    """Seed the database and return the fuzzer's admin key; committed_app empties it after."""
    await standard_setup(committed_client, committed_admin)
    # Every seeded response opens a case (ids 1, 2, ...).
    r = await committed_client.put(
        "/v1/surveys/delivery-csat/case-rule",
        json={"at_most": 5, "sla_hours": 24, "max_age_days": 3650},
        headers=committed_admin,
    )
    assert r.status_code == 201, r.text
    for i, org in enumerate(ORGS):
        body = response_body(
            org=org, external_id=f"seed-{i}", customer={"ref": CUSTOMER, "type": "end_user"}
        )
        r = await committed_client.post("/v1/responses", json=body, headers=committed_admin)
        assert r.status_code == 201, r.text
    r = await committed_client.put(
        "/v1/orgs/KR/stage-weights", json={"delivery": 2.0}, headers=committed_admin
    )
    assert r.status_code == 200, r.text
    r = await committed_client.put(
        "/v1/orgs/HQ/targets/2026", json={"csi": 70.0}, headers=committed_admin
    )
    assert r.status_code == 200, r.text
    # An executive answering for KR in 2026 and 2026-11 (closed), with a task (id 1).
    seeds: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/executives", {"code": "E-KIM", "name": "Kim"}),
        ("PUT", "/v1/executives/E-KIM/purview/2026", {"orgs": ["KR", "KR-DELIVERY-SEOUL"]}),
        ("PUT", "/v1/executives/E-KIM/purview/2026-11", {"orgs": ["KR"]}),
        (
            "POST",
            "/v1/orgs/KR/tasks",
            {"title": "t", "period": "2026", "customer_group": "internal", "due": "2026-12-01"},
        ),
        # A webhook (id 1) that the close gives a delivery (id 1).
        (
            "POST",
            "/v1/webhooks",
            {"url": "https://93.184.216.34/h", "events": ["evaluation.closed"]},
        ),
        ("POST", "/v1/evaluations/2026-11/close", {}),
        # An invitation (id 1, its token known: see INVITATION_SALT) and a sampling rule.
        (
            "POST",
            "/v1/invitations",
            {
                "survey": "delivery-csat",
                "org": "KR-DELIVERY-SEOUL",
                "source": "delivery-app",
                "external_id": "invited-1",
                "occurred_at": "2026-11-20T10:00:00+09:00",
                "customer": {"ref": "customer-7", "type": "end_user"},
            },
        ),
        ("PUT", "/v1/sampling/delivery-app", {"rate": 1}),
    ]
    for method, url, seed in seeds:
        r = await committed_client.request(method, url, json=seed, headers=committed_admin)
        assert r.is_success, r.text
    r = await committed_client.post(
        "/v1/keys", json={"name": "spare", "scopes": ["surveys:read"]}, headers=committed_admin
    )
    assert r.status_code == 201, r.text
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE api_keys SET id = $1 WHERE id = $2", (SPARE_KEY_ID, r.json()["id"])
        )
        await conn.exec_driver_sql(
            "UPDATE invitations SET salt = $1 WHERE id = 1", (INVITATION_SALT,)
        )
    return committed_admin


@schema.parametrize()
@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    # fuzz_headers seeds once per operation on purpose: examples of one operation share its data.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_every_operation_conforms(case: schemathesis.Case, fuzz_headers: dict[str, str]) -> None:
    # Every default check but positive_data_acceptance: the contract refuses, with 422, what a
    # JSON schema cannot express (unknown orgs and surveys, from < to, survey cross-field rules,
    # forged cursors), so a schema-valid request may rightly be refused.
    case.call_and_validate(headers=fuzz_headers, excluded_checks=[positive_data_acceptance])
