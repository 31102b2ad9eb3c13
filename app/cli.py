"""The `cx-survey` command: serve, migrate, keys, import, rebuild, purge."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.keys.scopes import Scope
from app.platform.config import Settings, get_settings
from app.platform.db import create_engine, create_sessionmaker
from app.platform.errors import AppError
from app.platform.importing import (
    CreateSummary,
    FileFormat,
    ImportFileError,
    Rejects,
    detect_format,
)

if TYPE_CHECKING:
    from app.responses.importer import ImportSummary
    from app.responses.retention import PurgeResult

T = TypeVar("T")

cli = typer.Typer(
    help="cx-survey: customer-journey surveys and org-hierarchy satisfaction indices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_cli = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")
import_cli = typer.Typer(help="Load responses or orgs from a CSV or JSON Lines file.")
cli.add_typer(import_cli, name="import")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:
        raise _fail(f"invalid configuration: {exc}", 2) from exc


def prepare_database(settings: Settings) -> str:
    """Resolve the database (CX_DATABASE_URL or the embedded server) and migrate it to head."""
    from sqlalchemy.exc import DBAPIError

    from app.platform.migrate import resolve_database_url, upgrade

    url = resolve_database_url(settings)
    try:
        asyncio.run(upgrade(url))
    except (OSError, DBAPIError) as exc:
        where = make_url(url).render_as_string(hide_password=True)
        raise _fail(f"cannot migrate the database at {where}: {exc}") from exc
    return url


def check_zone(settings: Settings, url: str) -> None:
    """Record the reporting zone on first use; exit 2 when the database was built for another."""
    from app.platform.meta import TimezoneMismatch, check_reporting_timezone

    async def check() -> None:
        engine = create_engine(settings, url, pool_size=1, max_overflow=0)
        try:
            async with engine.begin() as conn:
                await check_reporting_timezone(conn, settings.reporting_timezone)
        finally:
            await engine.dispose()

    try:
        asyncio.run(check())
    except TimezoneMismatch as exc:
        raise _fail(str(exc), 2) from exc


def _with_session(settings: Settings, action: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Migrate, then run `action` in one committed transaction."""
    url = prepare_database(settings)

    async def run() -> T:
        engine = create_engine(settings, url, pool_size=1, max_overflow=0)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await action(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except AppError as exc:
        raise _fail(exc.detail) from exc


MAX_DEFAULT_WORKERS = 8  # 8 x (5 + 5) connections stay well below PostgreSQL's default 100


def default_workers() -> int:
    """One worker per core, at most 8: on 2 cores, 2 workers posted 30-60% more than 1, and 3
    fewer than 2 (docs/benchmarks.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes; default: one per CPU core."),
    ] = None,
) -> None:
    """Migrate the database and serve the API with uvicorn."""
    settings = _settings()
    # Before anything imports prometheus_client, which picks its storage once, at import.
    _share_metrics(settings)

    import uvicorn

    from app.platform.logs import logging_config

    url = prepare_database(settings)
    # uvicorn would catch a mismatch in the lifespan and print a traceback; refuse cleanly here.
    check_zone(settings, url)
    # Workers (and this process's app) use the resolved database instead of starting their own.
    os.environ["CX_DATABASE_URL"] = url
    get_settings.cache_clear()
    workers = workers or default_workers()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level),
        access_log=False,  # platform.logs.RequestContext writes the access line, without raw paths
        # The client address is ours to resolve (CX_TRUSTED_PROXIES, see platform.ratelimit).
        proxy_headers=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )


def _share_metrics(settings: Settings) -> None:
    """Metrics in files every worker writes (/metrics, served by any one worker, adds them up),
    and, with CX_METRICS_PORT, served on that port by this process without authentication: it
    answers while the database, which checks API keys, is away."""
    import atexit
    import shutil
    import tempfile

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared = tempfile.mkdtemp(prefix="cx-survey-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        atexit.register(shutil.rmtree, shared, ignore_errors=True)
    if settings.metrics_port is not None:
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)


@cli.command()
def migrate() -> None:
    """Apply every pending migration."""
    prepare_database(_settings())
    typer.echo("database is at the latest schema", err=True)


@cli.command()
def rebuild(
    reporting_timezone: Annotated[
        str, typer.Option(help="The reporting time zone to rebuild for (IANA name).")
    ],
) -> None:
    """Recompute local dates and index rollups for a reporting time zone, and record it.

    Stop the service first: the rebuild holds the responses table while it runs.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from app.platform.meta import set_reporting_timezone

    try:
        ZoneInfo(reporting_timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _fail(f"unknown time zone {reporting_timezone!r}", 2) from exc

    async def action(session: AsyncSession) -> None:
        from app.indices import store
        from app.platform.db import driver_connection

        await store.rebuild(await driver_connection(session), zone=reporting_timezone)
        await set_reporting_timezone(await session.connection(), reporting_timezone)

    _with_session(_settings(), action)
    typer.echo(f"reporting time zone is now {reporting_timezone}", err=True)


@cli.command()
def purge(
    months: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Delete responses older than this many calendar months; "
            "default: CX_RETENTION_MONTHS.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="Responses deleted per transaction.")
    ] = 5_000,
) -> None:
    """Delete responses older than the retention period (tombstones stay, indices follow) and
    expired Idempotency-Key records; print the counts. Safe to interrupt and run again.

    The cutoff is midnight, in the reporting time zone, of today's date N calendar months ago.
    """
    from datetime import UTC, datetime

    from app.responses.retention import purge as run_purge

    settings = _settings()
    months = months or settings.retention_months
    if months is None:
        raise _fail("no retention period: give --months N or set CX_RETENTION_MONTHS", 2)
    url = prepare_database(settings)
    check_zone(settings, url)  # the cutoff is a day boundary of the recorded zone

    async def run() -> PurgeResult:
        engine = create_engine(settings, url, pool_size=1, max_overflow=0)
        try:
            return await run_purge(
                create_sessionmaker(engine),
                months=months,
                now=datetime.now(UTC),
                zone=settings.zone,
                batch_size=batch_size,
                dry_run=dry_run,
            )
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(run())
    except Exception as exc:  # the database went away: say so; committed batches stay purged
        raise _fail(f"purge stopped ({type(exc).__name__}: {exc}); run it again") from exc
    verb = "would purge" if dry_run else "purged"
    typer.echo(
        f"{verb} {result.responses} responses that occurred before "
        f"{result.cutoff.isoformat()} ({months} months), "
        f"{result.idempotency_records} expired idempotency records, "
        f"{result.invitations} invitations"
    )


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    scope: Annotated[list[Scope], typer.Option(help="A scope; repeat for several.")],
    org: Annotated[str | None, typer.Option(help="Bind the key to this org's subtree.")] = None,
    source: Annotated[str | None, typer.Option(help="Bind the key to this source.")] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Its own rate limit, requests a second (default: the service's)."),
    ] = None,
    burst: Annotated[
        int | None, typer.Option(help="Its own burst (default: twice --rate).")
    ] = None,
) -> None:
    """Create a key and print it (only the key) on stdout."""
    from pydantic import ValidationError

    from app.keys.schemas import KeyCreate
    from app.keys.service import create_key

    try:
        body = KeyCreate(
            name=name, scopes=list(scope), org=org, source=source, rate=rate, burst=burst
        )
    except ValidationError as exc:
        problems = "; ".join(f"--{err['loc'][0]}: {err['msg']}" for err in exc.errors())
        raise _fail(problems, 2) from exc

    async def action(session: AsyncSession) -> str:
        issued = await create_key(
            session,
            name=body.name,
            scopes=body.scopes,
            org_code=body.org,
            source=body.source,
            rate=body.rate,
            burst=body.burst,
        )
        return issued.secret_key

    typer.echo(_with_session(_settings(), action))


@keys_cli.command("list")
def keys_list() -> None:
    """List keys: id, name, scopes, org, source, created, revoked, rate (its own limit)."""
    from app.keys.service import list_keys

    async def action(session: AsyncSession) -> list[list[str]]:
        return [
            [
                key.id,
                key.name,
                ",".join(key.scopes),
                org or "-",
                key.source or "-",
                key.created_at.isoformat(timespec="seconds"),
                key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-",
                f"{key.rate:g}/s,burst={key.burst}" if key.rate is not None else "-",
            ]
            for key, org in await list_keys(session)
        ]

    rows = _with_session(_settings(), action)
    header = ["id", "name", "scopes", "org", "source", "created", "revoked", "rate"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key by id."""
    from app.keys.service import revoke_key

    async def action(session: AsyncSession) -> None:
        await revoke_key(session, key_id=key_id)

    _with_session(_settings(), action)
    typer.echo(f"revoked {key_id}", err=True)


FormatOption = Annotated[
    FileFormat | None,
    typer.Option("--format", help="csv or jsonl; by default from the file name."),
]
RejectsOption = Annotated[
    Path | None,
    typer.Option(help="Where rejected lines go (JSON Lines); default FILE.rejects.jsonl."),
]


@contextmanager
def _progress(path: Path, noun: str) -> Iterator[Progress]:
    """A progress bar on stderr over the file's bytes, with records/s and time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(noun),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[records]:,} records, {task.fields[rate]:,.0f}/s"),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(noun, total=path.stat().st_size, records=0, rate=0.0)

        def update(done_bytes: int, records: int) -> None:
            rate = records / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=done_bytes, records=records, rate=rate)

        yield update


Progress = Callable[[int, int], None]
ImportAction = Callable[[AsyncEngine, FileFormat, Rejects, Progress], Awaitable[T]]


IMPORT_STOPPED = 3  # exit status of an import stopped by an error (1: rejects, 2: bad file)


def _run_import(
    path: Path, fmt: FileFormat | None, rejects: Path | None, action: ImportAction[T]
) -> tuple[T, Rejects]:
    """Check the file, migrate, and run `action(engine, fmt, rejects, progress)`."""
    try:
        file_format = detect_format(path, fmt)
    except ImportFileError as exc:
        raise _fail(str(exc), 2) from exc
    settings = _settings()
    try:
        url = prepare_database(settings)
    except typer.Exit as exc:  # the database cannot be reached or migrated: said already
        raise typer.Exit(IMPORT_STOPPED) from exc
    check_zone(settings, url)  # local dates of imported responses are taken in this zone
    sink = Rejects(rejects or path.with_name(path.name + ".rejects.jsonl"))

    async def run() -> T:
        # One connection more than the writes in flight: the import folds as it goes.
        engine = create_engine(settings, url, pool_size=3, max_overflow=0)
        try:
            with _progress(path, f"import {path.name}") as progress:
                return await action(engine, file_format, sink, progress)
        finally:
            await engine.dispose()

    try:
        with sink:
            return asyncio.run(run()), sink
    except ImportFileError as exc:
        raise _fail(f"{path}: {exc}", 2) from exc
    except Exception as exc:  # the database went away, or a bug: stop clearly, never half-say
        raise _fail(
            f"{path}: import stopped ({type(exc).__name__}: {exc}); the batches stored before "
            f"it stay stored and a re-run is safe ({sink.count:,} rejects so far in {sink.path})",
            IMPORT_STOPPED,
        ) from exc


def _report_rejects(sink: Rejects) -> None:
    if sink.count:
        typer.echo(f"{sink.count:,} rejected line(s) written to {sink.path}", err=True)
        raise typer.Exit(1)


@import_cli.command("responses")
def import_responses(
    file: Annotated[Path, typer.Argument(help="CSV or JSON Lines file of responses.")],
    fmt: FormatOption = None,
    rejects: RejectsOption = None,
    source: Annotated[
        str | None, typer.Option(help="Source of rows that name none (and the only one allowed).")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes that check and write batches.")
    ] = 1,
) -> None:
    """Load responses through the batch write path; safe to re-run (nothing is stored twice).

    JSON Lines: one POST /v1/responses body per line. CSV: one column per top-level field,
    customer_ref and customer_type, and one answer.KEY column per question. Exits 1 when some
    lines were rejected (see the reject file), 2 when the file cannot be read at all, 3 when the
    import stopped on an error (the database went away): stored batches stay, re-run it.
    """
    from app.responses.importer import import_responses as run_import

    settings = _settings()

    async def action(
        engine: AsyncEngine, file_format: FileFormat, sink: Rejects, progress: Progress
    ) -> ImportSummary:
        return await run_import(
            engine,
            settings,
            path=file,
            fmt=file_format,
            rejects=sink,
            source=source,
            workers=workers,
            progress=progress,
        )

    summary, sink = _run_import(file, fmt, rejects, action)
    counts = ", ".join(f"{name} {n:,}" for name, n in summary.counts.items())
    typer.echo(
        f"{file}: {summary.records:,} records in {summary.seconds:,.1f} s "
        f"({summary.rate:,.0f}/s): {counts}",
        err=True,
    )
    _report_rejects(sink)


@import_cli.command("orgs")
def import_orgs(
    file: Annotated[Path, typer.Argument(help="CSV (code,name,parent,kind) or JSON Lines file.")],
    fmt: FormatOption = None,
    rejects: RejectsOption = None,
) -> None:
    """Create an org tree; orgs that exist unchanged are left alone, so a re-run is safe."""
    from app.orgs.importer import import_orgs as run_import

    async def action(
        engine: AsyncEngine, file_format: FileFormat, sink: Rejects, progress: Progress
    ) -> CreateSummary:
        return await run_import(engine, path=file, fmt=file_format, rejects=sink, progress=progress)

    summary, sink = _run_import(file, fmt, rejects, action)
    typer.echo(
        f"{file}: {summary.records:,} records: created {summary.created:,}, "
        f"unchanged {summary.unchanged:,}, rejected {summary.rejected:,}",
        err=True,
    )
    _report_rejects(sink)


@import_cli.command("tasks")
def import_tasks(
    file: Annotated[Path, typer.Argument(help="CSV or JSON Lines file of CX tasks.")],
    fmt: FormatOption = None,
    rejects: RejectsOption = None,
) -> None:
    """Create CX tasks; lines whose external_id exists with the same content are left alone,
    so a re-run is safe.

    JSON Lines: one POST /v1/orgs/{org}/tasks body per line, with `org`. CSV: columns org,
    title, period, customer_group, customers, description, due, weight, external_id and
    measure.csi_target, measure.stages (comma-separated), measure.customer_type,
    measure.channel, measure.survey. Exits 1 when some lines were rejected (see the reject
    file), 2 when the file cannot be read at all, 3 when the import stopped on an error.
    """
    from app.tasks.importer import import_tasks as run_import

    async def action(
        engine: AsyncEngine, file_format: FileFormat, sink: Rejects, progress: Progress
    ) -> CreateSummary:
        return await run_import(engine, path=file, fmt=file_format, rejects=sink, progress=progress)

    summary, sink = _run_import(file, fmt, rejects, action)
    typer.echo(
        f"{file}: {summary.records:,} records: created {summary.created:,}, "
        f"unchanged {summary.unchanged:,}, rejected {summary.rejected:,}",
        err=True,
    )
    _report_rejects(sink)


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
