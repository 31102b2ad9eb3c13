"""Invitations (single-use survey links), sampling rules, contact rules and opt-outs.

Revision ID: 5cd245f923aa
Revises: 8d1f4c2b7a90
Create Date: 2026-12-02 05:16:56+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5cd245f923aa"
down_revision: str | None = "8d1f4c2b7a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contact_rules",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("min_days", sa.Integer(), nullable=False),
        sa.Column("per_stage", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_contact_rules_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_rules")),
    )
    op.create_table(
        "opt_outs",
        sa.Column("customer_pseudonym", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("customer_pseudonym", name=op.f("pk_opt_outs")),
    )
    op.create_table(
        "sampling_rules",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("rate >= 0 AND rate <= 1", name=op.f("ck_sampling_rules_rate_fraction")),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_sampling_rules")),
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("salt", sa.LargeBinary(length=16), nullable=False),
        sa.Column("survey_version_id", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("stage", postgresql.ENUM(name="stage", create_type=False), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=256), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column(
            "customer_type",
            postgresql.ENUM(name="customer_type", create_type=False),
            nullable=False,
        ),
        sa.Column("customer_pseudonym", sa.LargeBinary(length=32), nullable=False),
        sa.Column("segments", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "reason IS NULL OR reason IN ('opted_out', 'contact_rule', 'sampled_out')",
            name=op.f("ck_invitations_reason_known"),
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_invitations_org_id_orgs")),
        sa.ForeignKeyConstraint(
            ["survey_version_id"],
            ["survey_versions.id"],
            name=op.f("fk_invitations_survey_version_id_survey_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint(
            "source", "external_id", name=op.f("uq_invitations_source_external_id")
        ),
    )
    op.create_index(
        "ix_invitations_customer_pseudonym_created_at",
        "invitations",
        ["customer_pseudonym", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_invitations_occurred_at_id", "invitations", ["occurred_at", "id"], unique=False
    )
    op.create_index(
        "ix_invitations_org_id_occurred_on", "invitations", ["org_id", "occurred_on"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_invitations_org_id_occurred_on", table_name="invitations")
    op.drop_index("ix_invitations_occurred_at_id", table_name="invitations")
    op.drop_index("ix_invitations_customer_pseudonym_created_at", table_name="invitations")
    op.drop_table("invitations")
    op.drop_table("sampling_rules")
    op.drop_table("opt_outs")
    op.drop_table("contact_rules")
