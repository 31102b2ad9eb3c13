"""Request and response bodies of the orgs API."""

from __future__ import annotations

from pydantic import Field

from app.schemas import Code, InputModel, Name, OutputModel, ShortText


class OrgCreate(InputModel):
    code: Code
    name: Name
    parent: Code | None = None
    kind: ShortText | None = None


class OrgPatch(InputModel):
    name: Name | None = None
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
