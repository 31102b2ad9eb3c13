"""Load the benchmark data set through the service's own bulk write path (post_batch).

    python -m bench.load --responses 10000000 --database cx_bench

Creates the database afresh, migrates it, creates the org tree and surveys, then posts the
responses in batches of 1,000 from several processes, each a shard of the deterministic data set,
through app.responses.service.post_batch (the code behind POST /v1/responses/batch). Finally folds
the pending index deltas and analyzes the tables.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from app.indices import store, worker
from app.orgs.schemas import OrgCreate
from app.orgs.service import create_org
from app.platform.db import create_engine, create_sessionmaker, driver_connection
from app.platform.migrate import upgrade
from app.responses.service import post_batch
from app.surveys.schemas import SurveyIn
from app.surveys.service import create_survey
from bench.common import (
    BENCH_PRINCIPAL,
    bench_settings,
    database_url,
    recreate_database,
    server_url,
)
from bench.dataset import org_tree, responses, survey_bodies

BATCH = 1000


async def setup(url: str) -> None:
    settings = bench_settings(url)
    await upgrade(url)
    engine = create_engine(settings, url)
    async with create_sessionmaker(engine)() as session, session.begin():
        for org in org_tree():
            await create_org(
                session,
                data=OrgCreate(code=org.code, name=org.name, parent=org.parent, kind=org.kind),
                principal=BENCH_PRINCIPAL,
            )
        for body in survey_bodies():
            await create_survey(session, data=SurveyIn.model_validate(body))
    await engine.dispose()


async def _load_shard(
    url: str, count: int, seed: int, shard: int, shards: int, done: mp.Value
) -> None:  # type: ignore[valid-type]
    settings = bench_settings(url)
    engine = create_engine(settings, url, pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    orgs = org_tree()
    batch: list[object] = []

    async def flush() -> None:
        async with sessionmaker() as session, session.begin():
            result = await post_batch(
                session, items=batch, principal=BENCH_PRINCIPAL, settings=settings
            )
        bad = len(batch) - result.counts.created - result.counts.duplicate
        if bad:
            raise RuntimeError(f"{bad} items were not stored: {result.results[:3]}")
        with done.get_lock():
            done.value += len(batch)
        batch.clear()

    for item in responses(orgs, count=count, seed=seed, shard=shard, shards=shards):
        batch.append(item)
        if len(batch) == BATCH:
            await flush()
    if batch:
        await flush()
    await engine.dispose()


def _shard_main(url: str, count: int, seed: int, shard: int, shards: int, done: mp.Value) -> None:  # type: ignore[valid-type]
    asyncio.run(_load_shard(url, count, seed, shard, shards, done))


def load(url: str, *, count: int, seed: int, workers: int) -> float:
    """Post `count` responses from `workers` processes; the seconds it took."""
    ctx = mp.get_context("spawn")
    done = ctx.Value("q", 0)
    procs = [
        ctx.Process(target=_shard_main, args=(url, count, seed, shard, workers, done))
        for shard in range(workers)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    columns = (
        TextColumn("responses"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task("load", total=count, rate=0)
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            elapsed = time.perf_counter() - started
            progress.update(task, completed=done.value, rate=done.value / elapsed)
        progress.update(task, completed=done.value)
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise SystemExit(f"a loader process failed (exit codes {failed})")
    return time.perf_counter() - started


async def finish(url: str, *, rebuild: bool) -> float:
    """Fold every pending delta (or rebuild the rollups), then analyze; the seconds it took.

    A backfill of millions leaves about one delta per response; rebuilding the rollups from the
    responses in one pass is then much faster than folding them chunk by chunk.
    """
    engine = create_engine(bench_settings(url), url)
    started = time.perf_counter()
    if rebuild:
        async with create_sessionmaker(engine)() as session, session.begin():
            await store.rebuild(await driver_connection(session))
    else:
        await worker.fold_all(engine)
    folded = time.perf_counter() - started
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute("VACUUM ANALYZE")
    await engine.dispose()
    return folded


def main(
    responses_count: Annotated[
        int, typer.Option("--responses", help="How many responses.")
    ] = 1_000_000,
    database: Annotated[
        str, typer.Option(help="Database name (dropped and created).")
    ] = "cx_bench",
    seed: Annotated[int, typer.Option(help="Seed of the data set.")] = 1,
    workers: Annotated[int, typer.Option(help="Loader processes.")] = 2,
    rebuild: Annotated[
        bool, typer.Option(help="Rebuild the rollups at the end instead of folding the deltas.")
    ] = True,
) -> None:
    server = server_url()
    url = database_url(server, database)
    asyncio.run(recreate_database(server, database))
    asyncio.run(setup(url))
    seconds = load(url, count=responses_count, seed=seed, workers=workers)
    typer.echo(
        f"loaded {responses_count:,} responses in {seconds:,.1f} s "
        f"({responses_count / seconds:,.0f}/s) through post_batch"
    )
    seconds = asyncio.run(finish(url, rebuild=rebuild))
    typer.echo(f"{'rebuilt the rollups' if rebuild else 'folded the deltas'} in {seconds:,.1f} s")


if __name__ == "__main__":
    typer.run(main)
