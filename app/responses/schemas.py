"""Response bodies as touchpoints post them and as the API returns them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.platform.schemas import (
    Code,
    InputModel,
    Instant,
    NoNul,
    OutputModel,
    PositiveVersion,
    Segments,
    ShortText,
)
from app.responses.models import CustomerType
from app.stages import Stage

ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=256), NoNul]
CustomerRef = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class CustomerIn(InputModel):
    ref: CustomerRef | None = Field(
        default=None, description="The client's customer id; stored only as a keyed pseudonym."
    )
    type: CustomerType


class ResponseIn(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "survey": "delivery-csat",
                    "org": "KR-DELIVERY-SEOUL",
                    "occurred_at": "2026-11-20T10:00:00+09:00",
                    "source": "delivery-app",
                    "external_id": "order-123/delivery",
                    "channel": "mobile",
                    "customer": {"ref": "customer-42", "type": "end_user"},
                    "answers": {"overall": 4, "reason": "late", "comment": "driver was kind"},
                }
            ]
        },
    )

    survey: Code
    survey_version: PositiveVersion | None = Field(
        default=None, description="Defaults to the survey's latest version."
    )
    org: Code
    occurred_at: Instant
    source: Code | None = Field(
        default=None, description="Touchpoint system; defaults to the key's bound source."
    )
    external_id: ExternalId
    channel: ShortText | None = None
    customer: CustomerIn
    answers: Annotated[dict[str, Any], Field(max_length=200)]
    segments: Segments | None = None


class CustomerOut(BaseModel):
    type: CustomerType


class Score(BaseModel):
    raw: int = Field(description="The answer to the primary question.")
    normalized: float = Field(description="100 * (raw - min) / (max - min).")


class ResponseOut(OutputModel):
    id: str
    survey: str
    survey_version: int
    stage: Stage
    org: str
    occurred_at: datetime
    received_at: datetime
    source: str
    external_id: str
    channel: str | None
    customer: CustomerOut
    answers: dict[str, Any]
    score: Score
    segments: dict[str, str] | None = None


MAX_BATCH = 1000


class BatchIn(InputModel):
    items: Annotated[
        list[Any],
        Field(
            min_length=1,
            max_length=MAX_BATCH,
            # Any item is accepted and judged on its own (an invalid one is `invalid` in the
            # results, not a 422 of the batch): documented as a ResponseIn, typed as anything.
            json_schema_extra={
                "items": {
                    "description": (
                        "A POST /v1/responses body (schema ResponseIn). Any value is accepted "
                        "here and judged on its own: one that is not a valid ResponseIn is "
                        "reported `invalid` in the results."
                    )
                }
            },
        ),
    ]


class ItemStatus(StrEnum):
    created = "created"
    duplicate = "duplicate"
    conflict = "conflict"
    invalid = "invalid"
    gone = "gone"


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str


class BatchItemResult(BaseModel):
    index: int
    status: ItemStatus
    id: str | None = None
    errors: list[FieldError] | None = None


class BatchCounts(BaseModel):
    created: int = 0
    duplicate: int = 0
    conflict: int = 0
    invalid: int = 0
    gone: int = 0


class BatchOut(BaseModel):
    results: list[BatchItemResult]
    counts: BatchCounts
