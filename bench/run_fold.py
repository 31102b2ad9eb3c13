"""What the fold costs per response, family by family (issue 15).

    python -m bench.run_fold --responses 200000

Builds a fresh database (`--database`, the benchmark's orgs and surveys), posts `--responses`
of the data set through post_batch with nothing folding, so that every delta is pending, and
analyzes it. Then folds every delta table to the end, one family after the other, and prints
the seconds and the microseconds per response of each, with the rows each rollup holds after.
`--keep` leaves the loaded database as a template (`<database>_loaded`) for another run, e.g.
of an older commit's code on the same deltas.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import asyncpg
import typer

from app.indices import store
from bench.common import database_url, drop_database, plain, recreate_database, server_url
from bench.load import load, setup


async def _copy(server: str, template: str, name: str) -> None:
    conn = await asyncpg.connect(plain(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()


async def fold_each(url: str, responses: int) -> list[tuple[str, int, float]]:
    """Fold each delta table to the end; (table, delta rows, seconds) per family."""
    conn = await asyncpg.connect(plain(url))
    out = []
    try:
        await conn.execute("ANALYZE")
        families: list[tuple[str, store.Family | None]] = [("index_deltas", None)]
        families += [(family.deltas, family) for family in store.FAMILIES]
        for table, family in families:
            rows = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            started = time.perf_counter()
            while True:
                async with conn.transaction():
                    sql = (
                        store._FOLD if family is None else await store.fold_statement(conn, family)
                    )
                    folded = 0 if sql is None else (await conn.fetchrow(sql))[0]
                if folded < store.FOLD_CHUNK:
                    break
            seconds = time.perf_counter() - started
            out.append((table, rows, seconds))
            typer.echo(
                f"{table:16} {rows:>10,} delta rows {seconds:8.1f} s"
                f" {seconds / responses * 1e6:8.1f} µs/response"
            )
        total = sum(s for _, _, s in out)
        typer.echo(f"{'all':16} {'':>21} {total:8.1f} s {total / responses * 1e6:8.1f} µs/response")
        for rollup in store.ROLLUPS:
            count = await conn.fetchval(f"SELECT count(*) FROM {rollup.table}")
            typer.echo(f"  {rollup.table:22} {count:>10,} rows")
    finally:
        await conn.close()
    return out


def main(
    responses: Annotated[int, typer.Option(help="Responses to load.")] = 200_000,
    database: Annotated[str, typer.Option(help="Database (dropped and created).")] = "cx_fold",
    reuse: Annotated[
        bool, typer.Option(help="Fold a copy of <database>_loaded instead of loading.")
    ] = False,
    keep: Annotated[bool, typer.Option(help="Keep <database>_loaded as a template.")] = True,
) -> None:
    server = server_url()
    loaded = f"{database}_loaded"
    if not reuse:
        asyncio.run(recreate_database(server, loaded))
        url = database_url(server, loaded)
        asyncio.run(setup(url))
        # Nothing folds during the load: post_batch only appends deltas.
        seconds = load(url, count=responses, seed=1, workers=2)
        typer.echo(f"loaded {responses:,} responses in {seconds:,.1f} s")
    asyncio.run(_copy(server, loaded, database))
    asyncio.run(fold_each(database_url(server, database), responses))
    if not keep:
        asyncio.run(drop_database(server, loaded))


if __name__ == "__main__":
    typer.run(main)
