"""What GET /v1/audit returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from app.platform.schemas import OutputModel


class AuditEventOut(OutputModel):
    id: str = Field(description="Opaque event id.")
    at: datetime = Field(description="When the change's transaction began.")
    actor: str = Field(
        description="`key:<key id>` for an API call, `cli` for the command line; `key` for a key "
        "outside an org-bound reader's subtree."
    )
    action: str = Field(description="A stable action name, e.g. `org.move`.")
    target: str | None = Field(description="What was changed: an org code, key id, response id.")
    org: str | None = Field(description="The org the change concerns, if any.")
    details: dict[str, Any] = Field(description="Action-specific facts; never personal data.")
    request_id: str | None = Field(description="The X-Request-ID of the API call, if any.")
