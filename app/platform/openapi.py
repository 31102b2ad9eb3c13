"""The OpenAPI document, completed with the problem+json answers every operation can give.

FastAPI documents the success response and its own 422 (as application/json); our errors are
RFC 9457 problems. Every operation gets the error statuses it can answer, with the Problem
schema under application/problem+json, so that clients and conformance checkers see the truth.
Every operation also gets a short, stable operationId from one table: generated clients name
their functions after it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.utils import generate_unique_id

from app.idempotency.middleware import IDEMPOTENT_PATHS
from app.idempotency.service import HEADER_PATTERN
from app.platform.errors import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem; `type` is stable, see docs/errors.md.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                },
            },
        },
    },
}

_ALWAYS = {
    "404": "No such resource (or outside the key's subtree).",
    "405": "The path exists, not with this method.",
    "500": "A bug; it is logged.",
    "503": "The database is unavailable; retry after `Retry-After` seconds.",
}
# Answers of an operation that takes an API key (it declares the bearer scheme).
_SECURED = {
    "401": "Missing, malformed, unknown or revoked API key.",
    "403": "The key lacks the scope (or the source) this operation needs.",
    "429": "The key made too many requests; retry after `Retry-After` seconds.",
}
# Answers of an operation taking a body (JSON and size are checked on every POST, PUT, PATCH).
_BODY = {
    "400": "The request body cannot be parsed as JSON.",
    "413": "The request body is too large.",
    "415": "The body is not JSON.",
}
# Routes a customer's browser calls with an invitation token instead of a key.
PUBLIC_PREFIX = "/v1/public/"
_INVALID = "The request breaks a rule of the contract."
_CONFLICT = (
    "Conflicts with what is stored (a duplicate code, other content, a cycle, a closed period)."
)
_WRITES = frozenset({"post", "put", "patch", "delete"})
_BODY_METHODS = frozenset({"post", "put", "patch"})
_HEADERS: dict[str, dict[str, Any]] = {
    "401": {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with: `Bearer`.",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer"},
        }
    },
    "429": {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
    "503": {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}


# (method, path as the document shows it) → operationId: camelCase, verb first. Clients name
# their functions after these, so an id never changes once published; a new route adds a row
# (tests/platform/test_openapi.py fails for a route without one).
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("GET", "/livez"): "getLiveness",
    ("GET", "/readyz"): "getReadiness",
    ("GET", "/metrics"): "getMetrics",
    ("GET", "/v1/stages"): "listStages",
    ("POST", "/v1/orgs"): "createOrg",
    ("GET", "/v1/orgs"): "listOrgs",
    ("GET", "/v1/orgs/{code}"): "getOrg",
    ("PATCH", "/v1/orgs/{code}"): "updateOrg",
    ("GET", "/v1/orgs/{code}/subtree"): "getOrgSubtree",
    ("GET", "/v1/orgs/{code}/history"): "getOrgHistory",
    ("DELETE", "/v1/orgs/{code}/history/{effective}"): "deleteOrgPlacement",
    ("GET", "/v1/orgs/{code}/index"): "getOrgIndex",
    ("GET", "/v1/orgs/{code}/index/children"): "getOrgChildrenIndex",
    ("GET", "/v1/orgs/{code}/index/series"): "getOrgIndexSeries",
    ("GET", "/v1/orgs/{code}/stage-weights"): "getStageWeights",
    ("PUT", "/v1/orgs/{code}/stage-weights"): "putStageWeights",
    ("DELETE", "/v1/orgs/{code}/stage-weights"): "deleteStageWeights",
    ("GET", "/v1/orgs/{code}/targets"): "listOrgTargets",
    ("GET", "/v1/orgs/{code}/targets/{period}"): "getOrgTarget",
    ("PUT", "/v1/orgs/{code}/targets/{period}"): "putOrgTarget",
    ("DELETE", "/v1/orgs/{code}/targets/{period}"): "deleteOrgTarget",
    ("POST", "/v1/orgs/{code}/tasks"): "createTask",
    ("GET", "/v1/orgs/{code}/tasks"): "listOrgTasks",
    ("GET", "/v1/tasks/{task_id}"): "getTask",
    ("PATCH", "/v1/tasks/{task_id}"): "updateTask",
    ("POST", "/v1/surveys"): "createSurvey",
    ("GET", "/v1/surveys"): "listSurveys",
    ("GET", "/v1/surveys/{code}"): "getSurvey",
    ("PUT", "/v1/surveys/{code}"): "publishSurveyVersion",
    ("GET", "/v1/surveys/{code}/versions/{version}"): "getSurveyVersion",
    ("POST", "/v1/responses"): "postResponse",
    ("POST", "/v1/responses/batch"): "postResponseBatch",
    ("GET", "/v1/responses"): "listResponses",
    ("GET", "/v1/responses/{response_id}"): "getResponse",
    ("DELETE", "/v1/responses/{response_id}"): "deleteResponse",
    ("DELETE", "/v1/customers/{ref}/responses"): "deleteCustomerResponses",
    ("POST", "/v1/executives"): "createExecutive",
    ("GET", "/v1/executives"): "listExecutives",
    ("GET", "/v1/executives/{code}"): "getExecutive",
    ("PATCH", "/v1/executives/{code}"): "updateExecutive",
    ("GET", "/v1/executives/{code}/purview/{period}"): "getPurview",
    ("PUT", "/v1/executives/{code}/purview/{period}"): "putPurview",
    ("DELETE", "/v1/executives/{code}/purview/{period}"): "deletePurview",
    ("GET", "/v1/executives/{code}/targets/{period}"): "getExecutiveTarget",
    ("PUT", "/v1/executives/{code}/targets/{period}"): "putExecutiveTarget",
    ("DELETE", "/v1/executives/{code}/targets/{period}"): "deleteExecutiveTarget",
    ("GET", "/v1/executives/{code}/scorecard"): "getScorecard",
    ("GET", "/v1/evaluations/{period}"): "getEvaluation",
    ("POST", "/v1/evaluations/{period}/close"): "closeEvaluation",
    ("POST", "/v1/evaluations/{period}/reopen"): "reopenEvaluation",
    ("GET", "/v1/evaluations/{period}/versions/{version}"): "getEvaluationVersion",
    ("GET", "/v1/evaluations/{period}/scheme"): "getEvaluationScheme",
    ("PUT", "/v1/evaluations/{period}/scheme"): "putEvaluationScheme",
    ("POST", "/v1/invitations"): "createInvitation",
    ("GET", "/v1/invitations"): "listInvitations",
    ("GET", "/v1/invitations/{invitation_id}"): "getInvitation",
    ("DELETE", "/v1/invitations/{invitation_id}"): "cancelInvitation",
    ("GET", "/v1/orgs/{code}/invitations/stats"): "getInvitationStats",
    ("GET", "/v1/sampling"): "listSamplingRules",
    ("GET", "/v1/sampling/{source}"): "getSamplingRule",
    ("PUT", "/v1/sampling/{source}"): "putSamplingRule",
    ("DELETE", "/v1/sampling/{source}"): "deleteSamplingRule",
    ("GET", "/v1/contact-rules"): "getContactRules",
    ("PUT", "/v1/contact-rules"): "putContactRules",
    ("GET", "/v1/public/invitations/{token}"): "getPublicInvitation",
    ("POST", "/v1/public/invitations/{token}/response"): "submitPublicInvitation",
    ("POST", "/v1/public/invitations/{token}/opt-out"): "optOutPublicInvitation",
    ("GET", "/v1/surveys/{code}/case-rule"): "getCaseRule",
    ("PUT", "/v1/surveys/{code}/case-rule"): "putCaseRule",
    ("DELETE", "/v1/surveys/{code}/case-rule"): "deleteCaseRule",
    ("GET", "/v1/cases"): "listCases",
    ("GET", "/v1/cases/{case_id}"): "getCase",
    ("PATCH", "/v1/cases/{case_id}"): "updateCase",
    ("GET", "/v1/orgs/{code}/cases/stats"): "getCaseStats",
    ("GET", "/v1/orgs/{code}/pain-points"): "getPainPoints",
    ("GET", "/v1/orgs/{code}/index/segments"): "getSegmentIndex",
    ("GET", "/v1/orgs/{code}/drivers"): "getDrivers",
    ("POST", "/v1/webhooks"): "createWebhook",
    ("GET", "/v1/webhooks"): "listWebhooks",
    ("GET", "/v1/webhooks/{webhook_id}"): "getWebhook",
    ("PATCH", "/v1/webhooks/{webhook_id}"): "updateWebhook",
    ("DELETE", "/v1/webhooks/{webhook_id}"): "deleteWebhook",
    ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): "rotateWebhookSecret",
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): "listWebhookDeliveries",
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"): "retryWebhookDelivery",
    ("POST", "/v1/keys"): "createKey",
    ("GET", "/v1/keys"): "listKeys",
    ("DELETE", "/v1/keys/{key_id}"): "revokeKey",
    ("GET", "/v1/audit"): "listAuditEvents",
}


def operation_id(route: APIRoute) -> str:
    """The route's operationId from OPERATION_IDS (FastAPI's default for a route not in it)."""
    methods = route.methods or set()
    if len(methods) == 1:
        (method,) = methods
        # path_format is the path of the document: `{ref}` where the route says `{ref:path}`.
        known = OPERATION_IDS.get((method, route.path_format))
        if known is not None:
            return known
    return generate_unique_id(route)


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: a request repeated with the same key gets the first "
    "answer again (with `Idempotent-Replayed: true`); another request under a used key is 422, "
    "one while the first is still running 409. Kept 24 h. See docs/decisions.md.",
    "schema": {"type": "string", "pattern": HEADER_PATTERN},
}


def _errors(method: str, path: str, operation: dict[str, Any]) -> dict[str, str]:
    """The error statuses an operation can answer, each with what it means."""
    errors = dict(_ALWAYS)
    if operation.get("security"):
        errors.update(_SECURED)
    if path.startswith(PUBLIC_PREFIX):
        errors["429"] = "This client address made too many requests; retry after `Retry-After`."
    if method in _BODY_METHODS:
        errors.update(_BODY)
    if method in _WRITES:
        # Domain conflicts, and an Idempotency-Key still in flight.
        errors["409"] = _CONFLICT
    if method in _BODY_METHODS or operation.get("parameters") or operation.get("requestBody"):
        errors["422"] = _INVALID
    return errors


def _floor_min_n(operation: dict[str, Any], floor: int) -> None:
    """`min_n` may not go below the configured floor, which the code's schema cannot know."""
    for parameter in operation.get("parameters", []):
        if parameter["name"] == "min_n":
            for branch in parameter["schema"].get("anyOf", [parameter["schema"]]):
                if branch.get("type") == "integer":
                    branch["minimum"] = floor


def complete(app: FastAPI, *, min_n_floor: int) -> dict[str, Any]:
    """Build (once) the OpenAPI document with the problem answers of every operation."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method == "post" and path in IDEMPOTENT_PATHS:
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
            _floor_min_n(operation, min_n_floor)
            responses = operation.setdefault("responses", {})
            for status, description in _errors(method, path, operation).items():
                if status not in responses or status == "422":
                    # FastAPI's own 422 is application/json with its own shape; ours is a problem.
                    responses[status] = _problem(description)
            for status, answer in responses.items():
                if status.startswith(("4", "5")):
                    answer["content"] = {
                        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }
                    if status in _HEADERS:
                        answer["headers"] = _HEADERS[status]
    app.openapi_schema = schema
    return schema
