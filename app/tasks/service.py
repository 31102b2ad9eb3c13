"""CX tasks of orgs: creating, changing (with history), reading, and whether they are achieved.

A measured task is achieved when the index of its org for its period, with the task's filters,
in the history tree, is not suppressed and reaches `csi_target`; a judged task when it is done.
The measured indices of many tasks are planned here and read by one statement
(`plan_measures`, `outcomes`), so that a list of tasks or a whole evaluation costs one read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.evaluations import guard
from app.indices import service as indices
from app.indices import store
from app.indices.periods import Window, parse_period
from app.keys.service import Principal
from app.orgs.models import Org
from app.orgs.service import get_visible
from app.platform import clock
from app.platform.errors import Conflict, NotFound, ValidationFailed
from app.platform.pagination import PageParams, after_id
from app.responses.models import CustomerType
from app.stages import Stage
from app.surveys.models import Survey, SurveyVersion
from app.tasks.models import Task, TaskStatus
from app.tasks.schemas import HistoryEntry, MeasureOut, TaskCreate, TaskOut, TaskPatch


class TaskNotFound(NotFound):
    title = "Task not found"


class TaskDropped(Conflict):
    slug = "task-dropped"
    title = "The task was dropped"


class TaskExists(Conflict):
    slug = "task-exists"
    title = "A task with this external id exists with other content"


# ---- measured tasks --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    achieved: bool | None
    csi: float | None


@dataclass(frozen=True, slots=True)
class Measured:
    """A measured task as the index engine reads it."""

    task_id: int
    org_id: int
    window: Window
    scope: indices.Scope
    weights: Mapping[Stage, float]
    csi_target: float


async def _survey_versions(session: AsyncSession, codes: set[str]) -> dict[str, list[int]]:
    if not codes:
        return {}
    rows = await session.execute(
        select(Survey.code, SurveyVersion.id)
        .join(SurveyVersion, SurveyVersion.survey_id == Survey.id)
        .where(Survey.code.in_(codes))
    )
    found: dict[str, list[int]] = {code: [] for code in codes}
    for code, version_id in rows:
        found[code].append(version_id)
    return found


async def plan_measures(
    session: AsyncSession, tasks: Sequence[Task], *, orgs: Mapping[int, Org], min_n: int
) -> list[Measured]:
    """The measured ones of `tasks`, ready to be planned (`orgs` holds every task's org)."""
    measured = [t for t in tasks if t.measure is not None]
    if not measured:
        return []
    versions = await _survey_versions(
        session, {str(t.measure["survey"]) for t in measured if t.measure and t.measure["survey"]}
    )
    weights = await indices.weights_for(session, [orgs[t.org_id] for t in measured])
    today = clock.now().date()  # not read: measured tasks count in the history tree
    plans = []
    for task in measured:
        measure = task.measure or {}
        channel, customer_type = measure.get("channel"), measure.get("customer_type")
        stages = measure.get("stages")
        survey = measure.get("survey")
        filters = store.Filters(
            stages=tuple(Stage(s) for s in stages) if stages else None,
            channels=(channel,) if channel is not None else None,
            customer_types=(CustomerType(customer_type),) if customer_type is not None else None,
            survey_versions=tuple(versions[survey]) if survey is not None else None,
        )
        plans.append(
            Measured(
                task_id=task.id,
                org_id=task.org_id,
                window=parse_period(task.period),
                scope=indices.Scope(
                    filters=filters,
                    include_descendants=True,
                    min_n=min_n,
                    tree=indices.HISTORY,
                    today=today,
                ),
                weights=weights[task.org_id],
                csi_target=float(measure["csi_target"]),
            )
        )
    return plans


def measure_pieces(
    view: Any, measured: Sequence[Measured], *, first_group: int
) -> list[store.Piece]:
    """The pieces of every measured task, task i counted for group `first_group + i`."""
    return [
        piece
        for i, m in enumerate(measured)
        for piece in indices.pieces(view, [m.org_id], m.window, m.scope, group=first_group + i)
    ]


def outcomes(
    tasks: Sequence[Task],
    measured: Sequence[Measured],
    stats: store.Stats,
    *,
    first_group: int,
) -> dict[int, Outcome]:
    """Whether each task is achieved (and its measured csi), from the statistics read."""
    found = {t.id: Outcome(t.status == TaskStatus.done, None) for t in tasks}
    for i, m in enumerate(measured):
        result = indices.index_of(stats.get((first_group + i, None), {}), m.weights, m.scope)
        achieved = None if result.csi is None else result.csi >= m.csi_target
        found[m.task_id] = Outcome(achieved, result.csi)
    return found


async def live_outcomes(
    session: AsyncSession, tasks: Sequence[Task], *, orgs: Mapping[int, Org], min_n: int
) -> dict[int, Outcome]:
    """Whether each of `tasks` is achieved now (one read for all measured ones)."""
    measured = await plan_measures(session, tasks, orgs=orgs, min_n=min_n)
    stats: store.Stats = {}
    if measured:
        stats, _, _ = await indices.read(
            session, plan=lambda view: measure_pieces(view, measured, first_group=0)
        )
    return outcomes(tasks, measured, stats, first_group=0)


# ---- rendering -------------------------------------------------------------------------------


def render(task: Task, org_code: str, outcome: Outcome, hidden: set[str]) -> TaskOut:
    """The task as the API shows it; actors in `hidden` read as keys outside the subtree."""
    measure = task.measure
    return TaskOut(
        id=str(task.id),
        org=org_code,
        title=task.title,
        period=task.period,
        customer_group=task.customer_group,
        customers=task.customers,
        description=task.description,
        due=task.due,
        weight=task.weight,
        measure=MeasureOut.model_validate(measure) if measure is not None else None,
        status=task.status,
        achieved=outcome.achieved,
        csi=outcome.csi,
        external_id=task.external_id,
        history=[
            HistoryEntry.model_validate(
                {**entry, "actor": audit.OUTSIDE_KEY} if entry["actor"] in hidden else entry
            )
            for entry in task.history
        ],
        created_at=task.created_at,
        updated_at=task.updated_at,
    )


async def describe(
    session: AsyncSession, tasks: Sequence[Task], *, min_n: int, viewer: Principal
) -> list[TaskOut]:
    """Render tasks with their live `achieved` (one read for all the measured ones), as the
    viewer may see them (actors outside its subtree unnamed)."""
    org_ids = {t.org_id for t in tasks}
    orgs = {o.id: o for o in await session.scalars(select(Org).where(Org.id.in_(org_ids)))}
    found = await live_outcomes(session, tasks, orgs=orgs, min_n=min_n)
    actors = {entry["actor"] for t in tasks for entry in t.history}
    hidden = await audit.hidden_actors(session, actors, viewer)
    return [render(t, orgs[t.org_id].code, found[t.id], hidden) for t in tasks]


# ---- writes ----------------------------------------------------------------------------------


def _measure_json(data: TaskCreate) -> dict[str, Any] | None:
    if data.measure is None:
        return None
    m = data.measure
    return {
        "csi_target": m.csi_target,
        "stages": list(dict.fromkeys(s.value for s in m.stages)) if m.stages else None,
        "customer_type": m.customer_type.value if m.customer_type else None,
        "channel": m.channel,
        "survey": m.survey,
    }


def _origin(data: TaskCreate, period: str, measure: dict[str, Any] | None) -> bytes:
    """The creation content, normalized: what a repeated create with an external id compares."""
    body = data.model_dump(mode="json", exclude={"org"})
    body.update(period=period, measure=measure, weight=float(data.weight))
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()


def _entry(
    principal: Principal | None, status: TaskStatus, evidence: str | None, changed: list[str]
) -> dict[str, Any]:
    return {
        "at": clock.now().isoformat(),
        "actor": audit.actor_of(principal),
        "status": status.value,
        "evidence": evidence,
        "changed": changed,
    }


def check_task_period(period: str) -> str:
    try:
        return parse_period(period).period or period
    except ValueError as exc:
        raise ValidationFailed.at(("body", "period"), str(exc)) from exc


async def create_task(
    session: AsyncSession, *, org: Org, data: TaskCreate, principal: Principal | None
) -> tuple[Task, bool]:
    """Create a task of `org` (audited); with an external id that exists, the task stored when
    the content is the same (False: nothing created), 409 otherwise."""
    period = check_task_period(data.period)
    measure = _measure_json(data)
    origin = _origin(data, period, measure)
    if data.external_id is not None:
        existing = await session.scalar(
            select(Task).where(Task.org_id == org.id, Task.external_id == data.external_id)
        )
        if existing is not None:
            if existing.origin != origin:
                raise TaskExists(
                    f"Org {org.code!r} has a task with external id {data.external_id!r}"
                    " and other content."
                )
            return existing, False
    if measure is not None and measure["survey"] is not None:
        exists = await session.scalar(select(Survey.id).where(Survey.code == measure["survey"]))
        if exists is None:
            raise ValidationFailed.at(
                ("body", "measure", "survey"), f"unknown survey {measure['survey']!r}"
            )
    await guard.writable(session, period)
    task = Task(
        org_id=org.id,
        period=period,
        title=data.title,
        customer_group=data.customer_group,
        customers=data.customers,
        description=data.description,
        due=data.due,
        weight=float(data.weight),
        measure=measure,
        status=TaskStatus.planned,
        history=[_entry(principal, TaskStatus.planned, None, ["created"])],
        external_id=data.external_id,
        origin=origin,
    )
    try:
        async with session.begin_nested():
            session.add(task)
            await session.flush()
    except IntegrityError:
        # The same external id, created by a concurrent request meanwhile: judged as a repeat.
        existing = await session.scalar(
            select(Task).where(Task.org_id == org.id, Task.external_id == data.external_id)
        )
        if existing is None or existing.origin != origin:
            raise TaskExists(
                f"Org {org.code!r} has a task with external id {data.external_id!r}"
                " and other content."
            ) from None
        return existing, False
    await session.refresh(task)
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.task_create,
        target=str(task.id),
        org_id=org.id,
        details={"org": org.code, "period": period, "title": task.title},
    )
    return task, True


async def get_visible_task(session: AsyncSession, *, task_id: str, principal: Principal) -> Task:
    """The task `task_id` if the key sees its org; 404 otherwise."""
    task = None
    if task_id.isascii() and task_id.isdigit() and 0 < int(task_id) < 2**63:
        task = await session.get(Task, int(task_id))
    if task is not None and principal.org_id is not None:
        path = await session.scalar(select(Org.path).where(Org.id == task.org_id))
        task = task if path is not None and principal.sees(path) else None
    if task is None:
        raise TaskNotFound(f"No task with id {task_id!r}.")
    return task


async def patch_task(
    session: AsyncSession, *, task_id: str, data: TaskPatch, principal: Principal
) -> Task:
    """Change a task's status, title, due date or weight, or add evidence; every change is
    appended to its history (audited). A dropped task takes no change (409)."""
    task = await get_visible_task(session, task_id=task_id, principal=principal)
    for field in data.model_fields_set:
        if getattr(data, field) is None:
            raise ValidationFailed.at(("body", field), f"{field} may not be null")
    await guard.writable(session, task.period)
    # The task as it is now, locked: concurrent changes queue, none is lost, and none passes
    # a drop committed meanwhile.
    locked = await session.scalar(
        select(Task)
        .where(Task.id == task.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert locked is not None
    task = locked
    if task.status == TaskStatus.dropped:
        raise TaskDropped(f"Task {task.id} was dropped: it takes no change.")
    changed: list[str] = [
        field
        for field in ("status", "title", "due", "weight")
        if field in data.model_fields_set and getattr(data, field) != getattr(task, field)
    ]
    if not changed and data.evidence is None:
        return task  # nothing changes: nothing to record
    for field in changed:
        value = getattr(data, field)
        setattr(task, field, float(value) if field == "weight" else value)
    if data.evidence is not None:
        changed.append("evidence")
    task.history = [*task.history, _entry(principal, task.status, data.evidence, changed)]
    task.updated_at = clock.now()
    await session.flush()
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.task_update,
        target=str(task.id),
        org_id=task.org_id,
        details={
            "changed": changed,
            **{f: _plain(getattr(task, f)) for f in changed if f != "evidence"},
        },
    )
    return task


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


async def list_tasks(
    session: AsyncSession,
    *,
    org_code: str,
    principal: Principal,
    page: PageParams,
    period: str | None,
    status: TaskStatus | None,
    include_descendants: bool,
) -> tuple[list[Task], int | None]:
    """Tasks of the org (and, by default, of its subtree as it is now), by id; and the last id
    when more follow."""
    org = await get_visible(session, code=org_code, principal=principal)
    query = select(Task).order_by(Task.id).limit(page.limit + 1)
    if include_descendants:
        query = query.join(Org, Org.id == Task.org_id).where(Org.path.contains([org.id]))
    else:
        query = query.where(Task.org_id == org.id)
    if period is not None:
        try:
            label = parse_period(period).period or period
        except ValueError as exc:
            raise ValidationFailed.at(("query", "period"), str(exc)) from exc
        query = query.where(Task.period == label)
    if status is not None:
        query = query.where(Task.status == status)
    if page.after is not None:
        query = query.where(Task.id > after_id(page.after))
    rows = list(await session.scalars(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, rows[-1].id if more and rows else None


async def tasks_of(session: AsyncSession, *, org_ids: Sequence[int], period: str) -> list[Task]:
    """The tasks of these orgs themselves for `period`, dropped ones left out, by id."""
    rows = await session.scalars(
        select(Task)
        .where(Task.org_id.in_(org_ids), Task.period == period, Task.status != TaskStatus.dropped)
        .order_by(Task.id)
    )
    return list(rows)
