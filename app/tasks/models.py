"""The table of CX tasks."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base
from app.responses.models import CustomerType, CustomerTypeType
from app.surveys.models import enum_values


class TaskStatus(StrEnum):
    planned = "planned"
    in_progress = "in_progress"
    done = "done"
    dropped = "dropped"


TaskStatusType = Enum(TaskStatus, name="task_status", values_callable=enum_values)


class Task(Base):
    """A CX task of an org for a calendar period; `history` is every change, oldest first."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"))
    period: Mapped[str] = mapped_column(String(7))
    title: Mapped[str] = mapped_column(String(200))
    customer_group: Mapped[CustomerType] = mapped_column(CustomerTypeType)
    customers: Mapped[str | None] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    due: Mapped[date] = mapped_column(Date)
    weight: Mapped[float] = mapped_column(Float)
    # {csi_target, stages?, customer_type?, channel?, survey?} (survey by code), or NULL: judged.
    measure: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[TaskStatus] = mapped_column(TaskStatusType)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    external_id: Mapped[str | None] = mapped_column(String(128))
    # SHA-256 of the creation body, normalized: a repeated create with an external id compares it.
    origin: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("org_id", "external_id"),
        Index("ix_tasks_org_id_period", "org_id", "period"),
        Index("ix_tasks_period", "period"),
    )
