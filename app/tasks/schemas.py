"""Request and response bodies of CX tasks."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.indices.periods import PERIOD_PATTERN
from app.platform.schemas import (
    Code,
    Day,
    InputModel,
    JsonNumber,
    Name,
    ShortText,
    Text500,
    Text2000,
    not_null,
)
from app.responses.models import CustomerType
from app.stages import Stage
from app.tasks.models import TaskStatus

TaskWeight = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False), JsonNumber]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False), JsonNumber]
ExternalId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]


class Measure(InputModel):
    """What makes a task measured: the index of its org for its period, with these filters,
    must reach `csi_target`."""

    csi_target: Percent
    stages: list[Stage] | None = Field(default=None, min_length=1, max_length=5)
    customer_type: CustomerType | None = None
    channel: ShortText | None = None
    survey: Code | None = Field(default=None, description="Only this survey's responses.")


class TaskCreate(InputModel):
    title: Name
    period: Annotated[str, Field(pattern=PERIOD_PATTERN, description="2026, 2026-Q3, 2026-09.")]
    customer_group: CustomerType
    customers: Text500 | None = None
    description: Text2000 | None = None
    due: Day
    weight: TaskWeight = 1.0
    measure: Measure | None = None
    external_id: ExternalId | None = Field(
        default=None, description="Unique per org: a repeated create returns the task."
    )


class TaskImport(TaskCreate):
    """A line of `cx-survey import tasks`: a create body and the org it belongs to."""

    org: Code


class TaskPatch(InputModel):
    # Absent: unchanged. null is refused: none of these can be cleared.
    status: TaskStatus | None = Field(default=None, json_schema_extra=not_null)
    evidence: Text2000 | None = Field(default=None, json_schema_extra=not_null)
    title: Name | None = Field(default=None, json_schema_extra=not_null)
    due: Day | None = Field(default=None, json_schema_extra=not_null)
    weight: TaskWeight | None = Field(default=None, json_schema_extra=not_null)


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    status: TaskStatus
    evidence: str | None
    changed: list[str] = Field(description="The fields this change set.")


class MeasureOut(BaseModel):
    csi_target: float
    stages: list[Stage] | None
    customer_type: CustomerType | None
    channel: str | None
    survey: str | None


class TaskOut(BaseModel):
    id: str
    org: str
    title: str
    period: str
    customer_group: CustomerType
    customers: str | None
    description: str | None
    due: date
    weight: float
    measure: MeasureOut | None
    status: TaskStatus
    achieved: bool | None = Field(
        description="Live: done (judged), or the measured index reaches its target (null when"
        " that index is suppressed)."
    )
    csi: float | None = Field(description="The measured index's csi (null for judged tasks).")
    external_id: str | None
    history: list[HistoryEntry]
    created_at: datetime
    updated_at: datetime
