"""Survey definitions as clients send and receive them, with their consistency rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from app.schemas import Code, InputModel, Name, OutputModel
from app.stages import Stage
from app.surveys.models import FIXED_SCALES, QuestionType

ScaleBound = Annotated[int, Field(ge=-1000, le=1000)]
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
Option = Annotated[str, StringConstraints(min_length=1, max_length=200)]
MAX_SCALE_SPAN = 100
MAX_TEXT_ANSWER = 2000


class Scale(InputModel):
    min: ScaleBound
    max: ScaleBound

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min >= self.max:
            raise ValueError("scale.min must be less than scale.max")
        if self.max - self.min > MAX_SCALE_SPAN:
            raise ValueError(f"a scale may span at most {MAX_SCALE_SPAN} points")
        return self


class Question(InputModel):
    key: Code
    type: QuestionType
    prompt: Prompt
    required: bool = True
    options: Annotated[list[Option], Field(min_length=1, max_length=100)] | None = None
    scale: Scale | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> Self:
        if self.type is QuestionType.choice:
            if not self.options:
                raise ValueError("a choice question needs options")
            if len(set(self.options)) != len(self.options):
                raise ValueError("options must be unique")
        elif self.options is not None:
            raise ValueError(f"options are only for choice questions, not {self.type.value}")
        if self.type is QuestionType.rating:
            if self.scale is None:
                raise ValueError("a rating question needs scale: {min, max}")
        elif self.type in FIXED_SCALES:
            fixed = FIXED_SCALES[self.type]
            if self.scale is not None and (self.scale.min, self.scale.max) != fixed:
                raise ValueError(f"the {self.type.value} scale is fixed at {fixed[0]}-{fixed[1]}")
            self.scale = Scale(min=fixed[0], max=fixed[1])
        elif self.scale is not None:
            raise ValueError(f"scale is only for rating kinds, not {self.type.value}")
        return self


class SurveyIn(InputModel):
    code: Code
    title: Name
    stage: Stage
    primary: Code = Field(description="Key of the primary rating question (csat/nps/ces/rating).")
    questions: Annotated[list[Question], Field(min_length=1, max_length=100)]


class QuestionOut(OutputModel):
    key: str
    type: QuestionType
    prompt: str
    required: bool
    options: list[str] | None = None
    scale: Scale | None = None


class SurveyOut(OutputModel):
    code: str
    version: int
    title: str
    stage: Stage
    primary: str
    questions: list[QuestionOut]
    published_at: datetime
