"""HTTP routes of executives, their purviews and their targets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.executives import service
from app.executives.schemas import (
    ExecutiveCreate,
    ExecutiveOut,
    ExecutivePatch,
    ExecutiveTargetOut,
    PurviewIn,
    PurviewOut,
)
from app.indices.periods import PERIOD_PATTERN
from app.indices.schemas import TargetIn
from app.platform.deps import EvaluationsReader, EvaluationsWriter, Pagination, SessionDep
from app.platform.pagination import Page, encode_cursor

router = APIRouter(prefix="/v1/executives", tags=["executives"])

CodePath = Annotated[str, Path(description="An executive code.")]
PeriodPath = Annotated[
    str,
    Path(description="2026, 2026-Q3 or 2026-09.", json_schema_extra={"pattern": PERIOD_PATTERN}),
]


def _status(response: Response, created: bool) -> None:
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_executive(
    body: ExecutiveCreate, session: SessionDep, principal: EvaluationsWriter, response: Response
) -> ExecutiveOut:
    """Create an executive (a key not bound to an org)."""
    executive = await service.create_executive(session, data=body, principal=principal)
    response.headers["Location"] = f"/v1/executives/{executive.code}"
    return ExecutiveOut.model_validate(executive)


@router.get("")
async def list_executives(
    session: SessionDep, principal: EvaluationsReader, page: Pagination
) -> Page[ExecutiveOut]:
    """Executives ordered by code (an org-bound key: those with a purview inside its subtree)."""
    rows, last = await service.list_executives(session, principal=principal, page=page)
    return Page(
        items=[ExecutiveOut.model_validate(e) for e in rows],
        next_cursor=encode_cursor([last]) if last is not None else None,
    )


@router.get("/{code}")
async def get_executive(
    code: CodePath, session: SessionDep, principal: EvaluationsReader
) -> ExecutiveOut:
    """One executive."""
    executive = await service.get_visible(session, code=code, principal=principal)
    return ExecutiveOut.model_validate(executive)


@router.patch("/{code}")
async def patch_executive(
    code: CodePath, body: ExecutivePatch, session: SessionDep, principal: EvaluationsWriter
) -> ExecutiveOut:
    """Change an executive's name or title."""
    executive = await service.patch_executive(session, code=code, data=body, principal=principal)
    return ExecutiveOut.model_validate(executive)


@router.put(
    "/{code}/purview/{period}",
    responses={201: {"model": PurviewOut, "description": "The purview was created"}},
)
async def put_purview(
    code: CodePath,
    period: PeriodPath,
    body: PurviewIn,
    session: SessionDep,
    principal: EvaluationsWriter,
    response: Response,
) -> PurviewOut:
    """Replace the orgs the executive answers for in `period` (1 to 50, in this order)."""
    out, created = await service.put_purview(
        session, code=code, period=period, orgs=body.orgs, principal=principal
    )
    _status(response, created)
    return out


@router.get("/{code}/purview/{period}")
async def get_purview(
    code: CodePath, period: PeriodPath, session: SessionDep, principal: EvaluationsReader
) -> PurviewOut:
    """The orgs the executive answers for in `period`."""
    return await service.get_purview(session, code=code, period=period, principal=principal)


@router.delete("/{code}/purview/{period}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_purview(
    code: CodePath, period: PeriodPath, session: SessionDep, principal: EvaluationsWriter
) -> Response:
    """Remove the purview: the executive leaves that period's evaluation."""
    await service.delete_purview(session, code=code, period=period, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/{code}/targets/{period}",
    responses={201: {"model": ExecutiveTargetOut, "description": "The target was created"}},
)
async def put_target(
    code: CodePath,
    period: PeriodPath,
    body: TargetIn,
    session: SessionDep,
    principal: EvaluationsWriter,
    response: Response,
) -> ExecutiveTargetOut:
    """Set the executive's CSI target for `period`."""
    out, created = await service.put_target(
        session, code=code, period=period, csi=body.csi, principal=principal
    )
    _status(response, created)
    return out


@router.get("/{code}/targets/{period}")
async def get_target(
    code: CodePath, period: PeriodPath, session: SessionDep, principal: EvaluationsReader
) -> ExecutiveTargetOut:
    """The executive's CSI target for `period`."""
    return await service.get_target(session, code=code, period=period, principal=principal)


@router.delete("/{code}/targets/{period}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_target(
    code: CodePath, period: PeriodPath, session: SessionDep, principal: EvaluationsWriter
) -> Response:
    """Remove the executive's target for `period`."""
    await service.delete_target(session, code=code, period=period, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
