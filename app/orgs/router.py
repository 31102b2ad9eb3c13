"""HTTP routes of the org tree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.deps import OrgsWriter, Pagination, PrincipalDep, SessionDep
from app.orgs import service
from app.orgs.schemas import OrgCreate, OrgNode, OrgOut, OrgPatch
from app.pagination import Page, encode_cursor
from app.schemas import CODE_PATTERN

router = APIRouter(prefix="/v1/orgs", tags=["orgs"])

# No pattern on path codes: a code that cannot exist is simply not found (404).
CodePath = Annotated[str, Path(description="An org code.")]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_org(
    body: OrgCreate, session: SessionDep, principal: OrgsWriter, response: Response
) -> OrgOut:
    """Create an org under `parent` (or a root when `parent` is null)."""
    org = await service.create_org(session, data=body, principal=principal)
    response.headers["Location"] = f"/v1/orgs/{org.code}"
    return (await service.describe(session, [org], principal))[0]


@router.get("")
async def list_orgs(
    session: SessionDep,
    principal: PrincipalDep,
    page: Pagination,
    parent: Annotated[
        str | None, Query(pattern=CODE_PATTERN, description="Only the children of this org.")
    ] = None,
) -> Page[OrgOut]:
    """Orgs ordered by code: all of them, or the direct children of `parent`."""
    orgs, last = await service.list_orgs(
        session, parent_code=parent, principal=principal, page=page
    )
    items = await service.describe(session, orgs, principal)
    return Page[OrgOut](items=items, next_cursor=encode_cursor([last]) if last else None)


@router.get("/{code}")
async def get_org(code: CodePath, session: SessionDep, principal: PrincipalDep) -> OrgOut:
    """One org with its parent and its path from the root."""
    org = await service.get_visible(session, code=code, principal=principal)
    return (await service.describe(session, [org], principal))[0]


@router.get("/{code}/subtree")
async def get_subtree(code: CodePath, session: SessionDep, principal: PrincipalDep) -> OrgNode:
    """The org and all its descendants, nested."""
    return await service.subtree(session, code=code, principal=principal)


@router.patch("/{code}")
async def patch_org(
    code: CodePath, body: OrgPatch, session: SessionDep, principal: OrgsWriter
) -> OrgOut:
    """Rename an org and/or move it (with its whole subtree) under another parent."""
    org = await service.patch_org(session, code=code, data=body, principal=principal)
    return (await service.describe(session, [org], principal))[0]
