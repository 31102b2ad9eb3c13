"""Tables of evaluation schemes, period states and the stored (closed) versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base


class Scheme(Base):
    """How a period's total weighs the index component against the task component."""

    __tablename__ = "evaluation_schemes"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    index_weight: Mapped[float] = mapped_column(Float)
    task_weight: Mapped[float] = mapped_column(Float)
    cap: Mapped[float] = mapped_column(Float)
    stage_weights: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EvaluationPeriod(Base):
    """The state of a period that was written to or closed: open or closed, latest version."""

    __tablename__ = "evaluation_periods"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    status: Mapped[str] = mapped_column(String(8), server_default="open")
    version: Mapped[int | None] = mapped_column(Integer)
    reopened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reopened_by: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (CheckConstraint("status IN ('open', 'closed')", name="status"),)


class EvaluationVersion(Base):
    """One close of a period: who, when, and the stored head of the evaluation (the JSON object
    of everything but the scorecards, as bytes)."""

    __tablename__ = "evaluation_versions"

    period: Mapped[str] = mapped_column(
        String(7), ForeignKey("evaluation_periods.period"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    head: Mapped[bytes] = mapped_column(LargeBinary)


class FrozenScorecard(Base):
    """An executive's scorecard as stored by a close: bytes, read back as they are."""

    __tablename__ = "evaluation_scorecards"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    executive_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("executives.id"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)  # in the evaluation's order
    org_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))  # the purview, for visibility
    scorecard: Mapped[bytes] = mapped_column(LargeBinary)  # with frozen: true
    item: Mapped[bytes] = mapped_column(LargeBinary)  # the scorecard with its rank
