"""Tables of case rules and cases."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base
from app.stages import Stage
from app.surveys.models import StageType


class CaseStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"
    closed = "closed"


class CaseRule(Base):
    """When a survey's responses open a case: primary raw answer at most `at_most`."""

    __tablename__ = "case_rules"

    survey_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("surveys.id"), primary_key=True, autoincrement=False
    )
    at_most: Mapped[int] = mapped_column(Integer)
    sla_hours: Mapped[int] = mapped_column(Integer)
    max_age_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Case(Base):
    """The follow-up of one response; erased with it (the foreign key cascades)."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    response_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("responses.id", ondelete="CASCADE"), unique=True
    )
    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"))
    survey_version_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("survey_versions.id"))
    stage: Mapped[Stage] = mapped_column(StageType)
    score: Mapped[int] = mapped_column(SmallInteger)
    scale_min: Mapped[int] = mapped_column(SmallInteger)
    scale_max: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    root_cause: Mapped[str | None] = mapped_column(String(200))
    assignee: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))

    __table_args__ = (
        CheckConstraint(
            "status IN ('open', 'acknowledged', 'resolved', 'closed')", name="status_known"
        ),
        Index("ix_cases_org_id_opened_at", "org_id", "opened_at"),
        Index("ix_cases_opened_at_id", "opened_at", "id"),
    )
