"""Bodies of the insight reads."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class PainPointItem(BaseModel):
    survey: str
    question: str
    option: str
    low_n: int = Field(description="Low responses choosing the option.")
    low_share: float = Field(description="Percent of the low responses that answered it.")
    all_n: int
    all_share: float = Field(description="Percent of all responses that answered it.")
    lift: float | None = Field(description="low_share / all_share (null when all_share is 0).")


class PainPoints(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    org: str
    from_: date = Field(alias="from")
    to: date
    tree: str
    low_below: float
    n: int = Field(description="Responses in scope.")
    low_n: int = Field(description="Low responses in scope.")
    items: list[PainPointItem]


class DriverItem(BaseModel):
    question: str
    n: int
    r: float | None = Field(description="Pearson correlation with the primary.")
    importance: float | None = Field(description="Johnson's relative weight (they sum to r2).")


class DriverList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    org: str
    survey: str
    from_: date = Field(alias="from")
    to: date
    tree: str
    n: int = Field(description="Responses that answered the primary and every question.")
    r2: float | None
    suppressed: bool
    items: list[DriverItem]
