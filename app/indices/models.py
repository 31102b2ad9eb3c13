"""Tables of the index: statistics (pending deltas, the folded rollup), weights and targets.

Every row of statistics carries the org it belongs to (the future distribution column).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base
from app.responses.models import CustomerType, CustomerTypeType
from app.stages import Stage
from app.surveys.models import StageType

# Rollup rows are updated in place by every fold: with room left on each page the update is a
# HOT one (no new index entries, and the page prunes its dead versions itself, which matters
# with autovacuum off). Measured under single posts: 94% HOT updates against 12%, tables a
# fifth of the size, the p99 of single posts halved (bench/run_hot.py).
ROLLUP_FILLFACTOR = 70
_ROLLUP_STORAGE = {"postgresql_with": {"fillfactor": ROLLUP_FILLFACTOR}}


class _Sums:
    """The integer sums of a set of responses (see indices.math.ScaleStats)."""

    n: Mapped[int] = mapped_column(BigInteger)
    sum_d: Mapped[int] = mapped_column(BigInteger)
    sum_d2: Mapped[int] = mapped_column(BigInteger)
    top2: Mapped[int] = mapped_column(BigInteger)
    nps_n: Mapped[int] = mapped_column(BigInteger)
    promoters: Mapped[int] = mapped_column(BigInteger)
    detractors: Mapped[int] = mapped_column(BigInteger)


class _Stats(_Sums):
    """Integer sums over responses of one (org, stage, month, channel, customer type, scale)."""

    stage: Mapped[Stage] = mapped_column(StageType)
    month: Mapped[date] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(64))  # '' stands for "no channel"
    customer_type: Mapped[CustomerType] = mapped_column(CustomerTypeType)
    scale_min: Mapped[int] = mapped_column(SmallInteger)
    scale_max: Mapped[int] = mapped_column(SmallInteger)


class IndexDelta(_Stats, Base):
    """Appended by a statement trigger on responses (insert +, delete -); folded by the worker."""

    __tablename__ = "index_deltas"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger)
    # NULL on deltas recorded before the survey rollup existed (which holds them already).
    survey_version_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_index_deltas_org_id_month", "org_id", "month"),)


class IndexRollup(_Stats, Base):
    """Folded sums: `tree` false = the org's own responses, true = its whole subtree."""

    __tablename__ = "index_rollup"
    __table_args__ = _ROLLUP_STORAGE

    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tree: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    stage: Mapped[Stage] = mapped_column(StageType, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_type: Mapped[CustomerType] = mapped_column(CustomerTypeType, primary_key=True)
    scale_min: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    scale_max: Mapped[int] = mapped_column(SmallInteger, primary_key=True)


class IndexRollupStage(_Sums, Base):
    """The same sums without channel and customer type: what unfiltered queries read."""

    __tablename__ = "index_rollup_stage"
    __table_args__ = _ROLLUP_STORAGE

    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tree: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    stage: Mapped[Stage] = mapped_column(StageType, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    scale_min: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    scale_max: Mapped[int] = mapped_column(SmallInteger, primary_key=True)


class IndexRollupSurvey(_Sums, Base):
    """The sums per survey version (no channel or customer type): for measures on one survey."""

    __tablename__ = "index_rollup_survey"
    __table_args__ = _ROLLUP_STORAGE

    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tree: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    survey_version_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stage: Mapped[Stage] = mapped_column(StageType, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    scale_min: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    scale_max: Mapped[int] = mapped_column(SmallInteger, primary_key=True)


class StageWeights(Base):
    """An org's weight set; stages it does not name weigh 1. Inherited by the subtree."""

    __tablename__ = "stage_weights"

    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"), primary_key=True)
    weights: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Target(Base):
    """An org's CSI target for one calendar period (`2026`, `2026-Q3`, `2026-09`)."""

    __tablename__ = "targets"

    org_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orgs.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    csi: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SegmentDelta(_Sums, Base):
    """Appended by the trigger on responses: the index sums per segment (key, value) a response
    carries; folded into index_rollup_segment."""

    __tablename__ = "segment_deltas"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger)
    seg_key: Mapped[str] = mapped_column(Text)
    seg_value: Mapped[str] = mapped_column(Text)
    stage: Mapped[Stage] = mapped_column(StageType)
    month: Mapped[date] = mapped_column(Date)
    scale_min: Mapped[int] = mapped_column(SmallInteger)
    scale_max: Mapped[int] = mapped_column(SmallInteger)

    __table_args__ = (Index("ix_segment_deltas_org_id_month", "org_id", "month"),)


class IndexRollupSegment(_Sums, Base):
    """Folded index sums per segment (key, value): the segment breakdown and segment filter."""

    __tablename__ = "index_rollup_segment"
    __table_args__ = _ROLLUP_STORAGE

    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tree: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    seg_key: Mapped[str] = mapped_column(Text, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    seg_value: Mapped[str] = mapped_column(Text, primary_key=True)
    stage: Mapped[Stage] = mapped_column(StageType, primary_key=True)
    scale_min: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    scale_max: Mapped[int] = mapped_column(SmallInteger, primary_key=True)


class _ChoiceKey:
    """A response itself (question and option '') or a choice it made, by its primary score."""

    survey_version_id: Mapped[int] = mapped_column(BigInteger)
    question: Mapped[str] = mapped_column(Text)
    option: Mapped[str] = mapped_column(Text)
    month: Mapped[date] = mapped_column(Date)
    score: Mapped[int] = mapped_column(SmallInteger)
    n: Mapped[int] = mapped_column(BigInteger)


class ChoiceDelta(_ChoiceKey, Base):
    __tablename__ = "choice_deltas"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_choice_deltas_org_id_month", "org_id", "month"),)


class ChoiceRollup(Base):
    """Folded counts of responses and of their choices, by primary score: the pain points."""

    __tablename__ = "choice_rollup"
    __table_args__ = _ROLLUP_STORAGE

    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tree: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    survey_version_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    question: Mapped[str] = mapped_column(Text, primary_key=True)
    option: Mapped[str] = mapped_column(Text, primary_key=True)
    score: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class MomentDelta(Base):
    """Appended by the trigger on responses: the terms of the sums of products of the rating
    answers, packed per answered set (see indices.store.moment_facts); folded into
    moment_rollup."""

    __tablename__ = "moment_deltas"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger)
    survey_version_id: Mapped[int] = mapped_column(BigInteger)
    month: Mapped[date] = mapped_column(Date)
    answered: Mapped[str] = mapped_column(Text)
    totals: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))

    __table_args__ = (Index("ix_moment_deltas_org_id_month", "org_id", "month"),)


class MomentRollup(Base):
    """Folded sums of products of rating answers per answered set, its terms packed in order
    of (i, j) (indices.store.moment_terms): the key drivers."""

    __tablename__ = "moment_rollup"
    __table_args__ = _ROLLUP_STORAGE

    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tree: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    survey_version_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    answered: Mapped[str] = mapped_column(Text, primary_key=True)
    totals: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))


class DayDelta(_Sums, Base):
    """Appended by a statement trigger of its own on responses: the coarse sums by day (see
    indices.store.day_facts); folded into index_rollup_day."""

    __tablename__ = "day_deltas"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger)
    stage: Mapped[Stage] = mapped_column(StageType)
    day: Mapped[date] = mapped_column(Date)
    scale_min: Mapped[int] = mapped_column(SmallInteger)
    scale_max: Mapped[int] = mapped_column(SmallInteger)

    __table_args__ = (Index("ix_day_deltas_org_id_day", "org_id", "day"),)


class IndexRollupDay(_Sums, Base):
    """Folded coarse sums by day: the partial months of a custom range."""

    __tablename__ = "index_rollup_day"
    __table_args__ = _ROLLUP_STORAGE

    org_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tree: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    stage: Mapped[Stage] = mapped_column(StageType, primary_key=True)
    scale_min: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    scale_max: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
