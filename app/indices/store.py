"""SQL feeding the index math: statistics from the rollup, pending deltas and raw rows.

Invariants (see docs/architecture.md):
- every response ever committed and not deleted is counted exactly once in
  (index_rollup own rows) + (index_deltas), per org and month;
- an org's tree rows in index_rollup equal the sum of the own rows of its current subtree, for
  everything folded; pending deltas are fanned out over the tree when they are folded;
- a read is one SQL statement, so it sees rollup and deltas under one snapshot: a concurrent fold
  (one statement, one transaction) moves a delta into the rollup atomically.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from app.indices.math import ScaleStats
from app.responses.models import CustomerType
from app.stages import Stage

# Fold and tree moves take this lock (transaction-level) so that they never interleave.
FOLD_LOCK_ID = 7_301_944
FOLD_CHUNK = 50_000
STATS = ("n", "sum_d", "sum_d2", "top2", "nps_n", "promoters", "detractors")
KEY = ("stage", "month", "channel", "customer_type", "scale_min", "scale_max")
# A delta also names its survey version (NULL on deltas recorded before the survey rollup).
DELTA_KEY = (*KEY, "survey_version_id")


@dataclass(frozen=True, slots=True)
class Filters:
    stages: Sequence[Stage] | None = None
    channels: Sequence[str] | None = None
    customer_types: Sequence[CustomerType] | None = None
    # Responses to these survey versions only (the survey rollup; raw rows with fine filters too).
    survey_versions: Sequence[int] | None = None
    # Responses carrying all of these segments (key, value); only raw rows have segments.
    segments: Sequence[tuple[str, str]] | None = None

    @property
    def key(self) -> tuple[tuple[Any, ...] | None, ...]:
        """A hashable form: pieces with equal keys are read by one part of the statement."""
        return tuple(
            None if f is None else tuple(f)
            for f in (
                self.stages,
                self.channels,
                self.customer_types,
                self.survey_versions,
                self.segments,
            )
        )

    @property
    def raw_only(self) -> bool:
        """Whether no rollup holds what the filters need (only the responses themselves): the
        segment rollup keeps one segment without channel, customer type or survey; the survey
        rollup no channel or customer type."""
        if self.segments is not None:
            return len(self.segments) > 1 or self.fine or self.survey_versions is not None
        return self.survey_versions is not None and self.fine

    @property
    def containment(self) -> str | None:
        """The segments as the JSON object the responses' `segments` must contain."""
        if self.segments is None:
            return None
        return json.dumps(dict(self.segments), ensure_ascii=False)

    @property
    def fine(self) -> bool:
        """Whether the fine rollup is needed (the coarse one has no channel or customer type)."""
        return self.channels is not None or self.customer_types is not None


NO_FILTERS = Filters()


class _Params:
    """Positional parameters for asyncpg, numbered as they are added."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _filters(alias: str, filters: Filters, params: _Params, *, raw: bool = False) -> str:
    clauses = []
    if filters.stages is not None:
        clauses.append(
            f"{alias}.stage = ANY({params.add([s.value for s in filters.stages])}::stage[])"
        )
    if filters.channels is not None:
        channel = f"coalesce({alias}.channel, '')" if raw else f"{alias}.channel"
        clauses.append(f"{channel} = ANY({params.add(list(filters.channels))}::text[])")
    if filters.customer_types is not None:
        types = [t.value for t in filters.customer_types]
        clauses.append(f"{alias}.customer_type = ANY({params.add(types)}::customer_type[])")
    if filters.survey_versions is not None:
        versions = list(filters.survey_versions)
        clauses.append(f"{alias}.survey_version_id = ANY({params.add(versions)}::bigint[])")
    if filters.segments is not None:
        if raw:
            clauses.append(f"{alias}.segments @> {params.add(filters.containment)}::jsonb")
        else:  # the segment rollup: one segment
            ((key, value),) = filters.segments
            clauses.append(
                f"{alias}.seg_key = {params.add(key)} AND {alias}.seg_value = {params.add(value)}"
            )
    return "".join(f" AND {c}" for c in clauses)


def _raw_stat_values(alias: str) -> list[str]:
    """What one response adds to each of STATS."""
    d = f"({alias}.score - {alias}.scale_min)"
    nps = f"{alias}.primary_type = 'nps'"
    return [
        "1",
        d,
        f"{d} * {d}",
        f"({alias}.score >= {alias}.scale_max - 1)::int",
        f"({nps})::int",
        f"({nps} AND {alias}.score >= 9)::int",
        f"({nps} AND {alias}.score <= 6)::int",
    ]


def raw_stats(alias: str) -> str:
    return ", ".join(_raw_stat_values(alias))


@dataclass(frozen=True, slots=True)
class Piece:
    """Responses of the orgs `scope` over some days, counted for `group`.

    `roots` and `singles` are how the materialized tree reads `scope` (tree rows of the roots,
    own rows of the singles: see orgs.timeline.cover). `months` is the half-open range of whole
    months [first, after) read from the rollup and the pending deltas; `edges` the partial-month
    date ranges read from the raw responses.
    """

    group: int
    scope: Sequence[int]
    roots: Sequence[int]
    singles: Sequence[int]
    months: tuple[date, date] | None
    edges: Sequence[tuple[date, date]]
    filters: Filters = NO_FILTERS


@dataclass(frozen=True, slots=True)
class Cells:
    """Per (org, day) of `ranges` (org, first day, day after; not overlapping within an org):
    the count of responses and the SHA-256 of their ids, ascending, as decimal text joined
    by newlines (the cells of a scorecard's fingerprint)."""

    ranges: Sequence[tuple[int, date, date]]


Cell = tuple[int, date, int, bytes]  # org id, day, count, sha256 of the ids


Key = tuple[int, date | None]  # (group, month when by_month)
Stats = dict[Key, dict[Stage, list[ScaleStats]]]


async def collect(
    conn: Any, *, pieces: Sequence[Piece], filters: Filters | None = None, by_month: bool = False
) -> tuple[str, Stats]:
    """Per group (and month, with `by_month`) and stage, the statistics of every response of
    the pieces; with the tree version the statement saw (one statement: one snapshot).

    `filters`, when given, apply to every piece instead of each piece's own."""
    version, stats, _ = await collect_with_cells(
        conn, pieces=pieces, filters=filters, by_month=by_month, cells=None
    )
    return version, stats


async def collect_with_cells(
    conn: Any,
    *,
    pieces: Sequence[Piece],
    filters: Filters | None = None,
    by_month: bool = False,
    cells: Cells | None,
) -> tuple[str, Stats, list[Cell]]:
    """`collect`, and in the same statement (the same snapshot) the `cells` asked for."""
    params = _Params()
    stats = ", ".join(STATS)
    month = "{}.month" if by_month else "NULL::date"
    raw_month = "date_trunc('month', x.occurred_on)::date" if by_month else "NULL::date"
    parts = []
    by_filters: dict[tuple[Any, ...], tuple[Filters, list[Piece]]] = {}
    for piece in pieces:
        chosen = filters if filters is not None else piece.filters
        by_filters.setdefault(chosen.key, (chosen, []))[1].append(piece)
    for chosen, group in by_filters.values():
        rollup_rows: list[tuple[int, bool, date, date, int]] = []
        delta_rows: list[tuple[int, date, date, int]] = []
        raw_rows: list[tuple[int, date, date, int]] = []
        # A survey filter reads the survey rollup; with channel or customer type as well, only
        # the raw responses have all three; only they have segments.
        raw_only = chosen.raw_only
        table, deltas = _source(chosen)
        # Without filters the partial months come from the day sums too, like whole months.
        by_day = table is COARSE
        day_rows: list[tuple[int, bool, date, date, int]] = []
        day_delta_rows: list[tuple[int, date, date, int]] = []
        for piece in group:
            if piece.months is not None:
                lo, hi = piece.months
                if raw_only:
                    raw_rows += [(o, lo, hi, piece.group) for o in piece.scope]
                else:
                    rollup_rows += [(o, True, lo, hi, piece.group) for o in piece.roots]
                    rollup_rows += [(o, False, lo, hi, piece.group) for o in piece.singles]
                    delta_rows += [(o, lo, hi, piece.group) for o in piece.scope]
            for lo, hi in piece.edges:
                if by_day:
                    day_rows += [(o, True, lo, hi, piece.group) for o in piece.roots]
                    day_rows += [(o, False, lo, hi, piece.group) for o in piece.singles]
                    day_delta_rows += [(o, lo, hi, piece.group) for o in piece.scope]
                else:
                    raw_rows += [(o, lo, hi, piece.group) for o in piece.scope]
        day_month = "date_trunc('month', {}.day)::date" if by_month else "NULL::date"
        # Only for sums kept by a rollup (raw-only filters, two segments say, have none).
        summed = rollup_rows or delta_rows or day_rows or day_delta_rows
        conditions = _filters("s", chosen, params) if summed else ""
        for rows, source, when, bucket, where in (
            (rollup_rows, table.table, "month", month, conditions),
            (delta_rows, deltas, "month", month, conditions),
            # Only a stage filter goes with the coarse sums, and the day sums keep the stage.
            (day_rows, DAYS.rollup.table, "day", day_month, conditions),
            (day_delta_rows, DAYS.deltas, "day", day_month, conditions),
        ):
            if rows:
                columns = [params.add(list(c)) for c in zip(*rows, strict=True)]
                parts.append(
                    _sums_part(source, when, bucket, columns, where, tree=len(rows[0]) == 5)
                )
        if raw_rows:
            columns = [params.add(list(c)) for c in zip(*raw_rows, strict=True)]
            parts.append(
                f"SELECT t.g, {raw_month}, x.stage, x.scale_min, x.scale_max, {raw_stats('x')}"
                f" FROM unnest({columns[0]}::bigint[], {columns[1]}::date[], {columns[2]}::date[],"
                f" {columns[3]}::int[]) AS t(org_id, lo, hi, g)"
                f" JOIN responses x ON x.org_id = t.org_id"
                f" AND x.occurred_on >= t.lo AND x.occurred_on < t.hi"
                f"{_filters('x', chosen, params, raw=True)}"
            )
    union = (
        " UNION ALL ".join(parts)
        if parts
        else (
            "SELECT NULL::int, NULL::date, NULL::stage, NULL::smallint, NULL::smallint, "
            + ", ".join("NULL::bigint" for _ in STATS)
            + " WHERE false"
        )
    )
    sums = ", ".join(f"sum(s.{c})::bigint" for c in STATS)
    no_cell = "NULL::bigint, NULL::date, NULL::bigint, NULL::bytea"
    cell_part = ""
    if cells is not None and cells.ranges:
        columns = [params.add(list(c)) for c in zip(*cells.ranges, strict=True)]
        cell_part = (
            " UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, "
            + ", ".join("NULL" for _ in STATS)
            + ", x.org_id, x.occurred_on, count(*),"
            " sha256(convert_to(string_agg(x.id::text, E'\n' ORDER BY x.id), 'UTF8'))"
            f" FROM unnest({columns[0]}::bigint[], {columns[1]}::date[], {columns[2]}::date[])"
            " AS t(org_id, lo, hi) JOIN responses x ON x.org_id = t.org_id"
            " AND x.occurred_on >= t.lo AND x.occurred_on < t.hi GROUP BY x.org_id, x.occurred_on"
        )
    # The version comes with the sums so that the caller can tell whether the tree it planned
    # the pieces on is the one these sums were read under.
    sql = (
        f"WITH sums AS (SELECT s.g, s.m, s.stage::text, s.scale_min, s.scale_max, {sums} FROM ("
        + union
        + f") AS s(g, m, stage, scale_min, scale_max, {stats}) GROUP BY 1, 2, 3, 4, 5)"
        f" SELECT v.version, sums.*, {no_cell} FROM tree_state v LEFT JOIN sums ON true" + cell_part
    )
    result: Stats = defaultdict(lambda: defaultdict(list))
    found: list[Cell] = []
    version = ""
    for row in await conn.fetch(sql, *params.values):
        if row[0] is None:  # a cell
            found.append((row[13], row[14], row[15], bytes(row[16])))
            continue
        version = row[0]
        if row[1] is None or (row[6] == 0 and row[7] == 0 and row[8] == 0):
            continue  # no sums, or only cancelled deltas (insert then delete) behind them
        result[(row[1], row[2])][Stage(row[3])].append(ScaleStats(row[4], row[5], *row[6:13]))
    return version, result, found


def _sums_part(
    source: str, when: str, bucket: str, columns: list[str], where: str, *, tree: bool
) -> str:
    """SELECT of the sums of `source` (a rollup when `tree`, else deltas) for the (org, [tree,]
    first, after, group) rows bound in `columns`, `when` (month or day) in [first, after);
    `bucket` the month it counts for, `where` more conditions on `s`, the source's alias."""
    stats = ", ".join(STATS)
    if tree:
        rows = (
            f"unnest({columns[0]}::bigint[], {columns[1]}::bool[], {columns[2]}::date[],"
            f" {columns[3]}::date[], {columns[4]}::int[]) AS t(org_id, tree, lo, hi, g)"
        )
        match = " AND s.tree = t.tree"
    else:
        rows = (
            f"unnest({columns[0]}::bigint[], {columns[1]}::date[], {columns[2]}::date[],"
            f" {columns[3]}::int[]) AS t(org_id, lo, hi, g)"
        )
        match = ""
    return (
        f"SELECT t.g, {bucket.format('s')}, s.stage, s.scale_min, s.scale_max, {stats}"
        f" FROM {rows} JOIN {source} s ON s.org_id = t.org_id{match}"
        f" AND s.{when} >= t.lo AND s.{when} < t.hi{where}"
    )


@dataclass(frozen=True, slots=True)
class Rollup:
    """A folded table of sums and the dimensions it keeps besides (org_id, tree)."""

    table: str
    key: tuple[str, ...]
    stats: tuple[str, ...] = STATS
    # One array of sums (`stats` is its one column), added element by element.
    packed: bool = False


# The fine rollup keeps channel and customer type for filtered queries; the coarse one drops them,
# so that an unfiltered query reads a few rows per month instead of a few dozen; the survey one
# keeps the survey version instead (for measures on one survey).
FINE = Rollup("index_rollup", KEY)
COARSE = Rollup("index_rollup_stage", ("stage", "month", "scale_min", "scale_max"))
SURVEY = Rollup(
    "index_rollup_survey", ("survey_version_id", "stage", "month", "scale_min", "scale_max")
)
INDEX_ROLLUPS = (FINE, COARSE, SURVEY)


def _month(alias: str) -> str:
    return f"date_trunc('month', {alias}.occurred_on)::date"


def _named_stats(alias: str) -> str:
    return ", ".join(
        f"{value} AS {name}" for value, name in zip(_raw_stat_values(alias), STATS, strict=True)
    )


RATING_KINDS = "('csat', 'nps', 'ces', 'rating')"


def segment_facts(relation: str) -> str:
    """One row per (segment key, value) of each response of `relation`, with its index sums."""
    return (
        f"SELECT x.org_id, s.key AS seg_key, s.value AS seg_value, x.stage, {_month('x')} AS month,"
        f" x.scale_min, x.scale_max, {_named_stats('x')}"
        f" FROM {relation} AS x CROSS JOIN LATERAL jsonb_each_text(x.segments) AS s(key, value)"
    )


def choice_facts(relation: str) -> str:
    """Per response of `relation`: itself (question and option '') and each choice question of
    its version it answered, with its primary score."""
    return (
        f"SELECT x.org_id, x.survey_version_id, '' AS question, '' AS option,"
        f" {_month('x')} AS month, x.score, 1::bigint AS n FROM {relation} AS x"
        f" UNION ALL"
        f" SELECT x.org_id, x.survey_version_id, q.key, x.answers ->> q.key, {_month('x')},"
        f" x.score, 1::bigint FROM {relation} AS x JOIN ("
        f"SELECT v.id, e.value ->> 'key' AS key FROM survey_versions v"
        f" CROSS JOIN LATERAL jsonb_array_elements(v.questions) AS e(value)"
        f" WHERE e.value ->> 'type' = 'choice') AS q ON q.id = x.survey_version_id"
        f" WHERE x.answers ? q.key"
    )


def moment_facts(relation: str) -> str:
    """Per response of `relation`: the rating-kind questions of its version it answered,
    numbered p in question order, d_p = answer - scale min; under its answered set ("0,1,3"),
    the terms (0, 0) = 1, (0, p+1) = d_p and (p+1, q+1) = d_p·d_q (p ≤ q) packed in `totals`,
    ordered by (i, j) (see moment_terms)."""
    return f"""WITH q AS (
        SELECT v.id AS vid, e.value ->> 'key' AS key, (e.value -> 'scale' ->> 'min')::bigint AS lo,
               (row_number() OVER (PARTITION BY v.id ORDER BY e.ord) - 1)::smallint AS p
        FROM survey_versions v
        CROSS JOIN LATERAL jsonb_array_elements(v.questions) WITH ORDINALITY AS e(value, ord)
        WHERE e.value ->> 'type' IN {RATING_KINDS}
    ), a AS (
        SELECT x.id AS rid, x.org_id, x.survey_version_id, {_month("x")} AS month, q.p,
               (x.answers ->> q.key)::bigint - q.lo AS d
        FROM {relation} AS x JOIN q ON q.vid = x.survey_version_id
        WHERE jsonb_typeof(x.answers -> q.key) = 'number'
    ), s AS (
        SELECT rid, org_id, survey_version_id, month,
               string_agg(p::text, ',' ORDER BY p) AS answered, array_agg(d ORDER BY p) AS ds
        FROM a GROUP BY 1, 2, 3, 4
    ), c AS (
        SELECT a.rid, array_agg(a.d * b.d ORDER BY a.p, b.p) AS products
        FROM a JOIN a AS b ON b.rid = a.rid AND b.p >= a.p GROUP BY a.rid
    )
    SELECT s.org_id, s.survey_version_id, s.month, s.answered,
           ARRAY[1::bigint] || s.ds || c.products AS totals
    FROM s JOIN c USING (rid)"""


def moment_terms(answered: str) -> list[tuple[int, int]]:
    """The (i, j) of each element of a packed `totals` of the answered set, in order."""
    numbers = [0, *(int(p) + 1 for p in answered.split(","))]
    return [(i, j) for a, i in enumerate(numbers) for j in numbers[a:]]


def day_facts(relation: str) -> str:
    """The index sums of each response of `relation` by its day (no channel or customer type)."""
    return (
        f"SELECT x.org_id, x.stage, x.occurred_on AS day, x.scale_min, x.scale_max,"
        f" {_named_stats('x')} FROM {relation} AS x"
    )


@dataclass(frozen=True, slots=True)
class Family:
    """Sums of the insights kept like the index's: deltas appended by the trigger on
    `responses` (from `facts`, what each response adds), folded into `rollup`."""

    deltas: str
    rollup: Rollup
    facts: Callable[[str], str]
    # Drop the rows whose count falls to zero (an erasure): their key is the client's text.
    prune: bool = False


SEGMENTS = Family(
    "segment_deltas",
    Rollup(
        "index_rollup_segment",
        ("seg_key", "seg_value", "stage", "month", "scale_min", "scale_max"),
    ),
    segment_facts,
    prune=True,
)
CHOICES = Family(
    "choice_deltas",
    Rollup("choice_rollup", ("survey_version_id", "question", "option", "month", "score"), ("n",)),
    choice_facts,
)
MOMENTS = Family(
    "moment_deltas",
    Rollup("moment_rollup", ("survey_version_id", "month", "answered"), ("totals",), packed=True),
    moment_facts,
)
# The coarse index sums by day: the partial months at the edges of a custom range read these
# instead of the raw responses (a few rows per org and day instead of every response).
DAYS = Family(
    "day_deltas",
    Rollup("index_rollup_day", ("stage", "day", "scale_min", "scale_max")),
    day_facts,
)
FAMILIES = (SEGMENTS, CHOICES, MOMENTS, DAYS)
ROLLUPS = (*INDEX_ROLLUPS, *(f.rollup for f in FAMILIES))

# SQL conditions (` AND …`) on the columns a family's sums are kept by, for the alias given;
# values go to the parameters.
Condition = Callable[[str, _Params], str]


async def gather(
    conn: Any,
    *,
    pieces: Sequence[Piece],
    family: Family,
    where: Condition,
    raw_where: Callable[[_Params], str],
    raw_only: bool = False,
    by: Sequence[str] | None = None,
) -> tuple[str, list[Any]]:
    """The family's sums over every response of the pieces, by the family's key, kept by
    `where`; with the tree version the statement saw (one statement: one snapshot).

    Whole months come from the rollup (the cover's tree and own rows) and the pending deltas,
    partial months from the raw responses through the family's facts; with `raw_only` (filters
    no rollup keeps) every day comes from the raw responses. `raw_where` (on `responses x`)
    keeps the raw rows that count. `by` (columns of the key) sums over the others."""
    params = _Params()
    rollup, key, stats = family.rollup, family.rollup.key, family.rollup.stats
    rollup_rows: list[tuple[int, bool, date, date]] = []
    delta_rows: list[tuple[int, date, date]] = []
    raw_rows: list[tuple[int, date, date]] = []
    for piece in pieces:
        ranges = list(piece.edges)
        if piece.months is not None:
            lo, hi = piece.months
            if raw_only:
                ranges.append((lo, hi))
            else:
                rollup_rows += [(o, True, lo, hi) for o in piece.roots]
                rollup_rows += [(o, False, lo, hi) for o in piece.singles]
                delta_rows += [(o, lo, hi) for o in piece.scope]
        raw_rows += [(o, lo, hi) for lo, hi in ranges for o in piece.scope]
    selected = f"{_columns(key, 's.')}, {_columns(stats, 's.')}"
    parts = []
    if rollup_rows:
        c = [params.add(list(v)) for v in zip(*rollup_rows, strict=True)]
        parts.append(
            f"SELECT {selected} FROM unnest({c[0]}::bigint[], {c[1]}::bool[], {c[2]}::date[],"
            f" {c[3]}::date[]) AS t(org_id, tree, lo, hi) JOIN {rollup.table} s"
            f" ON s.org_id = t.org_id AND s.tree = t.tree AND s.month >= t.lo AND s.month < t.hi"
            f"{where('s', params)}"
        )
    if delta_rows:
        c = [params.add(list(v)) for v in zip(*delta_rows, strict=True)]
        parts.append(
            f"SELECT {selected} FROM unnest({c[0]}::bigint[], {c[1]}::date[], {c[2]}::date[])"
            f" AS t(org_id, lo, hi) JOIN {family.deltas} s ON s.org_id = t.org_id"
            f" AND s.month >= t.lo AND s.month < t.hi{where('s', params)}"
        )
    if raw_rows:
        c = [params.add(list(v)) for v in zip(*raw_rows, strict=True)]
        relation = (
            f"(SELECT x.* FROM unnest({c[0]}::bigint[], {c[1]}::date[], {c[2]}::date[])"
            " AS t(org_id, lo, hi) JOIN responses x ON x.org_id = t.org_id"
            f" AND x.occurred_on >= t.lo AND x.occurred_on < t.hi{raw_where(params)})"
        )
        parts.append(
            f"SELECT {selected} FROM ({family.facts(relation)}) s WHERE true{where('s', params)}"
        )
    if not parts:
        return str(await conn.fetchval("SELECT version FROM tree_state")), []
    union = "(" + " UNION ALL ".join(parts) + ") AS u"
    sql = (
        f"WITH sums AS ({summed(rollup, union, by if by is not None else key)})"
        " SELECT v.version, sums.* FROM tree_state v LEFT JOIN sums ON true"
    )
    rows = await conn.fetch(sql, *params.values)
    version = rows[0]["version"] if rows else ""
    return version, [r for r in rows if r[stats[0]] is not None]


def _source(filters: Filters) -> tuple[Rollup, str]:
    """The rollup and the deltas that hold what `filters` need (unless raw_only)."""
    if filters.segments is not None:
        return SEGMENTS.rollup, SEGMENTS.deltas
    if filters.survey_versions is not None:
        return SURVEY, "index_deltas"
    return (FINE if filters.fine else COARSE), "index_deltas"


def _columns(names: Sequence[str], alias: str = "") -> str:
    return ", ".join(f"{alias}{c}" for c in names)


# Packed arrays of at most this many terms are summed position by position (`terms`); longer
# ones element by element, unnested.
POSITIONAL_TERMS = 66  # 10 numeric questions: 1 + 10 + 55 terms


def _positional(terms: int | None) -> bool:
    return terms is not None and terms <= POSITIONAL_TERMS


def summed(rollup: Rollup, source: str, by: Sequence[str], *, terms: int | None = None) -> str:
    """SELECT of `source`'s sums of the rollup's stats grouped by `by` (columns of `source`);
    a packed array is summed element by element: position by position when no array of
    `source` has more than `terms` elements (every array of a group has the same length: the
    answered set decides it), else unnested."""
    group = _columns(by)
    if not rollup.packed:
        sums = ", ".join(f"sum({c})::bigint AS {c}" for c in rollup.stats)
        return f"SELECT {group}, {sums} FROM {source} GROUP BY {group}"
    (array,) = rollup.stats
    if _positional(terms):
        assert terms is not None
        # Positions past a group's length are NULL in every row, so their sums are too: cut.
        positions = ", ".join(f"sum({array}[{t}])::bigint" for t in range(1, terms + 1))
        return (
            f"SELECT {group}, (ARRAY[{positions}])[1:max(cardinality({array}))] AS {array}"
            f" FROM {source} GROUP BY {group}"
        )
    return (
        f"SELECT {group}, array_agg(v ORDER BY t) AS {array} FROM ("
        f"SELECT {_columns(by, 'p.')}, e.t, sum(e.v)::bigint AS v FROM (SELECT * FROM {source}) p"
        f" CROSS JOIN LATERAL unnest(p.{array}) WITH ORDINALITY AS e(v, t)"
        f" GROUP BY {_columns(by, 'p.')}, e.t) AS packed GROUP BY {group}"
    )


def _combined(rollup: Rollup, left: str, right: str, sign: str) -> str:
    """SET list: each stat of `left` (alias) plus or minus (`sign`) that of `right`."""
    if not rollup.packed:
        return ", ".join(f"{c} = {left}.{c} {sign} {right}.{c}" for c in rollup.stats)
    (array,) = rollup.stats
    return (
        f"{array} = ARRAY(SELECT a {sign} b FROM unnest({left}.{array}, {right}.{array})"
        " WITH ORDINALITY AS e(a, b, t) ORDER BY t)"
    )


def _upsert(rollup: Rollup, source: str, *, terms: int | None = None) -> str:
    """INSERT the grouped sums of `source` (org_id, tree, key…, stats…) into `rollup`."""
    key = _columns(rollup.key)
    return (
        f"INSERT INTO {rollup.table} AS r (org_id, tree, {key}, {_columns(rollup.stats)})"
        f" {summed(rollup, source, ('org_id', 'tree', *rollup.key), terms=terms)}"
        f" ON CONFLICT (org_id, tree, {key}) DO UPDATE SET"
        f" {_combined(rollup, 'r', 'excluded', '+')}"
    )


def _first(rollup: Rollup) -> str:
    """The first sum of a row: a count (whether the row still holds any response)."""
    return f"{rollup.stats[0]}[1]" if rollup.packed else rollup.stats[0]


# The orgs on the path of `o` (alias of orgs) that keep tree rows: every strict ancestor, and
# `o` itself only if it has children (a leaf keeps no tree rows: they would repeat its own).
_KEEPING_TREE_ROWS = (
    " CROSS JOIN LATERAL unnest(o.path) AS a(id) WHERE (a.id <> o.id"
    " OR o.id IN (SELECT c.parent_id FROM orgs c WHERE c.parent_id IS NOT NULL))"
)


def _fanned(source: str, columns: Sequence[str]) -> str:
    """SELECT of `source` (org_id, columns…) as own rows of its org and tree rows of every org
    on the org's path that keeps them (the tree as it is now)."""
    return (
        f"SELECT b.org_id, false AS tree, {_columns(columns, 'b.')} FROM {source} b"
        f" UNION ALL SELECT a.id, true, {_columns(columns, 'b.')} FROM {source} b"
        f" JOIN orgs o ON o.id = b.org_id{_KEEPING_TREE_ROWS}"
    )


def _tree_rows(rollup: Rollup) -> str:
    """The rollup's own rows as tree rows of every org on their org's path that keeps them (a
    rebuild)."""
    columns = (*rollup.key, *rollup.stats)
    return (
        f"(SELECT a.id AS org_id, true AS tree, {_columns(columns, 'r.')}"
        f" FROM {rollup.table} r JOIN orgs o ON o.id = r.org_id{_KEEPING_TREE_ROWS}"
        f" AND NOT r.tree) AS tree"
    )


def _chunk(deltas: str, columns: str = "id") -> str:
    """The deltas the next fold takes (the oldest FOLD_CHUNK), as a subquery of `columns`."""
    return f"(SELECT {columns} FROM {deltas} ORDER BY id LIMIT {FOLD_CHUNK}) AS chunk"


def _fold_family(family: Family, *, terms: int | None = None) -> str:
    """One statement: take a chunk of the family's deltas, fan it out, add it to the rollup
    (`terms`: the longest packed array in the chunk, when known)."""
    columns = (*family.rollup.key, *family.rollup.stats)
    # Summed by position: a delta committed since `terms` was read may be longer; it waits
    # for the next round rather than lose its last terms.
    bound = f" AND cardinality({family.rollup.stats[0]}) <= {terms}" if _positional(terms) else ""
    return (
        f"WITH batch AS (DELETE FROM {family.deltas} WHERE id IN"
        f" (SELECT id FROM {_chunk(family.deltas)}){bound}"
        f" RETURNING org_id, {_columns(columns)}),"
        f" fanned AS ({_fanned('batch', columns)}),"
        f" folded AS ({_upsert(family.rollup, 'fanned', terms=terms)})"
        f" SELECT count(*), coalesce(bool_or({_first(family.rollup)} < 0), false) FROM batch"
    )


# One statement: take a chunk of deltas, fan each out to its org (own) and every ancestor of the
# org as the tree is now (tree), add the sums to every rollup. Deltas without a survey version
# (recorded before the survey rollup, which was built from the responses themselves) are in the
# survey rollup already.
_FOLD = f"""
WITH batch AS (
    DELETE FROM index_deltas
    WHERE id IN (SELECT id FROM {_chunk("index_deltas")})
    RETURNING org_id, {_columns(DELTA_KEY)}, {_columns(STATS)}
), fanned AS (
    {_fanned("batch", DELTA_KEY + STATS)}
), fine AS (
    {_upsert(FINE, "fanned")}
), coarse AS (
    {_upsert(COARSE, "fanned")}
), by_survey AS (
    {_upsert(SURVEY, "(SELECT * FROM fanned WHERE survey_version_id IS NOT NULL) AS f")}
)
SELECT count(*) FROM batch
"""


_FOLD_FAMILY = {family.deltas: _fold_family(family) for family in FAMILIES}


async def fold_statement(conn: Any, family: Family) -> str | None:
    """The statement that folds the family's next chunk (None: a packed family with nothing
    pending). Packed arrays are summed position by position when the chunk's are short."""
    if not family.rollup.packed:
        return _FOLD_FAMILY[family.deltas]
    (array,) = family.rollup.stats
    terms = await conn.fetchval(
        f"SELECT max(cardinality({array})) FROM {_chunk(family.deltas, array)}"
    )
    return None if terms is None else _fold_family(family, terms=terms)


async def fold(conn: Any) -> int:
    """Fold up to FOLD_CHUNK pending deltas of each family into the rollups; the most rows
    folded of one family (FOLD_CHUNK: more is pending).

    Runs in the caller's transaction; only one fold (or tree move) runs at a time (0 if busy).
    """
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", FOLD_LOCK_ID):
        return 0
    # Planned afresh each round: a statement without parameters keeps the plan it got first,
    # and one planned on empty tables (a server started before a bulk load, with autovacuum
    # off) nests loops over the deltas that never end.
    await conn.execute("DISCARD PLANS")
    folded = [int(await conn.fetchval(_FOLD))]
    for family in FAMILIES:
        statement = await fold_statement(conn, family)
        if statement is None:
            folded.append(0)
            continue
        count, removed = await conn.fetchrow(statement)
        if removed and family.prune:
            # Rare (erasures): no row may keep an erased response's segment value.
            first = _first(family.rollup)
            await conn.execute(f"DELETE FROM {family.rollup.table} WHERE {first} = 0")
        folded.append(int(count))
    # A full chunk of any family means more is pending: the caller folds again at once.
    return max(folded)


async def _has_children(conn: Any, org_id: int, *, besides: int | None = None) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM orgs WHERE parent_id = $1 AND id IS DISTINCT FROM $2)",
            org_id,
            besides,
        )
    )


async def _grow_tree_rows(conn: Any, org_id: int) -> None:
    """Give `org_id`, a leaf about to get its first child, tree rows: its own rows (a leaf's
    subtree is itself). Under the fold lock."""
    for rollup in ROLLUPS:
        columns = _columns((*rollup.key, *rollup.stats))
        await conn.execute(f"DELETE FROM {rollup.table} WHERE org_id = $1 AND tree", org_id)
        await conn.execute(
            f"INSERT INTO {rollup.table} (org_id, tree, {columns})"
            f" SELECT org_id, true, {columns} FROM {rollup.table} WHERE org_id = $1 AND NOT tree",
            org_id,
        )


async def before_first_child(conn: Any, *, parent_id: int) -> None:
    """Before an org is created under `parent_id` (in the creating transaction): if the parent
    is a leaf, give it tree rows. Then it takes the fold lock, so that the fold does not fan out
    under a leafness it is changing, and looks again after it: of two creations under one leaf,
    the second sees the first's child. (A parent with children keeps them: a move, which could
    take them, waits for the creation's shared tree lock.)"""
    if await _has_children(conn, parent_id):
        return
    await conn.execute("SELECT pg_advisory_xact_lock($1)", FOLD_LOCK_ID)
    if not await _has_children(conn, parent_id):
        await _grow_tree_rows(conn, parent_id)


async def move_subtree(
    conn: Any, *, org_id: int, old_ancestors: list[int], new_ancestors: list[int]
) -> None:
    """Carry the folded sums of `org_id`'s subtree (its tree rows, or its own rows if it is a
    leaf) from its old ancestors to its new ones; an old parent left without children loses
    its tree rows, a new parent that had none gets them first.

    Runs in the move's transaction, which holds the fold lock, before the paths change.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", FOLD_LOCK_ID)
    whole = await _has_children(conn, org_id)  # which rows of org_id hold its subtree
    for rollup in ROLLUPS:
        key_match = " AND ".join(f"r.{c} = m.{c}" for c in rollup.key)
        if old_ancestors:
            await conn.execute(
                f"UPDATE {rollup.table} r SET {_combined(rollup, 'r', 'm', '-')}"
                f" FROM {rollup.table} m WHERE m.org_id = $1 AND m.tree = $3 AND r.tree"
                f" AND r.org_id = ANY($2::bigint[]) AND {key_match}",
                org_id,
                old_ancestors,
                whole,
            )
    if old_ancestors and not await _has_children(conn, old_ancestors[-1], besides=org_id):
        for rollup in ROLLUPS:
            await conn.execute(
                f"DELETE FROM {rollup.table} WHERE org_id = $1 AND tree", old_ancestors[-1]
            )
    if not new_ancestors:
        return
    if not await _has_children(conn, new_ancestors[-1]):
        await _grow_tree_rows(conn, new_ancestors[-1])
    for rollup in ROLLUPS:
        moved = (
            f"(SELECT a.id AS org_id, true AS tree,"
            f" {_columns(rollup.key + rollup.stats, 'm.')}"
            f" FROM {rollup.table} m CROSS JOIN unnest($2::bigint[]) AS a(id)"
            f" WHERE m.org_id = $1 AND m.tree = $3) AS moved"
        )
        await conn.execute(_upsert(rollup, moved), org_id, new_ancestors, whole)


STATISTICS_TABLES = (
    "responses",
    "index_deltas",
    *(family.deltas for family in FAMILIES),
    *(rollup.table for rollup in ROLLUPS),
)


DELTA_TABLES = ("index_deltas", *(family.deltas for family in FAMILIES))


async def vacuum_deltas(conn: Any, *, skip_locked: bool = False) -> None:
    """Clear the delta tables of the rows a catch-up folded away, and analyze them.

    Autovacuum may be off: each folded delta leaves a dead row and a dead index entry, and the
    first read of a subtree after a large backfill would walk a million of them. Outside any
    transaction (VACUUM cannot run in one); it does not block writers. `skip_locked`: leave a
    table that another process is vacuuming or analyzing (an import's end) to it, rather than
    wait for it."""
    options = "ANALYZE, SKIP_LOCKED" if skip_locked else "ANALYZE"
    await conn.execute(f"VACUUM ({options}) {', '.join(DELTA_TABLES)}")


async def analyze(
    conn: Any, tables: Sequence[str] = STATISTICS_TABLES, *, skip_locked: bool = False
) -> None:
    """Refresh the planner's statistics of the tables a bulk change touched (autovacuum may be
    off, or late: a read must not be planned on the row counts of an empty table)."""
    options = " (SKIP_LOCKED)" if skip_locked else ""
    await conn.execute(f"ANALYZE{options} {', '.join(tables)}")


# The statement triggers on UPDATE of responses that append deltas (migrations).
UPDATE_TRIGGERS = ("responses_index_update", "responses_day_update")


async def rebuild(conn: Any, *, zone: str | None = None) -> None:
    """Recompute the rollups from the raw responses (after a bulk backfill or a repair).

    With `zone`, first recompute every response's local date in that reporting time zone.
    Runs in the caller's transaction, which then holds the responses table exclusively.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", FOLD_LOCK_ID)
    if zone is not None:
        # Every row changes; the rollups are rebuilt below, so the update trigger's deltas
        # would only be thrown away.
        for trigger in UPDATE_TRIGGERS:
            await conn.execute(f"ALTER TABLE responses DISABLE TRIGGER {trigger}")
        await conn.execute(
            "UPDATE responses SET occurred_on = (occurred_at AT TIME ZONE $1)::date"
            " WHERE occurred_on IS DISTINCT FROM (occurred_at AT TIME ZONE $1)::date",
            zone,
        )
        for trigger in UPDATE_TRIGGERS:
            await conn.execute(f"ALTER TABLE responses ENABLE TRIGGER {trigger}")
    await conn.execute(
        "TRUNCATE index_deltas, "
        + ", ".join(f.deltas for f in FAMILIES)
        + ", "
        + ", ".join(r.table for r in ROLLUPS)
    )
    own = f"""
        (SELECT x.org_id, false AS tree, x.stage, {_month("x")} AS month,
                coalesce(x.channel, '') AS channel, x.customer_type, x.scale_min, x.scale_max,
                x.survey_version_id, {_named_stats("x")}
         FROM responses x) AS own
    """
    await conn.execute(_upsert(FINE, own))
    await conn.execute(_upsert(FINE, _tree_rows(FINE)))
    coarse = f"(SELECT org_id, tree, {_columns(KEY + STATS)} FROM index_rollup) AS fine"
    await conn.execute(_upsert(COARSE, coarse))
    await conn.execute(_upsert(SURVEY, own))
    await conn.execute(_upsert(SURVEY, _tree_rows(SURVEY)))
    for family in FAMILIES:
        columns = (*family.rollup.key, *family.rollup.stats)
        facts = family.facts("responses")
        await conn.execute(
            _upsert(
                family.rollup,
                f"(SELECT org_id, false AS tree, {_columns(columns)} FROM ({facts}) f) AS own",
            )
        )
        await conn.execute(_upsert(family.rollup, _tree_rows(family.rollup)))
    await analyze(conn)
