"""HTTP routes of the org tree and its history."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.orgs import service
from app.orgs.schemas import HistoryOut, OrgCreate, OrgNode, OrgOut, OrgPatch
from app.platform import clock
from app.platform.deps import OrgsWriter, Pagination, PrincipalDep, SessionDep, SettingsDep
from app.platform.pagination import Page, encode_cursor
from app.platform.schemas import CODE_PATTERN, DATE_PATTERN

router = APIRouter(prefix="/v1/orgs", tags=["orgs"])

# No pattern on path codes: a code that cannot exist is simply not found (404).
CodePath = Annotated[str, Path(description="An org code.")]
# The pattern is declared for clients; the service checks it (and the range) with its messages.
AsOf = Annotated[
    str | None,
    Query(
        description="Answer for the tree on this day (YYYY-MM-DD; default today).",
        json_schema_extra={"pattern": DATE_PATTERN, "format": "date"},
    ),
]


def _as_of(value: str | None) -> date | None:
    return None if value is None else service.parse_day(value, ("query", "as_of"))


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
    as_of: AsOf = None,
) -> Page[OrgOut]:
    """Orgs ordered by code: all of them, or the direct children of `parent` (on `as_of`)."""
    day = _as_of(as_of)
    if day is None:
        orgs, last = await service.list_orgs(
            session, parent_code=parent, principal=principal, page=page
        )
        items = await service.describe(session, orgs, principal)
    else:
        orgs, last = await service.list_orgs_on(
            session, parent_code=parent, principal=principal, page=page, day=day
        )
        items = await service.describe_on(session, orgs, principal, day)
    return Page[OrgOut](items=items, next_cursor=encode_cursor([last]) if last else None)


@router.get("/{code}")
async def get_org(
    code: CodePath, session: SessionDep, principal: PrincipalDep, as_of: AsOf = None
) -> OrgOut:
    """One org with its parent and its path from the root (in the tree on `as_of`)."""
    day = _as_of(as_of)
    org = await service.get_visible(session, code=code, principal=principal)
    if day is None:
        return (await service.describe(session, [org], principal))[0]
    return (await service.describe_on(session, [org], principal, day))[0]


@router.get("/{code}/subtree")
async def get_subtree(
    code: CodePath, session: SessionDep, principal: PrincipalDep, as_of: AsOf = None
) -> OrgNode:
    """The org and all its descendants, nested (in the tree on `as_of`)."""
    day = _as_of(as_of)
    if day is None:
        return await service.subtree(session, code=code, principal=principal)
    return await service.subtree_on(session, code=code, principal=principal, day=day)


@router.patch("/{code}")
async def patch_org(
    code: CodePath,
    body: OrgPatch,
    session: SessionDep,
    principal: OrgsWriter,
    settings: SettingsDep,
) -> OrgOut:
    """Rename an org and/or move it (with its whole subtree) under another parent, from its
    `effective` day on (default today). The answer shows the org as it is today."""
    org = await service.patch_org(
        session, code=code, data=body, principal=principal, today=clock.today(settings.zone)
    )
    return (await service.describe(session, [org], principal))[0]


@router.get("/{code}/history")
async def get_history(code: CodePath, session: SessionDep, principal: PrincipalDep) -> HistoryOut:
    """The org's placements, oldest first (`effective` null: its creation)."""
    return await service.history(session, code=code, principal=principal)


@router.delete("/{code}/history/{effective}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_history(
    code: CodePath,
    effective: Annotated[str, Path(description="The effective date of a placement.")],
    session: SessionDep,
    principal: OrgsWriter,
    settings: SettingsDep,
) -> Response:
    """Remove one dated placement (a cancelled or mistaken move)."""
    await service.delete_placement(
        session,
        code=code,
        effective=effective,
        principal=principal,
        today=clock.today(settings.zone),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
