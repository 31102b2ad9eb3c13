"""Bodies of case rules and cases."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.cases.models import CaseStatus
from app.platform.schemas import InputModel, JsonNumber, Name, Text2000
from app.responses.schemas import Score
from app.stages import Stage


class CaseRuleIn(InputModel):
    at_most: Annotated[
        int,
        Field(ge=-1_000_000, le=1_000_000, description="A primary raw answer ≤ this opens a case."),
        JsonNumber,
    ]
    sla_hours: Annotated[
        int, Field(ge=1, le=8760, description="Hours from opening to due."), JsonNumber
    ]
    max_age_days: Annotated[
        int,
        Field(ge=1, le=3650, description="Responses older than this when stored open none."),
        JsonNumber,
    ] = 30


class CaseRuleOut(BaseModel):
    survey: str
    at_most: int
    sla_hours: int
    max_age_days: int


class Note(BaseModel):
    at: datetime
    actor: str
    text: str


class CaseOut(BaseModel):
    id: str
    response_id: str
    org: str
    survey: str
    stage: Stage
    score: Score
    status: CaseStatus
    opened_at: datetime
    due_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    root_cause: str | None
    assignee: str | None
    notes: list[Note]
    overdue: bool


class CasePatch(InputModel):
    status: CaseStatus | None = None
    root_cause: Name | None = Field(default=None, description="1-200 characters.")
    assignee: Name | None = Field(default=None, description="Who follows it up; null: nobody.")
    note: Text2000 | None = Field(default=None, description="Appended to the case's notes.")

    @model_validator(mode="after")
    def _something(self) -> CasePatch:
        if not self.model_fields_set:
            raise ValueError("give at least one of status, root_cause, assignee, note")
        return self


class RootCauseCount(BaseModel):
    root_cause: str
    n: int


class CaseStats(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    org: str
    from_: date = Field(alias="from")
    to: date
    tree: str
    opened: int
    acknowledged: int
    resolved: int
    closed: int
    open_now: int
    overdue_now: int
    median_hours_to_resolve: float | None
    root_causes: list[RootCauseCount]
