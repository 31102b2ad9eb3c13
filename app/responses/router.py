"""HTTP routes of responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from app.keys.service import Principal
from app.platform.deps import Pagination, ResponsesReader, ResponsesWriter, SessionDep, SettingsDep
from app.platform.errors import Conflict, Gone, ValidationFailed
from app.platform.metrics import INGESTED
from app.platform.pagination import Page, encode_cursor
from app.platform.schemas import CODE_PATTERN, Instant
from app.responses import service
from app.responses.coalescer import Coalescer
from app.responses.schemas import BatchIn, BatchOut, ResponseIn, ResponseOut
from app.stages import Stage

router = APIRouter(prefix="/v1/responses", tags=["responses"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ResponseOut, "description": "A retry of a stored response: nothing new."},
        410: {"description": "The response was erased or purged; it is not stored again."},
    },
)
async def post_response(
    body: ResponseIn, principal: ResponsesWriter, request: Request, response: Response
) -> ResponseOut:
    """Store one response (201); the same (source, external_id) and content again → 200."""
    stored, created = await post_single(request.app.state.coalescer, body, principal)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/responses/{stored.id}"
    return stored


async def post_single(
    coalescer: Coalescer, body: ResponseIn, principal: Principal
) -> tuple[ResponseOut, bool]:
    """One post, with the others of this moment in one transaction (app/responses/coalescer.py),
    counted by its outcome: (response, created)."""
    try:
        stored, created = await coalescer.post(body, principal)
    except (Conflict, Gone, ValidationFailed) as refused:
        outcome = (
            "conflict"
            if isinstance(refused, Conflict)
            else "gone"
            if isinstance(refused, Gone)
            else "invalid"
        )
        INGESTED.labels("single", outcome).inc()
        raise
    INGESTED.labels("single", "created" if created else "duplicate").inc()
    return stored, created


@router.post("/batch")
async def post_batch(
    body: BatchIn, session: SessionDep, principal: ResponsesWriter, settings: SettingsDep
) -> BatchOut:
    """Store 1 to 1,000 responses; each item is judged on its own, valid ones are committed."""
    result = await service.post_batch(
        session, items=body.items, principal=principal, settings=settings
    )
    for outcome, count in result.counts.model_dump().items():
        if count:
            INGESTED.labels("batch", outcome).inc(count)
    return result


@router.get("")
async def list_responses(
    session: SessionDep,
    principal: ResponsesReader,
    page: Pagination,
    org: Annotated[
        str | None, Query(pattern=CODE_PATTERN, description="Org (and, by default, its subtree).")
    ] = None,
    stage: Stage | None = None,
    start: Annotated[
        Instant | None, Query(alias="from", description="occurred_at ≥ this instant.")
    ] = None,
    end: Annotated[
        Instant | None, Query(alias="to", description="occurred_at < this instant.")
    ] = None,
    include_descendants: bool = True,
) -> Page[ResponseOut]:
    """Responses ordered by (occurred_at, id)."""
    if start is not None and end is not None and start >= end:
        raise ValidationFailed.at(("query", "to"), "'to' must be after 'from'")
    items, last = await service.list_responses(
        session,
        principal=principal,
        org_code=org,
        include_descendants=include_descendants,
        stage=stage,
        start=start,
        end=end,
        page=page,
    )
    return Page[ResponseOut](items=items, next_cursor=encode_cursor(last) if last else None)


@router.get("/{response_id}")
async def get_response(
    response_id: Annotated[str, Path(description="The response id.")],
    session: SessionDep,
    principal: ResponsesReader,
) -> ResponseOut:
    """One response."""
    return await service.get_response(session, response_id=response_id, principal=principal)
