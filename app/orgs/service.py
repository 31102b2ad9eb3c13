"""Org tree operations: create, look up within a key's subtree, list, nest, rename and move."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.keys.service import Principal
from app.orgs import tree
from app.orgs.models import Org
from app.orgs.schemas import HistoryItem, HistoryOut, OrgCreate, OrgNode, OrgOut, OrgPatch
from app.orgs.timeline import Timeline
from app.platform.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.platform.pagination import PageParams, after_code
from app.platform.schemas import DATE_PATTERN, is_code

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)
MAX_DAYS_AHEAD = 400
_DATE = re.compile(DATE_PATTERN)


class OrgNotFound(NotFound):
    title = "Org not found"


class DuplicateOrg(Conflict):
    slug = "duplicate-org"
    title = "An org with this code exists already"


class OrgCycle(Conflict):
    slug = "org-cycle"
    title = "An org cannot move under itself or its descendants"


class CreationPlacement(Conflict):
    slug = "creation-placement"
    title = "An org's creation placement cannot be removed"


class PlacementNotFound(NotFound):
    title = "Placement not found"


def parse_day(value: str, loc: Sequence[str | int]) -> date:
    """A date YYYY-MM-DD between 1900-01-01 and 9998-12-31; 422 at `loc` otherwise."""
    if _DATE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            pass
        else:
            if day < FIRST_DAY:
                raise ValidationFailed.at(loc, "dates before 1900-01-01 are not accepted")
            if day > LAST_DAY:
                raise ValidationFailed.at(loc, "dates after 9998-12-31 are not accepted")
            return day
    raise ValidationFailed.at(loc, "must be a date YYYY-MM-DD")


def parse_effective(value: str | None, *, today: date) -> date:
    """A move's effective date: from 1900-01-01 to 400 days after today."""
    loc = ("body", "effective")
    if value is None:
        raise ValidationFailed.at(loc, "must be a date YYYY-MM-DD (leave it out for today)")
    day = parse_day(value, loc)
    last = today + timedelta(days=MAX_DAYS_AHEAD)
    if day > last:
        raise ValidationFailed.at(loc, f"may lie at most {MAX_DAYS_AHEAD} days ahead ({last})")
    return day


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


async def within(
    session: AsyncSession, *, principal: Principal, org_code: str | None
) -> ColumnElement[bool] | None:
    """A listing's org filter on `Org.path`: the subtree of the org its query names (422 if
    unknown or unseen), or else the key's subtree; None for an unbound key naming none."""
    if org_code is not None:
        org = await find_referenced(
            session, code=org_code, principal=principal, loc=("query", "org")
        )
        return Org.path.contains([org.id])
    if principal.org_id is not None:
        return Org.path.contains([principal.org_id])
    return None


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
    await tree.lock_shared(session)
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
    if parent_id is not None:
        await tree.prepare_parent(session, parent_id=parent_id)
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
    await tree.record_creation(session, org_id=org.id, parent_id=parent_id)
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
    session: AsyncSession, *, code: str, data: OrgPatch, principal: Principal, today: date
) -> Org:
    """Rename and/or move an org; a move re-parents its whole subtree from its effective day."""
    org = await get_visible(session, code=code, principal=principal)
    fields = data.model_fields_set
    effective = today
    if "effective" in fields:
        if "parent" not in fields:
            raise ValidationFailed.at(("body", "effective"), "effective dates a move: give parent")
        effective = parse_effective(data.effective, today=today)
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
        moved_from = await _move(
            session,
            org=org,
            parent_code=data.parent,
            principal=principal,
            effective=effective,
            today=today,
        )
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
            details={"from": moved_from[0], "to": data.parent, "effective": effective.isoformat()},
        )
    return org


def _check_acyclic(timeline: Timeline, view: tree.TreeView, org: Org) -> None:
    found = timeline.cycle()
    if found is None:
        return
    day, on_cycle = found
    when = f"from {day}" if day is not None else "before its first move"
    raise OrgCycle(
        f"The tree {when} would be cyclic: org {view.codes[on_cycle]!r} would lie below itself"
        f" (through {org.code!r})."
    )


async def _move(
    session: AsyncSession,
    *,
    org: Org,
    parent_code: str | None,
    principal: Principal,
    effective: date,
    today: date,
) -> tuple[str | None] | None:
    """Place the org's subtree under `parent_code` from `effective` on; the parent it had on
    that day (as a 1-tuple) when this changed anything."""
    await tree.lock_exclusive(session)
    if principal.org_id == org.id:
        raise Forbidden("A key bound to an org cannot move that org itself.")
    parent_id = None
    if parent_code is not None:
        parent = await find_referenced(
            session, code=parent_code, principal=principal, loc=("body", "parent")
        )
        parent_id = parent.id
    elif principal.org_id is not None:
        raise Forbidden(f"A key bound to org {principal.org_code!r} cannot make an org a root.")
    view = await tree.load(session)
    before = view.timeline.parent_on(org.id, effective)
    if before == parent_id:
        return None  # already there on that day: nothing to record
    if parent_id is not None and org.id in view.timeline.ancestors_on(effective, parent_id):
        raise OrgCycle(
            f"Org {org.code!r} cannot move under {parent_code!r}, its own descendant"
            f" on {effective}."
        )
    _check_acyclic(view.timeline.with_placement(org.id, effective, parent_id), view, org)
    await tree.put_placement(session, org_id=org.id, effective=effective, parent_id=parent_id)
    await tree.materialize(session, day=today)
    return (view.codes[before] if before is not None else None,)


# ---- the timeline --------------------------------------------------------------------------


def _seen_code(view: tree.TreeView, org_id: int | None, principal: Principal) -> str | None:
    """The code of `org_id` if the key may see it (its current subtree), else None."""
    if org_id is None or not principal.sees(view.materialized.paths[org_id]):
        return None
    return view.codes[org_id]


async def history(session: AsyncSession, *, code: str, principal: Principal) -> HistoryOut:
    """The org's placements, oldest first (the creation placement has `effective` null)."""
    org = await get_visible(session, code=code, principal=principal)
    view = await tree.load(session)
    return HistoryOut(
        items=[
            HistoryItem(effective=effective, parent=_seen_code(view, parent, principal))
            for effective, parent in view.timeline.placements[org.id]
        ]
    )


async def delete_placement(
    session: AsyncSession, *, code: str, effective: str, principal: Principal, today: date
) -> None:
    """Remove one dated placement (a cancelled or mistaken move); audited."""
    org = await get_visible(session, code=code, principal=principal)
    if effective == "null":
        raise CreationPlacement(f"The creation placement of org {org.code!r} cannot be removed.")
    day = parse_day(effective, ("path", "effective"))
    await tree.lock_exclusive(session)
    if principal.org_id == org.id:
        raise Forbidden("A key bound to an org cannot move that org itself.")
    view = await tree.load(session)
    placed = dict(view.timeline.placements[org.id])
    if day not in placed:
        raise PlacementNotFound(f"Org {org.code!r} has no placement effective {day}.")
    _check_acyclic(view.timeline.without_placement(org.id, day), view, org)
    await tree.remove_placement(session, org_id=org.id, effective=day)
    await tree.materialize(session, day=today)
    parent = placed[day]
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.org_history_delete,
        target=org.code,
        org_id=org.id,
        details={"effective": day.isoformat(), "parent": view.codes.get(parent or 0)},
    )


async def describe_on(
    session: AsyncSession, orgs: Sequence[Org], principal: Principal, day: date
) -> list[OrgOut]:
    """Render orgs with parent and path in the tree on `day`, leaving out orgs the key does not
    see (outside its current subtree)."""
    view = await tree.load(session)
    out = []
    for org in orgs:
        path = view.timeline.ancestors_on(day, org.id)
        out.append(
            OrgOut(
                code=org.code,
                name=org.name,
                parent=_seen_code(view, view.timeline.parents_on(day)[org.id], principal),
                kind=org.kind,
                path=[c for i in path if (c := _seen_code(view, i, principal)) is not None],
            )
        )
    return out


async def list_orgs_on(
    session: AsyncSession,
    *,
    parent_code: str | None,
    principal: Principal,
    page: PageParams,
    day: date,
) -> tuple[list[Org], str | None]:
    """Like list_orgs, with `parent` meaning the parent in the tree on `day`."""
    view = await tree.load(session)
    if parent_code is not None:
        parent = await find_referenced(
            session, code=parent_code, principal=principal, loc=("query", "parent")
        )
        ids = list(view.timeline.children_on(day).get(parent.id, ()))
    else:
        ids = list(view.codes)
    codes = sorted(view.codes[i] for i in ids if principal.sees(view.materialized.paths[i]))
    if page.after:
        after = after_code(page.after)
        codes = [c for c in codes if c > after]
    more = len(codes) > page.limit
    codes = codes[: page.limit]
    rows = (await session.scalars(select(Org).where(Org.code.in_(codes)))).all()
    by_code = {org.code: org for org in rows}
    return [by_code[c] for c in codes], (codes[-1] if more else None)


async def subtree_on(
    session: AsyncSession, *, code: str, principal: Principal, day: date
) -> OrgNode:
    """The org and everything below it in the tree on `day`, nested; orgs the key does not see
    are left out (their visible descendants hang from the nearest visible ancestor)."""
    root = await get_visible(session, code=code, principal=principal)
    view = await tree.load(session)
    ids = view.timeline.subtree_on(day, root.id)
    rows = (await session.scalars(select(Org).where(Org.id.in_(ids)))).all()
    nodes = {
        org.id: OrgNode(code=org.code, name=org.name, kind=org.kind, children=[])
        for org in rows
        if principal.sees(view.materialized.paths[org.id])
    }
    parents = view.timeline.parents_on(day)
    for org_id in sorted(nodes, key=lambda i: view.codes[i]):
        if org_id == root.id:
            continue
        up = parents[org_id]
        while up is not None and up not in nodes:
            up = parents[up]
        if up is not None:
            nodes[up].children.append(nodes[org_id])
    return nodes[root.id]
