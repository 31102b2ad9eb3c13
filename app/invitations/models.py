"""Tables of invitations, sampling rules, contact rules and opt-outs."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base
from app.responses.models import CustomerType, CustomerTypeType
from app.stages import Stage
from app.surveys.models import StageType


class SuppressionReason(StrEnum):
    """Why an invitation was not sent, in the order the rules are applied."""

    opted_out = "opted_out"
    contact_rule = "contact_rule"
    sampled_out = "sampled_out"


class InvitationStatus(StrEnum):
    pending = "pending"
    answered = "answered"
    expired = "expired"
    suppressed = "suppressed"
    cancelled = "cancelled"


class Invitation(Base):
    """A request to one customer to answer one survey version about one journey event.

    Its status is a function of the row and the clock (see docs/architecture.md); its token is
    derived from `id` and `salt` under CX_TOKEN_KEY and never stored.
    """

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary(16))
    survey_version_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("survey_versions.id"))
    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"))
    stage: Mapped[Stage] = mapped_column(StageType)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(256))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    occurred_on: Mapped[date] = mapped_column(Date)  # in the reporting time zone, as responses
    channel: Mapped[str | None] = mapped_column(String(64))
    customer_type: Mapped[CustomerType] = mapped_column(CustomerTypeType)
    customer_pseudonym: Mapped[bytes] = mapped_column(LargeBinary(32))
    segments: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    reason: Mapped[str | None] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        CheckConstraint(
            "reason IS NULL OR reason IN ('opted_out', 'contact_rule', 'sampled_out')",
            name="reason_known",
        ),
        Index("ix_invitations_org_id_occurred_on", "org_id", "occurred_on"),
        Index("ix_invitations_occurred_at_id", "occurred_at", "id"),
        # A customer's invitations: what the contact rules read and what an erasure deletes.
        Index("ix_invitations_customer_pseudonym_created_at", "customer_pseudonym", "created_at"),
    )


class SamplingRule(Base):
    """The share of a source's invitations that are sent."""

    __tablename__ = "sampling_rules"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    rate: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("rate >= 0 AND rate <= 1", name="rate_fraction"),)


class ContactRules(Base):
    """The service's one set of contact rules (survey fatigue)."""

    __tablename__ = "contact_rules"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False, default=1)
    min_days: Mapped[int] = mapped_column(Integer)
    per_stage: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class OptOut(Base):
    """A customer (as a pseudonym) who asked not to be surveyed again; outlives erasure."""

    __tablename__ = "opt_outs"

    customer_pseudonym: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
