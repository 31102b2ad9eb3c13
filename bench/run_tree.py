"""Index reads in every tree mode after a yearly restructure, next to the naive SQL.

    python -m bench.run_tree --database cx_bench --requests 100

On a database loaded by bench.load: records a restructure effective 2026-01-01 over HTTP (DIV6
merged into DIV5: its 8 subsidiaries move there; 22 more subsidiaries change division), timing
the 30 dated moves (a restructure already recorded is cancelled first, and that is timed too);
then for the root and a division, one year and one quarter, in tree modes current, history and
2025-06-01, measures p50/p99 of sequential HTTP requests and the naive SQL (a recursive walk of
each response's org up its placements on the day that counts), and checks both agree to 1e-9.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import asyncpg
import httpx
import typer

from bench.common import create_key, database_url, plain, server_url, start_server
from bench.run_index import differences, headline, naive_index, percentile

EFFECTIVE = "2026-01-01"
MODES = ("current", "history", "2025-06-01")


def restructure() -> list[tuple[str, str]]:
    """30 (subsidiary, new division) moves: DIV6 merged into DIV5, and 22 reassignments."""
    # 8 + 16 + 2 + 2 + 2 = 30
    moves = [(f"DIV6-SUB{s:02d}", "DIV5") for s in range(1, 9)]
    for d in range(1, 5):
        moves += [(f"DIV{d}-SUB{s:02d}", f"DIV{d % 4 + 1}") for s in range(5, 9)]
    moves += [("DIV5-SUB05", "DIV2"), ("DIV5-SUB06", "DIV2")]
    moves += [("DIV5-SUB07", "DIV1"), ("DIV5-SUB08", "DIV1")]
    moves += [("DIV2-SUB01", "DIV3"), ("DIV2-SUB02", "DIV3")]
    return moves


# For each response in the window, the day whose tree counts (its own date for history), then
# the org's ancestors on that day, walked placement by placement.
NAIVE_SQL = """
WITH RECURSIVE pairs AS (
    SELECT DISTINCT r.org_id, {day} AS day
    FROM responses r WHERE r.occurred_on >= $2 AND r.occurred_on < $3
), up(org_id, day, anc) AS (
    SELECT org_id, day, org_id FROM pairs
    UNION ALL
    SELECT up.org_id, up.day, p.parent_id FROM up
    CROSS JOIN LATERAL (
        SELECT parent_id FROM org_placements p
        WHERE p.org_id = up.anc AND (p.effective IS NULL OR p.effective <= up.day)
        ORDER BY p.effective DESC NULLS LAST LIMIT 1
    ) p
    WHERE p.parent_id IS NOT NULL
), inside AS (
    SELECT DISTINCT org_id, day FROM up WHERE anc = $1
)
SELECT 0 AS g, r.stage::text AS stage, count(*) AS n,
       avg(100.0 * (r.score - r.scale_min) / (r.scale_max - r.scale_min)) AS mean,
       var_samp(100.0 * (r.score - r.scale_min) / (r.scale_max - r.scale_min)) AS var
FROM responses r JOIN inside i ON i.org_id = r.org_id AND i.day = {response_day}
WHERE r.occurred_on >= $2 AND r.occurred_on < $3
GROUP BY 1, 2
"""


@dataclass
class Case:
    name: str
    code: str
    period: str
    start: date
    end: date
    mode: str

    async def naive(self, conn: asyncpg.Connection, today: date) -> Any:
        oid = await conn.fetchval("SELECT id FROM orgs WHERE code = $1", self.code)
        if self.mode == "history":
            sql = NAIVE_SQL.format(day="r.occurred_on", response_day="r.occurred_on")
        else:
            day = today if self.mode == "current" else date.fromisoformat(self.mode)
            sql = NAIVE_SQL.format(day=f"DATE '{day}'", response_day=f"DATE '{day}'")
        return naive_index(await conn.fetch(sql, oid, self.start, self.end), {}, 30)


def cases() -> list[Case]:
    out = []
    windows = [
        ("2026", date(2026, 1, 1), date(2027, 1, 1)),
        ("2026-Q1", date(2026, 1, 1), date(2026, 4, 1)),
    ]
    for code, who, extra in (
        ("HQ", "root", []),
        # 2025 is the year before the restructure: there the tree modes disagree.
        ("DIV5", "division (DIV5, merged)", [("2025", date(2025, 1, 1), date(2026, 1, 1))]),
    ):
        for period, start, end in windows + extra:
            out += [Case(f"{who}, {period}", code, period, start, end, mode) for mode in MODES]
    return out


async def record_restructure(client: httpx.AsyncClient) -> dict[str, float]:
    timings: dict[str, float] = {}
    moves = restructure()
    first = (await client.get(f"/v1/orgs/{moves[0][0]}/history")).json()["items"]
    if any(item["effective"] == EFFECTIVE for item in first):
        started = time.perf_counter()
        for code, _ in moves:
            r = await client.delete(f"/v1/orgs/{code}/history/{EFFECTIVE}")
            if r.status_code not in (204, 404):  # 404: not moved by an earlier run
                raise SystemExit(f"cancelling {code}: {r.status_code} {r.text}")
        timings["cancel"] = time.perf_counter() - started
    started = time.perf_counter()
    for code, parent in moves:
        r = await client.patch(f"/v1/orgs/{code}", json={"parent": parent, "effective": EFFECTIVE})
        if r.status_code != 200:
            raise SystemExit(f"moving {code}: {r.status_code} {r.text}")
    timings["apply"] = time.perf_counter() - started
    return timings


async def measure(
    url: str, base: str, key: str, requests: int, naive_runs: int
) -> tuple[dict[str, float], list[dict[str, Any]], date]:
    conn = await asyncpg.connect(plain(url))
    today = await conn.fetchval("SELECT current_date")
    results = []
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:
        timings = await record_restructure(client)
        for case in cases():
            path = f"/v1/orgs/{case.code}/index"
            params = {"period": case.period, "tree": case.mode}
            for _ in range(5):
                (await client.get(path, params=params)).raise_for_status()
            samples = []
            body: dict[str, Any] = {}
            for _ in range(requests):
                started = time.perf_counter()
                r = await client.get(path, params=params)
                samples.append(time.perf_counter() - started)
                r.raise_for_status()
                body = r.json()
            naive_samples = []
            naive: Any = None
            for _ in range(naive_runs):
                started = time.perf_counter()
                naive = await case.naive(conn, today)
                naive_samples.append(time.perf_counter() - started)
            diffs = differences(headline(body), naive)
            results.append(
                {
                    "case": case,
                    "n": body["n"],
                    "p50": 1000 * statistics.median(samples),
                    "p99": 1000 * percentile(samples, 0.99),
                    "naive": 1000 * statistics.median(naive_samples),
                    "diffs": diffs,
                }
            )
    await conn.close()
    return timings, results, today


def main(
    database: Annotated[str, typer.Option(help="A database loaded by bench.load.")] = "cx_bench",
    requests: Annotated[int, typer.Option(help="HTTP requests per case.")] = 100,
    naive_runs: Annotated[int, typer.Option(help="Runs of the naive SQL per case.")] = 3,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8766,
) -> None:
    url = database_url(server_url(), database)
    key = create_key(url, "admin")
    server = start_server(url, port)
    try:
        timings, results, today = asyncio.run(
            measure(url, f"http://127.0.0.1:{port}", key, requests, naive_runs)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    moves = len(restructure())
    typer.echo(f"\ntoday {today}; restructure effective {EFFECTIVE}: {moves} dated moves")
    for what, seconds in timings.items():
        typer.echo(f"- {what}: {seconds:.2f} s ({1000 * seconds / moves:.0f} ms per move)")
    typer.echo(f"\n{requests} requests per case, naive SQL run {naive_runs}x\n")
    typer.echo(
        "| index | tree | n | HTTP p50 ms | HTTP p99 ms | naive SQL p50 ms | speed-up | agree |"
    )
    typer.echo("|---|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        case = r["case"]
        agree = "yes" if not r["diffs"] else "NO: " + "; ".join(r["diffs"][:3])
        typer.echo(
            f"| {case.name} | {case.mode} | {r['n']:,} | {r['p50']:.1f} | {r['p99']:.1f} "
            f"| {r['naive']:.0f} | {r['naive'] / r['p50']:.0f}x | {agree} |"
        )
    if any(r["diffs"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    typer.run(main)
