"""The OpenAPI document, completed with the problem+json answers every operation can give.

FastAPI documents the success response and its own 422 (as application/json); our errors are
RFC 9457 problems. Every operation gets the error statuses it can answer, with the Problem
schema under application/problem+json, so that clients and conformance checkers see the truth.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.errors import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "An RFC 9457 problem; `type` is stable, see docs/errors.md.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
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
_API = {
    "400": "The request cannot be parsed.",
    "401": "Missing, malformed, unknown or revoked API key.",
    "403": "The key lacks the scope (or the source) this operation needs.",
    "413": "The request body is too large.",
    "409": "Conflicts with what is stored (a duplicate code, other content, a cycle).",
    "410": "The response was erased; it is not stored again.",
    "415": "The body is not JSON.",
    "422": "The request breaks a rule of the contract.",
    "429": "The key made too many requests; retry after `Retry-After` seconds.",
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def complete(app: FastAPI) -> dict[str, Any]:
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
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            errors = {**_ALWAYS, **(_API if path.startswith("/v1/") else {})}
            for status, description in errors.items():
                if status not in responses or status == "422":
                    responses[status] = _problem(description)
                else:
                    responses[status].setdefault("content", {})[PROBLEM_JSON] = {
                        "schema": {"$ref": "#/components/schemas/Problem"}
                    }
    app.openapi_schema = schema
    return schema
