"""What webhooks cost ingest, and how fast the outbox drains, in one run.

    python -m bench.run_webhooks --seconds 15

On a fresh database with the benchmark's orgs and surveys and a server with `cx-survey serve`
defaults (rate limits running, never refusing; http and loopback receivers allowed):

1. single `POST /v1/responses` from 32 connections (wrk) with no webhook;
2. the same with one webhook subscribed to `response.created`, its receiver (bench/receiver.py,
   uvicorn, another process) on loopback: the server's workers deliver while the posts go on;
3. the backlog left at the end of 2 drained: delivered events per second.

Afterwards every delivery must be `delivered` and every one must have reached the receiver.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import asyncpg
import httpx
import typer

from bench.common import (
    create_key,
    database_url,
    plain,
    recreate_database,
    server_url,
    start_server,
)
from bench.ingest import run_wrk
from bench.load import setup

DATABASE = "cx_bench_webhooks"


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(plain(url))
    try:
        rows = await conn.fetch("SELECT status, count(*) FROM webhook_deliveries GROUP BY 1")
        return {r["status"]: r["count"] for r in rows}
    finally:
        await conn.close()


def main(
    seconds: Annotated[int, typer.Option(help="Duration of each wrk run.")] = 15,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8768,
    receiver_port: Annotated[int, typer.Option(help="Port of the receiver.")] = 8769,
) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install wrk")
    server = server_url()
    url = database_url(server, DATABASE)
    asyncio.run(recreate_database(server, DATABASE))
    asyncio.run(setup(url))
    key = create_key(url, "admin")
    base = f"http://127.0.0.1:{port}"
    env = {
        "CX_RATE_LIMIT_PER_SECOND": "1000000",
        "CX_RATE_LIMIT_BURST": "1000000",
        "CX_WEBHOOK_ALLOW_HTTP": "true",
        "CX_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp:
        work = Path(tmp)
        log = work / "received.txt"
        receiver = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.receiver:app", "--port", str(receiver_port),
             "--log-level", "warning", "--no-access-log"],
            env={**os.environ, "CX_RECEIVER_LOG": str(log)},
        )  # fmt: skip
        proc = start_server(url, port, env=env)
        try:
            time.sleep(1)
            run_wrk(base, key, max(3, seconds // 4), "warm", work)  # not reported
            bare = run_wrk(base, key, seconds, "bare", work)
            hook = httpx.post(
                f"{base}/v1/webhooks",
                json={"url": f"http://127.0.0.1:{receiver_port}/hook",
                      "events": ["response.created"]},
                headers={"Authorization": f"Bearer {key}"},
            )  # fmt: skip
            hook.raise_for_status()
            hooked = run_wrk(base, key, seconds, "hooked", work)
            at_stop = asyncio.run(_counts(url))
            backlog = at_stop.get("pending", 0)
            started = time.perf_counter()
            while asyncio.run(_counts(url)).get("pending", 0):
                time.sleep(0.2)
            drained = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            receiver.terminate()
            receiver.wait(timeout=30)
        final = asyncio.run(_counts(url))
        received = set(log.read_text().split())
        sent_total = len(log.read_text().split())
    delivered = final.get("delivered", 0)
    typer.echo(
        f"\ndeliveries: {final}; the receiver saw {len(received):,} webhook-ids "
        f"({sent_total:,} requests: {sent_total - len(received):,} repeated)"
    )
    if final.get("pending") or final.get("failed") or len(received) != delivered:
        raise SystemExit("a delivery is missing")
    typer.echo("\n| measure | figure |\n|---|---:|")
    typer.echo(f"| single POST, no webhook (wrk, 32 connections) | {bare['rate']:,.0f}/s; "
               f"p99 {bare['p99_us'] / 1000:.1f} ms |")  # fmt: skip
    typer.echo(f"| single POST, one webhook subscribed, delivering meanwhile | "
               f"{hooked['rate']:,.0f}/s; p99 {hooked['p99_us'] / 1000:.1f} ms |")  # fmt: skip
    typer.echo(f"| ratio with / without | {hooked['rate'] / bare['rate']:.2f}x |")
    typer.echo(f"| deliveries made during the hooked run | {delivered - backlog:,} "
               f"({(delivered - backlog) / seconds:,.0f}/s) |")  # fmt: skip
    if backlog:
        typer.echo(f"| backlog at its end, drained | {backlog:,} in {drained:.1f} s "
                   f"({backlog / drained:,.0f} events/s) |")  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
