"""Request and response bodies of executives, purviews and executive targets."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from app.platform.schemas import Code, InputModel, Name, OutputModel, not_null


class ExecutiveCreate(InputModel):
    code: Code
    name: Name
    title: Name | None = None


class ExecutivePatch(InputModel):
    # Absent: unchanged; a name may not be null, a title may (it clears it).
    name: Name | None = Field(default=None, json_schema_extra=not_null)
    title: Name | None = None


class ExecutiveOut(OutputModel):
    code: str
    name: str
    title: str | None
    created_at: datetime
    updated_at: datetime


class PurviewIn(InputModel):
    orgs: list[Code] = Field(min_length=1, max_length=50, description="1 to 50 org codes.")


class PurviewOut(OutputModel):
    executive: str
    period: str
    orgs: list[str]


class ExecutiveTargetOut(OutputModel):
    executive: str
    period: str
    csi: float
