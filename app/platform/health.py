"""Liveness and readiness probes, and the Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.deps import Admin
from app.platform.errors import ServiceUnavailable
from app.platform.metrics import exposition, observe_pool

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/livez")
async def livez() -> Health:
    """The process is up (no dependency is checked)."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"description": "The database is not reachable."}})
async def readyz(request: Request) -> Health:
    """The service can reach its database."""
    engine: AsyncEngine = request.app.state.engine
    try:
        async with asyncio.timeout(2):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable("The database is not reachable.") from exc
    return Health(status="ok")


@router.get(
    "/metrics",
    tags=["metrics"],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request, _: Admin) -> Response:
    """Prometheus metrics of the service, summed over its worker processes (admin)."""
    observe_pool(request.app.state.engine)
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
