"""`cx-survey import responses FILE`: a file of responses through the one bulk write path.

Records stream from the file in batches to `post_batch` (the code behind the batch endpoint),
with one batch more in flight than there are writers, so that reading overlaps writing. Writers:
this process, or `--workers N` processes of their own (checking answers is CPU work). Memory
stays bounded by the batches in flight; a re-run stores nothing twice (idempotent keys).
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.indices import store
from app.indices.worker import fold_once
from app.keys.service import Principal, command_line
from app.platform.config import Settings
from app.platform.db import create_engine, create_sessionmaker
from app.platform.importing import (
    ByteCounter,
    FileFormat,
    ImportFileError,
    Record,
    Rejects,
    read_records,
)
from app.platform.schemas import is_code
from app.responses.schemas import MAX_BATCH, BatchItemResult, ItemStatus
from app.responses.service import post_batch
from app.surveys.models import RATING_TYPES, Survey, SurveyVersion

FIELD_COLUMNS = (
    "survey",
    "survey_version",
    "org",
    "occurred_at",
    "source",
    "external_id",
    "channel",
    "customer_ref",
    "customer_type",
)
REQUIRED_COLUMNS = ("survey", "org", "occurred_at", "external_id", "customer_type")
ANSWER_PREFIX = "answer."
SEGMENT_PREFIX = "segment."
_INTEGER = re.compile(r"^[+-]?\d+$", re.ASCII)  # as JSON reads numbers: ASCII digits
_STORED = {ItemStatus.created, ItemStatus.duplicate}


def check_columns(header: list[str]) -> None:
    """Refuse a CSV header with an unknown column or without a required one."""
    unknown = [
        name
        for name in header
        if name not in FIELD_COLUMNS
        and not any(
            name.startswith(prefix) and is_code(name[len(prefix) :])
            for prefix in (ANSWER_PREFIX, SEGMENT_PREFIX)
        )
    ]
    if unknown:
        raise ImportFileError(
            f"unknown column(s): {', '.join(unknown)}; expected {', '.join(FIELD_COLUMNS)} "
            f", one {ANSWER_PREFIX}KEY column per question and {SEGMENT_PREFIX}KEY columns"
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ImportFileError(f"missing column(s): {', '.join(missing)}")


def csv_body(cells: dict[str, str], rating_keys: dict[str, set[str]]) -> dict[str, Any]:
    """A POST /v1/responses body from a CSV row; integers where the question is a rating."""
    body: dict[str, Any] = {name: cells[name] for name in FIELD_COLUMNS[:7] if name in cells}
    version = cells.get("survey_version")
    if version is not None and _INTEGER.fullmatch(version):
        body["survey_version"] = int(version)
    customer: dict[str, Any] = {"type": cells.get("customer_type")}
    if "customer_ref" in cells:
        customer["ref"] = cells["customer_ref"]
    body["customer"] = customer
    ratings = rating_keys.get(cells.get("survey", ""), set())
    answers: dict[str, Any] = {}
    for name, value in cells.items():
        if name.startswith(ANSWER_PREFIX):
            key = name[len(ANSWER_PREFIX) :]
            answers[key] = int(value) if key in ratings and _INTEGER.fullmatch(value) else value
    body["answers"] = answers
    segments = {
        name[len(SEGMENT_PREFIX) :]: value
        for name, value in cells.items()
        if name.startswith(SEGMENT_PREFIX) and value != ""
    }
    if segments:
        body["segments"] = segments
    return body


@dataclass
class ImportSummary:
    records: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in ItemStatus})
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


async def _rating_keys(engine: AsyncEngine) -> dict[str, set[str]]:
    """For each survey code, the keys that are rating questions in any of its versions."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Survey.code, SurveyVersion.questions).join(
                SurveyVersion, SurveyVersion.survey_id == Survey.id
            )
        )
        ratings = {t.value for t in RATING_TYPES}
        keys: dict[str, set[str]] = {}
        for code, questions in rows:
            keys.setdefault(code, set()).update(q["key"] for q in questions if q["type"] in ratings)
    return keys


def _strip_batch_loc(errors: list[Any]) -> list[dict[str, Any]]:
    """Batch errors carry ["body", "items", i, ...]; a reject names the field from the item on."""
    out = []
    for error in errors:
        loc = list(error.loc)
        out.append({"loc": loc[3:] if loc[:2] == ["body", "items"] else loc, "msg": error.msg})
    return out


def _reason(result: BatchItemResult) -> str:
    if result.status is ItemStatus.conflict:
        return "a different response is stored under this (source, external_id)"
    if result.status is ItemStatus.gone:
        return "this response was erased; it is not stored again"
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in _strip_batch_loc(result.errors or [])
    )


_WORKER: dict[str, Any] = {}


def _worker_start(url: str, settings_data: dict[str, Any], source: str | None) -> None:
    """In a writer process: an event loop, a one-connection engine and the import's caller."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    settings = Settings(_env_file=None, **settings_data)
    engine = create_engine(settings, url, pool_size=1, max_overflow=0)
    _WORKER.update(
        loop=loop,
        settings=settings,
        sessionmaker=create_sessionmaker(engine),
        principal=command_line(source),
    )
    atexit.register(lambda: loop.run_until_complete(engine.dispose()))


def _worker_write(items: list[Any]) -> list[BatchItemResult]:
    """In a writer process: one batch through post_batch, in its own transaction."""
    return cast(
        "list[BatchItemResult]",
        _WORKER["loop"].run_until_complete(
            _write_batch(_WORKER["sessionmaker"], _WORKER["principal"], _WORKER["settings"], items)
        ),
    )


async def _write_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    settings: Settings,
    items: list[Any],
) -> list[BatchItemResult]:
    async with sessionmaker() as session, session.begin():
        out = await post_batch(session, items=items, principal=principal, settings=settings)
    return out.results


@contextmanager
def _writer(
    engine: AsyncEngine, settings: Settings, source: str | None, workers: int
) -> Iterator[Callable[[list[Any]], Awaitable[list[BatchItemResult]]]]:
    """Where batches are written: here (workers=1), or in `workers` processes of their own,
    each validating and writing whole batches while this one reads the file."""
    if workers <= 1:
        sessionmaker = create_sessionmaker(engine)
        principal = command_line(source)

        async def here(items: list[Any]) -> list[BatchItemResult]:
            return await _write_batch(sessionmaker, principal, settings, items)

        yield here
        return
    url = engine.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start,
        initargs=(url, settings.model_dump(), source),
    ) as pool:

        async def there(items: list[Any]) -> list[BatchItemResult]:
            return await asyncio.get_running_loop().run_in_executor(pool, _worker_write, items)

        yield there


async def import_responses(
    engine: AsyncEngine,
    settings: Settings,
    *,
    path: Path,
    fmt: FileFormat,
    rejects: Rejects,
    source: str | None = None,
    batch_size: int = MAX_BATCH,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import every record of `path`; rejected ones go to `rejects`. progress(bytes, records).

    With workers > 1, batches are checked and written by that many processes; memory stays
    bounded by (workers + 1) batches in flight."""
    with _writer(engine, settings, source, workers) as write_batch:
        summary = await _import(
            engine, write_batch, path, fmt, rejects, batch_size, workers + 1, progress
        )
    if summary.records:
        # The index is current when the import ends (no server may be running to fold it),
        # and the reads right after a backfill are planned on fresh statistics.
        await catch_up(engine, bound=None)
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await store.vacuum_deltas(raw)  # the folded deltas' dead rows: not for reads to walk
            await store.analyze(raw)
    return summary


# Pending index deltas an import lets stand before it folds: every read of a subtree reads its
# pending deltas, so a backlog of a million makes a root read take seconds; this many, a
# hundred milliseconds at most (docs/benchmarks.md, "Reads right after an import").
MAX_BACKLOG = store.FOLD_CHUNK


# Table names are the store's constants, not input.
_PENDING = text(
    " UNION ALL ".join(
        f"SELECT '{table}' AS deltas, min(id) AS first, max(id) AS last FROM {table}"  # noqa: S608
        for table in store.DELTA_TABLES
    )
)


async def _pending(engine: AsyncEngine) -> dict[str, tuple[int, int]]:
    """Per delta table with rows pending, its first and last id (the fold takes them in id
    order, so last - first + 1 bounds the backlog; two index probes a table)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_PENDING)).all()
    return {r.deltas: (int(r.first), int(r.last)) for r in rows if r.first is not None}


async def catch_up(engine: AsyncEngine, *, bound: int | None) -> None:
    """Fold (here, or wait while another process folds) until at most `bound` rows are pending
    in every delta table, so that an import writes no faster than the index takes it and reads
    stay fast meanwhile; with `bound` None, until every delta pending now is folded (later
    writers' deltas are the server's to fold: an import under live traffic still ends)."""
    pending = await _pending(engine)
    until = {table: last for table, (_, last) in pending.items()}

    def done() -> bool:
        if bound is not None:
            return all(last - first + 1 <= bound for first, last in pending.values())
        return all(first > until.get(table, 0) for table, (first, _) in pending.items())

    while not done():
        if await fold_once(engine) == 0:  # another process holds the fold: it is folding
            await asyncio.sleep(0.05)
        pending = await _pending(engine)


async def _import(
    engine: AsyncEngine,
    write_batch: Callable[[list[Any]], Awaitable[list[BatchItemResult]]],
    path: Path,
    fmt: FileFormat,
    rejects: Rejects,
    batch_size: int,
    in_flight: int,
    progress: Callable[[int, int], None] | None,
) -> ImportSummary:
    summary = ImportSummary()
    counter = ByteCounter()
    started = time.perf_counter()
    rating_keys = await _rating_keys(engine) if fmt is FileFormat.csv else {}

    async def write(batch: list[Record]) -> None:
        results = await write_batch([r.data for r in batch])
        for record, result in zip(batch, results, strict=True):
            summary.counts[result.status.value] += 1
            if result.status not in _STORED:
                rejects.add(
                    record.line,
                    result.status.value,
                    _reason(result),
                    _strip_batch_loc(result.errors or []) or None,
                )
        summary.records += len(batch)
        if progress is not None:
            progress(counter.done, summary.records)

    pending: set[asyncio.Task[None]] = set()

    written = 0

    async def submit(batch: list[Record]) -> None:
        nonlocal pending, written
        written += len(batch)
        if written >= MAX_BACKLOG // 5:  # every few batches: fold if the backlog grew
            written = 0
            await catch_up(engine, bound=MAX_BACKLOG)
        while len(pending) >= in_flight:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(write(batch)))

    batch: list[Record] = []
    try:
        for record in read_records(path, fmt, counter, check_columns=check_columns):
            if record.data is None:
                summary.records += 1
                summary.counts[ItemStatus.invalid.value] += 1
                rejects.add(record.line, ItemStatus.invalid.value, record.error or "unreadable")
                continue
            if fmt is FileFormat.csv:
                batch.append(Record(record.line, data=csv_body(record.data, rating_keys)))
            else:
                batch.append(record)
            if len(batch) >= batch_size:
                await submit(batch)
                batch = []
                await asyncio.sleep(0)  # let finished writes report before reading on
        if batch:
            await submit(batch)
        if pending:
            await asyncio.gather(*pending)
    finally:
        for task in pending:
            task.cancel()
    summary.seconds = time.perf_counter() - started
    if progress is not None:
        progress(counter.done, summary.records)
    return summary
