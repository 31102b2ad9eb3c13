"""Executive evaluation on the benchmark data: one scorecard, a whole evaluation, a close.

    python -m bench.run_evaluation --database cx_bench --requests 50

On a database loaded by bench.load: sets up (over HTTP, once) 300 executives for 2026 - HQ,
the 6 divisions, the 48 subsidiaries (every 4th also answers for its first team, nested) and
245 teams - each with a target and three tasks per purview org (judged; measured on delivery;
measured on end users over the web, or on one survey for every 10th team). Then measures, over
HTTP and sequentially: a division's scorecard and, as the baseline, that division's plain index
(same period and tree); the whole evaluation of 300 executives; and closing the period (then
reopened, so that the run can be repeated). Checks that the stored scorecards equal the live
ones, that each fingerprint counts the index's n, and recomputes one team's digest in SQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
import zlib
from typing import Annotated, Any

import asyncpg
import httpx
import typer

from bench.common import create_key, database_url, plain, server_url, start_server
from bench.dataset import org_tree
from bench.run_index import percentile

PERIOD = "2026"
DIVISION = "DIV1"


def purviews() -> dict[str, list[str]]:
    """Executive code → purview, 300 of them."""
    orgs = org_tree()
    subs = [o.code for o in orgs if o.kind == "subsidiary"]
    teams = [o.code for o in orgs if o.kind == "team"]
    out = {"E-HQ": ["HQ"]}
    out |= {f"E-DIV{d}": [f"DIV{d}"] for d in range(1, 7)}
    for i, sub in enumerate(subs):
        out[f"E-{sub}"] = [sub, f"{sub}-T01"] if i % 4 == 0 else [sub]
    for team in teams[: 300 - len(out)]:
        out[f"E-{team}"] = [team]
    return out


def task_bodies(org: str) -> list[dict[str, Any]]:
    """The three tasks of an org (the same whichever executive's purview names it)."""
    n = zlib.crc32(org.encode())
    base = {"period": PERIOD, "due": "2026-12-31", "customer_group": "end_user"}
    measured: dict[str, Any] = {"csi_target": 65, "customer_type": "end_user", "channel": "web"}
    if n % 10 == 9:
        measured = {"csi_target": 65, "survey": "delivery-csat"}
    return [
        {
            **base,
            "title": "Close every complaint",
            "customer_group": "internal",
            "external_id": f"bench-{org}-1",
            "weight": 2,
        },
        {
            **base,
            "title": "Delivery 70",
            "external_id": f"bench-{org}-2",
            "measure": {"csi_target": 70, "stages": ["delivery"]},
        },
        {**base, "title": "Web end users 65", "external_id": f"bench-{org}-3", "measure": measured},
    ]


async def setup(client: httpx.AsyncClient) -> float:
    """Executives, purviews, targets and tasks (idempotent: a re-run finds them)."""
    started = time.perf_counter()
    r = await client.get(f"/v1/evaluations/{PERIOD}")
    if r.json()["status"] == "closed":
        await client.post(f"/v1/evaluations/{PERIOD}/reopen", json={"reason": "bench re-run"})
    for n, (code, orgs) in enumerate(purviews().items()):
        r = await client.post("/v1/executives", json={"code": code, "name": f"Executive {n}"})
        if r.status_code not in (201, 409):
            raise SystemExit(f"{code}: {r.status_code} {r.text}")
        r = await client.put(f"/v1/executives/{code}/purview/{PERIOD}", json={"orgs": orgs})
        r.raise_for_status()
        r = await client.put(f"/v1/executives/{code}/targets/{PERIOD}", json={"csi": 60 + n % 15})
        r.raise_for_status()
        for org in orgs:
            for body in task_bodies(org):
                r = await client.post(f"/v1/orgs/{org}/tasks", json=body)
                if r.status_code not in (200, 201):
                    raise SystemExit(f"{org}: {r.status_code} {r.text}")
                if body["title"].startswith("Close") and n % 3 == 0 and r.status_code == 201:
                    await client.patch(f"/v1/tasks/{r.json()['id']}", json={"status": "done"})
    return time.perf_counter() - started


async def timed(client: httpx.AsyncClient, path: str, runs: int, **params: str) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        r = await client.get(path, params=params)
        samples.append(time.perf_counter() - started)
        r.raise_for_status()
    return samples


CELL_SQL = """
SELECT r.occurred_on, count(*), encode(sha256(convert_to(
           string_agg(r.id::text, E'\\n' ORDER BY r.id), 'UTF8')), 'hex')
FROM responses r JOIN orgs o ON o.id = r.org_id
WHERE o.code = $1 AND r.occurred_on >= $2 AND r.occurred_on < $3
GROUP BY 1 ORDER BY 1
"""


async def team_digest(conn: asyncpg.Connection, team: str) -> tuple[int, str]:
    """A team's fingerprint recomputed from its raw rows (a team has no descendants)."""
    from datetime import date

    rows = await conn.fetch(CELL_SQL, team, date(2026, 1, 1), date(2027, 1, 1))
    text = "".join(f"{team}\t{day}\t{n}\t{digest}\n" for day, n, digest in rows)
    return sum(n for _, n, _ in rows), hashlib.sha256(text.encode()).hexdigest()


async def measure(url: str, base: str, key: str, requests: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as client:
        out["setup"] = await setup(client)
        card_path = f"/v1/executives/E-{DIVISION}/scorecard"
        index_path = f"/v1/orgs/{DIVISION}/index"
        await timed(client, card_path, 5, period=PERIOD)
        await timed(client, index_path, 5, period=PERIOD, tree="history")
        out["scorecard"] = await timed(client, card_path, requests, period=PERIOD)
        out["index"] = await timed(client, index_path, requests, period=PERIOD, tree="history")
        await timed(client, f"/v1/evaluations/{PERIOD}", 1)
        out["evaluation"] = await timed(client, f"/v1/evaluations/{PERIOD}", runs)
        live = (await client.get(f"/v1/evaluations/{PERIOD}")).json()
        out["executives"] = len(live["scorecards"])
        out["tasks"] = sum(c["tasks"]["count"] for c in live["scorecards"])
        closes = []
        stored: dict[str, Any] = {}
        for _ in range(runs):
            started = time.perf_counter()
            r = await client.post(f"/v1/evaluations/{PERIOD}/close", json={"note": "bench"})
            closes.append(time.perf_counter() - started)
            r.raise_for_status()
            stored = r.json()
            again = await client.get(f"/v1/evaluations/{PERIOD}")
            out["byte_identical"] = again.content == r.content
            reopened = await client.post(
                f"/v1/evaluations/{PERIOD}/reopen", json={"reason": "bench"}
            )
            reopened.raise_for_status()
        out["close"] = closes
        problems = []
        by_code = {c["executive"]: c for c in live["scorecards"]}
        for card in stored["scorecards"]:
            printed = card.pop("fingerprint")
            if printed["count"] != card["index"]["n"]:
                problems.append(f"{card['executive']}: fingerprint count != n")
            mine = by_code[card["executive"]]
            mine.pop("fingerprint")
            if {**card, "frozen": False} != mine:
                problems.append(f"{card['executive']}: stored != live")
        team = next(c for c in stored["scorecards"] if c["executive"].count("-T") == 1)
        conn = await asyncpg.connect(plain(url))
        try:
            count, digest = await team_digest(conn, team["orgs"][0]["org"])
        finally:
            await conn.close()
        last = next(
            c for c in (await client.get(f"/v1/evaluations/{PERIOD}/versions/{stored['version']}"))
            .json()["scorecards"] if c["executive"] == team["executive"]
        )  # fmt: skip
        if last["fingerprint"] != {"count": count, "digest": digest}:
            problems.append(f"{team['executive']}: digest differs from the SQL recomputation")
        out["problems"] = problems
        out["division_n"] = by_code[f"E-{DIVISION}"]["index"]["n"]
    return out


def main(
    database: Annotated[str, typer.Option(help="A database loaded by bench.load.")] = "cx_bench",
    requests: Annotated[int, typer.Option(help="HTTP requests for the scorecard.")] = 50,
    runs: Annotated[int, typer.Option(help="Runs of the evaluation and of the close.")] = 3,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8767,
) -> None:
    url = database_url(server_url(), database)
    key = create_key(url, "admin")
    # The setup sends ~1,500 requests as fast as it can: no rate limit in the way.
    limits = {"CX_RATE_LIMIT_PER_SECOND": "100000", "CX_RATE_LIMIT_BURST": "100000"}
    server = start_server(url, port, env=limits)
    try:
        out = asyncio.run(measure(url, f"http://127.0.0.1:{port}", key, requests, runs))
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = {k: [1000 * s for s in out[k]] for k in ("scorecard", "index", "evaluation", "close")}
    typer.echo(f"\nsetup (idempotent, over HTTP): {out['setup']:.1f} s")
    typer.echo(f"{out['executives']} executives, {out['tasks']} tasks in their scorecards\n")
    typer.echo("| what | runs | p50 ms | p99 ms | p50 / the index's p50 |")
    typer.echo("|---|---:|---:|---:|---:|")
    index_p50 = statistics.median(ms["index"])
    rows = [
        (f"scorecard E-{DIVISION} ({out['division_n']:,} responses)", "scorecard", index_p50),
        (f"index {DIVISION}, tree=history (baseline)", "index", None),
        (f"evaluation {PERIOD}, {out['executives']} executives", "evaluation", index_p50),
        (f"close {PERIOD} ({out['executives']} scorecards, fingerprints)", "close", None),
    ]
    for label, key_, base in rows:
        p50 = statistics.median(ms[key_])
        tail = percentile(ms[key_], 0.99)
        ratio = f"{p50 / base:.1f}" if base else "-"
        typer.echo(f"| {label} | {len(ms[key_])} | {p50:.1f} | {tail:.1f} | {ratio} |")
    typer.echo(f"\nstored evaluation byte-identical on re-read: {out['byte_identical']}")
    typer.echo("checks: " + ("all agree" if not out["problems"] else "; ".join(out["problems"])))


if __name__ == "__main__":
    typer.run(main)
