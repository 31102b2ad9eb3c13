"""Bodies of the webhook API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator

from app.platform.schemas import Code, InputModel
from app.webhooks.models import DeliveryStatus, EventType

Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Events = Annotated[list[EventType], Field(min_length=1, max_length=len(EventType))]


class WebhookIn(InputModel):
    url: Url = Field(description="https, resolving to public addresses only (see settings).")
    events: Events
    org: Code | None = Field(default=None, description="Only events of this org's subtree.")


class WebhookPatch(InputModel):
    url: Url | None = None
    events: Events | None = None
    enabled: bool | None = Field(default=None, description="true re-enables one a 410 disabled.")

    @model_validator(mode="after")
    def _something(self) -> WebhookPatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of url, events, enabled")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[EventType]
    org: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_…: shown only here (and by rotate-secret).")


class RotatedSecret(BaseModel):
    id: str
    secret: str
    previous_valid_until: datetime = Field(description="Until then both secrets sign.")


class Attempt(BaseModel):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryOut(BaseModel):
    id: str
    webhook_id: str
    msg_id: str = Field(description="The `webhook-id` header of every attempt.")
    event_type: EventType
    status: DeliveryStatus
    attempts: list[Attempt]
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: Any = Field(description="The body sent (null once forgotten).")
