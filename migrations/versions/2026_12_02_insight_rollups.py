"""Insight rollups: segments, choices and rating moments, kept like the index's sums.

The statement trigger on responses also appends, per family, what the changed responses add
(segment_deltas, choice_deltas, moment_deltas); the fold moves them into index_rollup_segment,
choice_rollup and moment_rollup. The rollups are filled here from the responses themselves.
The facts below are this revision's copy of app.indices.store's (a migration does not follow
later code).

Revision ID: 3b7e91c0d2f4
Revises: de8d2126ae6c
Create Date: 2026-12-02 09:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3b7e91c0d2f4"
down_revision: str | None = "de8d2126ae6c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATS = ("n", "sum_d", "sum_d2", "top2", "nps_n", "promoters", "detractors")
MONTH = "date_trunc('month', x.occurred_on)::date"
D = "(x.score - x.scale_min)"
NPS = "x.primary_type = 'nps'"
RAW_STATS = (
    f"1 AS n, {D} AS sum_d, {D} * {D} AS sum_d2, (x.score >= x.scale_max - 1)::int AS top2,"
    f" ({NPS})::int AS nps_n, ({NPS} AND x.score >= 9)::int AS promoters,"
    f" ({NPS} AND x.score <= 6)::int AS detractors"
)


def segment_facts(relation: str) -> str:
    return (
        f"SELECT x.org_id, s.key AS seg_key, s.value AS seg_value, x.stage, {MONTH} AS month,"
        f" x.scale_min, x.scale_max, {RAW_STATS}"
        f" FROM {relation} AS x CROSS JOIN LATERAL jsonb_each_text(x.segments) AS s(key, value)"
    )


def choice_facts(relation: str) -> str:
    return (
        f"SELECT x.org_id, x.survey_version_id, '' AS question, '' AS option,"
        f" {MONTH} AS month, x.score, 1::bigint AS n FROM {relation} AS x"
        f" UNION ALL"
        f" SELECT x.org_id, x.survey_version_id, q.key, x.answers ->> q.key, {MONTH},"
        f" x.score, 1::bigint FROM {relation} AS x JOIN ("
        f"SELECT v.id, e.value ->> 'key' AS key FROM survey_versions v"
        f" CROSS JOIN LATERAL jsonb_array_elements(v.questions) AS e(value)"
        f" WHERE e.value ->> 'type' = 'choice') AS q ON q.id = x.survey_version_id"
        f" WHERE x.answers ? q.key"
    )


def moment_facts(relation: str) -> str:
    return f"""WITH q AS (
        SELECT v.id AS vid, e.value ->> 'key' AS key, (e.value -> 'scale' ->> 'min')::bigint AS lo,
               (row_number() OVER (PARTITION BY v.id ORDER BY e.ord) - 1)::smallint AS p
        FROM survey_versions v
        CROSS JOIN LATERAL jsonb_array_elements(v.questions) WITH ORDINALITY AS e(value, ord)
        WHERE e.value ->> 'type' IN ('csat', 'nps', 'ces', 'rating')
    ), a AS (
        SELECT x.id AS rid, x.org_id, x.survey_version_id, {MONTH} AS month, q.p,
               (x.answers ->> q.key)::bigint - q.lo AS d
        FROM {relation} AS x JOIN q ON q.vid = x.survey_version_id
        WHERE jsonb_typeof(x.answers -> q.key) = 'number'
    ), s AS (
        SELECT rid, org_id, survey_version_id, month,
               string_agg(p::text, ',' ORDER BY p) AS answered
        FROM a GROUP BY 1, 2, 3, 4
    )
    SELECT org_id, survey_version_id, month, answered, 0::smallint AS i, 0::smallint AS j,
           1::bigint AS total FROM s
    UNION ALL
    SELECT a.org_id, a.survey_version_id, a.month, s.answered, 0::smallint, (a.p + 1)::smallint,
           a.d FROM a JOIN s USING (rid)
    UNION ALL
    SELECT a.org_id, a.survey_version_id, a.month, s.answered, (a.p + 1)::smallint,
           (b.p + 1)::smallint, a.d * b.d
    FROM a JOIN a AS b ON b.rid = a.rid AND b.p >= a.p JOIN s ON s.rid = a.rid"""


# (deltas, rollup, key, sums, facts)
FAMILIES = (
    (
        "segment_deltas",
        "index_rollup_segment",
        ("seg_key", "seg_value", "stage", "month", "scale_min", "scale_max"),
        STATS,
        segment_facts,
    ),
    (
        "choice_deltas",
        "choice_rollup",
        ("survey_version_id", "question", "option", "month", "score"),
        ("n",),
        choice_facts,
    ),
    (
        "moment_deltas",
        "moment_rollup",
        ("survey_version_id", "month", "answered", "i", "j"),
        ("total",),
        moment_facts,
    ),
)


def _index_sums(table: str, sign: str) -> str:
    d = "(score - scale_min)"
    return f"""
        SELECT org_id, stage, date_trunc('month', occurred_on)::date, coalesce(channel, ''),
               customer_type, scale_min, scale_max, survey_version_id,
               {sign}count(*), {sign}sum({d}), {sign}sum({d} * {d}),
               {sign}count(*) FILTER (WHERE score >= scale_max - 1),
               {sign}count(*) FILTER (WHERE primary_type = 'nps'),
               {sign}count(*) FILTER (WHERE primary_type = 'nps' AND score >= 9),
               {sign}count(*) FILTER (WHERE primary_type = 'nps' AND score <= 6)
        FROM {table} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""


INDEX_COLUMNS = (
    "org_id, stage, month, channel, customer_type, scale_min, scale_max, survey_version_id, "
    + ", ".join(STATS)
)


def _family_inserts(table: str, sign: str) -> str:
    statements = []
    for deltas, _, key, sums, facts in FAMILIES:
        keys = ", ".join(key)
        totals = ", ".join(f"{sign}sum({c})" for c in sums)
        statements.append(
            f"INSERT INTO {deltas} (org_id, {keys}, {', '.join(sums)})"
            f" SELECT org_id, {keys}, {totals} FROM ({facts(table)}) f GROUP BY org_id, {keys};"
        )
    return "\n        ".join(statements)


def _function(with_families: bool) -> str:
    def part(table: str, sign: str) -> str:
        index = f"INSERT INTO index_deltas ({INDEX_COLUMNS}) {_index_sums(table, sign)};"
        return index + ("\n        " + _family_inserts(table, sign) if with_families else "")

    return f"""
CREATE OR REPLACE FUNCTION responses_index_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {part("old_rows", "-")}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {part("new_rows", "")}
    END IF;
    RETURN NULL;
END $$
"""


def _sum_columns(names: Sequence[str]) -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def upgrade() -> None:
    stage = postgresql.ENUM(name="stage", create_type=False)
    op.create_table(
        "segment_deltas",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("seg_key", sa.Text(), nullable=False),
        sa.Column("seg_value", sa.Text(), nullable=False),
        sa.Column("stage", stage, nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("scale_min", sa.SmallInteger(), nullable=False),
        sa.Column("scale_max", sa.SmallInteger(), nullable=False),
        *_sum_columns(STATS),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_deltas")),
    )
    op.create_table(
        "index_rollup_segment",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("tree", sa.Boolean(), nullable=False),
        sa.Column("seg_key", sa.Text(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("seg_value", sa.Text(), nullable=False),
        sa.Column("stage", stage, nullable=False),
        sa.Column("scale_min", sa.SmallInteger(), nullable=False),
        sa.Column("scale_max", sa.SmallInteger(), nullable=False),
        *_sum_columns(STATS),
        sa.PrimaryKeyConstraint(
            "org_id",
            "tree",
            "seg_key",
            "month",
            "seg_value",
            "stage",
            "scale_min",
            "scale_max",
            name=op.f("pk_index_rollup_segment"),
        ),
    )
    op.create_table(
        "choice_deltas",
        sa.Column("survey_version_id", sa.BigInteger(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("option", sa.Text(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_choice_deltas")),
    )
    op.create_table(
        "choice_rollup",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("tree", sa.Boolean(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("survey_version_id", sa.BigInteger(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("option", sa.Text(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "tree",
            "month",
            "survey_version_id",
            "question",
            "option",
            "score",
            name=op.f("pk_choice_rollup"),
        ),
    )
    op.create_table(
        "moment_deltas",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("survey_version_id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("answered", sa.Text(), nullable=False),
        sa.Column("i", sa.SmallInteger(), nullable=False),
        sa.Column("j", sa.SmallInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moment_deltas")),
    )
    op.create_table(
        "moment_rollup",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("tree", sa.Boolean(), nullable=False),
        sa.Column("survey_version_id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("answered", sa.Text(), nullable=False),
        sa.Column("i", sa.SmallInteger(), nullable=False),
        sa.Column("j", sa.SmallInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "tree",
            "survey_version_id",
            "month",
            "answered",
            "i",
            "j",
            name=op.f("pk_moment_rollup"),
        ),
    )
    for deltas in ("segment_deltas", "choice_deltas", "moment_deltas"):
        op.create_index(f"ix_{deltas}_org_id_month", deltas, ["org_id", "month"], unique=False)
    op.execute(_function(with_families=True))
    # Own rows from every response, then tree rows fanned out over today's paths.
    for _, rollup, key, sums, facts in FAMILIES:
        keys = ", ".join(key)
        totals = ", ".join(f"sum({c})" for c in sums)
        op.execute(
            f"INSERT INTO {rollup} (org_id, tree, {keys}, {', '.join(sums)})"
            f" SELECT org_id, false, {keys}, {totals} FROM ({facts('responses')}) f"
            f" GROUP BY org_id, {keys}"
        )
        op.execute(
            f"INSERT INTO {rollup} (org_id, tree, {keys}, {', '.join(sums)})"
            f" SELECT a.id, true, {', '.join(f'r.{c}' for c in key)},"
            f" {', '.join(f'sum(r.{c})' for c in sums)}"
            f" FROM {rollup} r JOIN orgs o ON o.id = r.org_id"
            f" CROSS JOIN LATERAL unnest(o.path) AS a(id)"
            f" WHERE NOT r.tree GROUP BY a.id, {', '.join(f'r.{c}' for c in key)}"
        )
        op.execute(f"ANALYZE {rollup}")


def downgrade() -> None:
    op.execute(_function(with_families=False))
    for deltas in ("moment_deltas", "choice_deltas", "segment_deltas"):
        op.drop_index(f"ix_{deltas}_org_id_month", table_name=deltas)
    for table in (
        "moment_rollup",
        "moment_deltas",
        "choice_rollup",
        "choice_deltas",
        "index_rollup_segment",
        "segment_deltas",
    ):
        op.drop_table(table)
