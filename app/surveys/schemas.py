"""Survey definitions as clients send and receive them, with their consistency rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.platform.schemas import Code, InputModel, JsonNumber, Name, NoNul, OutputModel
from app.stages import Stage
from app.surveys.models import FIXED_SCALES, QuestionType

ScaleBound = Annotated[int, Field(ge=-1000, le=1000), JsonNumber]
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=1000), NoNul]
Option = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
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
    """A question; `options` and `scale` are checked against `type` (errors point at them)."""

    key: Code
    type: QuestionType
    prompt: Prompt
    required: StrictBool = True
    options: Annotated[list[Option], Field(min_length=1, max_length=100)] | None = Field(
        default=None, validate_default=True
    )
    scale: Scale | None = Field(default=None, validate_default=True)

    @field_validator("options")
    @classmethod
    def _options_fit_type(cls, options: list[str] | None, info: ValidationInfo) -> list[str] | None:
        kind = info.data.get("type")
        if kind is None:  # the type itself is invalid and reported at "type"
            return options
        if kind is QuestionType.choice:
            if not options:
                raise ValueError("a choice question needs options")
            if len(set(options)) != len(options):
                raise ValueError("options must be unique")
        elif options is not None:
            raise ValueError(f"options are only for choice questions, not {kind.value}")
        return options

    @field_validator("scale")
    @classmethod
    def _scale_fits_type(cls, scale: Scale | None, info: ValidationInfo) -> Scale | None:
        kind = info.data.get("type")
        if kind is None:
            return scale
        if kind is QuestionType.rating:
            if scale is None:
                raise ValueError("a rating question needs scale: {min, max}")
            return scale
        if kind in FIXED_SCALES:
            fixed = FIXED_SCALES[kind]
            if scale is not None and (scale.min, scale.max) != fixed:
                raise ValueError(f"the {kind.value} scale is fixed at {fixed[0]}-{fixed[1]}")
            return Scale(min=fixed[0], max=fixed[1])
        if scale is not None:
            raise ValueError(f"scale is only for rating kinds, not {kind.value}")
        return scale


class SurveyIn(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "delivery-csat",
                    "title": "Delivery satisfaction",
                    "stage": "delivery",
                    "primary": "overall",
                    "questions": [
                        {"key": "overall", "type": "csat", "prompt": "How satisfied are you?"},
                        {"key": "comment", "type": "text", "prompt": "Anything else?"},
                    ],
                }
            ]
        },
    )

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
