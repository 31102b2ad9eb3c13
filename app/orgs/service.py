"""Org tree operations: create, look up within a key's subtree, list, nest, rename and move."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.db import driver_connection
from app.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.indices.store import move_subtree
from app.keys.service import Principal
from app.orgs.models import Org
from app.orgs.schemas import OrgCreate, OrgNode, OrgOut, OrgPatch
from app.pagination import PageParams, after_code
from app.schemas import is_code

# Tree writers take this advisory lock: creates shared, moves exclusive, so that a child is
# never created under a path that a concurrent move is rewriting.
TREE_LOCK_ID = 7_301_943


class OrgNotFound(NotFound):
    title = "Org not found"


class DuplicateOrg(Conflict):
    slug = "duplicate-org"
    title = "An org with this code exists already"


class OrgCycle(Conflict):
    slug = "org-cycle"
    title = "An org cannot move under itself or its descendants"


async def _by_code(session: AsyncSession, code: str) -> Org | None:
    if not is_code(code):
        return None
    return await session.scalar(select(Org).where(Org.code == code))


def unknown_org(code: str, loc: Sequence[str | int]) -> ValidationFailed:
    return ValidationFailed.at(loc, f"unknown org {code!r}")


async def get_visible(session: AsyncSession, *, code: str, principal: Principal) -> Org:
    """The org `code` if the key sees it; 404 otherwise (outside the subtree = not there)."""
    org = await _by_code(session, code)
    if org is None or not principal.sees(org.path):
        raise OrgNotFound(f"No org with code {code!r}.")
    return org


async def find_referenced(
    session: AsyncSession, *, code: str, principal: Principal, loc: Sequence[str | int]
) -> Org:
    """An org named in a body or query; 422 when unknown or outside the key's subtree."""
    org = await _by_code(session, code)
    if org is None or not principal.sees(org.path):
        raise unknown_org(code, loc)
    return org


def visible_path(path: list[int], principal: Principal) -> list[int]:
    """The part of a path that the key may see: from its bound org down."""
    if principal.org_id is None:
        return path
    return path[path.index(principal.org_id) :]


async def describe(
    session: AsyncSession, orgs: Sequence[Org], principal: Principal
) -> list[OrgOut]:
    """Render orgs with parent and path codes, as seen by `principal`."""
    ids = {i for org in orgs for i in org.path}
    codes: dict[int, str] = {}
    if ids:
        rows = await session.execute(select(Org.id, Org.code).where(Org.id.in_(ids)))
        codes = {row.id: row.code for row in rows}
    out = []
    for org in orgs:
        path = visible_path(org.path, principal)
        out.append(
            OrgOut(
                code=org.code,
                name=org.name,
                parent=codes[path[-2]] if len(path) > 1 else None,
                kind=org.kind,
                path=[codes[i] for i in path],
            )
        )
    return out


async def create_org(session: AsyncSession, *, data: OrgCreate, principal: Principal) -> Org:
    """Insert an org under its parent (or as a root) with its materialized path."""
    await session.execute(select(func.pg_advisory_xact_lock_shared(TREE_LOCK_ID)))
    parent_path: list[int] = []
    parent_id = None
    if data.parent is not None:
        parent = await find_referenced(
            session, code=data.parent, principal=principal, loc=("body", "parent")
        )
        parent_path, parent_id = parent.path, parent.id
    elif principal.org_id is not None:
        raise Forbidden(f"A key bound to org {principal.org_code!r} can only create orgs below it.")
    if await session.scalar(select(Org.id).where(Org.code == data.code)) is not None:
        raise DuplicateOrg(f"An org with code {data.code!r} exists already.")
    new_id = await session.scalar(
        select(func.nextval(text("pg_get_serial_sequence('orgs', 'id')")))
    )
    org = Org(
        id=new_id,
        code=data.code,
        name=data.name,
        kind=data.kind,
        parent_id=parent_id,
        path=[*parent_path, new_id],
    )
    session.add(org)
    await session.flush()
    await session.refresh(org)
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.org_create,
        target=org.code,
        org_id=org.id,
        details={"name": org.name, "parent": data.parent, "kind": org.kind},
    )
    return org


async def list_orgs(
    session: AsyncSession, *, parent_code: str | None, principal: Principal, page: PageParams
) -> tuple[list[Org], str | None]:
    """Orgs by code (all visible ones, or the children of `parent_code`); one page of them."""
    query = select(Org)
    if parent_code is not None:
        parent = await find_referenced(
            session, code=parent_code, principal=principal, loc=("query", "parent")
        )
        query = query.where(Org.parent_id == parent.id)
    elif principal.org_id is not None:
        query = query.where(Org.path.contains([principal.org_id]))
    if page.after:
        query = query.where(Org.code > after_code(page.after))
    rows = list((await session.scalars(query.order_by(Org.code).limit(page.limit + 1))).all())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, (rows[-1].code if more else None)


async def subtree(session: AsyncSession, *, code: str, principal: Principal) -> OrgNode:
    """The org and everything below it, nested, children ordered by code."""
    root = await get_visible(session, code=code, principal=principal)
    rows = (
        await session.scalars(select(Org).where(Org.path.contains([root.id])).order_by(Org.code))
    ).all()
    nodes = {
        org.id: OrgNode(code=org.code, name=org.name, kind=org.kind, children=[]) for org in rows
    }
    for org in rows:
        if org.id != root.id and org.parent_id in nodes:
            nodes[org.parent_id].children.append(nodes[org.id])
    return nodes[root.id]


async def patch_org(
    session: AsyncSession, *, code: str, data: OrgPatch, principal: Principal
) -> Org:
    """Rename and/or move an org; a move re-parents its whole subtree."""
    org = await get_visible(session, code=code, principal=principal)
    fields = data.model_fields_set
    changes: dict[str, dict[str, str | None]] = {}
    if "name" in fields:
        if data.name is None:
            raise ValidationFailed.at(("body", "name"), "name may not be null")
        if data.name != org.name:
            changes["name"] = {"from": org.name, "to": data.name}
        org.name = data.name
    if "kind" in fields:
        if data.kind != org.kind:
            changes["kind"] = {"from": org.kind, "to": data.kind}
        org.kind = data.kind
    moved_from = None
    if "parent" in fields:
        moved_from = await _move(session, org=org, parent_code=data.parent, principal=principal)
    await session.flush()
    await session.refresh(org)
    actor = audit.actor_of(principal)
    if changes:
        await audit.record(
            session,
            actor=actor,
            action=audit.Action.org_update,
            target=org.code,
            org_id=org.id,
            details=changes,
        )
    if moved_from is not None:
        await audit.record(
            session,
            actor=actor,
            action=audit.Action.org_move,
            target=org.code,
            org_id=org.id,
            details={"from": moved_from[0], "to": data.parent},
        )
    return org


async def _move(
    session: AsyncSession, *, org: Org, parent_code: str | None, principal: Principal
) -> tuple[str | None] | None:
    """Re-parent the org's subtree; the former parent's code (as a 1-tuple) if it moved."""
    await session.execute(select(func.pg_advisory_xact_lock(TREE_LOCK_ID)))
    await session.refresh(org)
    if principal.org_id == org.id:
        raise Forbidden("A key bound to an org cannot move that org itself.")
    new_prefix: list[int] = []
    new_parent_id = None
    if parent_code is not None:
        parent = await find_referenced(
            session, code=parent_code, principal=principal, loc=("body", "parent")
        )
        if org.id in parent.path:
            raise OrgCycle(
                f"Org {org.code!r} cannot move under {parent_code!r}, its own descendant."
            )
        new_prefix, new_parent_id = parent.path, parent.id
    elif principal.org_id is not None:
        raise Forbidden(f"A key bound to org {principal.org_code!r} cannot make an org a root.")
    if new_parent_id == org.parent_id:
        return None
    old_parent = None
    if org.parent_id is not None:
        old_parent = await session.scalar(select(Org.code).where(Org.id == org.parent_id))
    # The index rollup keeps subtree sums per ancestor: carry the moved subtree's along.
    await move_subtree(
        await driver_connection(session),
        org_id=org.id,
        old_ancestors=org.path[:-1],
        new_ancestors=new_prefix,
    )
    depth = len(org.path)
    # Every org of the subtree keeps its path from `org` (1-based position `depth`) down
    # and gets the new parent's path in front.
    await session.execute(
        text(
            "UPDATE orgs SET path = CAST(:prefix AS bigint[])"
            " || path[CAST(:first AS int) : array_length(path, 1)], updated_at = now()"
            " WHERE path @> ARRAY[CAST(:id AS bigint)]"
        ),
        {"prefix": new_prefix, "first": depth, "id": org.id},
    )
    org.parent_id = new_parent_id
    return (old_parent,)
