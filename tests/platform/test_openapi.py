"""Operation ids: every operation served has its short, stable id from OPERATION_IDS."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, FastAPI

from app.platform.openapi import OPERATION_IDS, operation_id


def _served(app: Any) -> dict[tuple[str, str], str]:
    """(METHOD, path) → operationId of every operation in the app's document."""
    return {
        (method.upper(), path): operation["operationId"]
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
    }


async def test_every_operation_has_its_id_from_the_table(app: Any) -> None:
    served = _served(app)
    missing = sorted(f"{method} {path}" for method, path in served.keys() - OPERATION_IDS.keys())
    assert not missing, f"add these to OPERATION_IDS in app/platform/openapi.py: {missing}"
    assert served == {key: OPERATION_IDS[key] for key in served}
    stale = sorted(f"{method} {path}" for method, path in OPERATION_IDS.keys() - served.keys())
    assert not stale, f"OPERATION_IDS has rows for operations the app does not serve: {stale}"


def test_operation_ids_are_unique_camel_case() -> None:
    ids = list(OPERATION_IDS.values())
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates
    for value in ids:
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)+", value), value
    for method, path in OPERATION_IDS:
        assert method in {"GET", "PUT", "POST", "PATCH", "DELETE"}
        assert path.startswith("/")
        assert ":" not in path, "the document's path: {ref}, not the route's {ref:path}"


def test_a_route_missing_from_the_table_keeps_fastapis_id() -> None:
    # The app still starts with a route nobody added to the table; the test above fails.
    application = FastAPI(generate_unique_id_function=operation_id)
    router = APIRouter(prefix="/v1")

    @router.get("/orgs/{code}")
    async def get_org(code: str) -> dict[str, str]:
        return {"code": code}

    @router.get("/unlisted")
    async def unlisted() -> dict[str, str]:
        return {}

    @router.delete("/customers/{ref:path}/responses")
    async def erase(ref: str) -> dict[str, str]:
        return {}

    application.include_router(router)
    assert _served(application) == {
        ("GET", "/v1/orgs/{code}"): "getOrg",
        ("GET", "/v1/unlisted"): "unlisted_v1_unlisted_get",
        ("DELETE", "/v1/customers/{ref}/responses"): "deleteCustomerResponses",
    }
