"""Bodies of the index API."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, Field, RootModel

from app.platform.schemas import InputModel, JsonNumber
from app.stages import Stage

Interval = tuple[float, float]


class StageIndex(BaseModel):
    stage: Stage
    n: int
    score: float | None
    ci95: Interval | None
    weight: float
    top2box: float | None
    nps: float | None
    suppressed: bool


class PreviousIndex(BaseModel):
    from_: date = Field(alias="from")
    to: date
    n: int
    csi: float | None
    ci95: Interval | None

    model_config = {"populate_by_name": True}


TREE_DESCRIPTION = "The tree the numbers were computed in: current, history or a date."


class OrgIndex(BaseModel):
    org: str
    from_: date = Field(alias="from")
    to: date
    tree: str = Field(description=TREE_DESCRIPTION)
    n: int
    csi: float | None
    ci95: Interval | None
    suppressed: bool
    stages: list[StageIndex]
    previous: PreviousIndex
    delta: float | None
    significant: bool | None
    target: float | None
    attained: bool | None

    model_config = {"populate_by_name": True}


class ChildIndex(BaseModel):
    org: str
    name: str
    rank: int | None
    n: int
    csi: float | None
    ci95: Interval | None
    suppressed: bool
    # As the org index defines them: against the child's previous period, and its target.
    delta: float | None
    significant: bool | None
    target: float | None
    attained: bool | None


class SegmentIndex(BaseModel):
    value: str
    n: int
    csi: float | None
    ci95: Interval | None
    suppressed: bool
    rank: int | None


class SegmentList(BaseModel):
    model_config = {"populate_by_name": True}

    org: str
    key: str
    from_: date = Field(alias="from")
    to: date
    tree: str = Field(description=TREE_DESCRIPTION)
    items: list[SegmentIndex]


class ChildList(BaseModel):
    tree: str = Field(description=TREE_DESCRIPTION)
    items: list[ChildIndex]


class SeriesPoint(BaseModel):
    period: str
    from_: date = Field(alias="from")
    to: date
    n: int
    csi: float | None
    ci95: Interval | None
    suppressed: bool
    stages: list[StageIndex]

    model_config = {"populate_by_name": True}


class Series(BaseModel):
    tree: str = Field(description=TREE_DESCRIPTION)
    items: list[SeriesPoint]


Weight = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False), JsonNumber]


class WeightsIn(RootModel[dict[Stage, Weight]]):
    """`{stage: weight, ...}`; stages not named weigh 1."""


class WeightsOut(BaseModel):
    org: str
    from_org: str | None = Field(description="The org whose set applies (null: none, all 1).")
    weights: dict[Stage, float]


class TargetIn(InputModel):
    csi: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False), JsonNumber]


class TargetOut(BaseModel):
    org: str
    period: str
    csi: float


class TargetList(BaseModel):
    items: list[TargetOut]
