"""Request and response bodies of the orgs API."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field

from app.platform.schemas import (
    DATE_PATTERN,
    Code,
    InputModel,
    Name,
    OutputModel,
    ShortText,
    not_null,
)


class OrgCreate(InputModel):
    code: Code
    name: Name
    parent: Code | None = None
    kind: ShortText | None = None


def _date_not_null(schema: dict[str, Any]) -> None:
    not_null(schema)
    schema.update(pattern=DATE_PATTERN, format="date")


class OrgPatch(InputModel):
    # Absent: unchanged. null is refused (422) by the service, so the schema does not offer it.
    name: Name | None = Field(default=None, json_schema_extra=not_null)
    parent: Code | None = Field(
        default=None, description="New parent code; null makes the org a root."
    )
    kind: ShortText | None = None
    # Checked by the service (range and today's date), with the contract's messages.
    effective: str | None = Field(
        default=None,
        description="The day the move takes effect (default today; up to 400 days ahead).",
        json_schema_extra=_date_not_null,
    )


class OrgOut(OutputModel):
    code: str
    name: str
    parent: str | None
    kind: str | None
    path: list[str] = Field(description="Codes from the root down to this org.")


class OrgNode(OutputModel):
    code: str
    name: str
    kind: str | None
    children: list[OrgNode]


class HistoryItem(OutputModel):
    effective: date | None = Field(description="null: the creation placement.")
    parent: str | None


class HistoryOut(OutputModel):
    items: list[HistoryItem]
