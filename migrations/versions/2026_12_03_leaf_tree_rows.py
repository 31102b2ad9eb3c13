"""Leaves keep no tree rows: a leaf's subtree is itself, so its tree rows repeat its own rows.

The fold now fans a delta out to its org's own row and to the tree rows of the orgs on its path
that have children; reads cover a leaf by its own rows. This drops the tree rows of every org
without children from every rollup (about half of each in a tree of mostly leaves). The
downgrade copies them back from the own rows.

With autovacuum off, run `VACUUM` on the rollups afterwards to reclaim the space.

Revision ID: 4d2b8e6f1a93
Revises: 9a1f3c5e7b20
"""

from __future__ import annotations

from alembic import op

revision: str = "4d2b8e6f1a93"
down_revision: str | None = "9a1f3c5e7b20"
branch_labels = None
depends_on = None

ROLLUPS = (
    "index_rollup",
    "index_rollup_stage",
    "index_rollup_survey",
    "index_rollup_segment",
    "choice_rollup",
    "moment_rollup",
    "index_rollup_day",
)
LEAF = "NOT EXISTS (SELECT 1 FROM orgs c WHERE c.parent_id = {alias}.org_id)"


def upgrade() -> None:
    for table in ROLLUPS:
        op.execute(f"DELETE FROM {table} r WHERE r.tree AND {LEAF.format(alias='r')}")
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    for table in ROLLUPS:
        columns = op.get_bind().exec_driver_sql(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute"
            f" WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
            " AND attname NOT IN ('org_id', 'tree')"
        )
        names = columns.scalar_one()
        op.execute(
            f"INSERT INTO {table} (org_id, tree, {names}) SELECT org_id, true, {names}"
            f" FROM {table} r WHERE NOT r.tree AND {LEAF.format(alias='r')}"
        )
        op.execute(f"ANALYZE {table}")
