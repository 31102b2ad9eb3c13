"""Day sums: the coarse index sums per (org, tree, stage, day, scale), kept like the others.

A custom range's partial months read these instead of the raw responses, so any from/to costs
about what a month-aligned window costs. A trigger of its own on responses (statement level,
transition tables) appends day_deltas; the fold moves them into index_rollup_day; moves carry
the tree rows; the rollup is filled here from the responses. The facts are this revision's copy
of app.indices.store.day_facts.

Revision ID: 9a1f3c5e7b20
Revises: 7e4a9c2b1d30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "9a1f3c5e7b20"
down_revision: str | None = "7e4a9c2b1d30"
branch_labels = None
depends_on = None

STATS = ("n", "sum_d", "sum_d2", "top2", "nps_n", "promoters", "detractors")
KEY = ("stage", "day", "scale_min", "scale_max")
D = "(x.score - x.scale_min)"
NPS = "x.primary_type = 'nps'"
RAW_STATS = (
    f"1 AS n, {D} AS sum_d, {D} * {D} AS sum_d2, (x.score >= x.scale_max - 1)::int AS top2,"
    f" ({NPS})::int AS nps_n, ({NPS} AND x.score >= 9)::int AS promoters,"
    f" ({NPS} AND x.score <= 6)::int AS detractors"
)


def day_facts(relation: str) -> str:
    return (
        f"SELECT x.org_id, x.stage, x.occurred_on AS day, x.scale_min, x.scale_max, {RAW_STATS}"
        f" FROM {relation} AS x"
    )


def _insert(table: str, sign: str) -> str:
    keys = ", ".join(KEY)
    totals = ", ".join(f"{sign}sum({c})" for c in STATS)
    return (
        f"INSERT INTO day_deltas (org_id, {keys}, {', '.join(STATS)})"
        f" SELECT org_id, {keys}, {totals} FROM ({day_facts(table)}) f GROUP BY org_id, {keys};"
    )


FUNCTION = f"""
CREATE FUNCTION responses_day_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {_insert("old_rows", "-")}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {_insert("new_rows", "")}
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    stage = postgresql.ENUM(name="stage", create_type=False)
    sums = [sa.Column(name, sa.BigInteger(), nullable=False) for name in STATS]
    op.create_table(
        "day_deltas",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("stage", stage, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("scale_min", sa.SmallInteger(), nullable=False),
        sa.Column("scale_max", sa.SmallInteger(), nullable=False),
        *sums,
        sa.PrimaryKeyConstraint("id", name=op.f("pk_day_deltas")),
    )
    op.create_index("ix_day_deltas_org_id_day", "day_deltas", ["org_id", "day"])
    op.create_table(
        "index_rollup_day",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("tree", sa.Boolean(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stage", stage, nullable=False),
        sa.Column("scale_min", sa.SmallInteger(), nullable=False),
        sa.Column("scale_max", sa.SmallInteger(), nullable=False),
        *[sa.Column(c.name, c.type, nullable=False) for c in sums],
        sa.PrimaryKeyConstraint(
            "org_id", "tree", "day", "stage", "scale_min", "scale_max",
            name=op.f("pk_index_rollup_day"),
        ),
    )  # fmt: skip
    op.execute(FUNCTION)
    for name, event, tables in (
        ("responses_day_insert", "INSERT", "NEW TABLE AS new_rows"),
        ("responses_day_delete", "DELETE", "OLD TABLE AS old_rows"),
        ("responses_day_update", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ):
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON responses REFERENCING {tables}"
            " FOR EACH STATEMENT EXECUTE FUNCTION responses_day_delta()"
        )
    # Own rows from every response, then tree rows fanned out over today's paths.
    keys = ", ".join(KEY)
    op.execute(
        f"INSERT INTO index_rollup_day (org_id, tree, {keys}, {', '.join(STATS)})"
        f" SELECT org_id, false, {keys}, {', '.join(f'sum({c})' for c in STATS)}"
        f" FROM ({day_facts('responses')}) f GROUP BY org_id, {keys}"
    )
    op.execute(
        f"INSERT INTO index_rollup_day (org_id, tree, {keys}, {', '.join(STATS)})"
        f" SELECT a.id, true, {', '.join(f'r.{c}' for c in KEY)},"
        f" {', '.join(f'sum(r.{c})' for c in STATS)}"
        f" FROM index_rollup_day r JOIN orgs o ON o.id = r.org_id"
        f" CROSS JOIN LATERAL unnest(o.path) AS a(id)"
        f" WHERE NOT r.tree GROUP BY a.id, {', '.join(f'r.{c}' for c in KEY)}"
    )
    op.execute("ANALYZE index_rollup_day, day_deltas")


def downgrade() -> None:
    for name in ("responses_day_insert", "responses_day_delete", "responses_day_update"):
        op.execute(f"DROP TRIGGER {name} ON responses")
    op.execute("DROP FUNCTION responses_day_delta()")
    op.drop_table("index_rollup_day")
    op.drop_index("ix_day_deltas_org_id_day", table_name="day_deltas")
    op.drop_table("day_deltas")
