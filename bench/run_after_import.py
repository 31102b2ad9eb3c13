"""Index reads right after a bulk import, in a server started before it (issue 15).

    python -m bench.run_after_import --rows 2000000 --requests 25

Into a fresh database (the local PostgreSQL; autovacuum is off there, so nothing analyzes the
tables but the service itself), with the benchmark's orgs and surveys:

1. `cx-survey serve` is started, and every scenario is read a few times on the empty tables, so
   that each worker has connections, prepared statements and cached plans from before the data;
2. `cx-survey import responses` loads `--rows` generated lines (`--workers 2`);
3. at once, each scenario is read `--requests` times, sequentially, over HTTP; the table gives
   the first request, the p50 and the p99, and when the scenario ran after the import ended;
4. each answer is compared with the naive `GROUP BY` over the raw rows (1e-9), whose time is the
   baseline.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import orjson
import typer

from bench.common import (
    cli_path,
    create_key,
    database_url,
    drop_database,
    plain,
    recreate_database,
    server_url,
    start_server,
)
from bench.dataset import org_tree, responses
from bench.load import setup
from bench.run_index import (
    Scenario,
    custom_scenario,
    differences,
    index_scenario,
    percentile,
    series_scenario,
)

SCENARIOS = [
    index_scenario("root, one year (2026)", "HQ", "2026", date(2026, 1, 1), date(2027, 1, 1)),
    series_scenario("root, 24-month series", "HQ", date(2024, 11, 1), date(2026, 11, 1)),
    index_scenario(
        "division, one quarter (2026-Q2)", "DIV3", "2026-Q2", date(2026, 4, 1), date(2026, 7, 1)
    ),
    custom_scenario(
        "root, custom 40 days (2026-02-10 to 2026-03-22)",
        "HQ",
        date(2026, 2, 10),
        date(2026, 3, 22),
    ),
]


def write_file(path: Path, rows: int) -> None:
    with path.open("wb") as f:
        for item in responses(org_tree(), count=rows, seed=21):
            item["source"] = "import"
            f.write(orjson.dumps(item) + b"\n")


def run_import(url: str, path: Path) -> tuple[float, str]:
    env = {**os.environ, "CX_DATABASE_URL": url, "TERM": "dumb"}
    started = time.perf_counter()
    done = subprocess.run(
        [cli_path(), "import", "responses", str(path), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    summary = next(line for line in done.stderr.splitlines() if " records in " in line)
    return seconds, summary


async def read(client: httpx.AsyncClient, scenario: Scenario, times: int) -> list[float]:
    timings = []
    for _ in range(times):
        started = time.perf_counter()
        r = await client.get(scenario.path, params=scenario.params)
        timings.append(time.perf_counter() - started)
        r.raise_for_status()
    return timings


async def measure_after(
    url: str, base: str, key: str, requests: int, ended: float
) -> list[dict[str, Any]]:
    results = []
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        for scenario in SCENARIOS:
            at = time.perf_counter() - ended
            timings = await read(client, scenario, requests)
            body = (await client.get(scenario.path, params=scenario.params)).json()
            results.append({"scenario": scenario, "at": at, "timings": timings, "body": body})
    conn = await asyncpg.connect(plain(url))
    try:
        for result in results:
            scenario = result["scenario"]
            naive_timings = []
            for _ in range(3):
                started = time.perf_counter()
                naive = await scenario.naive(conn)
                naive_timings.append(time.perf_counter() - started)
            result["naive_ms"] = 1000 * statistics.median(naive_timings)
            result["diffs"] = differences(scenario.extract(result["body"]), naive)
    finally:
        await conn.close()
    return results


async def warm(base: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        for scenario in SCENARIOS:
            await read(client, scenario, 20)  # both workers, more than the 5 runs of a plan


def main(
    rows: Annotated[int, typer.Option(help="Lines in the import file.")] = 2_000_000,
    requests: Annotated[int, typer.Option(help="Sequential requests per scenario.")] = 25,
    database: Annotated[str, typer.Option(help="Scratch database (dropped).")] = "cx_after_import",
    port: Annotated[int, typer.Option(help="Port of the server under test.")] = 8772,
    keep: Annotated[bool, typer.Option(help="Keep the database afterwards.")] = False,
) -> None:
    server = server_url()
    url = database_url(server, database)
    asyncio.run(recreate_database(server, database))
    asyncio.run(setup(url))
    key = create_key(url, "indices:read")
    work = Path(tempfile.mkdtemp(prefix="cx-after-import-"))
    path = work / "import.jsonl"
    write_file(path, rows)
    proc = start_server(url, port, env={"CX_RATE_LIMIT_PER_SECOND": "0"})
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(warm(base, key))
        seconds, summary = run_import(url, path)
        ended = time.perf_counter()
        results = asyncio.run(measure_after(url, base, key, requests, ended))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        path.unlink(missing_ok=True)
        work.rmdir()
        if not keep:
            asyncio.run(drop_database(server, database))
    typer.echo(f"\n{summary} ({rows / seconds:,.0f} rows/s end to end)")
    typer.echo(f"server started before the import; {requests} sequential requests per scenario\n")
    typer.echo(
        "| read | s after the import | first ms | p50 ms | p99 ms | naive SQL ms "
        "| naive / p50 | exact |"
    )
    typer.echo("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        t = r["timings"]
        p50 = 1000 * statistics.median(t)
        exact = "yes" if not r["diffs"] else "NO: " + "; ".join(r["diffs"][:3])
        typer.echo(
            f"| {r['scenario'].name} | {r['at']:.1f} | {1000 * t[0]:.1f} | {p50:.1f} "
            f"| {1000 * percentile(t, 0.99):.1f} | {r['naive_ms']:.0f} "
            f"| {r['naive_ms'] / p50:.0f}x | {exact} |"
        )
    if any(r["diffs"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    typer.run(main)
