"""Executives, their purviews per period and their CSI targets.

These are the evaluation office's records: only unbound keys change them. An org-bound key sees
an executive when one of the executive's purviews lies wholly inside the key's current subtree,
and a period's purview and target only when that period's purview does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, func, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.evaluations import guard
from app.executives.models import Executive, ExecutiveTarget, Purview
from app.executives.schemas import (
    ExecutiveCreate,
    ExecutivePatch,
    ExecutiveTargetOut,
    PurviewOut,
)
from app.indices.service import check_period
from app.keys.service import Principal
from app.orgs.models import Org
from app.orgs.service import unknown_org
from app.platform.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.platform.pagination import PageParams, after_code
from app.platform.schemas import is_code


class ExecutiveNotFound(NotFound):
    title = "Executive not found"


class PurviewNotFound(NotFound):
    title = "Purview not found"


class ExecutiveTargetNotFound(NotFound):
    title = "Target not found"


class DuplicateExecutive(Conflict):
    slug = "duplicate-executive"
    title = "An executive with this code exists"


def require_unbound(principal: Principal) -> None:
    """Executives, purviews, their targets and schemes are the evaluation office's: 403 for
    an org-bound key."""
    if principal.org_id is not None:
        raise Forbidden(
            "Executives, purviews, executive targets, schemes and closes are changed with a key"
            " that is not bound to an org."
        )


def inside_purviews(principal: Principal) -> Select[int, str]:
    """(executive id, period) of the purviews that lie wholly inside the key's subtree."""
    inside = Org.path.contains([principal.org_id]) if principal.org_id is not None else true()
    return (
        select(Purview.executive_id, Purview.period)
        .join(Org, Org.id == Purview.org_id)
        .group_by(Purview.executive_id, Purview.period)
        .having(func.bool_and(inside))
    )


async def _by_code(session: AsyncSession, code: str) -> Executive | None:
    if not is_code(code):
        return None
    return await session.scalar(select(Executive).where(Executive.code == code))


async def sees_period(
    session: AsyncSession, *, executive: Executive, period: str, principal: Principal
) -> bool:
    """Whether the key sees the executive's purview for `period` (unbound keys see all)."""
    if principal.org_id is None:
        return True
    found = await session.scalar(
        inside_purviews(principal)
        .where(Purview.executive_id == executive.id, Purview.period == period)
        .limit(1)
    )
    return found is not None


async def get_visible(session: AsyncSession, *, code: str, principal: Principal) -> Executive:
    """The executive `code` if the key sees it; 404 otherwise."""
    executive = await _by_code(session, code)
    if executive is not None and principal.org_id is not None:
        visible = await session.scalar(
            inside_purviews(principal).where(Purview.executive_id == executive.id).limit(1)
        )
        executive = executive if visible is not None else None
    if executive is None:
        raise ExecutiveNotFound(f"No executive with code {code!r}.")
    return executive


async def create_executive(
    session: AsyncSession, *, data: ExecutiveCreate, principal: Principal
) -> Executive:
    """Insert an executive (audited); 409 when the code is taken."""
    require_unbound(principal)
    if await _by_code(session, data.code) is not None:
        raise DuplicateExecutive(f"An executive with code {data.code!r} exists already.")
    executive = Executive(code=data.code, name=data.name, title=data.title)
    session.add(executive)
    await session.flush()
    await session.refresh(executive)
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.executive_create,
        target=executive.code,
        details={"name": executive.name, "title": executive.title},
    )
    return executive


async def patch_executive(
    session: AsyncSession, *, code: str, data: ExecutivePatch, principal: Principal
) -> Executive:
    """Change an executive's name or title (audited when something changed)."""
    require_unbound(principal)
    executive = await get_visible(session, code=code, principal=principal)
    if "name" in data.model_fields_set and data.name is None:
        raise ValidationFailed.at(("body", "name"), "name may not be null")
    changes: dict[str, Any] = {
        field: getattr(data, field)
        for field in ("name", "title")
        if field in data.model_fields_set and getattr(data, field) != getattr(executive, field)
    }
    if changes:
        for field, value in changes.items():
            setattr(executive, field, value)
        executive.updated_at = func.now()
        await session.flush()
        await session.refresh(executive)
        await audit.record(
            session,
            actor=audit.actor_of(principal),
            action=audit.Action.executive_update,
            target=executive.code,
            details=changes,
        )
    return executive


async def list_executives(
    session: AsyncSession, *, principal: Principal, page: PageParams
) -> tuple[list[Executive], str | None]:
    """Executives ordered by code, those the key sees; and the last code if more follow."""
    query = select(Executive).order_by(Executive.code).limit(page.limit + 1)
    if page.after is not None:
        query = query.where(Executive.code > after_code(page.after))
    if principal.org_id is not None:
        query = query.where(
            Executive.id.in_(select(inside_purviews(principal).subquery().c.executive_id))
        )
    rows = list(await session.scalars(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, rows[-1].code if more and rows else None


async def _writing(
    session: AsyncSession, *, code: str, period: str, principal: Principal
) -> tuple[Executive, str]:
    """The executive and the normalized period of a write to what the period holds: 403 for an
    org-bound key, 422 for a malformed period, 404 for an unknown executive, 409 when closed."""
    require_unbound(principal)
    period = check_period(period)
    executive = await get_visible(session, code=code, principal=principal)
    await guard.writable(session, period)
    return executive, period


# ---- purviews --------------------------------------------------------------------------------


async def purview_orgs(session: AsyncSession, *, executive_id: int, period: str) -> list[Org]:
    """The orgs of the executive's purview for `period`, in the order given (none: [])."""
    rows = await session.scalars(
        select(Org)
        .join(Purview, Purview.org_id == Org.id)
        .where(Purview.executive_id == executive_id, Purview.period == period)
        .order_by(Purview.position)
    )
    return list(rows)


async def put_purview(
    session: AsyncSession, *, code: str, period: str, orgs: Sequence[str], principal: Principal
) -> tuple[PurviewOut, bool]:
    """Replace the executive's purview for `period` (audited); and whether it is new."""
    executive, period = await _writing(session, code=code, period=period, principal=principal)
    seen: dict[str, int] = {}
    for position, org_code in enumerate(orgs):
        if org_code in seen:
            raise ValidationFailed.at(
                ("body", "orgs", position), f"org {org_code!r} is in the list already"
            )
        seen[org_code] = position
    rows = await session.execute(select(Org.code, Org.id).where(Org.code.in_(list(seen))))
    ids: dict[str, int] = dict(rows.all())
    for org_code, position in seen.items():
        if org_code not in ids:
            raise unknown_org(org_code, ("body", "orgs", position))
    # One replacement at a time per executive: a concurrent one sees this one's rows.
    await session.execute(
        select(Executive.id).where(Executive.id == executive.id).with_for_update()
    )
    before = [o.code for o in await purview_orgs(session, executive_id=executive.id, period=period)]
    after = list(seen)
    if before != after:
        await session.execute(
            delete(Purview).where(Purview.executive_id == executive.id, Purview.period == period)
        )
        await session.execute(
            insert(Purview),
            [
                {"executive_id": executive.id, "period": period, "position": i, "org_id": ids[c]}
                for i, c in enumerate(after)
            ],
        )
        await audit.record(
            session,
            actor=audit.actor_of(principal),
            action=audit.Action.purview_set,
            target=executive.code,
            details={"period": period, "orgs": after},
        )
    return PurviewOut(executive=executive.code, period=period, orgs=after), not before


async def get_purview(
    session: AsyncSession, *, code: str, period: str, principal: Principal
) -> PurviewOut:
    period = check_period(period)
    executive = await get_visible(session, code=code, principal=principal)
    orgs = await purview_orgs(session, executive_id=executive.id, period=period)
    if not orgs or not await sees_period(
        session, executive=executive, period=period, principal=principal
    ):
        raise PurviewNotFound(f"Executive {code!r} has no purview for {period}.")
    return PurviewOut(executive=executive.code, period=period, orgs=[o.code for o in orgs])


async def delete_purview(
    session: AsyncSession, *, code: str, period: str, principal: Principal
) -> None:
    """Remove the executive's purview for `period` (audited): it leaves that evaluation."""
    executive, period = await _writing(session, code=code, period=period, principal=principal)
    result = await session.execute(
        delete(Purview).where(Purview.executive_id == executive.id, Purview.period == period)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise PurviewNotFound(f"Executive {code!r} has no purview for {period}.")
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.purview_delete,
        target=executive.code,
        details={"period": period},
    )


# ---- executive targets -----------------------------------------------------------------------


async def put_target(
    session: AsyncSession, *, code: str, period: str, csi: float, principal: Principal
) -> tuple[ExecutiveTargetOut, bool]:
    """Set the executive's target for `period` (audited); and whether it is new."""
    executive, period = await _writing(session, code=code, period=period, principal=principal)
    before = await session.scalar(
        select(ExecutiveTarget.csi).where(
            ExecutiveTarget.executive_id == executive.id, ExecutiveTarget.period == period
        )
    )
    if before != csi:
        upsert = insert(ExecutiveTarget).values(executive_id=executive.id, period=period, csi=csi)
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=["executive_id", "period"],
                set_={"csi": csi, "updated_at": func.now()},
            )
        )
        await audit.record(
            session,
            actor=audit.actor_of(principal),
            action=audit.Action.executive_target_set,
            target=executive.code,
            details={"period": period, "csi": csi},
        )
    return ExecutiveTargetOut(executive=executive.code, period=period, csi=csi), before is None


async def get_target(
    session: AsyncSession, *, code: str, period: str, principal: Principal
) -> ExecutiveTargetOut:
    period = check_period(period)
    executive = await get_visible(session, code=code, principal=principal)
    csi = None
    if await sees_period(session, executive=executive, period=period, principal=principal):
        csi = await session.scalar(
            select(ExecutiveTarget.csi).where(
                ExecutiveTarget.executive_id == executive.id, ExecutiveTarget.period == period
            )
        )
    if csi is None:
        raise ExecutiveTargetNotFound(f"Executive {code!r} has no target for {period}.")
    return ExecutiveTargetOut(executive=executive.code, period=period, csi=csi)


async def delete_target(
    session: AsyncSession, *, code: str, period: str, principal: Principal
) -> None:
    """Remove the executive's target for `period` (audited); 404 when there is none."""
    executive, period = await _writing(session, code=code, period=period, principal=principal)
    result = await session.execute(
        delete(ExecutiveTarget).where(
            ExecutiveTarget.executive_id == executive.id, ExecutiveTarget.period == period
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise ExecutiveTargetNotFound(f"Executive {code!r} has no target for {period}.")
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.executive_target_delete,
        target=executive.code,
        details={"period": period},
    )
