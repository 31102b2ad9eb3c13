"""Bodies of the admin API for keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from app.keys.scopes import Scope
from app.platform.schemas import Code, InputModel, JsonNumber, Name, OutputModel

Rate = Annotated[
    float,
    Field(
        gt=0,
        le=1_000_000,
        allow_inf_nan=False,
        description="Requests a second this key may make (default: CX_RATE_LIMIT_PER_SECOND).",
    ),
    JsonNumber,
]
Burst = Annotated[
    int,
    Field(
        ge=1,
        le=10_000_000,
        description="How many requests it may make at once (default: twice its rate, or "
        "CX_RATE_LIMIT_BURST for a key without a rate of its own).",
    ),
]


class KeyCreate(InputModel):
    name: Name
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(Scope))]
    org: Code | None = None
    source: Code | None = None
    rate: Rate | None = None
    burst: Burst | None = None


class KeyOut(OutputModel):
    id: str
    name: str
    scopes: list[Scope]
    org: str | None
    source: str | None
    rate: float | None = Field(description="Its own rate limit; null: the service's setting.")
    burst: int | None
    created_at: datetime
    revoked_at: datetime | None


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The whole key; shown this once and never again.")


class KeyList(OutputModel):
    items: list[KeyOut]
