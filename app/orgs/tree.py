"""The materialized tree and its timeline in the database: loading (cached per process under the
tree's version token), writing placements, and re-materializing the tree of today.

See docs/architecture.md, "The tree over time", for the invariants held here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.indices.store import before_first_child, move_subtree
from app.orgs.models import Org, OrgPlacement, TreeState
from app.orgs.timeline import Cover, Materialized, Timeline, cover
from app.platform import clock
from app.platform.db import driver_connection

logger = logging.getLogger("cx_survey.orgs")

# Tree writers take this advisory lock: creates shared, moves exclusive, so that a child is
# never created under a path that a concurrent move is rewriting.
TREE_LOCK_ID = 7_301_943
_CACHE_SIZE = 4
# Random, so that a change rolled back never leaves a token that a later change reuses.
_NEW_VERSION = text("gen_random_uuid()::text")


@dataclass
class TreeView:
    """The tree as one version of it: the timeline, the materialized tree, the codes."""

    version: str
    tree_date: date | None
    timeline: Timeline
    materialized: Materialized
    codes: dict[int, str]
    _covers: dict[tuple[date | None, tuple[int, ...]], Cover] = field(default_factory=dict)

    def cover_on(self, day: date, orgs: Sequence[int]) -> tuple[frozenset[int], Cover]:
        """The union of the subtrees of `orgs` in the tree on `day` (each org once, however
        they nest), and how the materialized tree reads it."""
        scope = frozenset().union(*(self.timeline.subtree_on(day, org) for org in orgs))
        key = (self.timeline.epoch(day), tuple(sorted(set(orgs))))
        found = self._covers.get(key)
        if found is None:
            found = self._covers[key] = cover(scope, self.materialized)
        return scope, found


_views: dict[str, TreeView] = {}


async def lock_exclusive(session: AsyncSession) -> None:
    await session.execute(select(func.pg_advisory_xact_lock(TREE_LOCK_ID)))


async def lock_shared(session: AsyncSession) -> None:
    await session.execute(select(func.pg_advisory_xact_lock_shared(TREE_LOCK_ID)))


async def version(session: AsyncSession) -> tuple[str, date | None]:
    row = (await session.execute(select(TreeState.version, TreeState.tree_date))).one()
    return row.version, row.tree_date


async def load(session: AsyncSession) -> TreeView:
    """The tree at its latest version (one small query when that version is cached)."""
    while True:
        token, tree_date = await version(session)
        view = _views.get(token)
        if view is not None:
            return view
        view = await _read(session, token, tree_date)
        # Each statement has its own snapshot: cache only what no change committed in between
        # (every change replaces the token).
        if (await version(session))[0] == token:
            break
    if len(_views) >= _CACHE_SIZE:
        _views.pop(next(iter(_views)))
    _views[token] = view
    return view


async def _read(session: AsyncSession, token: str, tree_date: date | None) -> TreeView:
    paths: dict[int, list[int]] = {}
    codes: dict[int, str] = {}
    for org_id, code, path in await session.execute(select(Org.id, Org.code, Org.path)):
        paths[org_id] = list(path)
        codes[org_id] = code
    placements: dict[int, list[tuple[date | None, int | None]]] = {org: [] for org in paths}
    rows = await session.execute(
        select(OrgPlacement.org_id, OrgPlacement.effective, OrgPlacement.parent_id)
    )
    for org_id, effective, parent_id in rows:
        placements[org_id].append((effective, parent_id))
    return TreeView(token, tree_date, Timeline(placements), Materialized(paths), codes)


async def changed(session: AsyncSession) -> None:
    """Give the tree a new version token (in the changing transaction)."""
    await session.execute(update(TreeState).values(version=_NEW_VERSION))


async def prepare_parent(session: AsyncSession, *, parent_id: int) -> None:
    """Before a child is created under `parent_id`: a leaf parent gets its tree sums."""
    await before_first_child(await driver_connection(session), parent_id=parent_id)


async def record_creation(session: AsyncSession, *, org_id: int, parent_id: int | None) -> None:
    """The first placement of a new org (it holds for every day before its first move)."""
    session.add(OrgPlacement(org_id=org_id, effective=None, parent_id=parent_id))
    await session.flush()
    await changed(session)


async def put_placement(
    session: AsyncSession, *, org_id: int, effective: date, parent_id: int | None
) -> None:
    """Record that `org_id` hangs under `parent_id` from `effective` on (replacing that day's)."""
    upsert = insert(OrgPlacement).values(org_id=org_id, effective=effective, parent_id=parent_id)
    await session.execute(
        upsert.on_conflict_do_update(
            index_elements=["org_id", "effective"],
            set_={"parent_id": parent_id, "recorded_at": func.now()},
        )
    )
    await changed(session)


async def remove_placement(session: AsyncSession, *, org_id: int, effective: date) -> None:
    await session.execute(
        delete(OrgPlacement).where(
            OrgPlacement.org_id == org_id, OrgPlacement.effective == effective
        )
    )
    await changed(session)


async def _rewire(session: AsyncSession, *, org_id: int, parent_id: int | None) -> None:
    """Hang `org_id` (with its materialized subtree) under `parent_id`, carrying the folded
    tree sums from its old ancestors to its new ones."""
    path = list(await session.scalar(select(Org.path).where(Org.id == org_id)) or [])
    prefix: list[int] = []
    if parent_id is not None:
        prefix = list(await session.scalar(select(Org.path).where(Org.id == parent_id)) or [])
    await move_subtree(
        await driver_connection(session),
        org_id=org_id,
        old_ancestors=path[:-1],
        new_ancestors=prefix,
    )
    # Every org of the subtree keeps its path from `org_id` (1-based position len(path)) down
    # and gets the new parent's path in front.
    await session.execute(
        text(
            "UPDATE orgs SET path = CAST(:prefix AS bigint[])"
            " || path[CAST(:first AS int) : array_length(path, 1)], updated_at = now()"
            " WHERE path @> ARRAY[CAST(:id AS bigint)]"
        ),
        {"prefix": prefix, "first": len(path), "id": org_id},
    )
    await session.execute(update(Org).where(Org.id == org_id).values(parent_id=parent_id))


async def materialize(session: AsyncSession, *, day: date) -> int:
    """Make the materialized tree the tree on `day` (under the exclusive tree lock, taken by
    the caller); how many orgs moved.

    One org moves directly; several are detached first and then attached, so that no step
    makes the materialized tree cyclic.
    """
    view = await load(session)
    desired = view.timeline.parents_on(day)
    moving = sorted(
        org for org, parent in desired.items() if view.materialized.parent(org) != parent
    )
    if len(moving) == 1:
        await _rewire(session, org_id=moving[0], parent_id=desired[moving[0]])
    elif moving:
        for org in moving:
            await _rewire(session, org_id=org, parent_id=None)
        for org in moving:
            await _rewire(session, org_id=org, parent_id=desired[org])
    values: dict[str, object] = {"tree_date": day}
    if moving:
        values["version"] = _NEW_VERSION
    if moving or view.tree_date != day:
        await session.execute(update(TreeState).values(**values))
    return len(moving)


async def synchronize(sessionmaker: async_sessionmaker[AsyncSession], *, zone: ZoneInfo) -> date:
    """Re-materialize the tree for today if it is for another day; today's date."""
    today = clock.today(zone)
    async with sessionmaker() as session, session.begin():
        if await session.scalar(select(TreeState.tree_date)) == today:
            return today
        await lock_exclusive(session)
        if await session.scalar(select(TreeState.tree_date)) != today:
            moved = await materialize(session, day=today)
            logger.info("org tree materialized for %s (%d orgs moved)", today, moved)
    return today
