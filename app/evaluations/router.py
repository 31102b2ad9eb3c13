"""HTTP routes of schemes, scorecards, evaluations, closing and reopening."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from app.evaluations import service
from app.evaluations.schemas import CloseIn, Evaluation, ReopenIn, SchemeIn, SchemeOut, Scorecard
from app.indices.periods import PERIOD_PATTERN
from app.indices.router import TREE_QUERY_SCHEMA
from app.indices.service import parse_tree
from app.platform import clock
from app.platform.deps import EvaluationsReader, EvaluationsWriter, SessionDep, SettingsDep

router = APIRouter(tags=["evaluations"])

PeriodPath = Annotated[
    str,
    Path(description="2026, 2026-Q3 or 2026-09.", json_schema_extra={"pattern": PERIOD_PATTERN}),
]
JSON = "application/json"


def _answer(found: Any) -> Any:
    """Stored bytes go out as they are (byte-identical on every read); models as usual."""
    return Response(content=found, media_type=JSON) if isinstance(found, bytes) else found


@router.get("/v1/executives/{code}/scorecard", response_model=Scorecard)
async def get_scorecard(
    code: Annotated[str, Path(description="An executive code.")],
    session: SessionDep,
    principal: EvaluationsReader,
    settings: SettingsDep,
    period: Annotated[
        str,
        Query(
            description="A calendar period: 2026, 2026-Q3 or 2026-09.",
            json_schema_extra={"pattern": PERIOD_PATTERN},
        ),
    ],
    tree: Annotated[
        str | None,
        Query(
            description="history (default: each response in the tree of its own date),"
            " current or a date YYYY-MM-DD.",
            json_schema_extra=TREE_QUERY_SCHEMA,
        ),
    ] = None,
    live: Annotated[bool, Query(description="Compute now even when the period is closed.")] = False,
) -> Any:
    """The executive's scorecard for a period: the stored one while the period is closed."""
    choice = parse_tree(tree) if tree is not None else None
    found = await service.scorecard(
        session,
        code=code,
        period=period,
        choice=choice,
        live=live,
        principal=principal,
        today=clock.today(settings.zone),
        min_n=settings.min_n_default,
    )
    return _answer(found)


@router.get("/v1/evaluations/{period}", response_model=Evaluation)
async def get_evaluation(
    period: PeriodPath, session: SessionDep, principal: EvaluationsReader, settings: SettingsDep
) -> Any:
    """Every executive's scorecard for the period, ranked: live while open, stored when closed."""
    found = await service.evaluation(
        session,
        period=period,
        principal=principal,
        today=clock.today(settings.zone),
        min_n=settings.min_n_default,
    )
    return _answer(found)


@router.post("/v1/evaluations/{period}/close", response_model=Evaluation)
async def close_period(
    period: PeriodPath,
    session: SessionDep,
    principal: EvaluationsWriter,
    settings: SettingsDep,
    body: CloseIn | None = None,
) -> Any:
    """Freeze the period: store every scorecard as computed now, as the next version."""
    found = await service.close(
        session,
        period=period,
        note=body.note if body is not None else None,
        principal=principal,
        today=clock.today(settings.zone),
        min_n=settings.min_n_default,
    )
    return _answer(found)


@router.post("/v1/evaluations/{period}/reopen")
async def reopen_period(
    period: PeriodPath,
    body: ReopenIn,
    session: SessionDep,
    principal: EvaluationsWriter,
    settings: SettingsDep,
) -> Evaluation:
    """Open a closed period again (a reason is required); stored versions stay readable."""
    return await service.reopen(
        session,
        period=period,
        reason=body.reason,
        principal=principal,
        today=clock.today(settings.zone),
        min_n=settings.min_n_default,
    )


@router.get("/v1/evaluations/{period}/versions/{version}", response_model=Evaluation)
async def get_version(
    period: PeriodPath,
    version: Annotated[int, Path(ge=1, le=1_000_000, description="A stored version.")],
    session: SessionDep,
    principal: EvaluationsReader,
) -> Any:
    """A stored version of the period's evaluation, as it was closed."""
    found = await service.version_of(session, period=period, version=version, principal=principal)
    return _answer(found)


@router.get("/v1/evaluations/{period}/scheme")
async def get_scheme(
    period: PeriodPath, session: SessionDep, principal: EvaluationsReader
) -> SchemeOut:
    """The period's scheme (the default one when none is set)."""
    return await service.get_scheme(session, period=period)


@router.put(
    "/v1/evaluations/{period}/scheme",
    responses={201: {"model": SchemeOut, "description": "The scheme was created"}},
)
async def put_scheme(
    period: PeriodPath,
    body: SchemeIn,
    session: SessionDep,
    principal: EvaluationsWriter,
    response: Response,
) -> SchemeOut:
    """Set how the period's total weighs the index against the tasks (and the index's stages)."""
    out, created = await service.put_scheme(session, period=period, data=body, principal=principal)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return out
