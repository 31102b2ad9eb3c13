"""Case rules of surveys; cases: read, list, change along the state machine, count."""

from __future__ import annotations

import statistics
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.cases import rules
from app.cases.models import Case, CaseRule, CaseStatus
from app.cases.schemas import (
    CaseOut,
    CasePatch,
    CaseRuleIn,
    CaseRuleOut,
    CaseStats,
    Note,
    RootCauseCount,
)
from app.indices import service as indices
from app.indices.periods import Window
from app.keys.service import Principal
from app.orgs import tree
from app.orgs.models import Org
from app.orgs.service import within
from app.platform import clock
from app.platform.db import driver_connection
from app.platform.errors import Conflict, NotFound, ValidationFailed
from app.platform.pagination import PageParams, after_instant_and_id, cut
from app.responses.schemas import Score
from app.responses.service import parse_id
from app.surveys.models import Survey, SurveyVersion
from app.surveys.service import SurveyNotFound
from app.webhooks import outbox
from app.webhooks.models import EventType


class CaseRuleNotFound(NotFound):
    title = "Case rule not found"


class CaseNotFound(NotFound):
    title = "Case not found"


class CaseTransition(Conflict):
    slug = "case-transition"
    title = "The case cannot go to that status from its own"


async def _survey(session: AsyncSession, code: str) -> Survey:
    survey = await session.scalar(select(Survey).where(Survey.code == code))
    if survey is None:
        raise SurveyNotFound(f"No survey {code!r}.")
    return survey


def _rule_out(survey: Survey, rule: CaseRule) -> CaseRuleOut:
    return CaseRuleOut(
        survey=survey.code,
        at_most=rule.at_most,
        sla_hours=rule.sla_hours,
        max_age_days=rule.max_age_days,
    )


async def get_rule(session: AsyncSession, *, code: str) -> CaseRuleOut:
    survey = await _survey(session, code)
    rule = await session.get(CaseRule, survey.id)
    if rule is None:
        raise CaseRuleNotFound(f"Survey {code!r} has no case rule.")
    return _rule_out(survey, rule)


async def put_rule(
    session: AsyncSession, *, code: str, body: CaseRuleIn, principal: Principal
) -> tuple[CaseRuleOut, bool]:
    """Set the survey's case rule; (rule, created). Later responses follow it."""
    survey = await _survey(session, code)
    latest = await session.scalar(
        select(SurveyVersion).where(
            SurveyVersion.survey_id == survey.id, SurveyVersion.version == survey.latest_version
        )
    )
    assert latest is not None
    if not latest.scale_min <= body.at_most <= latest.scale_max:
        raise ValidationFailed.at(
            ("body", "at_most"),
            f"must be on the primary question's scale, {latest.scale_min} to {latest.scale_max}",
        )
    existed = await session.get(CaseRule, survey.id, with_for_update=True) is not None
    values = body.model_dump()
    await session.execute(
        insert(CaseRule)
        .values(survey_id=survey.id, **values)
        .on_conflict_do_update(
            index_elements=[CaseRule.survey_id], set_={**values, "updated_at": clock.now()}
        )
    )
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.case_rule_set,
        target=survey.code,
        details=values,
    )
    return CaseRuleOut(survey=survey.code, **values), not existed


async def delete_rule(session: AsyncSession, *, code: str, principal: Principal) -> None:
    survey = await _survey(session, code)
    gone = await session.execute(
        delete(CaseRule).where(CaseRule.survey_id == survey.id).returning(CaseRule.survey_id)
    )
    if gone.first() is None:
        raise CaseRuleNotFound(f"Survey {code!r} has no case rule.")
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.case_rule_delete,
        target=survey.code,
    )


def render(case: Case, *, org: str, survey: str, now: datetime) -> CaseOut:
    status = CaseStatus(case.status)
    return CaseOut(
        id=str(case.id),
        response_id=str(case.response_id),
        org=org,
        survey=survey,
        stage=case.stage,
        score=Score(
            raw=case.score,
            normalized=100 * (case.score - case.scale_min) / (case.scale_max - case.scale_min),
        ),
        status=status,
        opened_at=case.opened_at,
        due_at=case.due_at,
        acknowledged_at=case.acknowledged_at,
        resolved_at=case.resolved_at,
        closed_at=case.closed_at,
        root_cause=case.root_cause,
        assignee=case.assignee,
        notes=[Note.model_validate(n) for n in case.notes],
        overdue=rules.overdue(status=status, due_at=case.due_at, now=now),
    )


def _with_names() -> Any:
    return (
        select(Case, Org.code, Survey.code, Org.path)
        .join(Org, Org.id == Case.org_id)
        .join(SurveyVersion, SurveyVersion.id == Case.survey_version_id)
        .join(Survey, Survey.id == SurveyVersion.survey_id)
    )


async def _visible(
    session: AsyncSession, case_id: str, principal: Principal, *, lock: bool = False
) -> tuple[Case, str, str]:
    number = parse_id(case_id)
    query = _with_names().where(Case.id == number)
    if lock:  # the case's row, read afresh
        query = query.with_for_update(of=Case).execution_options(populate_existing=True)
    found = None if number is None else (await session.execute(query)).first()
    if found is None or not principal.sees(found[3]):
        raise CaseNotFound(f"No case with id {case_id!r}.")
    case, org, survey, _ = found
    return case, org, survey


async def get_case(session: AsyncSession, *, case_id: str, principal: Principal) -> CaseOut:
    case, org, survey = await _visible(session, case_id, principal)
    return render(case, org=org, survey=survey, now=clock.now())


async def update_case(
    session: AsyncSession, *, case_id: str, body: CasePatch, principal: Principal
) -> tuple[CaseOut, bool]:
    """Change a case along the state machine, add a note, (re)assign; (case, changed).

    The row is locked first: concurrent changes of one case queue, each on the state the
    previous one left.
    """
    case, org, survey = await _visible(session, case_id, principal, lock=True)
    now = clock.now()
    current = CaseStatus(case.status)
    target = body.status or current
    if not rules.allowed(current, target):
        raise CaseTransition(f"A case that is {current.value} cannot become {target.value}.")
    changed = False
    if "root_cause" in body.model_fields_set and body.root_cause != case.root_cause:
        case.root_cause = body.root_cause
        changed = True
    if target in rules.NEEDS_ROOT_CAUSE and target is not current and not case.root_cause:
        raise ValidationFailed.at(
            ("body", "root_cause"), f"a case needs a root cause to become {target.value}"
        )
    if "assignee" in body.model_fields_set and body.assignee != case.assignee:
        case.assignee = body.assignee
        changed = True
    if target is not current:
        changed = True
        case.status = target.value
        if target is CaseStatus.acknowledged:
            case.acknowledged_at = now
        elif target is CaseStatus.resolved:
            case.resolved_at = now
        elif target is CaseStatus.closed:
            case.closed_at = now
        else:  # reopened
            case.resolved_at = None
            case.closed_at = None
    if body.note is not None:
        actor = audit.actor_of(principal)
        case.notes = [*case.notes, {"at": now.isoformat(), "actor": actor, "text": body.note}]
        changed = True
    await session.flush()
    out = render(case, org=org, survey=survey, now=now)
    if changed:
        data = out.model_dump(mode="json", include=_EVENT_FIELDS)
        await outbox.enqueue(
            await driver_connection(session),
            event=EventType.case_updated,
            org_id=case.org_id,
            data=data,
            now=now,
            response_id=case.response_id,
        )
    return out, changed


# What a case.updated event says of the case (notes stay in the API).
_EVENT_FIELDS = {
    "id", "response_id", "org", "survey", "stage", "score", "status", "due_at",
    "acknowledged_at", "resolved_at", "closed_at", "root_cause", "assignee", "overdue",
}  # fmt: skip


async def list_cases(
    session: AsyncSession,
    *,
    principal: Principal,
    org_code: str | None,
    status: CaseStatus | None,
    overdue: bool | None,
    start: datetime | None,
    end: datetime | None,
    page: PageParams,
) -> tuple[list[CaseOut], list[Any] | None]:
    """Cases ordered by (opened_at, id), by org subtree, status, overdue and opening time."""
    now = clock.now()
    query = _with_names()
    scope = await within(session, principal=principal, org_code=org_code)
    if scope is not None:
        query = query.where(scope)
    if status is not None:
        query = query.where(Case.status == status.value)
    if overdue is not None:
        late = Case.status.in_(["open", "acknowledged"]) & (Case.due_at < now)
        query = query.where(late if overdue else ~late)
    if start is not None:
        query = query.where(Case.opened_at >= start)
    if end is not None:
        query = query.where(Case.opened_at < end)
    if page.after:
        query = query.where(tuple_(Case.opened_at, Case.id) > after_instant_and_id(page.after))
    query = query.order_by(Case.opened_at, Case.id).limit(page.limit + 1)
    rows, last = cut(
        (await session.execute(query)).all(), page, lambda r: [r[0].opened_at.isoformat(), r[0].id]
    )
    return [render(c, org=o, survey=s, now=now) for c, o, s, _ in rows], last


_STATS = """
SELECT id, status, opened_at, due_at, acknowledged_at, resolved_at, closed_at, root_cause
FROM cases
WHERE {where}
"""


async def stats(
    session: AsyncSession, *, org: Org, window: Window, scope: indices.Scope, zone: ZoneInfo
) -> CaseStats:
    """The cases opened in the window (orgs as in the index) and what became of them."""
    now = clock.now()
    view = await tree.load(session)
    params: list[Any] = []
    where = indices.stretch_filter(
        indices.stretches(view, [org.id], window, scope),
        column="opened_at",
        cast="timestamptz",
        params=params,
        edge=lambda day: _instant(day, zone),
    )
    conn = await driver_connection(session)
    sql = _STATS.format(where=where)  # placeholders only
    rows = await conn.fetch(sql, *params)
    start, end = _instant(window.start, zone), _instant(window.end, zone)

    def within(at: datetime | None) -> bool:
        return at is not None and start <= at < end

    resolved = [r for r in rows if within(r["resolved_at"])]
    hours = [(r["resolved_at"] - r["opened_at"]).total_seconds() / 3600 for r in resolved]
    causes: dict[str, int] = {}
    for r in resolved:
        if r["root_cause"] is not None:
            causes[r["root_cause"]] = causes.get(r["root_cause"], 0) + 1
    still_open = [r for r in rows if r["status"] in ("open", "acknowledged")]
    return CaseStats(
        org=org.code,
        from_=window.start,
        to=window.end,
        tree=scope.tree.label,
        opened=len(rows),
        acknowledged=sum(1 for r in rows if within(r["acknowledged_at"])),
        resolved=len(resolved),
        closed=sum(1 for r in rows if within(r["closed_at"])),
        open_now=len(still_open),
        overdue_now=sum(1 for r in still_open if now > r["due_at"]),
        median_hours_to_resolve=statistics.median(hours) if hours else None,
        root_causes=[
            RootCauseCount(root_cause=c, n=n)
            for c, n in sorted(causes.items(), key=lambda item: (-item[1], item[0]))
        ],
    )


def _instant(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone)
