"""Case rules per survey and cases (the follow-up of low scores).

Revision ID: 64ea7ceb9857
Revises: 5cd245f923aa
Create Date: 2026-12-02 05:54:04+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "64ea7ceb9857"
down_revision: str | None = "5cd245f923aa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_rules",
        sa.Column("survey_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at_most", sa.Integer(), nullable=False),
        sa.Column("sla_hours", sa.Integer(), nullable=False),
        sa.Column("max_age_days", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_case_rules_survey_id_surveys")
        ),
        sa.PrimaryKeyConstraint("survey_id", name=op.f("pk_case_rules")),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("response_id", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("survey_version_id", sa.BigInteger(), nullable=False),
        sa.Column("stage", postgresql.ENUM(name="stage", create_type=False), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("scale_min", sa.SmallInteger(), nullable=False),
        sa.Column("scale_max", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("root_cause", sa.String(length=200), nullable=True),
        sa.Column("assignee", sa.String(length=200), nullable=True),
        sa.Column(
            "notes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved', 'closed')",
            name=op.f("ck_cases_status_known"),
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_cases_org_id_orgs")),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["responses.id"],
            name=op.f("fk_cases_response_id_responses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["survey_version_id"],
            ["survey_versions.id"],
            name=op.f("fk_cases_survey_version_id_survey_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("response_id", name=op.f("uq_cases_response_id")),
    )
    op.create_index("ix_cases_opened_at_id", "cases", ["opened_at", "id"], unique=False)
    op.create_index("ix_cases_org_id_opened_at", "cases", ["org_id", "opened_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cases_org_id_opened_at", table_name="cases")
    op.drop_index("ix_cases_opened_at_id", table_name="cases")
    op.drop_table("cases")
    op.drop_table("case_rules")
