"""Invitation throughput over HTTP, beside single response posts in the same run.

    python -m bench.run_invitations --seconds 15 --invitations 30000

On a fresh database (orgs and surveys of the benchmark data set), the server started with
`cx-survey serve` defaults and no effective rate limit, 32 connections (wrk, Debian's package):

1. single `POST /v1/responses` (bench/wrk_post.lua), the baseline of this run;
2. `POST /v1/invitations` (the same script on another path), each with a new external_id;
3. the public submit `POST /v1/public/invitations/{token}/response` (bench/wrk_submit.lua),
   each request answering another invitation created beforehand over HTTP.

Afterwards every 201 is checked to be one stored row: invitations created, responses stored
under the invitations' keys and invitations marked answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
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
    recreate_database,
    server_url,
    start_server,
)
from bench.ingest import CONNECTIONS, HERE, _items, _lua, run_wrk
from bench.load import setup

DATABASE = "cx_bench_invitations"
THREADS = 2


def _invitation(item: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "survey": item["survey"],
        "org": item["org"],
        "source": source,
        "external_id": item["external_id"],
        "occurred_at": item["occurred_at"],
        "customer": {"ref": f"customer-{item['external_id']}", "type": item["customer"]["type"]},
        **({"channel": item["channel"]} if item.get("channel") else {}),
    }


def _invite_bodies(path: Path) -> None:
    """bench/wrk_post.lua bodies for POST /v1/invitations, split at their external_id."""
    entries = []
    for i, item in enumerate(_items(500, seed=21, source="wrk-invite")):
        body = _invitation(item, "wrk-invite")
        body["external_id"] = "@ID@"
        body["customer"]["ref"] = f"customer-{i}"
        prefix, suffix = orjson.dumps(body).decode().split("@ID@")
        entries.append(f"{{{_lua(prefix)}, {_lua(suffix)}}}")
    path.write_text("return {\n" + ",\n".join(entries) + "\n}\n")


def run_invite_wrk(base: str, key: str, seconds: int, run: str, work: Path) -> dict[str, Any]:
    bodies = work / "invite-bodies.lua"
    if not bodies.exists():
        _invite_bodies(bodies)
    return _wrk(
        base,
        seconds,
        "wrk_post.lua",
        {"CX_WRK_BODIES": str(bodies), "CX_WRK_KEY": key, "CX_WRK_RUN": run,
         "CX_WRK_PATH": "/v1/invitations"},
    )  # fmt: skip


def _wrk(base: str, seconds: int, script: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(HERE / script), base],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    line = next(line for line in out.stdout.splitlines() if line.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    result["rate"] = result["created"] / (result["duration_us"] / 1e6)
    return result


async def create_invitations(base: str, key: str, count: int) -> tuple[list[str], str]:
    """`count` pending invitations made over HTTP (32 at a time); their tokens, and the body
    that answers every one of them (all of one survey)."""
    items = [
        i for i in _items(count * 12, seed=22, source="submit") if i["survey"] == "delivery-csat"
    ]
    if len(items) < count:
        raise SystemExit("not enough delivery items in the data set")
    items = items[:count]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    tokens: list[str] = [""] * count
    gate = asyncio.Semaphore(CONNECTIONS)

    async def one(client: httpx.AsyncClient, index: int) -> None:
        async with gate:
            body = orjson.dumps(_invitation(items[index], "submit"))
            r = await client.post("/v1/invitations", content=body, headers=headers)
            if r.status_code != 201:
                raise SystemExit(f"invitation {index}: {r.status_code} {r.text}")
            tokens[index] = r.json()["token"]

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await asyncio.gather(*(one(client, i) for i in range(count)))
    answers = {"answers": items[0]["answers"]}
    return tokens, orjson.dumps(answers).decode()


def run_submit_wrk(
    base: str, tokens: list[str], body: str, seconds: int, work: Path
) -> dict[str, Any]:
    path = work / "tokens.lua"
    path.write_text("return {\n" + ",\n".join(_lua(t) for t in tokens) + "\n}\n")
    env = {"CX_WRK_TOKENS": str(path), "CX_WRK_BODY": body, "CX_WRK_THREADS": str(THREADS)}
    return _wrk(base, seconds, "wrk_submit.lua", env)


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(plain(url))
    try:
        row = await conn.fetchrow(
            """SELECT
                 (SELECT count(*) FROM responses WHERE source = 'wrk') AS posts,
                 (SELECT count(*) FROM invitations WHERE source = 'wrk-invite') AS invitations,
                 (SELECT count(*) FROM responses WHERE source = 'submit') AS submitted,
                 (SELECT count(*) FROM invitations
                   WHERE source = 'submit' AND answered_at IS NOT NULL) AS answered"""
        )
        return dict(row)
    finally:
        await conn.close()


def main(
    seconds: Annotated[int, typer.Option(help="Duration of each wrk run.")] = 15,
    invitations: Annotated[int, typer.Option(help="Invitations made for the submit run.")] = 30_000,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8767,
) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install wrk")
    server = server_url()
    url = database_url(server, DATABASE)
    asyncio.run(recreate_database(server, DATABASE))
    asyncio.run(setup(url))
    key = create_key(url, "responses:write", "invitations:write")
    base = f"http://127.0.0.1:{port}"
    # The limiters run (their cost is measured) but never refuse.
    unlimited = {
        "CX_RATE_LIMIT_PER_SECOND": "1000000",
        "CX_RATE_LIMIT_BURST": "1000000",
        "CX_PUBLIC_RATE_LIMIT_PER_SECOND": "1000000",
        "CX_PUBLIC_RATE_LIMIT_BURST": "1000000",
    }
    proc = start_server(url, port, env=unlimited)
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as tmp:
        work = Path(tmp)
        try:
            time.sleep(1)
            run_wrk(base, key, max(3, seconds // 4), "warm", work)  # not reported
            single = run_wrk(base, key, seconds, "main", work)
            run_invite_wrk(base, key, max(3, seconds // 4), "warm", work)  # not reported
            invite = run_invite_wrk(base, key, seconds, "main", work)
            started = time.perf_counter()
            tokens, body = asyncio.run(create_invitations(base, key, invitations))
            made_in = time.perf_counter() - started
            submit = run_submit_wrk(base, tokens, body, seconds, work)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    counts = asyncio.run(_counts(url))
    typer.echo(
        f"\nstored: {counts}; {invitations:,} invitations for the submit run made in "
        f"{made_in:.1f} s ({invitations / made_in:,.0f}/s over httpx, 32 at a time)"
    )
    if submit["created"] > counts["submitted"] or counts["submitted"] != counts["answered"]:
        raise SystemExit("a submit acknowledged is not stored, or not marked answered")
    if submit["not_created"]:
        raise SystemExit(f"{submit['not_created']} submits were not 201 (tokens ran out?)")
    typer.echo(
        "\n| request, 32 connections (wrk) | per second | p50 | p99 | non-2xx | vs single POST |"
    )
    typer.echo("|---|---:|---:|---:|---:|---:|")
    for name, result in (
        ("single `POST /v1/responses` (baseline)", single),
        ("`POST /v1/invitations`", invite),
        ("public submit `POST /v1/public/invitations/{token}/response`", submit),
    ):
        typer.echo(
            f"| {name} | {result['rate']:,.0f} | {result['p50_us'] / 1000:.1f} ms | "
            f"{result['p99_us'] / 1000:.1f} ms | {result['not_created']} | "
            f"{result['rate'] / single['rate']:.2f}x |"
        )


if __name__ == "__main__":
    typer.run(main)
