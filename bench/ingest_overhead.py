"""What the index aggregation costs ingest: the same responses through post_batch, with and without.

    python -m bench.ingest_overhead --responses 100000 --rounds 2

"without": the index trigger disabled (nothing aggregated). "with": the trigger on and the fold
worker running beside the writer, as in the service. Each round loads the same data set into a
fresh database, alternating the two modes; the best rate of each mode is compared.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer

from app.indices import worker
from app.platform.db import create_engine, create_sessionmaker, driver_connection
from app.responses.service import post_batch
from bench.common import (
    BENCH_PRINCIPAL,
    bench_settings,
    database_url,
    recreate_database,
    server_url,
)
from bench.dataset import org_tree, responses
from bench.load import BATCH, setup

DATABASE = "cx_bench_ingest"


async def run_once(
    url: str, items: list[dict[str, Any]], *, aggregate: bool
) -> tuple[float, float]:
    """Load `items` in batches; (responses per second, seconds to fold what was left)."""
    settings = bench_settings(url)
    engine = create_engine(settings, url)
    sessionmaker = create_sessionmaker(engine)
    if not aggregate:
        async with sessionmaker() as session, session.begin():
            await (await driver_connection(session)).execute(
                "ALTER TABLE responses DISABLE TRIGGER USER"
            )
    stop = asyncio.Event()
    folder = asyncio.create_task(worker.run(engine, interval=1.0, stop=stop)) if aggregate else None
    started = time.perf_counter()
    for chunk in range(0, len(items), BATCH):
        async with sessionmaker() as session, session.begin():
            await post_batch(
                session,
                items=items[chunk : chunk + BATCH],
                principal=BENCH_PRINCIPAL,
                settings=settings,
            )
    rate = len(items) / (time.perf_counter() - started)
    stop.set()
    if folder is not None:
        await folder
    started = time.perf_counter()
    if aggregate:
        await worker.fold_all(engine)
    backlog = time.perf_counter() - started
    await engine.dispose()
    return rate, backlog


def main(
    count: Annotated[int, typer.Option("--responses", help="Responses per load.")] = 100_000,
    rounds: Annotated[int, typer.Option(help="Loads per mode.")] = 2,
) -> None:
    server = server_url()
    url = database_url(server, DATABASE)
    items = list(responses(org_tree(), count=count, seed=42))
    best: dict[bool, float] = {True: 0.0, False: 0.0}
    for round_ in range(rounds):
        for aggregate in (False, True) if round_ % 2 == 0 else (True, False):
            asyncio.run(recreate_database(server, DATABASE))
            asyncio.run(setup(url))
            rate, backlog = asyncio.run(run_once(url, items, aggregate=aggregate))
            best[aggregate] = max(best[aggregate], rate)
            mode = "with aggregation" if aggregate else "without aggregation"
            typer.echo(
                f"round {round_ + 1}, {mode}: {rate:,.0f} responses/s"
                + (f"; {backlog:.1f} s to fold the rest afterwards" if aggregate else "")
            )
    asyncio.run(recreate_database(server, DATABASE))
    slowdown = 1 - best[True] / best[False]
    typer.echo(
        f"\nbest of {rounds}: without {best[False]:,.0f}/s, with {best[True]:,.0f}/s: "
        f"ingest slowed by {100 * slowdown:.1f}%"
    )


if __name__ == "__main__":
    typer.run(main)
