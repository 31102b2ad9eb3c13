"""Index latency over HTTP next to the naive SQL over the raw table, with answers cross-checked.

    python -m bench.run_index --database cx_bench --requests 200

Starts `cx-survey serve` on the loaded database, creates a key, then for each scenario measures
p50/p99 of sequential HTTP requests, and p50 of the naive computation (one GROUP BY over the raw
responses of the subtree, combined with the same weights), and checks that both agree to 1e-9.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import asyncpg
import httpx
import typer

from bench.common import create_key, database_url, plain, server_url, start_server

STAGES = ("purchase", "consultation", "rental", "delivery", "after_service")
TOLERANCE = 1e-9


@dataclass
class Scenario:
    name: str
    path: str
    params: dict[str, str]
    naive: Callable[[asyncpg.Connection], Any]  # returns the same shape as `extract(response)`
    extract: Callable[[dict[str, Any]], Any]


# ---- naive computation -------------------------------------------------------------------------

NAIVE_STAGE_SQL = """
SELECT {group} AS g, r.stage::text AS stage, count(*) AS n,
       avg(100.0 * (r.score - r.scale_min) / (r.scale_max - r.scale_min)) AS mean,
       var_samp(100.0 * (r.score - r.scale_min) / (r.scale_max - r.scale_min)) AS var
FROM responses r JOIN orgs o ON o.id = r.org_id
WHERE o.path @> ARRAY[$1::bigint] AND r.occurred_on >= $2 AND r.occurred_on < $3
GROUP BY 1, 2
"""


def naive_index(
    rows: list[asyncpg.Record], weights: dict[str, float], min_n: int
) -> dict[str, Any]:
    """csi, ci95 and n from per-stage n/mean/variance, as PRODUCT.md defines them."""
    per_stage = {row["stage"]: row for row in rows}
    total = sum(row["n"] for row in rows)
    used = [
        (weights.get(s, 1.0), float(per_stage[s]["mean"]), per_stage[s]["var"], per_stage[s]["n"])
        for s in STAGES
        if s in per_stage and per_stage[s]["n"] >= min_n and weights.get(s, 1.0) > 0
    ]
    if not used:
        return {"n": total, "csi": None, "ci95": None}
    w_total = sum(w for w, *_ in used)
    csi = sum(w * m for w, m, _, _ in used) / w_total
    if any(v is None for *_, v, _ in used):
        return {"n": total, "csi": csi, "ci95": None}
    se = math.sqrt(sum((w / w_total) ** 2 * float(v) / n for w, _, v, n in used))
    clip = lambda x: min(max(x, 0.0), 100.0)  # noqa: E731
    return {"n": total, "csi": csi, "ci95": [clip(csi - 1.96 * se), clip(csi + 1.96 * se)]}


async def org_id(conn: asyncpg.Connection, code: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT id, array_length(path, 1) AS depth FROM orgs WHERE code = $1", code
    )
    return row["id"], row["depth"]


def headline(body: dict[str, Any]) -> dict[str, Any]:
    return {"n": body["n"], "csi": body["csi"], "ci95": body["ci95"]}


def index_scenario(name: str, code: str, period: str, start: date, end: date) -> Scenario:
    async def naive(conn: asyncpg.Connection) -> Any:
        oid, _ = await org_id(conn, code)
        rows = await conn.fetch(NAIVE_STAGE_SQL.format(group="0"), oid, start, end)
        return naive_index(rows, {}, 30)

    return Scenario(name, f"/v1/orgs/{code}/index", {"period": period}, naive, headline)


def custom_scenario(name: str, code: str, start: date, end: date) -> Scenario:
    async def naive(conn: asyncpg.Connection) -> Any:
        oid, _ = await org_id(conn, code)
        rows = await conn.fetch(NAIVE_STAGE_SQL.format(group="0"), oid, start, end)
        return naive_index(rows, {}, 30)

    params = {"from": start.isoformat(), "to": end.isoformat()}
    return Scenario(name, f"/v1/orgs/{code}/index", params, naive, headline)


def children_scenario(name: str, code: str, period: str, start: date, end: date) -> Scenario:
    async def naive(conn: asyncpg.Connection) -> Any:
        oid, depth = await org_id(conn, code)
        rows = await conn.fetch(
            NAIVE_STAGE_SQL.format(group=f"o.path[{depth + 1}]"), oid, start, end
        )
        codes = dict(await conn.fetch("SELECT id, code FROM orgs WHERE parent_id = $1", oid))
        grouped: dict[int, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            if row["g"] in codes:
                grouped[row["g"]].append(row)
        return {codes[g]: naive_index(r, {}, 30) for g, r in grouped.items()}

    def extract(body: dict[str, Any]) -> Any:
        return {item["org"]: headline(item) for item in body["items"] if item["n"]}

    return Scenario(name, f"/v1/orgs/{code}/index/children", {"period": period}, naive, extract)


def series_scenario(name: str, code: str, start: date, end: date) -> Scenario:
    async def naive(conn: asyncpg.Connection) -> Any:
        oid, _ = await org_id(conn, code)
        rows = await conn.fetch(
            NAIVE_STAGE_SQL.format(group="to_char(r.occurred_on, 'YYYY-MM')"), oid, start, end
        )
        grouped: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            grouped[row["g"]].append(row)
        return {month: naive_index(r, {}, 30) for month, r in sorted(grouped.items())}

    def extract(body: dict[str, Any]) -> Any:
        return {item["period"]: headline(item) for item in body["items"] if item["n"]}

    params = {"granularity": "month", "from": start.isoformat(), "to": end.isoformat()}
    return Scenario(name, f"/v1/orgs/{code}/index/series", params, naive, extract)


SCENARIOS = [
    index_scenario("root index, one year (2025)", "HQ", "2025", date(2025, 1, 1), date(2026, 1, 1)),
    index_scenario(
        "division index, one quarter (2026-Q2)",
        "DIV3",
        "2026-Q2",
        date(2026, 4, 1),
        date(2026, 7, 1),
    ),
    children_scenario(
        "children ranking of the org with most children (30), 2026",
        "DIV1-SUB01",
        "2026",
        date(2026, 1, 1),
        date(2027, 1, 1),
    ),
    series_scenario("root series, 24 months", "HQ", date(2024, 11, 1), date(2026, 11, 1)),
    custom_scenario(
        "root index, custom 40 days (2026-02-10 to 2026-03-22)",
        "HQ",
        date(2026, 2, 10),
        date(2026, 3, 22),
    ),
]


# ---- comparison and measurement ----------------------------------------------------------------


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: missing on one side" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, int | float) and isinstance(b, int | float):
        return [] if abs(a - b) <= TOLERANCE else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def measure(
    url: str, base: str, key: str, requests: int, naive_runs: int
) -> list[dict[str, Any]]:
    results = []
    conn = await asyncpg.connect(plain(url))
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for scenario in SCENARIOS:
            for _ in range(5):  # warm-up
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
            naive_answer: Any = None
            for _ in range(naive_runs):
                started = time.perf_counter()
                naive_answer = await scenario.naive(conn)
                naive_timings.append(time.perf_counter() - started)
            diffs = differences(scenario.extract(body), naive_answer)
            results.append(
                {
                    "scenario": scenario.name,
                    "request": f"GET {scenario.path}?"
                    + "&".join(f"{k}={v}" for k, v in scenario.params.items()),
                    "p50_ms": 1000 * statistics.median(timings),
                    "p99_ms": 1000 * percentile(timings, 0.99),
                    "naive_p50_ms": 1000 * statistics.median(naive_timings),
                    "agree": not diffs,
                    "diffs": diffs[:5],
                }
            )
    await conn.close()
    return results


def main(
    database: Annotated[str, typer.Option(help="A database loaded by bench.load.")] = "cx_bench",
    requests: Annotated[int, typer.Option(help="HTTP requests per scenario.")] = 200,
    naive_runs: Annotated[int, typer.Option(help="Runs of the naive SQL per scenario.")] = 5,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8765,
) -> None:
    url = database_url(server_url(), database)
    key = create_key(url, "indices:read")
    server = start_server(url, port)
    try:
        results = asyncio.run(measure(url, f"http://127.0.0.1:{port}", key, requests, naive_runs))
    finally:
        server.terminate()
        server.wait(timeout=30)
    n = asyncio.run(_count(url))
    typer.echo(
        f"\n{n:,} responses in {database}; {requests} requests per scenario, "
        f"naive SQL run {naive_runs}x\n"
    )
    columns = [
        "scenario",
        "HTTP p50 ms",
        "HTTP p99 ms",
        "naive SQL p50 ms",
        "speed-up (p50)",
        "answers agree (1e-9)",
    ]
    typer.echo("| " + " | ".join(columns) + " |")
    typer.echo("|---|---:|---:|---:|---:|---|")
    for r in results:
        agree = "yes" if r["agree"] else "NO: " + "; ".join(r["diffs"])
        speedup = r["naive_p50_ms"] / r["p50_ms"]
        typer.echo(
            f"| {r['scenario']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['naive_p50_ms']:.0f} | {speedup:.0f}x | {agree} |"
        )
    if not all(r["agree"] for r in results):
        raise SystemExit(1)


async def _count(url: str) -> int:
    conn = await asyncpg.connect(plain(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM responses"))
    finally:
        await conn.close()


if __name__ == "__main__":
    typer.run(main)
