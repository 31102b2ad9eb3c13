"""Rollup tables keep 30% of each page free (fillfactor 70), so that the fold's in-place updates
of rollup rows are HOT updates: no new index entries, and pages prune their own dead versions
without a vacuum (autovacuum may be off).

Only pages written from now on leave the room; `VACUUM FULL` of the rollups (or `cx-survey
rebuild`) applies it to the pages already there.

Revision ID: 3f9b7d21c8a4
Revises: 8c5a2f7d3e61
"""

from __future__ import annotations

from alembic import op

revision: str = "3f9b7d21c8a4"
down_revision: str | None = "8c5a2f7d3e61"
branch_labels = None
depends_on = None

# This revision's rollups (a migration does not follow later code).
ROLLUPS = (
    "index_rollup",
    "index_rollup_stage",
    "index_rollup_survey",
    "index_rollup_segment",
    "choice_rollup",
    "moment_rollup",
    "index_rollup_day",
)


def upgrade() -> None:
    for table in ROLLUPS:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 70)")


def downgrade() -> None:
    for table in ROLLUPS:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
