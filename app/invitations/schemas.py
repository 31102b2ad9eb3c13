"""Invitation bodies as touchpoints post them, as the API returns them, and as browsers see them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.invitations.models import InvitationStatus, SuppressionReason
from app.platform.schemas import (
    Code,
    InputModel,
    Instant,
    JsonNumber,
    OutputModel,
    Segments,
    ShortText,
)
from app.responses.models import CustomerType
from app.responses.schemas import CustomerOut, CustomerRef, ExternalId
from app.stages import Stage
from app.surveys.schemas import QuestionOut


class InvitedCustomer(InputModel):
    ref: CustomerRef = Field(description="The client's customer id; stored only as a pseudonym.")
    type: CustomerType


class InvitationIn(InputModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "survey": "delivery-csat",
                    "org": "KR-DELIVERY-SEOUL",
                    "source": "delivery-app",
                    "external_id": "order-123/delivery",
                    "occurred_at": "2026-11-20T10:00:00+09:00",
                    "customer": {"ref": "customer-42", "type": "end_user"},
                    "channel": "mobile",
                }
            ]
        },
    )

    survey: Code
    org: Code
    source: Code | None = Field(
        default=None, description="Touchpoint system; defaults to the key's bound source."
    )
    external_id: ExternalId
    occurred_at: Instant
    customer: InvitedCustomer
    channel: ShortText | None = None
    segments: Segments | None = None
    expires_at: Instant | None = Field(
        default=None, description="Default 14 days after the request; at most 90 days after it."
    )


class InvitationOut(OutputModel):
    id: str
    status: InvitationStatus
    reason: SuppressionReason | None = Field(
        description="Why it was suppressed (null when it was sent)."
    )
    expires_at: datetime
    survey: str
    survey_version: int
    stage: Stage
    org: str
    source: str
    external_id: str
    occurred_at: datetime
    channel: str | None
    customer: CustomerOut
    segments: dict[str, str] | None
    created_at: datetime
    answered_at: datetime | None


class IssuedInvitation(InvitationOut):
    token: str | None = Field(
        description="Opaque and URL-safe; null for a suppressed invitation. Shown only here."
    )
    url: str | None = Field(description="CX_SURVEY_URL_TEMPLATE with the token; null if unset.")


class SamplingIn(InputModel):
    rate: Annotated[
        float, Field(ge=0, le=1, description="The share of invitations sent, 0-1."), JsonNumber
    ]


class SamplingOut(BaseModel):
    source: str
    rate: float


class SamplingList(BaseModel):
    items: list[SamplingOut]


Days = Annotated[int, Field(ge=0, le=365), JsonNumber]


class ContactRulesIn(InputModel):
    min_days: Days = Field(default=0, description="Days between two invitations of a customer.")
    per_stage: dict[Stage, Days] = Field(
        default_factory=dict, description="Days between two invitations of one stage."
    )


class ContactRulesOut(BaseModel):
    min_days: int
    per_stage: dict[Stage, int]


class SuppressedCounts(BaseModel):
    sampled_out: int
    contact_rule: int
    opted_out: int


class InvitationStats(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    org: str
    from_: date = Field(alias="from")
    to: date
    tree: str
    created: int
    suppressed: SuppressedCounts
    sent: int = Field(description="created minus suppressed.")
    answered: int
    expired: int
    pending: int
    cancelled: int = Field(description="Sent, then cancelled before an answer.")
    response_rate: float | None = Field(description="answered / sent; null when sent is 0.")


class PublicSurvey(BaseModel):
    code: str
    version: int
    title: str
    stage: Stage
    questions: list[QuestionOut]


class PublicOrg(BaseModel):
    name: str


class PublicInvitation(BaseModel):
    status: InvitationStatus = Field(description="pending, answered or expired.")
    expires_at: datetime
    survey: PublicSurvey
    org: PublicOrg


class PublicAnswers(InputModel):
    answers: Annotated[dict[str, Any], Field(max_length=200)]


class PublicAnswered(BaseModel):
    status: InvitationStatus


class PublicOptedOut(BaseModel):
    status: InvitationStatus
    opted_out: bool
