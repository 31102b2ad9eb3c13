"""Tables of the organization tree: the materialized tree, its timeline of placements, its state."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base


class Org(Base):
    """A node of the tree; `path` holds the ids from the root down to this org itself."""

    __tablename__ = "orgs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str | None] = mapped_column(String(64))
    parent_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("orgs.id"), index=True)
    path: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    __table_args__ = (Index("ix_orgs_path_gin", "path", postgresql_using="gin"),)


class OrgPlacement(Base):
    """One placement of an org's timeline: from `effective` on (null: its creation, which holds for
    every day before the first move) the org hangs under `parent_id` (null: a root)."""

    __tablename__ = "org_placements"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"))
    effective: Mapped[date | None] = mapped_column(Date)
    parent_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("orgs.id"))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (UniqueConstraint("org_id", "effective", postgresql_nulls_not_distinct=True),)


class TreeState(Base):
    """The one row saying which day the materialized tree (`orgs.path`) is for, and a token
    (`version`) replaced by every change of the tree, under which processes cache it."""

    __tablename__ = "tree_state"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    tree_date: Mapped[date | None] = mapped_column(Date)
    version: Mapped[str] = mapped_column(String(36))
