"""Tables of stored responses and of tombstones left by erasure."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base
from app.stages import Stage
from app.surveys.models import QuestionType, QuestionTypeType, StageType, enum_values


class CustomerType(StrEnum):
    end_user = "end_user"
    business_partner = "business_partner"
    internal = "internal"


CustomerTypeType = Enum(CustomerType, name="customer_type", values_callable=enum_values)


class Response(Base):
    """One customer's answers; the primary score and its scale are denormalized for aggregation."""

    __tablename__ = "responses"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"))
    survey_version_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("survey_versions.id"))
    stage: Mapped[Stage] = mapped_column(StageType)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The calendar date of occurred_at in the reporting time zone: what index periods select on.
    occurred_on: Mapped[date] = mapped_column(Date)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(256))
    channel: Mapped[str | None] = mapped_column(String(64))
    customer_type: Mapped[CustomerType] = mapped_column(CustomerTypeType)
    customer_pseudonym: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    answers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    score: Mapped[int] = mapped_column(SmallInteger)
    scale_min: Mapped[int] = mapped_column(SmallInteger)
    scale_max: Mapped[int] = mapped_column(SmallInteger)
    primary_type: Mapped[QuestionType] = mapped_column(QuestionTypeType)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    segments: Mapped[dict[str, str] | None] = mapped_column(JSONB)

    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_responses_org_id_occurred_on", "org_id", "occurred_on"),
        Index("ix_responses_occurred_on", "occurred_on"),
        Index("ix_responses_occurred_at_id", "occurred_at", "id"),
        # The segment filter's containment test (segments @> {"tier": "gold"}).
        Index(
            "ix_responses_segments",
            "segments",
            postgresql_using="gin",
            postgresql_ops={"segments": "jsonb_path_ops"},
            postgresql_where="segments IS NOT NULL",
        ),
        Index(
            "ix_responses_customer_pseudonym",
            "customer_pseudonym",
            postgresql_where="customer_pseudonym IS NOT NULL",
        ),
    )


class Tombstone(Base):
    """What is left of an erased or purged response: a hash of (source, external_id) and its org."""

    __tablename__ = "tombstones"

    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"), index=True)
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
