"""Single POST /v1/responses beside the hand-written peer and the FastAPI floor, in one run.

    python -m bench.single_post --seconds 15

Three services, each on a fresh database of the same local PostgreSQL, each with 2 uvicorn
workers, each driven by the same wrk script (32 connections, 2 threads, a new external_id per
request, the same bodies) one after the other after a warm-up:

- `../shared/bench/floor_app.py`: the least FastAPI + asyncpg can do durably per post;
- `../shared/bench/peer_app.py`: what a team would hand-write (sync SQLAlchemy, one commit per
  post);
- `cx-survey serve` (its defaults; the rate limiter runs but never refuses).

The peer and the floor need psycopg, which the project does not: they run from a venv of their
own (`.venv-peer`, made on first use with FastAPI, uvicorn, SQLAlchemy, psycopg and asyncpg).
Afterwards every service's stored rows are counted: each 201 must be one row. Beside each rate,
the CPU time (user + system, from /proc) that the service's processes and PostgreSQL's spent
during the measured run, per 201: on two shared cores, what bounds the rate.
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
from typing import Annotated, Any

import asyncpg
import httpx
import orjson
import typer

from bench.common import (
    create_key,
    database_url,
    plain,
    process_tree,
    recreate_database,
    server_url,
    start_server,
)
from bench.dataset import SCALES, SURVEYS, org_tree, responses, survey_bodies
from bench.ingest import CONNECTIONS, _lua, run_wrk
from bench.load import setup

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
PEER_VENV = ROOT / ".venv-peer"
PEER_PACKAGES = [
    "fastapi>=0.115,<1",
    "uvicorn[standard]>=0.30,<1",
    "sqlalchemy>=2.0,<2.1",
    "psycopg[binary]>=3.2,<4",
    "asyncpg>=0.29,<1",
]
# The peer knows the scales of csat, nps and ces only: the bodies use those surveys.
PEER_SURVEYS = {s["code"] for s in SURVEYS if s["type"] in SCALES}


def _peer_python() -> str:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return str(python)


def _bodies(path: Path) -> None:
    """The wrk bodies (split where the external_id goes) that all three services accept."""
    entries = []
    for item in responses(org_tree(), count=2_000, seed=11):
        if item["survey"] not in PEER_SURVEYS:
            continue
        item["source"] = "wrk"
        item["external_id"] = "@ID@"
        prefix, suffix = orjson.dumps(item).decode().split("@ID@")
        entries.append(f"{{{_lua(prefix)}, {_lua(suffix)}}}")
        if len(entries) == 500:
            break
    path.write_text("return {\n" + ",\n".join(entries) + "\n}\n")


def _uvicorn(python: str, app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            python,
            "-m",
            "uvicorn",
            app,
            "--app-dir",
            str(SHARED),
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{app} exited with status {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"{app} did not start")


def _peer_setup(base: str) -> None:
    """The peer's orgs and surveys, through its own API (parents first)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        for org in org_tree():
            body = {"code": org.code, "parent": org.parent}
            client.post("/v1/orgs", json=body).raise_for_status()
        for survey in survey_bodies():
            if survey["code"] in PEER_SURVEYS:
                client.post("/v1/surveys", json=survey).raise_for_status()


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(plain(url))
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (those still alive)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True, check=False)
    return [int(pid) for pid in out.stdout.split()]


def _measure(
    name: str, base: str, key: str, seconds: int, work: Path, proc: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """The wrk run, with the CPU the service's processes and PostgreSQL's spent per 201."""
    try:
        warm = run_wrk(base, key, 3, f"{name}-warm", work)
        service = process_tree(proc.pid)
        before = _cpu_seconds(service), _cpu_seconds(_postgres_pids())
        main = run_wrk(base, key, seconds, f"{name}-main", work)
        after = _cpu_seconds(service), _cpu_seconds(_postgres_pids())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    main["acknowledged"] = warm["created"] + main["created"]
    created = max(1, main["created"])
    main["service_us"] = 1e6 * (after[0] - before[0]) / created
    main["postgres_us"] = 1e6 * (after[1] - before[1]) / created
    return main


def main(
    seconds: Annotated[int, typer.Option(help="Duration of each measured wrk run.")] = 15,
    port: Annotated[int, typer.Option(help="Port for the services, one after the other.")] = 8767,
    fold: Annotated[
        bool, typer.Option(help="Run cx-survey's fold worker (--no-fold: what it costs).")
    ] = True,
) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install wrk")
    python = _peer_python()
    server = server_url()
    urls = {name: database_url(server, f"cx_post_{name}") for name in ("floor", "peer", "cx")}
    for name in urls:
        asyncio.run(recreate_database(server, f"cx_post_{name}"))
    base = f"http://127.0.0.1:{port}"
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp:
        work = Path(tmp)
        _bodies(work / "bodies.lua")

        proc = _uvicorn(python, "floor_app:app", port, {"CX_FLOOR_DB": plain(urls["floor"])})
        results["floor"] = _measure("floor", base, "none", seconds, work, proc)

        peer_db = plain(urls["peer"]).replace("postgresql://", "postgresql+psycopg://", 1)
        proc = _uvicorn(python, "peer_app:app", port, {"CX_PEER_DB": peer_db})
        _peer_setup(base)
        results["peer"] = _measure("peer", base, "none", seconds, work, proc)

        asyncio.run(setup(urls["cx"]))
        key = create_key(urls["cx"], "responses:write")
        unlimited = {"CX_RATE_LIMIT_PER_SECOND": "1000000", "CX_RATE_LIMIT_BURST": "1000000"}
        if not fold:
            unlimited["CX_FOLD_INTERVAL_SECONDS"] = "0"
        proc = start_server(urls["cx"], port, env=unlimited)
        results["cx"] = _measure("cx", base, key, seconds, work, proc)

    stored = {
        "floor": asyncio.run(_count(urls["floor"], "SELECT count(*) FROM floor_responses")),
        "peer": asyncio.run(_count(urls["peer"], "SELECT count(*) FROM responses")),
        "cx": asyncio.run(_count(urls["cx"], "SELECT count(*) FROM responses")),
    }
    labels = {
        "floor": "`floor_app.py` (FastAPI + asyncpg, one INSERT, no auth)",
        "peer": "`peer_app.py` (FastAPI + sync SQLAlchemy, one commit per post)",
        "cx": "cx-survey serve",
    }
    typer.echo(f"\nwrk -t2 -c{CONNECTIONS} -d{seconds}s, 2 workers each, rate limit off\n")
    typer.echo(
        "| service | posts/s | p50 ms | p99 ms | CPU µs/post: service | PostgreSQL |"
        " non-201 | 201s | rows stored |"
    )
    typer.echo("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        typer.echo(
            f"| {labels[name]} | {r['rate']:,.0f} | {r['p50_us'] / 1000:.1f} | "
            f"{r['p99_us'] / 1000:.1f} | {r['service_us']:,.0f} | {r['postgres_us']:,.0f} | "
            f"{r['not_created']} | {r['acknowledged']:,} | {stored[name]:,} |"
        )
    cx = results["cx"]["rate"]
    typer.echo(
        f"\ncx-survey / peer: {cx / results['peer']['rate']:.2f}x; "
        f"cx-survey / floor: {cx / results['floor']['rate']:.2f}x"
    )
    for name, r in results.items():
        if stored[name] < r["acknowledged"]:
            raise SystemExit(f"{name}: an acknowledged response is missing")


if __name__ == "__main__":
    typer.run(main)
