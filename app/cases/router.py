"""HTTP routes of case rules (under surveys) and cases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.cases import service
from app.cases.models import CaseStatus
from app.cases.schemas import CaseOut, CasePatch, CaseRuleIn, CaseRuleOut, CaseStats
from app.indices import service as indices
from app.indices.router import From, Period, To, TreeQuery
from app.indices.store import Filters
from app.orgs.service import get_visible
from app.platform import clock
from app.platform.deps import (
    CasesReader,
    CasesWriter,
    Pagination,
    SessionDep,
    SettingsDep,
    SurveysReader,
    SurveysWriter,
)
from app.platform.errors import ValidationFailed
from app.platform.pagination import Page, encode_cursor
from app.platform.schemas import CODE_PATTERN, Instant

router = APIRouter(tags=["cases"])

SurveyCode = Annotated[str, Path(description="A survey code.")]
CaseId = Annotated[str, Path(description="The case id.")]


@router.get("/v1/surveys/{code}/case-rule")
async def get_case_rule(code: SurveyCode, session: SessionDep, _: SurveysReader) -> CaseRuleOut:
    """The survey's case rule."""
    return await service.get_rule(session, code=code)


@router.put(
    "/v1/surveys/{code}/case-rule",
    responses={201: {"model": CaseRuleOut, "description": "The rule was created."}},
)
async def put_case_rule(
    code: SurveyCode,
    body: CaseRuleIn,
    session: SessionDep,
    principal: SurveysWriter,
    response: Response,
) -> CaseRuleOut:
    """Open a case for every later response whose primary raw answer is at most `at_most`."""
    rule, created = await service.put_rule(session, code=code, body=body, principal=principal)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return rule


@router.delete("/v1/surveys/{code}/case-rule", status_code=status.HTTP_204_NO_CONTENT)
async def delete_case_rule(
    code: SurveyCode, session: SessionDep, principal: SurveysWriter
) -> Response:
    """Remove the rule: later responses open no case (cases opened stay)."""
    await service.delete_rule(session, code=code, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/cases")
async def list_cases(
    session: SessionDep,
    principal: CasesReader,
    page: Pagination,
    org: Annotated[
        str | None, Query(pattern=CODE_PATTERN, description="Org (and its subtree).")
    ] = None,
    status_: Annotated[CaseStatus | None, Query(alias="status")] = None,
    overdue: bool | None = None,
    start: Annotated[
        Instant | None, Query(alias="from", description="opened_at ≥ this instant.")
    ] = None,
    end: Annotated[
        Instant | None, Query(alias="to", description="opened_at < this instant.")
    ] = None,
) -> Page[CaseOut]:
    """Cases ordered by (opened_at, id)."""
    if start is not None and end is not None and start >= end:
        raise ValidationFailed.at(("query", "to"), "'to' must be after 'from'")
    items, last = await service.list_cases(
        session,
        principal=principal,
        org_code=org,
        status=status_,
        overdue=overdue,
        start=start,
        end=end,
        page=page,
    )
    return Page[CaseOut](items=items, next_cursor=encode_cursor(last) if last else None)


@router.get("/v1/cases/{case_id}")
async def get_case(case_id: CaseId, session: SessionDep, principal: CasesReader) -> CaseOut:
    """One case."""
    return await service.get_case(session, case_id=case_id, principal=principal)


@router.patch("/v1/cases/{case_id}")
async def update_case(
    case_id: CaseId, body: CasePatch, session: SessionDep, principal: CasesWriter
) -> CaseOut:
    """Move a case along open → acknowledged → resolved → closed (or reopen a resolved one),
    set its root cause or assignee, add a note."""
    case, _ = await service.update_case(session, case_id=case_id, body=body, principal=principal)
    return case


@router.get("/v1/orgs/{code}/cases/stats")
async def get_case_stats(
    code: Annotated[str, Path(description="An org code.")],
    session: SessionDep,
    principal: CasesReader,
    settings: SettingsDep,
    period: Period = None,
    start: From = None,
    end: To = None,
    tree: TreeQuery = None,
) -> CaseStats:
    """The cases opened in the window, orgs as in the index, and what became of them."""
    window = indices.parse_window(period, start, end)
    scope = indices.Scope(
        filters=Filters(),
        include_descendants=True,
        min_n=settings.min_n_default,
        tree=indices.parse_tree(tree),
        today=clock.today(settings.zone),
    )
    org = await get_visible(session, code=code, principal=principal)
    return await service.stats(session, org=org, window=window, scope=scope, zone=settings.zone)
