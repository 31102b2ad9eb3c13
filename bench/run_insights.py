"""Insight latency over HTTP next to naive SQL over the raw table, with answers cross-checked.

    python -m bench.run_insights --database cx_bench --requests 50

On a database loaded by bench.load (its responses carry a choice reason, two sub-ratings and
three segment keys), `cx-survey serve` with defaults; per scenario, p50/p99 of sequential HTTP
requests and p50 of a naive computation (one GROUP BY, or one SELECT and numpy, over the raw
responses of the subtree joined through `orgs.path`), whose answer must agree:

1. pain points of a division for one quarter;
2. key drivers of one survey for a division and one quarter;
3. the segment breakdown (`tier`) of the root for one year.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import asyncpg
import httpx
import numpy as np
import typer

from app.insights import math as insight_math
from bench.common import create_key, database_url, plain, server_url, start_server
from bench.run_index import percentile

DIVISION = "DIV1"
QUARTER = ("2026-Q2", date(2026, 4, 1), date(2026, 7, 1))
YEAR = ("2025", date(2025, 1, 1), date(2026, 1, 1))


@dataclass
class Scenario:
    name: str
    path: str
    params: dict[str, str]
    naive: Callable[[asyncpg.Connection], Awaitable[Any]]
    extract: Callable[[dict[str, Any]], Any]


async def _org(conn: asyncpg.Connection, code: str) -> int:
    return int(await conn.fetchval("SELECT id FROM orgs WHERE code = $1", code))


async def naive_pain(conn: asyncpg.Connection) -> Any:
    rows = await conn.fetch(
        """SELECT s.code AS survey, r.answers ->> 'reason' AS option,
                  count(*) FILTER (WHERE (r.score - r.scale_min) * 100
                                   < 50 * (r.scale_max - r.scale_min)) AS low_n,
                  count(*) AS all_n
           FROM responses r JOIN orgs o ON o.id = r.org_id
           JOIN survey_versions v ON v.id = r.survey_version_id JOIN surveys s ON s.id = v.survey_id
           WHERE o.path @> ARRAY[$1::bigint] AND r.occurred_on >= $2 AND r.occurred_on < $3
             AND r.answers ? 'reason'
           GROUP BY 1, 2""",
        await _org(conn, DIVISION),
        QUARTER[1],
        QUARTER[2],
    )  # fmt: skip
    return sorted((r["survey"], r["option"], r["low_n"], r["all_n"]) for r in rows)


def extract_pain(body: dict[str, Any]) -> Any:
    return sorted(
        (i["survey"], i["option"], i["low_n"], i["all_n"]) for i in body["items"] if i["all_n"]
    )


async def naive_drivers(conn: asyncpg.Connection) -> Any:
    rows = await conn.fetch(
        """SELECT (r.answers ->> 'overall')::float8 AS y, (r.answers ->> 'staff')::float8 AS staff,
                  (r.answers ->> 'ease')::float8 AS ease
           FROM responses r JOIN orgs o ON o.id = r.org_id
           JOIN survey_versions v ON v.id = r.survey_version_id JOIN surveys s ON s.id = v.survey_id
           WHERE o.path @> ARRAY[$1::bigint] AND r.occurred_on >= $2 AND r.occurred_on < $3
             AND s.code = 'delivery-csat' AND r.answers ?& ARRAY['overall', 'staff', 'ease']""",
        await _org(conn, DIVISION),
        QUARTER[1],
        QUARTER[2],
    )  # fmt: skip
    data = np.array([[r["y"], r["staff"], r["ease"]] for r in rows], dtype=float)
    y = 100 * (data[:, 0] - 1) / 4
    x = np.column_stack([100 * (data[:, 1] - 1) / 4, 100 * (data[:, 2] - 1) / 6])
    result = insight_math.drivers(y, x, min_n=30)
    return result.n, round(result.r2 or 0, 9)


def extract_drivers(body: dict[str, Any]) -> Any:
    return body["n"], round(body["r2"] or 0, 9)


async def naive_segments(conn: asyncpg.Connection) -> Any:
    rows = await conn.fetch(
        """SELECT r.segments ->> 'tier' AS value, count(*) AS n
           FROM responses r JOIN orgs o ON o.id = r.org_id
           WHERE o.path @> ARRAY[$1::bigint] AND r.occurred_on >= $2 AND r.occurred_on < $3
             AND r.segments ? 'tier'
           GROUP BY 1""",
        await _org(conn, "HQ"),
        YEAR[1],
        YEAR[2],
    )  # fmt: skip
    return sorted((r["value"], r["n"]) for r in rows)


def extract_segments(body: dict[str, Any]) -> Any:
    return sorted((i["value"], i["n"]) for i in body["items"])


SCENARIOS = (
    Scenario(
        f"pain points, division, one quarter ({QUARTER[0]})",
        f"/v1/orgs/{DIVISION}/pain-points",
        {"period": QUARTER[0]},
        naive_pain,
        extract_pain,
    ),
    Scenario(
        f"drivers of delivery-csat, division, one quarter ({QUARTER[0]})",
        f"/v1/orgs/{DIVISION}/drivers",
        {"period": QUARTER[0], "survey": "delivery-csat"},
        naive_drivers,
        extract_drivers,
    ),
    Scenario(
        f"segment breakdown (tier) of the root, one year ({YEAR[0]})",
        "/v1/orgs/HQ/index/segments",
        {"period": YEAR[0], "key": "tier"},
        naive_segments,
        extract_segments,
    ),
)


async def measure(
    url: str, base: str, key: str, requests: int, naive_runs: int
) -> list[dict[str, Any]]:
    results = []
    conn = await asyncpg.connect(plain(url))
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:
        for scenario in SCENARIOS:
            for _ in range(3):
                (await client.get(scenario.path, params=scenario.params)).raise_for_status()
            timings = []
            body: dict[str, Any] = {}
            for _ in range(requests):
                started = time.perf_counter()
                r = await client.get(scenario.path, params=scenario.params)
                timings.append(time.perf_counter() - started)
                r.raise_for_status()
                body = r.json()
            naive_timings = []
            answer: Any = None
            for _ in range(naive_runs):
                started = time.perf_counter()
                answer = await scenario.naive(conn)
                naive_timings.append(time.perf_counter() - started)
            results.append({
                "scenario": scenario.name,
                "p50": 1000 * statistics.median(timings),
                "p99": 1000 * percentile(timings, 0.99),
                "naive": 1000 * statistics.median(naive_timings),
                "agree": scenario.extract(body) == answer,
                "got": scenario.extract(body),
                "naive_answer": answer,
            })  # fmt: skip
    await conn.close()
    return results


def main(
    database: Annotated[str, typer.Option(help="A database loaded by bench.load.")] = "cx_bench",
    requests: Annotated[int, typer.Option(help="HTTP requests per scenario.")] = 50,
    naive_runs: Annotated[int, typer.Option(help="Runs of the naive SQL per scenario.")] = 3,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8770,
) -> None:
    url = database_url(server_url(), database)
    key = create_key(url, "insights:read")
    server = start_server(url, port, env={"CX_RATE_LIMIT_PER_SECOND": "0"})
    try:
        results = asyncio.run(measure(url, f"http://127.0.0.1:{port}", key, requests, naive_runs))
    finally:
        server.terminate()
        server.wait(timeout=30)
    typer.echo(f"\n{requests} requests per scenario, naive run {naive_runs}x\n")
    typer.echo("| scenario | HTTP p50 ms | HTTP p99 ms | naive p50 ms | speed-up | answers agree |")
    typer.echo("|---|---:|---:|---:|---:|---|")
    for r in results:
        agree = "yes" if r["agree"] else f"NO: {r['got']} vs {r['naive_answer']}"
        typer.echo(
            f"| {r['scenario']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['naive']:.0f} "
            f"| {r['naive'] / r['p50']:.1f}x | {agree} |"
        )
    if not all(r["agree"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    typer.run(main)
