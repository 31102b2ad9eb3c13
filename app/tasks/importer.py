"""`cx-survey import tasks FILE`: CX tasks from CSV or JSON Lines, through the create path.

A JSON line is a `POST /v1/orgs/{org}/tasks` body with `org`; a CSV row has one column per
field and `measure.csi_target`, `measure.stages` (comma-separated), `measure.customer_type`,
`measure.channel`, `measure.survey`. A line whose `external_id` exists already with the same
content is unchanged, so a re-run of a file whose lines carry external ids changes nothing.
Tasks are committed in chunks: an import stopped midway keeps what it committed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.keys.service import command_line
from app.orgs.models import Org
from app.platform.db import create_sessionmaker
from app.platform.errors import AppError, Conflict
from app.platform.importing import (
    ByteCounter,
    CreateSummary,
    FileFormat,
    Rejects,
    columns,
    read_records,
)
from app.tasks.schemas import TaskImport
from app.tasks.service import create_task

FIELDS = (
    "org",
    "title",
    "period",
    "customer_group",
    "customers",
    "description",
    "due",
    "weight",
    "external_id",
)
MEASURE = ("csi_target", "stages", "customer_type", "channel", "survey")
COLUMNS = (*FIELDS, *(f"measure.{m}" for m in MEASURE))
REQUIRED = ("org", "title", "period", "customer_group", "due")
CHUNK = 500


check_columns = columns(COLUMNS, REQUIRED)


def _number(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        return value  # validation then says it is not a number


def from_csv(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row (strings, empty cells left out) as a JSON body."""
    body: dict[str, Any] = {k: v for k, v in row.items() if not k.startswith("measure.")}
    if "weight" in body:
        body["weight"] = _number(body["weight"])
    measure: dict[str, Any] = {
        k.removeprefix("measure."): v for k, v in row.items() if k.startswith("measure.")
    }
    if "csi_target" in measure:
        measure["csi_target"] = _number(measure["csi_target"])
    if "stages" in measure:
        measure["stages"] = [s.strip() for s in measure["stages"].split(",")]
    if measure:
        body["measure"] = measure
    return body


def _reason(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors), errors


async def _org(session: AsyncSession, cache: dict[str, Org | None], code: str) -> Org | None:
    if code not in cache:
        cache[code] = await session.scalar(select(Org).where(Org.code == code))
    return cache[code]


async def import_tasks(
    engine: AsyncEngine,
    *,
    path: Path,
    fmt: FileFormat,
    rejects: Rejects,
    progress: Callable[[int, int], None] | None = None,
) -> CreateSummary:
    """Create the tasks of `path`; rejected lines go to `rejects`."""
    summary = CreateSummary()
    counter = ByteCounter()
    sessionmaker = create_sessionmaker(engine)
    orgs: dict[str, Org | None] = {}
    cli = command_line()
    records = read_records(path, fmt, counter, check_columns=check_columns)
    done = False
    while not done:
        async with sessionmaker() as session, session.begin():
            for _ in range(CHUNK):
                record = next(records, None)
                if record is None:
                    done = True
                    break
                summary.records += 1
                if progress is not None:
                    progress(counter.done, summary.records)
                if record.data is None:
                    rejects.add(record.line, "invalid", record.error or "unreadable")
                    continue
                data = from_csv(record.data) if fmt is FileFormat.csv else record.data
                try:
                    task = TaskImport.model_validate(data)
                except ValidationError as exc:
                    reason, errors = _reason(exc)
                    rejects.add(record.line, "invalid", reason, errors)
                    continue
                org = await _org(session, orgs, task.org)
                if org is None:
                    rejects.add(record.line, "invalid", f"unknown org {task.org!r}")
                    continue
                try:
                    async with session.begin_nested():
                        _, created = await create_task(session, org=org, data=task, principal=cli)
                except AppError as exc:
                    status = "conflict" if isinstance(exc, Conflict) else "invalid"
                    rejects.add(record.line, status, exc.detail, exc.errors)
                    continue
                if created:
                    summary.created += 1
                else:
                    summary.unchanged += 1
    summary.rejected = rejects.count
    return summary
