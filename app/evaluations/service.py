"""Scorecards of a period, computed together; schemes; closing, reopening and stored versions.

See docs/architecture.md, "Executive evaluation": one statement reads every index a period's
scorecards need (and, for a close, the fingerprint cells), and a close stores bytes that every
later read returns as they are.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.evaluations import guard, scoring
from app.evaluations.models import EvaluationPeriod, EvaluationVersion, FrozenScorecard, Scheme
from app.evaluations.schemas import (
    Evaluation,
    EvaluationHead,
    Fingerprint,
    RankedScorecard,
    SchemeIn,
    SchemeOut,
    Scorecard,
    ScorecardIndex,
    ScorecardOrg,
    TaskItem,
    TaskSummary,
)
from app.executives import service as executives
from app.executives.models import Executive, ExecutiveTarget, Purview
from app.indices import service as indices
from app.indices import store
from app.indices.models import Target
from app.indices.periods import Window, parse_period
from app.keys.service import Principal
from app.orgs import tree
from app.orgs.models import Org
from app.platform import clock
from app.platform.db import driver_connection
from app.platform.errors import Conflict, NotFound, ValidationFailed
from app.stages import Stage
from app.tasks import service as tasks
from app.tasks.models import Task
from app.webhooks import outbox
from app.webhooks.models import EventType

logger = logging.getLogger("cx_survey.evaluations")

# A close reads every response of the period once (the fingerprint cells): allow it time.
CLOSE_STATEMENT_TIMEOUT = "600s"


class PeriodOpen(Conflict):
    slug = "period-open"
    title = "The evaluation period is open"


class VersionNotFound(NotFound):
    title = "Evaluation version not found"


def parse_calendar_period(value: str, loc: tuple[str, str]) -> tuple[str, Window]:
    """A calendar period label (normalized) and its window; 422 at `loc` otherwise."""
    try:
        window = parse_period(value)
    except ValueError as exc:
        raise ValidationFailed.at(loc, str(exc)) from exc
    assert window.period is not None
    return window.period, window


# ---- schemes ---------------------------------------------------------------------------------


def _scheme_out(scheme: scoring.Scheme) -> SchemeOut:
    return SchemeOut(
        index_weight=scheme.index_weight,
        task_weight=scheme.task_weight,
        cap=scheme.cap,
        stage_weights=dict(scheme.stage_weights) if scheme.stage_weights is not None else None,
    )


async def scheme_of(session: AsyncSession, period: str) -> scoring.Scheme:
    """The period's scheme, or the default one."""
    row = await session.get(Scheme, period)
    if row is None:
        return scoring.DEFAULT_SCHEME
    weights = row.stage_weights
    return scoring.Scheme(
        index_weight=row.index_weight,
        task_weight=row.task_weight,
        cap=row.cap,
        stage_weights={Stage(k): float(v) for k, v in weights.items()} if weights else None,
    )


async def get_scheme(session: AsyncSession, *, period: str) -> SchemeOut:
    label, _ = parse_calendar_period(period, ("path", "period"))
    return _scheme_out(await scheme_of(session, label))


async def put_scheme(
    session: AsyncSession, *, period: str, data: SchemeIn, principal: Principal
) -> tuple[SchemeOut, bool]:
    """Set the period's scheme (audited); and whether it is new."""
    executives.require_unbound(principal)
    label, _ = parse_calendar_period(period, ("path", "period"))
    if data.index_weight == 0 and data.task_weight == 0:
        raise ValidationFailed.at(
            ("body", "task_weight"), "index_weight and task_weight may not both be 0"
        )
    await guard.writable(session, label)
    stage_weights = (
        {s.value: float(w) for s, w in data.stage_weights.items()}
        if data.stage_weights is not None
        else None
    )
    values = {
        "index_weight": float(data.index_weight),
        "task_weight": float(data.task_weight),
        "cap": float(data.cap),
        "stage_weights": stage_weights,
    }
    existed = await session.get(Scheme, label)
    before = (
        None
        if existed is None
        else {
            "index_weight": existed.index_weight,
            "task_weight": existed.task_weight,
            "cap": existed.cap,
            "stage_weights": existed.stage_weights,
        }
    )
    if before != values:
        upsert = insert(Scheme).values(period=label, **values)
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=["period"], set_={**values, "updated_at": func.now()}
            )
        )
        session.expire_all()
        await audit.record(
            session,
            actor=audit.actor_of(principal),
            action=audit.Action.scheme_set,
            target=label,
            details=values,
        )
    return _scheme_out(await scheme_of(session, label)), existed is None


# ---- computing scorecards --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subject:
    """An executive with the purview (in order) and target of one period."""

    executive: Executive
    orgs: list[Org]
    target: float | None


async def subjects(
    session: AsyncSession, *, period: str, executive_id: int | None = None
) -> list[Subject]:
    """Every executive with a purview for `period` (or only `executive_id`), by code."""
    query = (
        select(Purview.executive_id, Org)
        .join(Org, Org.id == Purview.org_id)
        .where(Purview.period == period)
        .order_by(Purview.executive_id, Purview.position)
    )
    if executive_id is not None:
        query = query.where(Purview.executive_id == executive_id)
    purviews: dict[int, list[Org]] = defaultdict(list)
    for owner, org in await session.execute(query):
        purviews[owner].append(org)
    if not purviews:
        return []
    people = await session.scalars(select(Executive).where(Executive.id.in_(list(purviews))))
    rows = await session.execute(
        select(ExecutiveTarget.executive_id, ExecutiveTarget.csi).where(
            ExecutiveTarget.period == period, ExecutiveTarget.executive_id.in_(list(purviews))
        )
    )
    targets: dict[int, float] = dict(rows.all())
    found = [Subject(e, purviews[e.id], targets.get(e.id)) for e in people]
    return sorted(found, key=lambda s: s.executive.code)


@dataclass(frozen=True, slots=True)
class Computed:
    scorecards: list[Scorecard]
    fingerprints: list[Fingerprint] | None


def _task_id(task: Task) -> int:
    return task.id


def _span(piece: store.Piece) -> tuple[date, date]:
    """The days a piece covers: its whole months and its edges, one stretch."""
    bounds = [*(piece.months or ()), *(d for edge in piece.edges for d in edge)]
    return min(bounds), max(bounds)


def _fingerprints(
    people: Sequence[Subject],
    pieces: Sequence[store.Piece],
    cells: Sequence[store.Cell],
    codes: dict[int, str],
) -> list[Fingerprint]:
    """Each subject's fingerprint from the cells of its pieces (docs/architecture.md)."""
    days: dict[int, list[date]] = defaultdict(list)
    lines: dict[int, list[bytes]] = defaultdict(list)
    counts: dict[int, list[int]] = defaultdict(list)
    for org_id, day, count, cell in sorted(cells, key=lambda c: (c[0], c[1])):
        days[org_id].append(day)
        counts[org_id].append(count)
        lines[org_id].append(f"{codes[org_id]}\t{day}\t{count}\t{cell.hex()}\n".encode())
    stretches: dict[int, list[tuple[str, date, date, int]]] = defaultdict(list)
    for piece in pieces:
        if piece.group >= len(people):
            continue
        start, end = _span(piece)
        stretches[piece.group].extend((codes[o], start, end, o) for o in piece.scope)
    out = []
    for group in range(len(people)):
        digest = hashlib.sha256()
        total = 0
        for _, start, end, org_id in sorted(stretches[group]):
            org_days = days.get(org_id, [])
            lo, hi = bisect.bisect_left(org_days, start), bisect.bisect_left(org_days, end)
            for line in lines[org_id][lo:hi]:
                digest.update(line)
            total += sum(counts[org_id][lo:hi])
        out.append(Fingerprint(count=total, digest=digest.hexdigest()))
    return out


async def compute(
    session: AsyncSession,
    *,
    period: str,
    window: Window,
    people: Sequence[Subject],
    choice: indices.TreeChoice,
    today: date,
    min_n: int,
    fingerprints: bool = False,
) -> Computed:
    """The live scorecards of `people` for `period`, all read by one statement."""
    scheme = await scheme_of(session, period)
    org_list = list({o.id: o for s in people for o in s.orgs}.values())
    slot = {o.id: i for i, o in enumerate(org_list)}
    rows = await session.execute(
        select(Target.org_id, Target.csi).where(
            Target.period == period, Target.org_id.in_(list(slot))
        )
    )
    org_targets: dict[int, float] = dict(rows.all())
    weights = await indices.weights_for(session, org_list)
    period_tasks = await tasks.tasks_of(session, org_ids=list(slot), period=period)
    by_id = {o.id: o for o in org_list}
    measured = await tasks.plan_measures(session, period_tasks, orgs=by_id, min_n=min_n)
    scope = indices.Scope(
        filters=store.NO_FILTERS, include_descendants=True, min_n=min_n, tree=choice, today=today
    )
    first_org, first_task = len(people), len(people) + len(org_list)
    planned: list[store.Piece] = []

    def plan(view: tree.TreeView) -> list[store.Piece]:
        planned[:] = [
            *(
                piece
                for group, subject in enumerate(people)
                for piece in indices.pieces(
                    view, [o.id for o in subject.orgs], window, scope, group=group
                )
            ),
            *(
                piece
                for org in org_list
                for piece in indices.pieces(
                    view, [org.id], window, scope, group=first_org + slot[org.id]
                )
            ),
            *tasks.measure_pieces(view, measured, first_group=first_task),
        ]
        return planned

    def cells(pieces: Sequence[store.Piece]) -> store.Cells:
        orgs = sorted({o for p in pieces if p.group < first_org for o in p.scope})
        return store.Cells(ranges=[(o, window.start, window.end) for o in orgs])

    stats, found_cells, view = await indices.read(
        session, plan=plan, cells=cells if fingerprints else None
    )
    outcomes = tasks.outcomes(period_tasks, measured, stats, first_group=first_task)
    tasks_by_org: dict[int, list[Task]] = defaultdict(list)
    for task in period_tasks:
        tasks_by_org[task.org_id].append(task)
    union_weights = indices.full_weights(scheme.stage_weights or {})
    scheme_out = _scheme_out(scheme)
    cards = []
    for group, subject in enumerate(people):
        result = indices.index_of(stats.get((group, None), {}), union_weights, scope)
        target = subject.target
        if target is None and len(subject.orgs) == 1:
            target = org_targets.get(subject.orgs[0].id)
        orgs_out = []
        for org in subject.orgs:
            own = indices.index_of(
                stats.get((first_org + slot[org.id], None), {}), weights[org.id], scope
            )
            org_target = org_targets.get(org.id)
            orgs_out.append(
                ScorecardOrg(
                    org=org.code,
                    n=own.n,
                    csi=own.csi,
                    ci95=own.ci95,
                    suppressed=own.suppressed,
                    target=org_target,
                    attained=scoring.attained(own.csi, org_target),
                )
            )
        mine = sorted((t for o in subject.orgs for t in tasks_by_org.get(o.id, ())), key=_task_id)
        items = [
            TaskItem(
                id=str(t.id),
                org=by_id[t.org_id].code,
                title=t.title,
                customer_group=t.customer_group,
                status=t.status,
                measured=t.measure is not None,
                achieved=outcomes[t.id].achieved,
                weight=t.weight,
                csi=outcomes[t.id].csi,
            )
            for t in mine
        ]
        tallied = scoring.tally([(i.weight, i.achieved) for i in items])
        index_component = scoring.index_component(result.csi, target, scheme.cap)
        cards.append(
            Scorecard(
                executive=subject.executive.code,
                name=subject.executive.name,
                period=period,
                from_=window.start,
                to=window.end,
                tree=choice.label,
                frozen=False,
                index=ScorecardIndex(
                    n=result.n,
                    csi=result.csi,
                    ci95=result.ci95,
                    suppressed=result.suppressed,
                    target=target,
                    attained=scoring.attained(result.csi, target),
                    component=index_component,
                ),
                orgs=orgs_out,
                tasks=TaskSummary(
                    count=tallied.count,
                    achieved=tallied.achieved,
                    weight=tallied.weight,
                    weight_achieved=tallied.weight_achieved,
                    component=tallied.component,
                    items=items,
                ),
                scheme=scheme_out,
                total=scoring.total(scheme, index_component, tallied.component),
                fingerprint=None,
            )
        )
    prints = None
    if fingerprints:
        prints = _fingerprints(people, planned, found_cells, view.codes)
        for card, printed in zip(cards, prints, strict=True):
            if printed.count != card.index.n:  # the same snapshot: only a broken rollup differs
                logger.error(
                    "fingerprint count %d differs from index n %d for %s %s",
                    printed.count,
                    card.index.n,
                    card.executive,
                    period,
                )
    return Computed(cards, prints)


def rank(cards: Sequence[Scorecard]) -> list[RankedScorecard]:
    """The evaluation's order (total descending, then code; nulls last) with competition ranks."""
    return [
        RankedScorecard(**card.model_dump(by_alias=False), rank=position)
        for position, card in scoring.ranked([(c.executive, c.total, c) for c in cards])
    ]


# ---- reading ---------------------------------------------------------------------------------


def _sees(principal: Principal, orgs: Sequence[Org]) -> bool:
    return all(principal.sees(o.path) for o in orgs)


async def _head(session: AsyncSession, period: str) -> tuple[str, int | None]:
    row = await session.get(EvaluationPeriod, period)
    if row is None:
        return guard.OPEN, None
    return row.status, row.version


async def _stored(
    session: AsyncSession, *, period: str, version: int, principal: Principal
) -> bytes:
    """A stored version as bytes: its head and the items the key sees, in stored order."""
    head = await session.scalar(
        select(EvaluationVersion.head).where(
            EvaluationVersion.period == period, EvaluationVersion.version == version
        )
    )
    if head is None:
        raise VersionNotFound(f"The evaluation of {period} has no version {version}.")
    rows = (
        await session.execute(
            select(FrozenScorecard.item, FrozenScorecard.org_ids)
            .where(FrozenScorecard.period == period, FrozenScorecard.version == version)
            .order_by(FrozenScorecard.position)
        )
    ).all()
    if principal.org_id is not None:  # the executives whose purview lies inside the subtree
        ids = {i for _, org_ids in rows for i in org_ids}
        found = await session.execute(select(Org.id, Org.path).where(Org.id.in_(ids)))
        paths: dict[int, list[int]] = dict(found.all())
        rows = [r for r in rows if all(principal.sees(paths[i]) for i in r.org_ids)]
    if principal.org_id is not None:  # closes are made by unbound keys: outside its subtree
        stored = EvaluationHead.model_validate_json(head)
        head = _json(stored.model_copy(update={"closed_by": audit.OUTSIDE_KEY}))
    return _document(head, [item for item, _ in rows])


def _document(head: bytes, items: Sequence[bytes]) -> bytes:
    """The evaluation as bytes: the head (a JSON object) with the stored items appended."""
    return head[:-1] + b',"scorecards":[' + b",".join(items) + b"]}"


async def evaluation(
    session: AsyncSession, *, period: str, principal: Principal, today: date, min_n: int
) -> Evaluation | bytes:
    """The period's evaluation: the stored bytes when closed, else live scorecards."""
    label, window = parse_calendar_period(period, ("path", "period"))
    status, version = await _head(session, label)
    if status == guard.CLOSED and version is not None:
        return await _stored(session, period=label, version=version, principal=principal)
    people = await subjects(session, period=label)
    computed = await compute(
        session,
        period=label,
        window=window,
        people=people,
        choice=indices.HISTORY,
        today=today,
        min_n=min_n,
    )
    visible = {s.executive.code for s in people if _sees(principal, s.orgs)}
    last = None
    if version is not None:
        last = await session.get(EvaluationVersion, (label, version))
    return Evaluation(
        period=label,
        status=status,
        version=version,
        closed_at=last.closed_at if last else None,
        closed_by=(
            None if last is None else audit.OUTSIDE_KEY if principal.org_id else last.closed_by
        ),
        note=last.note if last else None,
        scheme=_scheme_out(await scheme_of(session, label)),
        scorecards=[c for c in rank(computed.scorecards) if c.executive in visible],
    )


async def version_of(
    session: AsyncSession, *, period: str, version: int, principal: Principal
) -> bytes:
    label, _ = parse_calendar_period(period, ("path", "period"))
    return await _stored(session, period=label, version=version, principal=principal)


async def scorecard(
    session: AsyncSession,
    *,
    code: str,
    period: str,
    choice: indices.TreeChoice | None,
    live: bool,
    principal: Principal,
    today: date,
    min_n: int,
) -> Scorecard | bytes:
    """One executive's scorecard: the stored one while the period is closed (history tree,
    not `live`), else computed now."""
    label, window = parse_calendar_period(period, ("query", "period"))
    executive = await executives.get_visible(session, code=code, principal=principal)
    people = await subjects(session, period=label, executive_id=executive.id)
    if not people or not _sees(principal, people[0].orgs):
        raise executives.PurviewNotFound(f"Executive {code!r} has no purview for {label}.")
    if not live and choice in (None, indices.HISTORY):
        status, version = await _head(session, label)
        if status == guard.CLOSED and version is not None:
            stored = await session.scalar(
                select(FrozenScorecard.scorecard).where(
                    FrozenScorecard.period == label,
                    FrozenScorecard.version == version,
                    FrozenScorecard.executive_id == executive.id,
                )
            )
            if stored is not None:
                return stored
    computed = await compute(
        session,
        period=label,
        window=window,
        people=people,
        choice=choice or indices.HISTORY,
        today=today,
        min_n=min_n,
    )
    return computed.scorecards[0]


# ---- closing and reopening -------------------------------------------------------------------


def _json(model: Scorecard | EvaluationHead) -> bytes:
    return model.model_dump_json(by_alias=True).encode()


async def close(
    session: AsyncSession,
    *,
    period: str,
    note: str | None,
    principal: Principal,
    today: date,
    min_n: int,
) -> bytes:
    """Store every scorecard of the period as computed now (history tree), with fingerprints,
    as the next version (audited); 409 when the period is closed already."""
    executives.require_unbound(principal)
    label, window = parse_calendar_period(period, ("path", "period"))
    state = await guard.exclusive(session, label)
    if state.status == guard.CLOSED:
        raise guard.PeriodClosed(f"The evaluation period {label} is closed already.")
    conn = await driver_connection(session)
    await conn.execute(f"SET LOCAL statement_timeout = '{CLOSE_STATEMENT_TIMEOUT}'")
    people = await subjects(session, period=label)
    computed = await compute(
        session,
        period=label,
        window=window,
        people=people,
        choice=indices.HISTORY,
        today=today,
        min_n=min_n,
        fingerprints=True,
    )
    assert computed.fingerprints is not None
    version = (state.version or 0) + 1
    closed_at: datetime = clock.now()
    frozen = [
        card.model_copy(update={"frozen": True, "fingerprint": printed})
        for card, printed in zip(computed.scorecards, computed.fingerprints, strict=True)
    ]
    by_code = {s.executive.code: s for s in people}
    rows: list[dict[str, Any]] = []
    items: list[bytes] = []
    ranked_cards = rank(frozen)
    for position, card in enumerate(ranked_cards):
        subject = by_code[card.executive]
        plain = Scorecard(**card.model_dump(by_alias=False, exclude={"rank"}))
        items.append(card.model_dump_json(by_alias=True).encode())
        rows.append(
            {
                "period": label,
                "version": version,
                "executive_id": subject.executive.id,
                "position": position,
                "org_ids": [o.id for o in subject.orgs],
                "scorecard": _json(plain),
                "item": items[-1],
            }
        )
    head = EvaluationHead(
        period=label,
        status=guard.CLOSED,
        version=version,
        closed_at=closed_at,
        closed_by=principal.key_id,
        note=note,
        scheme=_scheme_out(await scheme_of(session, label)),
    )
    head_bytes = _json(head)
    session.add(
        EvaluationVersion(
            period=label,
            version=version,
            closed_at=closed_at,
            closed_by=principal.key_id,
            note=note,
            head=head_bytes,
        )
    )
    await session.flush()
    if rows:
        await session.execute(insert(FrozenScorecard), rows)
    state.status = guard.CLOSED
    state.version = version
    await session.flush()
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.evaluation_close,
        target=label,
        details={"period": label, "version": version, "note": note, "executives": len(rows)},
    )
    await outbox.enqueue(
        await driver_connection(session),
        event=EventType.evaluation_closed,
        org_id=None,
        data={"period": label, "version": version, "executives": len(rows)},
        now=clock.now(),
    )
    return _document(head_bytes, items)


async def reopen(
    session: AsyncSession,
    *,
    period: str,
    reason: str,
    principal: Principal,
    today: date,
    min_n: int,
) -> Evaluation:
    """Open a closed period again (audited); its stored versions stay readable."""
    executives.require_unbound(principal)
    label, _ = parse_calendar_period(period, ("path", "period"))
    state = await guard.exclusive(session, label)
    if state.status != guard.CLOSED:
        raise PeriodOpen(f"The evaluation period {label} is open: there is nothing to reopen.")
    state.status = guard.OPEN
    state.reopened_at = clock.now()
    state.reopened_by = principal.key_id
    state.reason = reason
    await session.flush()
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.evaluation_reopen,
        target=label,
        details={"period": label, "version": state.version, "reason": reason},
    )
    found = await evaluation(session, period=label, principal=principal, today=today, min_n=min_n)
    assert isinstance(found, Evaluation)
    return found
