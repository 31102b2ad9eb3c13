"""Request and response bodies of the orgs API."""

from __future__ import annotations

from pydantic import Field

from app.schemas import Code, InputModel, Name, OutputModel, ShortText, not_null


class OrgCreate(InputModel):
    code: Code
    name: Name
    parent: Code | None = None
    kind: ShortText | None = None


class OrgPatch(InputModel):
    # Absent: unchanged. null is refused (422) by the service, so the schema does not offer it.
    name: Name | None = Field(default=None, json_schema_extra=not_null)
    parent: Code | None = Field(
        default=None, description="New parent code; null makes the org a root."
    )
    kind: ShortText | None = None


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
