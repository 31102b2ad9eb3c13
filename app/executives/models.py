"""Tables of executives, their purviews and their targets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base


class Executive(Base):
    """A person graded on the satisfaction of the orgs they answer for and on their tasks."""

    __tablename__ = "executives"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Purview(Base):
    """One org of an executive's purview for a period; `position` keeps the order given."""

    __tablename__ = "purviews"

    executive_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("executives.id"), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"))

    __table_args__ = (
        UniqueConstraint("executive_id", "period", "org_id"),
        Index("ix_purviews_period", "period"),
        Index("ix_purviews_org_id", "org_id"),
    )


class ExecutiveTarget(Base):
    """An executive's CSI target for one calendar period."""

    __tablename__ = "executive_targets"

    executive_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("executives.id"), primary_key=True
    )
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    csi: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
