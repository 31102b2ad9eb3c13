"""What the rollups' fillfactor does to single posts: HOT updates, table sizes, CPU (issue 15).

    python -m bench.run_hot --fillfactor 100   # every page full: the layout before 2026-12-04
    python -m bench.run_hot --fillfactor 70    # the migration's setting

On a fresh database with the benchmark's orgs and surveys, sets every rollup table's
fillfactor, serves with `cx-survey serve` defaults (rate limit off) and drives it with the single
post's wrk script for `--seconds` after a 3 s warm-up. Prints posts/s, p50, p99, the CPU per
post of the service and of PostgreSQL, and per rollup the updates, how many were HOT, and its
pages.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from app.indices import store
from bench.common import (
    create_key,
    database_url,
    plain,
    process_tree,
    recreate_database,
    server_url,
    start_server,
)
from bench.ingest import run_wrk
from bench.load import setup
from bench.single_post import _bodies, _cpu_seconds, _postgres_pids

ROLLUPS = tuple(rollup.table for rollup in store.ROLLUPS)


async def _set_fillfactor(url: str, fillfactor: int) -> None:
    conn = await asyncpg.connect(plain(url))
    try:
        for table in ROLLUPS:
            await conn.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")
    finally:
        await conn.close()


async def _rollup_stats(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(plain(url))
    try:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT relname, n_tup_upd, n_tup_hot_upd, pg_relation_size(relid) / 8192 AS pages"
            " FROM pg_stat_user_tables WHERE relname = ANY($1) ORDER BY relname",
            list(ROLLUPS),
        )
        return rows
    finally:
        await conn.close()


def main(
    fillfactor: Annotated[int, typer.Option(help="The rollups' fillfactor (10-100).")] = 70,
    seconds: Annotated[int, typer.Option(help="Duration of the measured wrk run.")] = 20,
    port: Annotated[int, typer.Option(help="Port for the server.")] = 8771,
) -> None:
    server = server_url()
    url = database_url(server, "cx_hot")
    asyncio.run(recreate_database(server, "cx_hot"))
    asyncio.run(setup(url))
    asyncio.run(_set_fillfactor(url, fillfactor))
    key = create_key(url, "responses:write")
    unlimited = {"CX_RATE_LIMIT_PER_SECOND": "1000000", "CX_RATE_LIMIT_BURST": "1000000"}
    proc = start_server(url, port, env=unlimited)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp:
        work = Path(tmp)
        _bodies(work / "bodies.lua")
        try:
            run_wrk(base, key, 3, "warm", work)
            service = process_tree(proc.pid)
            before = _cpu_seconds(service), _cpu_seconds(_postgres_pids())
            r = run_wrk(base, key, seconds, "main", work)
            after = _cpu_seconds(service), _cpu_seconds(_postgres_pids())
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    created = max(1, r["created"])
    typer.echo(
        f"fillfactor {fillfactor}: {r['rate']:,.0f} posts/s, p50 {r['p50_us'] / 1000:.1f} ms,"
        f" p99 {r['p99_us'] / 1000:.1f} ms, CPU µs/post: service"
        f" {1e6 * (after[0] - before[0]) / created:,.0f}, PostgreSQL"
        f" {1e6 * (after[1] - before[1]) / created:,.0f}"
    )
    typer.echo("| rollup | updates | HOT | pages |\n|---|---:|---:|---:|")
    for row in asyncio.run(_rollup_stats(url)):
        typer.echo(
            f"| {row['relname']} | {row['n_tup_upd']:,} | {row['n_tup_hot_upd']:,} |"
            f" {row['pages']:,} |"
        )


if __name__ == "__main__":
    typer.run(main)
