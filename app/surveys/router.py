"""HTTP routes of survey definitions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.platform.deps import Pagination, SessionDep, SurveysReader, SurveysWriter
from app.platform.pagination import Page, encode_cursor
from app.stages import Stage
from app.surveys import service
from app.surveys.schemas import SurveyIn, SurveyOut

router = APIRouter(prefix="/v1/surveys", tags=["surveys"])

SurveyCode = Annotated[str, Path(description="A survey code.")]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_survey(
    body: SurveyIn, session: SessionDep, principal: SurveysWriter, response: Response
) -> SurveyOut:
    """Create a survey; its first version is 1."""
    survey = await service.create_survey(session, data=body, principal=principal)
    response.headers["Location"] = f"/v1/surveys/{survey.code}/versions/1"
    return survey


@router.put(
    "/{code}",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": SurveyOut, "description": "Same as the latest version: unchanged."}},
)
async def publish_version(
    code: SurveyCode,
    body: SurveyIn,
    session: SessionDep,
    principal: SurveysWriter,
    response: Response,
) -> SurveyOut:
    """Publish the next version (201); a body equal to the latest version changes nothing (200)."""
    survey, created = await service.publish_version(
        session, code=code, data=body, principal=principal
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/surveys/{survey.code}/versions/{survey.version}"
    return survey


@router.get("")
async def list_surveys(
    session: SessionDep,
    _: SurveysReader,
    page: Pagination,
    stage: Annotated[Stage | None, Query(description="Only surveys of this stage.")] = None,
) -> Page[SurveyOut]:
    """The latest version of every survey, ordered by code."""
    items, last = await service.list_surveys(session, stage=stage, page=page)
    return Page[SurveyOut](items=items, next_cursor=encode_cursor([last]) if last else None)


@router.get("/{code}")
async def get_survey(code: SurveyCode, session: SessionDep, _: SurveysReader) -> SurveyOut:
    """The latest version of a survey."""
    return await service.get_survey(session, code=code)


@router.get("/{code}/versions/{version}")
async def get_survey_version(
    code: SurveyCode,
    version: Annotated[int, Path(ge=1, le=1_000_000)],
    session: SessionDep,
    _: SurveysReader,
) -> SurveyOut:
    """One published version of a survey."""
    return await service.get_survey(session, code=code, version=version)
