"""HTTP routes of insights: pain points and key drivers of an org's scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.indices import service as indices
from app.indices.router import From, Period, ScopeDep, To
from app.insights import service
from app.insights.schemas import DriverList, PainPoints
from app.orgs.service import get_visible
from app.platform.deps import InsightsReader, SessionDep
from app.platform.metrics import INDEX_SECONDS
from app.platform.schemas import CODE_PATTERN

router = APIRouter(prefix="/v1/orgs/{code}", tags=["insights"])

OrgCode = Annotated[str, Path(description="An org code.")]


@router.get("/pain-points")
async def get_pain_points(
    code: OrgCode,
    session: SessionDep,
    principal: InsightsReader,
    scope: ScopeDep,
    period: Period = None,
    start: From = None,
    end: To = None,
    low_below: Annotated[
        float, Query(ge=0, le=100, description="A response is low when its normalized primary "
                     "score is below this.")
    ] = 50,
) -> PainPoints:  # fmt: skip
    """Which choice answers the low responses give more often than all responses do."""
    window = indices.parse_window(period, start, end)
    org = await get_visible(session, code=code, principal=principal)
    with INDEX_SECONDS.labels("pain_points").time():
        return await service.pain_points(
            session, org=org, window=window, scope=scope, low_below=low_below
        )


@router.get("/drivers")
async def get_drivers(
    code: OrgCode,
    session: SessionDep,
    principal: InsightsReader,
    scope: ScopeDep,
    survey: Annotated[str, Query(pattern=CODE_PATTERN, description="A survey code.")],
    period: Period = None,
    start: From = None,
    end: To = None,
) -> DriverList:
    """How strongly each rating question of the survey goes with its primary, and how much of
    the primary it explains (Johnson's relative weights)."""
    window = indices.parse_window(period, start, end)
    org = await get_visible(session, code=code, principal=principal)
    with INDEX_SECONDS.labels("drivers").time():
        return await service.drivers(
            session, org=org, survey_code=survey, window=window, scope=scope
        )
