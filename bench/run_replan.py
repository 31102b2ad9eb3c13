"""Plans kept from small tables, and what replanning does (issue 15).

    python -m bench.run_replan --responses 50000

PostgreSQL keeps the first plan of a statement without parameters (a prepared statement's, and
each of a PL/pgSQL trigger's) until DDL or an ANALYZE of its tables; autovacuum off, nothing
analyzes. On a fresh database with the benchmark's orgs and surveys this times:

1. the fold: one connection folds the empty tables a few times (as a server that started before
   a bulk load), then `--responses` are posted with nothing folding; one fold round on that
   connection with the plans it kept, then with `DISCARD PLANS` first (each rolled back);
2. the triggers: on one connection, single-row inserts (as single posts) and then a
   1,000-row insert of copies of stored responses; the same after `DISCARD PLANS`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import asyncpg
import typer

from app.indices import store
from bench.common import database_url, plain, recreate_database, server_url
from bench.load import load, setup

# The insert of copies of stored responses under new external ids (every column but id).
_COPIES = """
INSERT INTO responses (org_id, survey_version_id, stage, occurred_at, occurred_on, source,
    external_id, channel, customer_type, customer_pseudonym, answers, score, scale_min,
    scale_max, primary_type, fingerprint, segments)
SELECT org_id, survey_version_id, stage, occurred_at, occurred_on, source,
    external_id || $1, channel, customer_type, customer_pseudonym, answers, score, scale_min,
    scale_max, primary_type, fingerprint, segments
FROM responses ORDER BY id LIMIT $2
"""


async def _round_keeping_plans(conn: Any) -> None:
    """A fold round as it ran before each round replanned (the same statements, no DISCARD)."""
    await conn.fetchval(store._FOLD)
    for family in store.FAMILIES:
        statement = await store.fold_statement(conn, family)
        if statement is not None:
            await conn.fetchrow(statement)


async def _timed(conn: Any, work: Any, limit: str) -> str:
    transaction = conn.transaction()
    await transaction.start()
    started = time.perf_counter()
    try:
        await conn.execute(f"SET LOCAL statement_timeout = '{limit}'")
        await work()
        return f"{time.perf_counter() - started:.1f} s"
    except asyncpg.QueryCanceledError:
        return f"statement timeout ({limit}) after {time.perf_counter() - started:.1f} s"
    finally:
        await transaction.rollback()


async def _fold_case(url: str, responses: int, limit: str) -> None:
    kept = await asyncpg.connect(plain(url))
    try:
        for _ in range(6):  # on empty deltas: the plans it keeps
            async with kept.transaction():
                await _round_keeping_plans(kept)
        await asyncio.to_thread(load, url, count=responses, seed=1, workers=2)

        async def replanned() -> None:
            await kept.execute("DISCARD PLANS")
            await _round_keeping_plans(kept)

        as_kept = await _timed(kept, lambda: _round_keeping_plans(kept), limit)
        typer.echo(f"fold round, plans kept from empty tables: {as_kept}")
        typer.echo(
            f"fold round, replanned (DISCARD PLANS):    {await _timed(kept, replanned, limit)}"
        )
    finally:
        await kept.close()


async def _trigger_case(url: str) -> None:
    conn = await asyncpg.connect(plain(url))
    try:

        async def after_singles(discard: bool) -> None:
            for n in range(6):
                await conn.execute(_COPIES, f"-single-{n}", 1)
            if discard:
                await conn.execute("DISCARD PLANS")
            started = time.perf_counter()
            await conn.execute(_COPIES, "-bulk", 1000)
            label = "replanned (DISCARD PLANS)" if discard else "plans kept from single rows"
            typer.echo(
                f"1,000-row insert after single-row ones, {label}:"
                f" {(time.perf_counter() - started) * 1000:.0f} ms"
            )

        for discard in (False, True):
            await conn.execute("DISCARD PLANS")  # each case starts from no plans
            await _timed(conn, lambda d=discard: after_singles(d), "120s")
    finally:
        await conn.close()


def main(
    responses: Annotated[int, typer.Option(help="Responses to post before the fold.")] = 50_000,
    database: Annotated[str, typer.Option(help="Database (dropped and created).")] = "cx_replan",
    statement_timeout: Annotated[
        str, typer.Option(help="Statement timeout of a fold round.")
    ] = "120s",
) -> None:
    server = server_url()
    url = database_url(server, database)
    asyncio.run(recreate_database(server, database))
    asyncio.run(setup(url))
    asyncio.run(_fold_case(url, responses, statement_timeout))
    asyncio.run(_trigger_case(url))


if __name__ == "__main__":
    typer.run(main)
