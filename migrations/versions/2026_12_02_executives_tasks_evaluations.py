"""Executives, purviews and their targets; CX tasks; evaluation schemes, periods and versions.

Revision ID: 5e5030a3c5a7
Revises: 2b7f0c9d1e64
Create Date: 2026-12-02 01:05:52.468563+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5e5030a3c5a7"
down_revision: str | None = "2b7f0c9d1e64"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evaluation_periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=8), server_default="open", nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reopened_by", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("ck_evaluation_periods_status")
        ),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_evaluation_periods")),
    )
    op.create_table(
        "evaluation_schemes",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("index_weight", sa.Float(), nullable=False),
        sa.Column("task_weight", sa.Float(), nullable=False),
        sa.Column("cap", sa.Float(), nullable=False),
        sa.Column("stage_weights", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_evaluation_schemes")),
    )
    op.create_table(
        "executives",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executives")),
        sa.UniqueConstraint("code", name=op.f("uq_executives_code")),
    )
    op.create_table(
        "evaluation_scorecards",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("executive_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("org_ids", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("scorecard", sa.LargeBinary(), nullable=False),
        sa.Column("item", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["executive_id"],
            ["executives.id"],
            name=op.f("fk_evaluation_scorecards_executive_id_executives"),
        ),
        sa.PrimaryKeyConstraint(
            "period", "version", "executive_id", name=op.f("pk_evaluation_scorecards")
        ),
    )
    op.create_table(
        "evaluation_versions",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_by", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("head", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["period"],
            ["evaluation_periods.period"],
            name=op.f("fk_evaluation_versions_period_evaluation_periods"),
        ),
        sa.PrimaryKeyConstraint("period", "version", name=op.f("pk_evaluation_versions")),
    )
    op.create_table(
        "executive_targets",
        sa.Column("executive_id", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("csi", sa.Float(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["executive_id"],
            ["executives.id"],
            name=op.f("fk_executive_targets_executive_id_executives"),
        ),
        sa.PrimaryKeyConstraint("executive_id", "period", name=op.f("pk_executive_targets")),
    )
    op.create_table(
        "purviews",
        sa.Column("executive_id", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["executive_id"], ["executives.id"], name=op.f("fk_purviews_executive_id_executives")
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_purviews_org_id_orgs")),
        sa.PrimaryKeyConstraint("executive_id", "period", "position", name=op.f("pk_purviews")),
        sa.UniqueConstraint(
            "executive_id", "period", "org_id", name=op.f("uq_purviews_executive_id_period_org_id")
        ),
    )
    op.create_index("ix_purviews_org_id", "purviews", ["org_id"], unique=False)
    op.create_index("ix_purviews_period", "purviews", ["period"], unique=False)
    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column(
            "customer_group",
            postgresql.ENUM(name="customer_type", create_type=False),
            nullable=False,
        ),
        sa.Column("customers", sa.String(length=500), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("measure", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "status",
            sa.Enum("planned", "in_progress", "done", "dropped", name="task_status"),
            nullable=False,
        ),
        sa.Column("history", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("origin", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_tasks_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("org_id", "external_id", name=op.f("uq_tasks_org_id_external_id")),
    )
    op.create_index("ix_tasks_org_id_period", "tasks", ["org_id", "period"], unique=False)
    op.create_index("ix_tasks_period", "tasks", ["period"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tasks_period", table_name="tasks")
    op.drop_index("ix_tasks_org_id_period", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_purviews_period", table_name="purviews")
    op.drop_index("ix_purviews_org_id", table_name="purviews")
    op.drop_table("purviews")
    op.drop_table("executive_targets")
    op.drop_table("evaluation_versions")
    op.drop_table("evaluation_scorecards")
    op.drop_table("executives")
    op.drop_table("evaluation_schemes")
    op.drop_table("evaluation_periods")
    op.execute("DROP TYPE task_status")
