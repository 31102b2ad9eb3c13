"""Bodies of the admin API for keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from app.keys.scopes import Scope
from app.schemas import Code, InputModel, Name, OutputModel


class KeyCreate(InputModel):
    name: Name
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(Scope))]
    org: Code | None = None
    source: Code | None = None


class KeyOut(OutputModel):
    id: str
    name: str
    scopes: list[Scope]
    org: str | None
    source: str | None
    created_at: datetime
    revoked_at: datetime | None


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The whole key; shown this once and never again.")


class KeyList(OutputModel):
    items: list[KeyOut]
