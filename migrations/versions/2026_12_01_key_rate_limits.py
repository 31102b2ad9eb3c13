"""API keys may carry their own rate limit (rate a second, burst).

Revision ID: 2b7f0c9d1e64
Revises: 9a4e21c7b5d3
Create Date: 2026-12-01 23:45:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2b7f0c9d1e64"
down_revision: str | None = "9a4e21c7b5d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate", sa.Float(), nullable=True))
    op.add_column("api_keys", sa.Column("burst", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "burst")
    op.drop_column("api_keys", "rate")
