"""Ingest throughput over HTTP and through the import command, each next to its database baseline.

    python -m bench.ingest --seconds 20 --batches 40 --import-rows 1000000

On a fresh database (orgs and surveys of the benchmark data set, no responses) it measures, in
one run and on loopback:

1. single `POST /v1/responses` from 32 connections (wrk, Debian's package, with
   bench/wrk_post.lua): responses/s, p50, p99, errors; next to pgbench inserting equivalent
   single rows into a bare copy of the responses table (same columns, indexes, defaults; no
   trigger, no foreign key) from 32 clients;
2. `POST /v1/responses/batch` with 1,000 items from 2 concurrent clients: responses/s; next to
   a raw binary COPY of the very rows it stored into a bare copy of the table;
3. `cx-survey import responses` of a generated JSON Lines file: rows/s and peak RSS;
4. the server's resident memory (all its processes) before and after.

Every stored response is counted afterwards: each 201 must be exactly one row.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
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
    cli_path,
    create_key,
    database_url,
    plain,
    recreate_database,
    server_url,
    start_server,
    tree_rss_mb,
)
from bench.dataset import org_tree, responses
from bench.load import setup

DATABASE = "cx_bench_ingest"
CONNECTIONS = 32
BATCH = 1000
HERE = Path(__file__).resolve().parent
COLUMNS = (
    "org_id, survey_version_id, stage, occurred_at, occurred_on, source, external_id, channel,"
    " customer_type, customer_pseudonym, answers, score, scale_min, scale_max, primary_type,"
    " fingerprint"
)


def _items(count: int, seed: int, source: str) -> list[dict[str, Any]]:
    items = list(responses(org_tree(), count=count, seed=seed))
    for item in items:
        item["source"] = source
    return items


def _wrk_bodies(path: Path) -> None:
    """A Lua table of bodies split at their external_id, for bench/wrk_post.lua."""
    entries = []
    for item in _items(500, seed=11, source="wrk"):
        item["external_id"] = "@ID@"
        prefix, suffix = orjson.dumps(item).decode().split("@ID@")
        entries.append(f"{{{_lua(prefix)}, {_lua(suffix)}}}")
    path.write_text("return {\n" + ",\n".join(entries) + "\n}\n")


def _lua(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_wrk(base: str, key: str, seconds: int, run: str, work: Path) -> dict[str, Any]:
    bodies = work / "bodies.lua"
    if not bodies.exists():
        _wrk_bodies(bodies)
    env = {**os.environ, "CX_WRK_BODIES": str(bodies), "CX_WRK_KEY": key, "CX_WRK_RUN": run}
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "wrk_post.lua"),
            base,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in out.stdout.splitlines() if line.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    result["rate"] = result["created"] / (result["duration_us"] / 1e6)
    return result


async def _make_bare_copy(url: str, name: str) -> None:
    conn = await asyncpg.connect(plain(url))
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await conn.execute(f"CREATE TABLE {name} (LIKE responses INCLUDING ALL)")
        await conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {name}_seq")
    finally:
        await conn.close()


async def _sample_ids(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(plain(url))
    try:
        org = await conn.fetchval("SELECT id FROM orgs WHERE kind = 'team' ORDER BY id LIMIT 1")
        version = await conn.fetchval("SELECT id FROM survey_versions ORDER BY id LIMIT 1")
        return int(org), int(version)
    finally:
        await conn.close()


def run_pgbench(url: str, seconds: int, work: Path) -> float:
    """Single-row INSERTs of an equivalent row into a bare copy, 32 clients: rows/s."""
    asyncio.run(_make_bare_copy(url, "bench_single"))
    org, version = asyncio.run(_sample_ids(url))
    script = work / "insert.sql"
    script.write_text(
        f"INSERT INTO bench_single ({COLUMNS}) VALUES ({org}, {version}, 'delivery', now(),"
        " current_date, 'pgbench', 'p-' || nextval('bench_single_seq'), 'web', 'end_user',"
        " '\\x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'::bytea,"
        """ '{"overall": 4, "reason": "speed"}', 4, 1, 5, 'csat',"""
        " '\\x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'::bytea);\n"
    )
    parsed = httpx.URL(plain(url))
    out = subprocess.run(
        [
            "pgbench",
            "-n",
            "-M",
            "prepared",
            "-c",
            str(CONNECTIONS),
            "-j",
            "2",
            "-T",
            str(seconds),
            "-f",
            str(script),
            "-h",
            parsed.host or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            parsed.path.lstrip("/"),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PGPASSWORD": parsed.password or ""},
    )
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    if match is None:
        raise SystemExit(f"could not read pgbench's rate:\n{out.stdout}\n{out.stderr}")
    return float(match.group(1))


async def run_batches(base: str, key: str, batches: int) -> float:
    """POST /v1/responses/batch of 1,000 items from 2 clients: created responses/s."""
    items = _items(batches * BATCH, seed=12, source="batch")
    payloads = [orjson.dumps({"items": items[i : i + BATCH]}) for i in range(0, len(items), BATCH)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    created = 0

    async def sender(client: httpx.AsyncClient, mine: list[bytes]) -> None:
        nonlocal created
        for payload in mine:
            r = await client.post("/v1/responses/batch", content=payload, headers=headers)
            r.raise_for_status()
            created += r.json()["counts"]["created"]

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client, payloads[k::2]) for k in range(2)))
        seconds = time.perf_counter() - started
    if created != len(items):
        raise SystemExit(f"batch: {created} of {len(items)} items were created")
    return created / seconds


async def run_copy(url: str) -> float:
    """A raw binary COPY of the rows the batch run stored into a bare copy: rows/s."""
    await _make_bare_copy(url, "bench_copy")
    conn = await asyncpg.connect(plain(url))
    try:
        data = io.BytesIO()
        await conn.copy_from_query(
            f"SELECT {COLUMNS} FROM responses WHERE source = 'batch'", output=data, format="binary"
        )
        rows = int(await conn.fetchval("SELECT count(*) FROM responses WHERE source = 'batch'"))
        data.seek(0)
        started = time.perf_counter()
        await conn.copy_to_table(
            "bench_copy",
            source=data,
            columns=[c.strip() for c in COLUMNS.split(",")],
            format="binary",
        )
        return rows / (time.perf_counter() - started)
    finally:
        await conn.close()


def run_import(url: str, rows: int, work: Path) -> tuple[float, float, str]:
    """`cx-survey import responses` of `rows` generated lines: (rows/s, peak RSS MB, summary)."""
    path = work / "import.jsonl"
    with path.open("wb") as f:
        for item in responses(org_tree(), count=rows, seed=13):
            item["source"] = "import"
            f.write(orjson.dumps(item) + b"\n")
    # A wrapper process reports the peak RSS of its only child, the import command.
    wrapper = (
        "import resource, subprocess, sys;"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "sys.stderr.write(done.stderr);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    env = {**os.environ, "CX_DATABASE_URL": url, "TERM": "dumb"}
    out = subprocess.run(
        [sys.executable, "-c", wrapper, cli_path(), "import", "responses", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    summary = next((line for line in out.stderr.splitlines() if " records in " in line), None)
    if summary is None:
        raise SystemExit(f"the import failed:\n{out.stderr[-3000:]}")
    match = re.search(r"records in ([\d.,]+) s", summary)
    if match is None or "invalid 0" not in summary:
        raise SystemExit(f"import did not store every row: {summary}")
    seconds = float(match.group(1).replace(",", ""))
    path.unlink()
    return rows / seconds, int(out.stdout.strip()) / 1024, summary


async def _count(url: str, source: str) -> int:
    conn = await asyncpg.connect(plain(url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM responses WHERE source = $1", source))
    finally:
        await conn.close()


def main(
    seconds: Annotated[int, typer.Option(help="Duration of the wrk and pgbench runs.")] = 20,
    batches: Annotated[int, typer.Option(help="Batches of 1,000 to post.")] = 40,
    import_rows: Annotated[int, typer.Option(help="Lines in the import file.")] = 1_000_000,
    workers: Annotated[int | None, typer.Option(help="Server workers (default: serve's).")] = None,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8766,
) -> None:
    if shutil.which("wrk") is None or shutil.which("pgbench") is None:
        raise SystemExit("needs wrk and pgbench: apt-get install wrk postgresql-client")
    server = server_url()
    url = database_url(server, DATABASE)
    asyncio.run(recreate_database(server, DATABASE))
    asyncio.run(setup(url))
    key = create_key(url, "responses:write")
    base = f"http://127.0.0.1:{port}"
    options = [] if workers is None else ["--workers", str(workers)]
    # The rate limiter runs (its cost is part of what is measured) but never refuses.
    unlimited = {"CX_RATE_LIMIT_PER_SECOND": "1000000", "CX_RATE_LIMIT_BURST": "1000000"}
    proc = start_server(url, port, *options, env=unlimited)
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp:
        work = Path(tmp)
        try:
            time.sleep(1)
            rss_before = tree_rss_mb(proc.pid)
            warm = run_wrk(base, key, max(3, seconds // 4), "warm", work)  # not reported
            single = run_wrk(base, key, seconds, "main", work)
            pg_rate = run_pgbench(url, seconds, work)
            batch_rate = asyncio.run(run_batches(base, key, batches))
            copy_rate = asyncio.run(run_copy(url))
            rss_after = tree_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        stored = asyncio.run(_count(url, "wrk"))
        import_rate, import_rss, import_summary = run_import(url, import_rows, work)
    acknowledged = warm["created"] + single["created"]
    typer.echo(
        f"\nsingle POST: {single['requests']:,} requests, {single['created']:,} created, "
        f"{single['not_created']:,} other statuses, {single['socket_errors']} socket errors; "
        f"{acknowledged:,} 201s (warm-up included), {stored:,} rows stored (requests still in "
        "flight when wrk stopped are stored but not counted by wrk)"
    )
    if stored < acknowledged:
        raise SystemExit("an acknowledged response is missing")
    typer.echo(f"import: {import_summary}")
    ratio = single["rate"] / pg_rate
    rows: list[tuple[str, str, str, str]] = [
        (
            f"single POST, {CONNECTIONS} connections (wrk)",
            f"{single['rate']:,.0f} responses/s; p50 {single['p50_us'] / 1000:.1f} ms, "
            f"p99 {single['p99_us'] / 1000:.1f} ms; errors {single['not_created']}",
            f"pgbench single-row INSERT, {CONNECTIONS} clients: {pg_rate:,.0f} rows/s",
            f"{ratio:.2f}x",
        ),
        (
            f"batch POST, {BATCH:,} items, 2 clients",
            f"{batch_rate:,.0f} responses/s",
            f"raw binary COPY of the same rows: {copy_rate:,.0f} rows/s",
            f"{batch_rate / copy_rate:.2f}x",
        ),
        (
            f"cx-survey import responses, {import_rows:,} rows",
            f"{import_rate:,.0f} rows/s; peak RSS {import_rss:.0f} MB",
            "",
            "",
        ),
        (
            "server RSS (all processes)",
            f"{rss_before:.0f} MB before, {rss_after:.0f} MB after",
            "",
            "",
        ),
    ]
    typer.echo("\n| measure | cx-survey | baseline (same run) | ratio |")
    typer.echo("|---|---|---|---:|")
    for row in rows:
        typer.echo("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    typer.run(main)
