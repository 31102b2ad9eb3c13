"""Publishing and reading survey versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.platform.errors import Conflict, NotFound, ValidationFailed
from app.platform.pagination import PageParams, after_code
from app.platform.schemas import is_code
from app.stages import Stage
from app.surveys.models import FIXED_SCALES, RATING_TYPES, QuestionType, Survey, SurveyVersion
from app.surveys.schemas import QuestionOut, SurveyIn, SurveyOut

if TYPE_CHECKING:
    from app.keys.service import Principal


class SurveyNotFound(NotFound):
    title = "Survey not found"


class DuplicateSurvey(Conflict):
    slug = "duplicate-survey"
    title = "A survey with this code exists already"


def check_definition(data: SurveyIn) -> None:
    """Rules across questions: unique keys, a required primary of a rating kind."""
    seen: set[str] = set()
    for i, question in enumerate(data.questions):
        if question.key in seen:
            raise ValidationFailed.at(
                ("body", "questions", i, "key"), f"duplicate question key {question.key!r}"
            )
        seen.add(question.key)
    primary = next((q for q in data.questions if q.key == data.primary), None)
    if primary is None:
        raise ValidationFailed.at(
            ("body", "primary"), f"primary {data.primary!r} is not one of the questions"
        )
    if primary.type not in RATING_TYPES:
        raise ValidationFailed.at(
            ("body", "primary"),
            "the primary question must be of a rating kind (csat, nps, ces or rating)",
        )
    if not primary.required:
        raise ValidationFailed.at(("body", "primary"), "the primary question must be required")


def _version_row(survey: Survey, version: int, data: SurveyIn) -> SurveyVersion:
    primary = next(q for q in data.questions if q.key == data.primary)
    scale = primary.scale
    assert scale is not None  # rating kinds always carry their scale after validation
    questions = [q.model_dump(exclude_none=True, mode="json") for q in data.questions]
    return SurveyVersion(
        survey_id=survey.id,
        version=version,
        title=data.title,
        primary_key=primary.key,
        primary_type=primary.type,
        scale_min=scale.min,
        scale_max=scale.max,
        questions=questions,
    )


def render(survey: Survey, version: SurveyVersion) -> SurveyOut:
    return SurveyOut(
        code=survey.code,
        version=version.version,
        title=version.title,
        stage=survey.stage,
        primary=version.primary_key,
        questions=[QuestionOut.model_validate(q) for q in version.questions],
        published_at=version.published_at,
    )


async def create_survey(
    session: AsyncSession, *, data: SurveyIn, principal: Principal | None = None
) -> SurveyOut:
    """Publish version 1 of a new survey (audited; no principal: the command line)."""
    check_definition(data)
    if await session.scalar(select(Survey.id).where(Survey.code == data.code)) is not None:
        raise DuplicateSurvey(f"A survey with code {data.code!r} exists already.")
    survey = Survey(code=data.code, stage=data.stage, latest_version=1)
    session.add(survey)
    await session.flush()
    version = _version_row(survey, 1, data)
    session.add(version)
    await session.flush()
    await session.refresh(version)
    await _record(session, audit.Action.survey_create, survey, principal)
    return render(survey, version)


def _same_definition(version: SurveyVersion, data: SurveyIn) -> bool:
    questions: list[dict[str, Any]] = [
        q.model_dump(exclude_none=True, mode="json") for q in data.questions
    ]
    return (
        version.title == data.title
        and version.primary_key == data.primary
        and version.questions == questions
    )


async def _record(
    session: AsyncSession, action: audit.Action, survey: Survey, principal: Principal | None
) -> None:
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=action,
        target=survey.code,
        details={"version": survey.latest_version, "stage": survey.stage.value},
    )


async def publish_version(
    session: AsyncSession, *, code: str, data: SurveyIn, principal: Principal | None = None
) -> tuple[SurveyOut, bool]:
    """Publish the next version; an identical body returns the latest one (PUT is idempotent)."""
    if data.code != code:
        raise ValidationFailed.at(("body", "code"), f"code must be {code!r}, as in the path")
    check_definition(data)
    survey = await session.scalar(select(Survey).where(Survey.code == code).with_for_update())
    if survey is None:
        raise SurveyNotFound(f"No survey with code {code!r}.")
    if data.stage != survey.stage:
        raise ValidationFailed.at(
            ("body", "stage"),
            f"a survey keeps its stage: {code!r} is a {survey.stage.value} survey",
        )
    latest = await _version(session, survey, survey.latest_version)
    if _same_definition(latest, data):
        return render(survey, latest), False
    survey.latest_version += 1
    version = _version_row(survey, survey.latest_version, data)
    session.add(version)
    await session.flush()
    await session.refresh(version)
    await _record(session, audit.Action.survey_publish, survey, principal)
    return render(survey, version), True


async def _version(session: AsyncSession, survey: Survey, number: int) -> SurveyVersion:
    version = await session.scalar(
        select(SurveyVersion).where(
            SurveyVersion.survey_id == survey.id, SurveyVersion.version == number
        )
    )
    if version is None:
        raise NotFound(f"Survey {survey.code!r} has no version {number}.")
    return version


async def get_survey(session: AsyncSession, *, code: str, version: int | None = None) -> SurveyOut:
    """The latest version of a survey, or the given one."""
    survey = None
    if is_code(code):
        survey = await session.scalar(select(Survey).where(Survey.code == code))
    if survey is None:
        raise SurveyNotFound(f"No survey with code {code!r}.")
    return render(survey, await _version(session, survey, version or survey.latest_version))


async def list_surveys(
    session: AsyncSession, *, stage: Stage | None, page: PageParams
) -> tuple[list[SurveyOut], str | None]:
    """Latest versions of surveys ordered by code, optionally of one stage."""
    query = select(Survey, SurveyVersion).join(
        SurveyVersion,
        (SurveyVersion.survey_id == Survey.id) & (SurveyVersion.version == Survey.latest_version),
    )
    if stage is not None:
        query = query.where(Survey.stage == stage)
    if page.after:
        query = query.where(Survey.code > after_code(page.after))
    rows = (await session.execute(query.order_by(Survey.code).limit(page.limit + 1))).all()
    more = len(rows) > page.limit
    items = [render(survey, version) for survey, version in rows[: page.limit]]
    return items, (items[-1].code if more else None)


def primary_scale(question_type: QuestionType, scale: dict[str, int] | None) -> tuple[int, int]:
    """The (min, max) of a rating question."""
    if question_type in FIXED_SCALES:
        return FIXED_SCALES[question_type]
    assert scale is not None
    return scale["min"], scale["max"]
