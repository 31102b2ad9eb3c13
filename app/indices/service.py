"""Org indices, children rankings and series; stage weights and targets."""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.indices import store
from app.indices.math import IndexResult, ScaleStats, compare, compute_index
from app.indices.models import StageWeights, Target
from app.indices.periods import (
    DATE_PATTERN,
    Granularity,
    Window,
    add_months,
    parse_period,
    series,
    window_of,
)
from app.indices.schemas import (
    ChildIndex,
    ChildList,
    OrgIndex,
    PreviousIndex,
    SegmentIndex,
    SegmentList,
    SeriesPoint,
    StageIndex,
    TargetList,
    TargetOut,
    WeightsOut,
)
from app.indices.schemas import Series as SeriesOut
from app.keys.service import Principal
from app.orgs import tree
from app.orgs.models import Org
from app.orgs.service import parse_day
from app.orgs.timeline import Cover
from app.platform.db import driver_connection
from app.platform.errors import NotFound, ValidationFailed
from app.stages import Stage

Weights = dict[Stage, float]


@dataclass(frozen=True, slots=True)
class TreeChoice:
    """Which tree an index reads: `current` (today's), `history` (each response in the tree of
    its own date) or `day` (the tree on that day)."""

    mode: str
    day: date | None = None

    @property
    def label(self) -> str:
        return self.day.isoformat() if self.day is not None else self.mode


CURRENT = TreeChoice("current")
HISTORY = TreeChoice("history")


@dataclass(frozen=True, slots=True)
class Scope:
    """What an index request covers besides the org and the window."""

    filters: store.Filters
    include_descendants: bool
    min_n: int
    tree: TreeChoice
    today: date  # in the reporting zone: the day of the current tree


def parse_tree(value: str | None, *, history: bool = True) -> TreeChoice:
    """`current`, `history` (where allowed) or a date YYYY-MM-DD; default current."""
    if value is None or value == "current":
        return CURRENT
    if value == "history":
        if not history:
            raise ValidationFailed.at(
                ("query", "tree"), "children are ranked in one tree: current or a date"
            )
        return HISTORY
    if not _DATE.fullmatch(value):
        choices = "current, history or a date" if history else "current or a date"
        raise ValidationFailed.at(("query", "tree"), f"must be {choices} (YYYY-MM-DD)")
    return TreeChoice("day", parse_day(value, ("query", "tree")))


class TargetNotFound(NotFound):
    title = "Target not found"


# ---- request parsing -------------------------------------------------------------------------


_DATE = re.compile(DATE_PATTERN)


def _date(value: str, name: str) -> date:
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationFailed.at(("query", name), "must be a date YYYY-MM-DD")


def parse_window(period: str | None, start: str | None, end: str | None) -> Window:
    """`period=` or `from=&to=` (exactly one form) as a window."""
    if period is not None:
        if start is not None or end is not None:
            raise ValidationFailed.at(
                ("query", "period"), "give either period or from/to, not both"
            )
        try:
            return parse_period(period)
        except ValueError as exc:
            raise ValidationFailed.at(("query", "period"), str(exc)) from exc
    if start is None or end is None:
        missing = "from" if start is None else "to"
        raise ValidationFailed.at(("query", missing), "give period, or both from and to")
    try:
        return window_of(_date(start, "from"), _date(end, "to"))
    except ValueError as exc:
        raise ValidationFailed.at(("query", "to"), str(exc)) from exc


def parse_series(granularity: Granularity, start: str, end: str) -> list[Window]:
    try:
        return series(granularity, _date(start, "from"), _date(end, "to"))
    except ValueError as exc:
        raise ValidationFailed.at(("query", "to"), str(exc)) from exc


# ---- weights and targets ---------------------------------------------------------------------


def _as_weights(raw: Mapping[str, Any]) -> Weights:
    return {Stage(k): float(v) for k, v in raw.items()}


async def _sets(session: AsyncSession, org_ids: Sequence[int]) -> dict[int, Weights]:
    rows = await session.execute(
        select(StageWeights.org_id, StageWeights.weights).where(StageWeights.org_id.in_(org_ids))
    )
    return {org_id: _as_weights(weights) for org_id, weights in rows}


def _nearest(path: Sequence[int], sets: Mapping[int, Weights]) -> tuple[int | None, Weights]:
    for org_id in reversed(path):
        if org_id in sets:
            return org_id, sets[org_id]
    return None, {}


async def weights_for(session: AsyncSession, orgs: Sequence[Org]) -> dict[int, Weights]:
    """The weights in force for each of `orgs` (by id): its own set or its nearest ancestor's."""
    sets = await _sets(session, sorted({i for org in orgs for i in org.path}))
    return {org.id: _nearest(org.path, sets)[1] for org in orgs}


def full_weights(weights: Mapping[Stage, float]) -> Weights:
    return {stage: float(weights.get(stage, 1.0)) for stage in Stage}


async def get_weights(session: AsyncSession, *, org: Org, visible_from: int | None) -> WeightsOut:
    """The weights in force for `org`: its own set or its nearest ancestor's (all 1 without)."""
    from_id, weights = _nearest(org.path, await _sets(session, org.path))
    from_code = None
    if from_id is not None:
        from_code = await session.scalar(select(Org.code).where(Org.id == from_id))
        if visible_from is not None and visible_from not in org.path[: org.path.index(from_id) + 1]:
            from_code = None  # inherited from above the key's subtree: do not name that org
    return WeightsOut(org=org.code, from_org=from_code, weights=full_weights(weights))


async def put_weights(
    session: AsyncSession, *, org: Org, weights: Mapping[Stage, float], principal: Principal
) -> None:
    """Replace the org's own weight set (audited)."""
    values = {stage.value: weight for stage, weight in weights.items()}
    upsert = insert(StageWeights).values(org_id=org.id, weights=values)
    changed = await session.execute(
        upsert.on_conflict_do_update(
            index_elements=["org_id"],
            set_={"weights": values, "updated_at": func.now()},
            where=StageWeights.weights.is_distinct_from(upsert.excluded.weights),
        ).returning(StageWeights.org_id)
    )
    if changed.first() is None:  # the same weights again: nothing changed, nothing to audit
        return
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.stage_weights_set,
        target=org.code,
        org_id=org.id,
        details={"weights": values},
    )


async def delete_weights(session: AsyncSession, *, org: Org, principal: Principal) -> None:
    """Remove the org's own weight set, if any (audited when there was one)."""
    result = await session.execute(delete(StageWeights).where(StageWeights.org_id == org.id))
    if result.rowcount:  # type: ignore[attr-defined]
        await audit.record(
            session,
            actor=audit.actor_of(principal),
            action=audit.Action.stage_weights_delete,
            target=org.code,
            org_id=org.id,
        )


def check_period(period: str) -> str:
    try:
        return parse_period(period).period or period
    except ValueError as exc:
        raise ValidationFailed.at(("path", "period"), str(exc)) from exc


async def put_target(
    session: AsyncSession, *, org: Org, period: str, csi: float, principal: Principal
) -> TargetOut:
    """Set the org's target for a calendar period (audited)."""
    period = check_period(period)
    upsert = insert(Target).values(org_id=org.id, period=period, csi=csi)
    changed = await session.execute(
        upsert.on_conflict_do_update(
            index_elements=["org_id", "period"],
            set_={"csi": csi, "updated_at": func.now()},
            where=Target.csi.is_distinct_from(upsert.excluded.csi),
        ).returning(Target.org_id)
    )
    if changed.first() is not None:  # the same target again changes nothing, audits nothing
        await audit.record(
            session,
            actor=audit.actor_of(principal),
            action=audit.Action.target_set,
            target=org.code,
            org_id=org.id,
            details={"period": period, "csi": csi},
        )
    return TargetOut(org=org.code, period=period, csi=csi)


async def get_target(session: AsyncSession, *, org: Org, period: str) -> TargetOut:
    period = check_period(period)
    csi = await session.scalar(
        select(Target.csi).where(Target.org_id == org.id, Target.period == period)
    )
    if csi is None:
        raise TargetNotFound(f"Org {org.code!r} has no target for {period}.")
    return TargetOut(org=org.code, period=period, csi=csi)


async def delete_target(
    session: AsyncSession, *, org: Org, period: str, principal: Principal
) -> None:
    """Remove the org's target for a period (audited); 404 when there is none."""
    period = check_period(period)
    result = await session.execute(
        delete(Target).where(Target.org_id == org.id, Target.period == period)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise TargetNotFound(f"Org {org.code!r} has no target for {period}.")
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.target_delete,
        target=org.code,
        org_id=org.id,
        details={"period": period},
    )


async def list_targets(session: AsyncSession, *, org: Org) -> TargetList:
    rows = await session.scalars(
        select(Target).where(Target.org_id == org.id).order_by(Target.period)
    )
    return TargetList(items=[TargetOut(org=org.code, period=t.period, csi=t.csi) for t in rows])


# ---- indices ---------------------------------------------------------------------------------


def _stage_items(result: IndexResult) -> list[StageIndex]:
    return [
        StageIndex(
            stage=s.stage,
            n=s.n,
            score=s.score,
            ci95=s.ci95,
            weight=s.weight,
            top2box=s.top2box,
            nps=s.nps,
            suppressed=s.suppressed,
        )
        for s in result.stages
    ]


def _month_range(months: Sequence[date]) -> tuple[date, date] | None:
    return (months[0], add_months(months[-1], 1)) if months else None


@dataclass(frozen=True, slots=True)
class Stretch:
    """Days [start, end) over which the union of some orgs' scopes is one set of orgs."""

    start: date
    end: date
    members: frozenset[int]
    cover: Cover


def stretches(
    view: tree.TreeView, orgs: Sequence[int], window: Window, scope: Scope
) -> list[Stretch]:
    """The union of `orgs`' scopes over `window` in the scope's tree mode, as stretches of days
    that each have one set of member orgs (one stretch unless the tree changes inside the
    window in `history` mode)."""
    if not scope.include_descendants:
        only = frozenset(orgs)
        return [Stretch(window.start, window.end, only, Cover((), tuple(sorted(only))))]
    if scope.tree.mode == "history":
        cuts = [d for d in view.timeline.dates if window.start < d < window.end]
        bounds = [window.start, *cuts, window.end]
        days = [(a, b, a) for a, b in itertools.pairwise(bounds)]
    else:
        days = [(window.start, window.end, scope.tree.day or scope.today)]
    parts: list[Stretch] = []
    for start, end, probe in days:
        members, covered = view.cover_on(probe, orgs)
        if parts and parts[-1].members == members:  # the same orgs: one stretch
            parts[-1] = Stretch(parts[-1].start, end, members, covered)
        else:
            parts.append(Stretch(start, end, members, covered))
    return parts


def stretch_filter(
    parts: Sequence[Stretch],
    *,
    column: str,
    cast: str,
    params: list[Any],
    edge: Callable[[date], Any] = lambda day: day,
) -> str:
    """SQL keeping the rows of a table with `org_id` that lie in the stretches: `column`
    (`cast`: date, or timestamptz with `edge` turning a day into its first instant) in
    [start, end) and the org among the stretch's members. Values go to `params`; the SQL
    holds placeholders only."""
    clauses = []
    for part in parts:
        params += [edge(part.start), edge(part.end), sorted(part.members)]
        a, b, c = len(params) - 2, len(params) - 1, len(params)
        clauses.append(
            f"({column} >= ${a}::{cast} AND {column} < ${b}::{cast}"
            f" AND org_id = ANY(${c}::bigint[]))"
        )
    return " OR ".join(clauses) or "false"


def filter_sql(filters: store.Filters, params: list[Any]) -> str:
    """The scope's stage, channel, customer type and segment filters as SQL (` AND …`) on a
    table with those columns; values go to `params`."""
    sql = ""
    for column, values in (
        ("stage", filters.stages),
        ("channel", filters.channels),
        ("customer_type", filters.customer_types),
    ):
        if values is not None:
            params.append([str(v) for v in values])
            sql += f" AND {column}::text = ANY(${len(params)}::text[])"
    if filters.containment is not None:
        params.append(filters.containment)
        sql += f" AND segments @> ${len(params)}::jsonb"
    return sql


def pieces(
    view: tree.TreeView, orgs: Sequence[int], window: Window, scope: Scope, *, group: int
) -> list[store.Piece]:
    """The responses of the union of `orgs`' scopes over `window`, in the scope's tree mode,
    with the scope's filters, counted for `group` (each response once however `orgs` nest)."""
    planned = []
    for part in stretches(view, orgs, window, scope):
        months, edges = Window(part.start, part.end).months()
        planned.append(
            store.Piece(
                group=group,
                scope=sorted(part.members),
                roots=part.cover.roots,
                singles=part.cover.singles,
                months=_month_range(months),
                edges=edges,
                filters=scope.filters,
            )
        )
    return planned


# Raw reads (partial months, segment filters, insights) visit many heap pages through a bitmap
# of the (org_id, occurred_on) index: below this much memory the bitmap turns lossy and every
# row of those pages is checked again (2.1 s instead of 0.54 s for a division's quarter of 10M).
RAW_WORK_MEM = "64MB"


async def tune(session: AsyncSession) -> None:
    """Once per transaction, the settings of index and insight reads: custom plans (a generic
    plan cannot see which org and months are asked for and scans the whole rollup), no JIT (it
    costs more than these statements run), and memory enough for exact bitmaps."""
    if session.info.get("custom_plans"):
        return
    conn = await driver_connection(session)
    await conn.execute(
        "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off;"
        f" SET LOCAL work_mem = '{RAW_WORK_MEM}'"
    )
    session.info["custom_plans"] = True


T = TypeVar("T")


async def _under_tree(
    session: AsyncSession, attempt: Callable[[tree.TreeView], Awaitable[tuple[str, T]]]
) -> tuple[T, tree.TreeView]:
    """`attempt` planned on the cached tree, returning the tree version its statement read
    under; should a move have committed in between, planned again under the shared tree lock,
    which no move can pass."""
    await tune(session)
    locked = False
    while True:
        view = await tree.load(session)
        version, result = await attempt(view)
        if version == view.version:
            return result, view
        if not locked:
            await tree.lock_shared(session)
            locked = True


async def read(
    session: AsyncSession,
    *,
    plan: Callable[[tree.TreeView], Sequence[store.Piece]],
    by_month: bool = False,
    cells: Callable[[Sequence[store.Piece]], store.Cells] | None = None,
) -> tuple[store.Stats, list[store.Cell], tree.TreeView]:
    """The statistics of the pieces that `plan` makes of the tree, read under that very tree
    (each piece with its own filters); with the `cells` asked of those pieces, from the same
    statement, and the tree they were planned on."""
    conn = await driver_connection(session)

    async def attempt(view: tree.TreeView) -> tuple[str, tuple[store.Stats, list[store.Cell]]]:
        planned = plan(view)
        version, stats, found = await store.collect_with_cells(
            conn,
            pieces=planned,
            by_month=by_month,
            cells=cells(planned) if cells is not None else None,
        )
        return version, (stats, found)

    (stats, found), view = await _under_tree(session, attempt)
    return stats, found, view


async def read_family(
    session: AsyncSession,
    *,
    org: Org,
    window: Window,
    scope: Scope,
    family: store.Family,
    where: store.Condition,
    raw_only: bool,
    by: Sequence[str],
) -> list[Any]:
    """A family's sums (indices.store.gather) over `org`'s scope, kept by `where` and the
    scope's filters, read under the tree they were planned on."""
    conn = await driver_connection(session)

    def raw_where(params: store._Params) -> str:
        return filter_sql(scope.filters, params.values)

    async def attempt(view: tree.TreeView) -> tuple[str, list[Any]]:
        return await store.gather(
            conn,
            pieces=pieces(view, [org.id], window, scope, group=0),
            family=family,
            where=where,
            raw_where=raw_where,
            raw_only=raw_only,
            by=by,
        )

    rows, _ = await _under_tree(session, attempt)
    return rows


async def _read(
    session: AsyncSession,
    *,
    plan: Callable[[tree.TreeView], Sequence[store.Piece]],
    by_month: bool = False,
) -> store.Stats:
    stats, _, _ = await read(session, plan=plan, by_month=by_month)
    return stats


def _included(scope: Scope) -> frozenset[Stage] | None:
    stages = scope.filters.stages
    return frozenset(stages) if stages is not None else None


def index_of(
    stats: Mapping[Stage, Sequence[ScaleStats]], weights: Mapping[Stage, float], scope: Scope
) -> IndexResult:
    return compute_index(stats, weights=weights, min_n=scope.min_n, included=_included(scope))


async def org_index(session: AsyncSession, *, org: Org, window: Window, scope: Scope) -> OrgIndex:
    """The index of `org` for `window`, with the previous period, delta and target."""
    _, weights = _nearest(org.path, await _sets(session, org.path))
    previous_window = window.previous()
    stats = await _read(
        session,
        plan=lambda view: [
            *pieces(view, [org.id], window, scope, group=0),
            *pieces(view, [org.id], previous_window, scope, group=1),
        ],
    )
    current = index_of(stats.get((0, None), {}), weights, scope)
    previous = index_of(stats.get((1, None), {}), weights, scope)
    comparison = compare(current, previous)
    target = (await _targets(session, [org.id], window)).get(org.id)
    return OrgIndex(
        org=org.code,
        from_=window.start,
        to=window.end,
        tree=scope.tree.label,
        n=current.n,
        csi=current.csi,
        ci95=current.ci95,
        suppressed=current.suppressed,
        stages=_stage_items(current),
        previous=PreviousIndex(
            from_=previous_window.start,
            to=previous_window.end,
            n=previous.n,
            csi=previous.csi,
            ci95=previous.ci95,
        ),
        delta=comparison.delta,
        significant=comparison.significant,
        target=target,
        attained=_attained(target, current),
    )


async def _targets(
    session: AsyncSession, org_ids: Sequence[int], window: Window
) -> dict[int, float]:
    """The orgs' targets for the window's period (none for a custom range)."""
    if window.period is None or not org_ids:
        return {}
    rows = await session.execute(
        select(Target.org_id, Target.csi).where(
            Target.org_id.in_(org_ids), Target.period == window.period
        )
    )
    return {row.org_id: row.csi for row in rows}


def _attained(target: float | None, result: IndexResult) -> bool | None:
    if target is None or result.csi is None:
        return None
    return result.csi >= target


async def children_index(
    session: AsyncSession, *, org: Org, window: Window, scope: Scope, principal: Principal
) -> ChildList:
    """Every direct child's own index in the scope's tree, ranked by csi (competition rank),
    suppressed last, each with its change against the previous period and its target.
    Children the key does not see are left out."""
    day = scope.tree.day or scope.today
    previous_window = window.previous()
    planned: list[int] = []

    def plan(view: tree.TreeView) -> list[store.Piece]:
        planned[:] = [
            c
            for c in view.timeline.children_on(day).get(org.id, ())
            if principal.sees(view.materialized.paths[c])
        ]
        return [
            piece
            for group, child in enumerate(planned)
            for when, span in ((0, window), (1, previous_window))
            for piece in pieces(view, [child], span, scope, group=2 * group + when)
        ]

    stats = await _read(session, plan=plan)
    if not planned:
        return ChildList(tree=scope.tree.label, items=[])
    rows = {c.id: c for c in await session.scalars(select(Org).where(Org.id.in_(planned)))}
    children = [rows[c] for c in planned]
    sets = await _sets(session, sorted({i for c in children for i in c.path}))
    targets = await _targets(session, planned, window)
    results = []
    for group, child in enumerate(children):
        _, weights = _nearest(child.path, sets)
        current = index_of(stats.get((2 * group, None), {}), weights, scope)
        previous = index_of(stats.get((2 * group + 1, None), {}), weights, scope)
        results.append((child, current, previous))
    ranked = competition_ranks(
        [(child.code, ((child, previous), current)) for child, current, previous in results]
    )
    items = [
        _child_item(child, result, previous, targets.get(child.id), rank)
        for ((child, previous), result), rank in ranked
    ]
    return ChildList(tree=scope.tree.label, items=items)


def competition_ranks(named: Sequence[tuple[str, tuple[Any, IndexResult]]]) -> list[Any]:
    """Named results ranked by csi descending then name, competition ranks (1, 2, 2, 4) among
    the unsuppressed; the suppressed after them, by name, without a rank: [(thing, rank)]."""
    ranked = sorted(
        (n for n in named if n[1][1].csi is not None), key=lambda n: (-(n[1][1].csi or 0.0), n[0])
    )
    out: list[Any] = []
    previous_csi: float | None = None
    rank = 0
    for position, (_, thing) in enumerate(ranked, start=1):
        if thing[1].csi != previous_csi:
            rank, previous_csi = position, thing[1].csi
        out.append((thing, rank))
    out.extend(
        (thing, None) for _, thing in sorted(named, key=lambda n: n[0]) if thing[1].csi is None
    )
    return out


def _child_item(
    child: Org,
    result: IndexResult,
    previous: IndexResult,
    target: float | None,
    rank: int | None,
) -> ChildIndex:
    comparison = compare(result, previous)
    return ChildIndex(
        org=child.code,
        name=child.name,
        rank=rank,
        n=result.n,
        csi=result.csi,
        ci95=result.ci95,
        suppressed=result.suppressed,
        delta=comparison.delta,
        significant=comparison.significant,
        target=target,
        attained=_attained(target, result),
    )


async def index_series(
    session: AsyncSession, *, org: Org, windows: Sequence[Window], scope: Scope
) -> SeriesOut:
    """One index per calendar period of the series, each from its months' statistics."""
    _, weights = _nearest(org.path, await _sets(session, org.path))
    whole = Window(windows[0].start, windows[-1].end)
    by_month = await _read(
        session,
        plan=lambda view: pieces(view, [org.id], whole, scope, group=0),
        by_month=True,
    )
    items = []
    for window in windows:
        merged: dict[Stage, list[ScaleStats]] = {}
        for month in window.months()[0]:
            for stage, scales in by_month.get((0, month), {}).items():
                merged.setdefault(stage, []).extend(scales)
        result = index_of(merged, weights, scope)
        items.append(
            SeriesPoint(
                period=window.period or f"{window.start}/{window.end}",
                from_=window.start,
                to=window.end,
                n=result.n,
                csi=result.csi,
                ci95=result.ci95,
                suppressed=result.suppressed,
                stages=_stage_items(result),
            )
        )
    return SeriesOut(tree=scope.tree.label, items=items)


async def segment_index(
    session: AsyncSession, *, org: Org, key: str, window: Window, scope: Scope
) -> SegmentList:
    """One index per value of segment `key` among the scope's responses (those without the
    key left out), with the org's weights, ranked like children."""
    _, weights = _nearest(org.path, await _sets(session, org.path))
    filters = scope.filters

    def where(alias: str, params: store._Params) -> str:
        sql = f" AND {alias}.seg_key = {params.add(key)}"
        if filters.stages is not None:
            stages = [s.value for s in filters.stages]
            sql += f" AND {alias}.stage = ANY({params.add(stages)}::stage[])"
        return sql

    rows = await read_family(
        session,
        org=org,
        window=window,
        scope=scope,
        family=store.SEGMENTS,
        where=where,
        # The rollup keeps segments without channel, customer type or other segments.
        raw_only=filters.fine or filters.segments is not None,
        by=("seg_value", "stage", "scale_min", "scale_max"),
    )
    by_value: dict[str, dict[Stage, list[ScaleStats]]] = {}
    for row in rows:
        if row["n"] == 0:
            continue  # responses added and erased again
        stages = by_value.setdefault(row["seg_value"], {})
        stages.setdefault(Stage(row["stage"]), []).append(
            ScaleStats(row["scale_min"], row["scale_max"], *(row[c] for c in store.STATS))
        )
    results = [(v, (v, index_of(stats, weights, scope))) for v, stats in by_value.items()]
    return SegmentList(
        org=org.code,
        key=key,
        from_=window.start,
        to=window.end,
        tree=scope.tree.label,
        items=[
            SegmentIndex(
                value=value,
                n=result.n,
                csi=result.csi,
                ci95=result.ci95,
                suppressed=result.suppressed,
                rank=rank,
            )
            for (value, result), rank in competition_ranks(results)
        ],
    )
