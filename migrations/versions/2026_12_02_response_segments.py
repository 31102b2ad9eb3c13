"""Segments on responses (micro-segmentation), with the index of the segment filter.

Revision ID: de8d2126ae6c
Revises: 17a77947231b
Create Date: 2026-12-02 06:26:22+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "de8d2126ae6c"
down_revision: str | None = "17a77947231b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "responses", sa.Column("segments", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_index(
        "ix_responses_segments",
        "responses",
        ["segments"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"segments": "jsonb_path_ops"},
        postgresql_where="segments IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_responses_segments",
        table_name="responses",
        postgresql_using="gin",
        postgresql_ops={"segments": "jsonb_path_ops"},
        postgresql_where="segments IS NOT NULL",
    )
    op.drop_column("responses", "segments")
