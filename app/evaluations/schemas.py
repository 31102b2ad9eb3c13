"""Bodies of schemes, scorecards and evaluations."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.indices.schemas import TREE_DESCRIPTION, Interval, Weight
from app.platform.schemas import InputModel, JsonNumber, Text2000
from app.responses.models import CustomerType
from app.stages import Stage
from app.tasks.models import TaskStatus

SchemeWeight = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False), JsonNumber]
Cap = Annotated[float, Field(ge=100, le=1_000_000, allow_inf_nan=False), JsonNumber]


class SchemeIn(InputModel):
    index_weight: SchemeWeight
    task_weight: SchemeWeight
    cap: Cap = 100.0
    stage_weights: dict[Stage, Weight] | None = Field(
        default=None, description="Weights of the purview index's stages (default: all 1)."
    )


class SchemeOut(BaseModel):
    index_weight: float
    task_weight: float
    cap: float
    stage_weights: dict[Stage, float] | None


class ScorecardIndex(BaseModel):
    n: int
    csi: float | None
    ci95: Interval | None
    suppressed: bool
    target: float | None
    attained: bool | None
    component: float | None


class ScorecardOrg(BaseModel):
    org: str
    n: int
    csi: float | None
    ci95: Interval | None
    suppressed: bool
    target: float | None
    attained: bool | None


class TaskItem(BaseModel):
    id: str
    org: str
    title: str
    customer_group: CustomerType
    status: TaskStatus
    measured: bool
    achieved: bool | None
    weight: float
    csi: float | None


class TaskSummary(BaseModel):
    count: int
    achieved: int
    weight: float
    weight_achieved: float
    component: float | None
    items: list[TaskItem]


class Fingerprint(BaseModel):
    count: int = Field(description="How many responses the scorecard's index used.")
    digest: str = Field(description="Hex SHA-256 of that set (docs/architecture.md).")


class Scorecard(BaseModel):
    executive: str
    name: str
    period: str
    from_: date = Field(alias="from")
    to: date
    tree: str = Field(description=TREE_DESCRIPTION)
    frozen: bool
    index: ScorecardIndex
    orgs: list[ScorecardOrg]
    tasks: TaskSummary
    scheme: SchemeOut
    total: float | None
    fingerprint: Fingerprint | None = Field(
        description="Of the responses used, stored by a close (null in live scorecards)."
    )

    model_config = {"populate_by_name": True}


class RankedScorecard(Scorecard):
    rank: int | None


class EvaluationHead(BaseModel):
    period: str
    status: str = Field(description="open or closed")
    version: int | None = Field(description="The latest stored version (null: never closed).")
    closed_at: datetime | None
    closed_by: str | None
    note: str | None
    scheme: SchemeOut


class Evaluation(EvaluationHead):
    scorecards: list[RankedScorecard]


class CloseIn(InputModel):
    note: Text2000 | None = None


class ReopenIn(InputModel):
    reason: Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]*\S[^\x00]*$")]
