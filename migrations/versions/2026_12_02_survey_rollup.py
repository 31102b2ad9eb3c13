"""A rollup per survey version, so that measures on one survey read sums, not raw responses.

Deltas name their survey version from now on; the new rollup is built from the responses
themselves, so deltas still pending from before (without a survey version) are in it already
and the fold leaves them out of it.

Revision ID: 8d1f4c2b7a90
Revises: 5e5030a3c5a7
Create Date: 2026-12-02 02:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "8d1f4c2b7a90"
down_revision: str | None = "5e5030a3c5a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATS = ("n", "sum_d", "sum_d2", "top2", "nps_n", "promoters", "detractors")


def _delta_function(with_survey: bool) -> str:
    """The statement trigger's function: the sums of the changed rows as deltas."""
    survey_column = ", survey_version_id" if with_survey else ""
    columns = (
        "org_id, stage, month, channel, customer_type, scale_min, scale_max"
        f"{survey_column}, {', '.join(STATS)}"
    )
    group = "1, 2, 3, 4, 5, 6, 7, 8" if with_survey else "1, 2, 3, 4, 5, 6, 7"
    d = "(score - scale_min)"

    def sums(table: str, sign: str) -> str:
        return f"""
        SELECT org_id, stage, date_trunc('month', occurred_on)::date, coalesce(channel, ''),
               customer_type, scale_min, scale_max{survey_column},
               {sign}count(*), {sign}sum({d}), {sign}sum({d} * {d}),
               {sign}count(*) FILTER (WHERE score >= scale_max - 1),
               {sign}count(*) FILTER (WHERE primary_type = 'nps'),
               {sign}count(*) FILTER (WHERE primary_type = 'nps' AND score >= 9),
               {sign}count(*) FILTER (WHERE primary_type = 'nps' AND score <= 6)
        FROM {table} GROUP BY {group}"""

    return f"""
CREATE OR REPLACE FUNCTION responses_index_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO index_deltas ({columns}) {sums("old_rows", "-")};
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO index_deltas ({columns}) {sums("new_rows", "")};
    END IF;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.add_column("index_deltas", sa.Column("survey_version_id", sa.BigInteger(), nullable=True))
    stage = postgresql.ENUM(name="stage", create_type=False)
    op.create_table(
        "index_rollup_survey",
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("tree", sa.Boolean(), nullable=False),
        sa.Column("survey_version_id", sa.BigInteger(), nullable=False),
        sa.Column("stage", stage, nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("scale_min", sa.SmallInteger(), nullable=False),
        sa.Column("scale_max", sa.SmallInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in STATS),
        sa.PrimaryKeyConstraint(
            "org_id",
            "tree",
            "survey_version_id",
            "stage",
            "month",
            "scale_min",
            "scale_max",
            name=op.f("pk_index_rollup_survey"),
        ),
    )
    op.execute(_delta_function(with_survey=True))
    d = "(x.score - x.scale_min)"
    sums = ", ".join(f"sum({c})" for c in STATS)
    # Own rows from every response, then tree rows fanned out over today's paths.
    op.execute(f"""
        INSERT INTO index_rollup_survey
        SELECT x.org_id, false, x.survey_version_id, x.stage,
               date_trunc('month', x.occurred_on)::date, x.scale_min, x.scale_max,
               count(*), sum({d}), sum({d} * {d}),
               count(*) FILTER (WHERE x.score >= x.scale_max - 1),
               count(*) FILTER (WHERE x.primary_type = 'nps'),
               count(*) FILTER (WHERE x.primary_type = 'nps' AND x.score >= 9),
               count(*) FILTER (WHERE x.primary_type = 'nps' AND x.score <= 6)
        FROM responses x GROUP BY 1, 2, 3, 4, 5, 6, 7
    """)
    op.execute(f"""
        INSERT INTO index_rollup_survey
        SELECT a.id, true, r.survey_version_id, r.stage, r.month, r.scale_min, r.scale_max,
               {sums}
        FROM index_rollup_survey r JOIN orgs o ON o.id = r.org_id
        CROSS JOIN LATERAL unnest(o.path) AS a(id)
        WHERE NOT r.tree GROUP BY 1, 2, 3, 4, 5, 6, 7
    """)
    op.execute("ANALYZE index_rollup_survey")


def downgrade() -> None:
    op.execute(_delta_function(with_survey=False))
    op.drop_table("index_rollup_survey")
    op.drop_column("index_deltas", "survey_version_id")
