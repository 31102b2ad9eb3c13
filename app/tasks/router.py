"""HTTP routes of CX tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.indices.periods import PERIOD_PATTERN
from app.orgs.service import get_visible
from app.platform.deps import (
    EvaluationsReader,
    EvaluationsWriter,
    Pagination,
    SessionDep,
    SettingsDep,
)
from app.platform.pagination import Page, encode_cursor
from app.tasks import service
from app.tasks.models import TaskStatus
from app.tasks.schemas import TaskCreate, TaskOut, TaskPatch

router = APIRouter(tags=["tasks"])

OrgCode = Annotated[str, Path(description="An org code.")]
TaskId = Annotated[str, Path(description="A task id.")]


@router.post(
    "/v1/orgs/{code}/tasks",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": TaskOut, "description": "The task with this external id"}},
)
async def create_task(
    code: OrgCode,
    body: TaskCreate,
    session: SessionDep,
    principal: EvaluationsWriter,
    settings: SettingsDep,
    response: Response,
) -> TaskOut:
    """Create a CX task of the org for a calendar period (measured when it has `measure`)."""
    org = await get_visible(session, code=code, principal=principal)
    task, created = await service.create_task(session, org=org, data=body, principal=principal)
    response.headers["Location"] = f"/v1/tasks/{task.id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return (
        await service.describe(session, [task], min_n=settings.min_n_default, viewer=principal)
    )[0]


@router.get("/v1/orgs/{code}/tasks")
async def list_tasks(
    code: OrgCode,
    session: SessionDep,
    principal: EvaluationsReader,
    settings: SettingsDep,
    page: Pagination,
    period: Annotated[
        str | None,
        Query(
            description="Only tasks of this period (2026, 2026-Q3, 2026-09).",
            json_schema_extra={"pattern": PERIOD_PATTERN},
        ),
    ] = None,
    task_status: Annotated[
        TaskStatus | None, Query(alias="status", description="Only tasks in this status.")
    ] = None,
    include_descendants: Annotated[
        bool, Query(description="Also the tasks of the org's subtree (default true).")
    ] = True,
) -> Page[TaskOut]:
    """The org's tasks (and its subtree's), by id, with their live `achieved`."""
    rows, last = await service.list_tasks(
        session,
        org_code=code,
        principal=principal,
        page=page,
        period=period,
        status=task_status,
        include_descendants=include_descendants,
    )
    return Page(
        items=await service.describe(session, rows, min_n=settings.min_n_default, viewer=principal),
        next_cursor=encode_cursor([last]) if last is not None else None,
    )


@router.get("/v1/tasks/{task_id}")
async def get_task(
    task_id: TaskId, session: SessionDep, principal: EvaluationsReader, settings: SettingsDep
) -> TaskOut:
    """One task, with its history and live `achieved`."""
    task = await service.get_visible_task(session, task_id=task_id, principal=principal)
    return (
        await service.describe(session, [task], min_n=settings.min_n_default, viewer=principal)
    )[0]


@router.patch("/v1/tasks/{task_id}")
async def patch_task(
    task_id: TaskId,
    body: TaskPatch,
    session: SessionDep,
    principal: EvaluationsWriter,
    settings: SettingsDep,
) -> TaskOut:
    """Change the task's status (any, except out of dropped), title, due date or weight, or
    add evidence; each change is appended to its history."""
    task = await service.patch_task(session, task_id=task_id, data=body, principal=principal)
    return (
        await service.describe(session, [task], min_n=settings.min_n_default, viewer=principal)
    )[0]
