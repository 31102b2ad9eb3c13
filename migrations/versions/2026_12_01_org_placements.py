"""The tree over time: placements of every org, and the state of the materialized tree.

Revision ID: 9a4e21c7b5d3
Revises: 6d339d87563c
Create Date: 2026-12-01 22:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a4e21c7b5d3"
down_revision: str | None = "6d339d87563c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "org_placements",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("effective", sa.Date(), nullable=True),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_org_placements_org_id_orgs")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["orgs.id"], name=op.f("fk_org_placements_parent_id_orgs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_placements")),
        sa.UniqueConstraint(
            "org_id",
            "effective",
            name=op.f("uq_org_placements_org_id_effective"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_table(
        "tree_state",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("tree_date", sa.Date(), nullable=True),
        sa.Column("version", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tree_state")),
    )
    # Every org so far has one placement: where it hangs now, since its creation.
    op.execute(
        "INSERT INTO org_placements (org_id, effective, parent_id)"
        " SELECT id, NULL, parent_id FROM orgs"
    )
    # tree_date NULL: the first request re-materializes for its day (a no-op here).
    op.execute(
        "INSERT INTO tree_state (id, tree_date, version) VALUES (1, NULL, gen_random_uuid())"
    )


def downgrade() -> None:
    op.drop_table("tree_state")
    op.drop_table("org_placements")
