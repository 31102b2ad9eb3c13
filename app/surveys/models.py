"""Tables of surveys and their immutable versions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base
from app.stages import Stage


class QuestionType(StrEnum):
    csat = "csat"
    nps = "nps"
    ces = "ces"
    rating = "rating"
    choice = "choice"
    text = "text"


RATING_TYPES = frozenset(
    {QuestionType.csat, QuestionType.nps, QuestionType.ces, QuestionType.rating}
)
FIXED_SCALES: dict[QuestionType, tuple[int, int]] = {
    QuestionType.csat: (1, 5),
    QuestionType.nps: (0, 10),
    QuestionType.ces: (1, 7),
}


def enum_values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


StageType = Enum(Stage, name="stage", values_callable=enum_values)
QuestionTypeType = Enum(QuestionType, name="question_type", values_callable=enum_values)


class Survey(Base):
    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    stage: Mapped[Stage] = mapped_column(StageType, index=True)
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SurveyVersion(Base):
    """One published, immutable version; the primary question's scale is kept for scoring."""

    __tablename__ = "survey_versions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    survey_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("surveys.id"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    primary_key: Mapped[str] = mapped_column(String(64))
    primary_type: Mapped[QuestionType] = mapped_column(QuestionTypeType)
    scale_min: Mapped[int] = mapped_column(SmallInteger)
    scale_max: Mapped[int] = mapped_column(SmallInteger)
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    published_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (UniqueConstraint("survey_id", "version"),)
