"""`cx-survey import orgs FILE`: an org tree from CSV (code,name,parent,kind) or JSON Lines.

A parent may come after its children in the file: rows wait until their parent exists. An org
that exists already with the same name, parent and kind is left as it is, so a re-run changes
nothing; one that exists differently is rejected (moves and renames go through PATCH).
Org files are small (thousands of rows): they are read whole, then created parents first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from app.keys.service import command_line
from app.orgs.models import Org
from app.orgs.schemas import OrgCreate
from app.orgs.service import create_org
from app.platform.db import create_sessionmaker
from app.platform.errors import AppError
from app.platform.importing import (
    ByteCounter,
    CreateSummary,
    FileFormat,
    Rejects,
    columns,
    read_records,
)

COLUMNS = ("code", "name", "parent", "kind")
REQUIRED = ("code", "name")


check_columns = columns(COLUMNS, REQUIRED)


async def _existing(
    session: AsyncSession, codes: set[str]
) -> dict[str, tuple[str, str | None, str | None]]:
    """Of `codes`, those that exist: code -> (name, parent code, kind)."""
    parent = aliased(Org)
    rows = await session.execute(
        select(Org.code, Org.name, parent.code, Org.kind)
        .outerjoin(parent, parent.id == Org.parent_id)
        .where(Org.code.in_(codes))
    )
    return {code: (name, parent_code, kind) for code, name, parent_code, kind in rows}


def _parents_first(
    rows: dict[str, tuple[int, OrgCreate]], known: set[str]
) -> tuple[list[str], dict[str, str]]:
    """The codes of `rows` ordered so that a parent from the file comes before its children,
    and the codes that cannot be placed with why (their parent is nowhere, or a cycle)."""
    depth: dict[str, int] = {}
    refused: dict[str, str] = {}
    for start in rows:
        chain: list[str] = []
        code: str | None = start
        reason = None
        base = 0
        while code is not None and code not in depth and code not in refused:
            if code in chain:
                reason = f"the file makes {code!r} its own ancestor"
                break
            if code not in rows:  # a root's "parent" or an org outside the file
                if code not in known:
                    reason = f"unknown parent {code!r}"
                code = None
                break
            chain.append(code)
            code = rows[code][1].parent
        if code is not None:
            if code in refused:
                reason = refused[code]
            elif reason is None:
                base = depth[code] + 1
        for offset, member in enumerate(reversed(chain)):
            if reason is not None:
                refused[member] = reason
            else:
                depth[member] = base + offset
    placed = sorted(depth, key=lambda c: (depth[c], rows[c][0]))
    return placed, refused


async def import_orgs(
    engine: AsyncEngine,
    *,
    path: Path,
    fmt: FileFormat,
    rejects: Rejects,
    progress: Callable[[int, int], None] | None = None,
) -> CreateSummary:
    """Create the orgs of `path` in one transaction; rejected rows go to `rejects`."""
    summary = CreateSummary()
    counter = ByteCounter()
    rows: dict[str, tuple[int, OrgCreate]] = {}
    for record in read_records(path, fmt, counter, check_columns=check_columns):
        summary.records += 1
        if progress is not None:
            progress(counter.done, summary.records)
        if record.data is None:
            rejects.add(record.line, "invalid", record.error or "unreadable")
            continue
        try:
            org = OrgCreate.model_validate(record.data)
        except ValidationError as exc:
            errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
            rejects.add(record.line, "invalid", reason, errors)
            continue
        if org.code in rows:
            first = rows[org.code][0]
            rejects.add(record.line, "invalid", f"org {org.code!r} is on line {first} already")
            continue
        rows[org.code] = (record.line, org)
    async with create_sessionmaker(engine)() as session, session.begin():
        parents = {org.parent for _, org in rows.values() if org.parent is not None}
        existing = await _existing(session, set(rows) | parents)
        placed, refused = _parents_first(rows, set(existing))
        for code, reason in refused.items():
            rejects.add(rows[code][0], "invalid", reason)
        for code in placed:
            line, org = rows[code]
            found = existing.get(code)
            if found == (org.name, org.parent, org.kind):
                summary.unchanged += 1
            elif found is not None:
                rejects.add(
                    line, "conflict", f"org {code!r} exists with another name, parent or kind"
                )
            else:
                try:
                    async with session.begin_nested():
                        await create_org(session, data=org, principal=command_line())
                except AppError as exc:
                    rejects.add(line, "invalid", exc.detail)
                else:
                    summary.created += 1
    summary.rejected = rejects.count
    return summary
