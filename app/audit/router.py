"""GET /v1/audit: the audit log, for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.audit import service
from app.audit.schemas import AuditEventOut
from app.platform.deps import Admin, Pagination, SessionDep
from app.platform.errors import ValidationFailed
from app.platform.pagination import Page, encode_cursor
from app.platform.schemas import Instant

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("")
async def list_audit_events(
    session: SessionDep,
    admin: Admin,
    page: Pagination,
    action: Annotated[
        service.Action | None, Query(description="Only events of this action.")
    ] = None,
    start: Annotated[
        Instant | None, Query(alias="from", description="Events at or after this instant.")
    ] = None,
    end: Annotated[
        Instant | None, Query(alias="to", description="Events before this instant.")
    ] = None,
) -> Page[AuditEventOut]:
    """Audit events, newest first; an org-bound admin sees its subtree's events only."""
    if start is not None and end is not None and start >= end:
        raise ValidationFailed.at(("query", "to"), "'to' must be after 'from'")
    items, last = await service.list_events(
        session, viewer=admin, action=action, start=start, end=end, page=page
    )
    return Page[AuditEventOut](items=items, next_cursor=encode_cursor(last) if last else None)
