"""A soak run: mixed traffic against `cx-survey serve` for a bounded time, on loopback.

    python -m bench.soak --minutes 10 --json soak.json

On a scratch database (the benchmark's orgs and surveys, `--preload` responses loaded) it
starts the server (2 workers, rate limits lifted) and runs `--concurrency` clients for
`--minutes`, each picking request classes at random by weight: single posts (new, retried,
conflicting), batches with invalid, duplicate and conflicting items, index reads (org, children,
series), cursor walks over orgs and responses, and bad requests (400, 401, 403, 404, 413, 415,
422). Every class has its expected statuses and checks; anything else, a 5xx or a connection
error is unexpected. The server's resident memory (master and workers) is sampled every few
seconds. At the end every acknowledged response must be exactly one stored row, and no bad
request may have stored anything. Exits 1 on any unexpected answer, mismatch or server error log.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import IO, Annotated, Any

import asyncpg
import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from app.platform.limits import MAX_BODY_BYTES
from bench.common import (
    create_key,
    database_url,
    drop_database,
    plain,
    process_tree,
    recreate_database,
    server_url,
    start_server,
    tree_rss_mb,
)
from bench.dataset import OrgSpec, org_tree, responses
from bench.load import finish, load, setup

DATABASE = "cx_bench_soak"
SOURCE = "soak"
BAD_SOURCE = "soak-bad"  # bodies of requests that must be refused: none may be stored
BOUND_ORG = "DIV1"
# The soak is about errors and memory, not about the rate limiter: lift it.
SERVER_ENV = {"CX_RATE_LIMIT_PER_SECOND": "100000", "CX_RATE_LIMIT_BURST": "100000"}
PERIODS = ["2025", "2026", "2025-Q4", "2026-Q2", "2025-03", "2026-09"]
SERIES = [  # (granularity, from, to, periods)
    ("month", "2024-11-01", "2026-11-01", 24),
    ("quarter", "2025-01-01", "2026-10-01", 7),
    ("year", "2025-01-01", "2027-01-01", 2),
]
BAD_QUERIES = [  # (path, params, expected status)
    ("/v1/orgs/NO-SUCH-ORG/index", {"period": "2026"}, 404),
    ("/v1/orgs/HQ/index", {"period": "2026", "from": "2026-01-01", "to": "2026-02-01"}, 422),
    ("/v1/orgs/HQ/index", {"period": "2026", "min_n": "1"}, 422),
    ("/v1/orgs/HQ/index", {"period": "2026-13"}, 422),
    (
        "/v1/orgs/HQ/index/series",
        {"granularity": "month", "from": "2000-01-01", "to": "2026-01-01"},
        422,
    ),
    ("/v1/orgs", {"limit": "501"}, 422),
    ("/v1/responses", {"cursor": "!!not-a-cursor!!"}, 422),
    ("/v1/no-such-route", {}, 404),
]
BAD_JSON = [b'{"survey": "delivery-csat", ', b"[1, 2", b"\xff\xfe{}", b'{"a": 1} trailing']


@dataclass
class ClassStats:
    """What one request class saw."""

    expected: set[int] = field(default_factory=set)
    count: int = 0
    unexpected: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, after the warm-up only


@dataclass
class RssSample:
    at: float  # seconds since the traffic started
    mb: float
    pids: tuple[int, ...]

    @classmethod
    def take(cls, pid: int, at: float) -> RssSample:
        return cls(at, tree_rss_mb(pid), tuple(sorted(process_tree(pid))))


def _describe(exc: BaseException) -> str:
    """The first non-empty message along the exception's chain (httpx often wraps an OSError)."""
    current: BaseException | None = exc
    while current is not None:
        if str(current):
            return f"{str(current)[:200]} ({type(current).__name__})"
        current = current.__cause__ or current.__context__
    return "no message"


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of `values` (q in [0, 1]); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def slope_per_minute(samples: list[RssSample]) -> float | None:
    """Least-squares slope of RSS over time, in MB per minute."""
    if len(samples) < 3:
        return None
    xs = [s.at for s in samples]
    ys = [s.mb for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


class Soak:
    """The traffic's shared state: keys, fresh bodies, stored responses, statistics."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        keys: dict[str, str],
        *,
        orgs: list[OrgSpec],
        seed: int,
        batch_size: int,
        measure_from: float,
        console: Console,
    ) -> None:
        self.client = client
        self.keys = keys
        self.orgs = orgs
        self.children = Counter(o.parent for o in orgs if o.parent is not None)
        self.parents = [o.code for o in orgs if self.children[o.code]]
        self.rng = random.Random(seed)
        self.fresh = responses(orgs, count=10**12, seed=seed)
        self.batch_size = batch_size
        self.measure_from = measure_from
        self.console = console
        self.stats: dict[str, ClassStats] = {}
        self.stored: deque[tuple[dict[str, Any], str]] = deque(maxlen=5000)
        self.acknowledged = 0  # responses the server said it created
        self.examples: list[str] = []
        self.started = time.monotonic()
        self.index_orgs = (
            ["HQ"]
            + [o.code for o in orgs if o.kind == "division"]
            + self.rng.sample([o.code for o in orgs if o.kind == "subsidiary"], 12)
            + self.rng.sample([o.code for o in orgs if o.kind == "team"], 24)
        )

    # -- bodies ----------------------------------------------------------------------------

    def new_body(self, source: str = SOURCE) -> dict[str, Any]:
        body = next(self.fresh)
        body["source"] = source
        return body

    def new_body_in(self, root: str, *, inside: bool) -> dict[str, Any]:
        """A fresh body whose org is (or is not) in `root`'s subtree."""
        while True:
            body = self.new_body()
            within = body["org"] == root or body["org"].startswith(root + "-")
            if within == inside:
                return body

    def stored_one(self) -> tuple[dict[str, Any], str] | None:
        return self.rng.choice(self.stored) if self.stored else None

    # -- requests --------------------------------------------------------------------------

    async def call(
        self,
        name: str,
        method: str,
        path: str,
        *,
        expect: set[int],
        key: str | None = "writer",
        check: Callable[[httpx.Response], str | None] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """One request of class `name`; records its status and latency, and whether it was
        expected: a status in `expect`, a problem+json body for any error, `check` passing."""
        stats = self.stats.setdefault(name, ClassStats())
        stats.expected |= expect
        all_headers = dict(headers or {})
        if key is not None:
            all_headers.setdefault("Authorization", f"Bearer {self.keys[key]}")
        started = time.monotonic()
        problem: str | None = None
        response: httpx.Response | None = None
        try:
            response = await self.client.request(method, path, headers=all_headers, **kwargs)
        except httpx.HTTPError as exc:
            stats.statuses[type(exc).__name__] += 1
            problem = f"{type(exc).__name__}: {_describe(exc)}"
        elapsed = time.monotonic() - started
        stats.count += 1
        if started >= self.measure_from:
            stats.latencies.append(elapsed)
        if response is not None:
            stats.statuses[str(response.status_code)] += 1
            problem = self._judge(response, expect, check)
        if problem is not None:
            stats.unexpected += 1
            line = f"{name}: {method} {path}: {problem}"
            if len(self.examples) < 50:
                self.examples.append(line)
            if len(self.examples) <= 20:
                self.console.print(f"[red]unexpected[/red] {line}")
            return None
        return response

    @staticmethod
    def _judge(
        response: httpx.Response,
        expect: set[int],
        check: Callable[[httpx.Response], str | None] | None,
    ) -> str | None:
        status = response.status_code
        if status not in expect:
            return f"status {status} (expected {sorted(expect)}): {response.text[:300]}"
        if status >= 400:
            media = response.headers.get("content-type", "")
            if not media.startswith("application/problem+json"):
                return f"status {status} answered as {media!r}, not problem+json"
            if response.json().get("status") != status:
                return f"problem body's status differs from {status}"
        return check(response) if check is not None else None


# -- request classes --------------------------------------------------------------------------


async def post_new(soak: Soak) -> None:
    """A fresh response (one in ten through a key bound to an org, inside its subtree)."""
    bound = soak.rng.random() < 0.1
    body = soak.new_body_in(BOUND_ORG, inside=True) if bound else soak.new_body()

    def check(r: httpx.Response) -> str | None:
        stored = r.json()
        if stored.get("external_id") != body["external_id"] or not stored.get("id"):
            return f"stored another response: {r.text[:200]}"
        return None

    r = await soak.call(
        "post",
        "POST",
        "/v1/responses",
        expect={201},
        key="bound" if bound else "writer",
        json=body,
        check=check,
    )
    if r is not None:
        soak.acknowledged += 1
        soak.stored.append((body, r.json()["id"]))


async def post_retry(soak: Soak) -> None:
    """A stored response posted again, as it was: 200 and the same id."""
    picked = soak.stored_one()
    if picked is None:
        await post_new(soak)
        return
    body, stored_id = picked

    def check(r: httpx.Response) -> str | None:
        got = r.json().get("id")
        return None if got == stored_id else f"a retry answered id {got}, not {stored_id}"

    await soak.call("post_retry", "POST", "/v1/responses", expect={200}, json=body, check=check)


async def post_conflict(soak: Soak) -> None:
    """A stored response's (source, external_id) with other content: 409."""
    picked = soak.stored_one()
    if picked is None:
        await post_new(soak)
        return
    body = copy.deepcopy(picked[0])
    body["answers"]["comment"] = f"changed {soak.rng.random()}"
    await soak.call("post_conflict", "POST", "/v1/responses", expect={409}, json=body)


def _invalid_bodies(soak: Soak) -> list[dict[str, Any]]:
    """An answer off the scale, an unknown org, an unknown survey, a required answer missing."""
    bodies = [soak.new_body() for _ in range(4)]
    bodies[0]["answers"]["overall"] = 99
    bodies[1]["org"] = "NO-SUCH-ORG"
    bodies[2]["survey"] = "no-such-survey"
    del bodies[3]["answers"]["overall"]
    return bodies


async def post_batch(soak: Soak) -> None:
    """A batch of fresh items with four invalid ones, a repeat of an earlier item of the batch,
    and (once something is stored) a duplicate and a conflict of stored responses."""
    items = [(body, "invalid") for body in _invalid_bodies(soak)]
    if len(soak.stored) >= 2:
        # Two different responses: a conflict and a duplicate of the same one would be judged
        # against each other within the batch.
        again, other = (body for body, _ in soak.rng.sample(soak.stored, 2))
        items.append((copy.deepcopy(again), "duplicate"))
        changed = copy.deepcopy(other)
        changed["answers"]["comment"] = f"changed {soak.rng.random()}"
        items.append((changed, "conflict"))
    fresh = [(soak.new_body(), "created") for _ in range(max(1, soak.batch_size - len(items) - 1))]
    soak.rng.shuffle(items)
    items = fresh[: len(fresh) // 2] + items + fresh[len(fresh) // 2 :]
    items.append((copy.deepcopy(fresh[0][0]), "duplicate"))  # judged against its first copy
    wanted = [status for _, status in items]

    def check(r: httpx.Response) -> str | None:
        got = [result["status"] for result in r.json()["results"]]
        if got != wanted:
            diff = [(i, w, g) for i, (w, g) in enumerate(zip(wanted, got, strict=False)) if w != g]
            return f"item statuses differ (index, wanted, got): {diff[:5]}, {len(got)} results"
        return None

    r = await soak.call(
        "batch",
        "POST",
        "/v1/responses/batch",
        expect={200},
        json={"items": [b for b, _ in items]},
        check=check,
    )
    if r is not None:
        results = r.json()["results"]
        soak.acknowledged += r.json()["counts"]["created"]
        for (body, _), result in zip(items, results, strict=True):
            if result["status"] == "created":
                soak.stored.append((body, result["id"]))


def _index_scope(soak: Soak) -> dict[str, str]:
    rng = soak.rng
    params: dict[str, str] = {}
    if rng.random() < 0.8:
        params["period"] = rng.choice(PERIODS)
    else:
        params |= {"from": "2025-01-15", "to": "2025-04-20"}
    extras = {
        "stages": "delivery,purchase",
        "channel": "web,mobile",
        "customer_type": "end_user",
        "min_n": str(rng.choice([5, 10, 50])),
        "include_descendants": "false",
    }
    for name, value in extras.items():
        if rng.random() < 0.15:
            params[name] = value
    return params


async def index(soak: Soak) -> None:
    def check(r: httpx.Response) -> str | None:
        stages = r.json().get("stages")
        return None if isinstance(stages, list) and len(stages) == 5 else "not five stages"

    org = soak.rng.choice(soak.index_orgs)
    await soak.call(
        "index",
        "GET",
        f"/v1/orgs/{org}/index",
        key="reader",
        params=_index_scope(soak),
        expect={200},
        check=check,
    )


async def index_children(soak: Soak) -> None:
    org = soak.rng.choice(soak.parents)
    params = _index_scope(soak)
    params.pop("include_descendants", None)

    def check(r: httpx.Response) -> str | None:
        got = len(r.json()["items"])
        return None if got == soak.children[org] else f"{got} children, not {soak.children[org]}"

    await soak.call(
        "index_children",
        "GET",
        f"/v1/orgs/{org}/index/children",
        key="reader",
        params=params,
        expect={200},
        check=check,
    )


async def index_series(soak: Soak) -> None:
    org = soak.rng.choice(soak.index_orgs)
    granularity, start, end, periods = soak.rng.choice(SERIES)
    params = {"granularity": granularity, "from": start, "to": end}

    def check(r: httpx.Response) -> str | None:
        got = len(r.json()["items"])
        return None if got == periods else f"{got} periods, not {periods}"

    await soak.call(
        "index_series",
        "GET",
        f"/v1/orgs/{org}/index/series",
        key="reader",
        params=params,
        expect={200},
        check=check,
    )


def _page_problem(
    page: dict[str, Any], limit: int, last: Any, seen: set[str], order: Callable[[Any], Any]
) -> str | None:
    items = page["items"]
    if len(items) > limit or (page["next_cursor"] and len(items) != limit):
        return f"{len(items)} items on a page of {limit}"
    keys = ([] if last is None else [last]) + [order(item) for item in items]
    if any(b < a for a, b in pairwise(keys)):
        return "items out of order"
    ids = [str(item.get("id", item.get("code"))) for item in items]
    if seen.intersection(ids) or len(set(ids)) != len(ids):
        return "an item appears twice"
    return None


async def _walk(
    soak: Soak, name: str, path: str, params: dict[str, str], order: Callable[[Any], Any]
) -> None:
    """Up to three pages of a list, following next_cursor; the order must hold across pages."""
    last: Any = None
    seen: set[str] = set()
    limit = int(params["limit"])
    for _ in range(3):
        r = await soak.call(
            name,
            "GET",
            path,
            key="reader",
            params=params,
            expect={200},
            check=lambda r, last=last: _page_problem(r.json(), limit, last, seen, order),
        )
        if r is None:
            return
        page = r.json()
        if page["items"]:
            last = order(page["items"][-1])
            seen.update(str(item.get("id", item.get("code"))) for item in page["items"])
        if not page["next_cursor"]:
            return
        params = {**params, "cursor": page["next_cursor"]}


async def list_orgs(soak: Soak) -> None:
    params = {"limit": str(soak.rng.choice([50, 200, 500]))}
    if soak.rng.random() < 0.3:
        params["parent"] = soak.rng.choice(soak.parents)
    await _walk(soak, "list_orgs", "/v1/orgs", params, lambda org: org["code"])


async def list_responses(soak: Soak) -> None:
    params = {
        "limit": str(soak.rng.choice([20, 100, 500])),
        "org": soak.rng.choice(soak.index_orgs),
    }
    if soak.rng.random() < 0.3:
        params["stage"] = soak.rng.choice(["purchase", "delivery", "after_service"])
    if soak.rng.random() < 0.3:
        params |= {"from": "2025-06-01T00:00:00+09:00", "to": "2025-09-01T00:00:00Z"}
    await _walk(
        soak,
        "list_responses",
        "/v1/responses",
        params,
        lambda item: datetime.fromisoformat(item["occurred_at"]),
    )


async def get_response(soak: Soak) -> None:
    picked = soak.stored_one()
    if picked is None:
        await index(soak)
        return
    body, stored_id = picked

    def check(r: httpx.Response) -> str | None:
        got = r.json()
        return None if got.get("external_id") == body["external_id"] else "another response"

    await soak.call(
        "get_response",
        "GET",
        f"/v1/responses/{stored_id}",
        key="reader",
        expect={200},
        check=check,
    )


def _www_authenticate(r: httpx.Response) -> str | None:
    return None if r.headers.get("www-authenticate", "").startswith("Bearer") else "no challenge"


async def bad_json(soak: Soak) -> None:
    await soak.call(
        "bad_json",
        "POST",
        soak.rng.choice(["/v1/responses", "/v1/responses/batch"]),
        expect={400},
        content=soak.rng.choice(BAD_JSON),
        headers={"Content-Type": "application/json"},
    )


async def bad_content_type(soak: Soak) -> None:
    media = soak.rng.choice(["text/plain", "application/x-www-form-urlencoded", "text/csv"])
    await soak.call(
        "bad_content_type",
        "POST",
        "/v1/responses",
        expect={415},
        content=orjson.dumps(soak.new_body(BAD_SOURCE)),
        headers={"Content-Type": media},
    )


async def bad_key(soak: Soak) -> None:
    """Missing, malformed, unknown keys and another scheme: 401 with a Bearer challenge."""
    variant = soak.rng.choice(
        [None, "Bearer not-a-key", "Bearer cx_999999_" + "x" * 40, "Basic YTpi", "Bearer"]
    )
    headers = {} if variant is None else {"Authorization": variant}
    path = soak.rng.choice(["/v1/responses", "/v1/orgs/HQ/index?period=2026"])
    method = "POST" if path == "/v1/responses" else "GET"
    body = soak.new_body(BAD_SOURCE) if method == "POST" else None
    await soak.call(
        "bad_key",
        method,
        path,
        key=None,
        expect={401},
        headers=headers,
        json=body,
        check=_www_authenticate,
    )


async def wrong_scope(soak: Soak) -> None:
    """A valid key without the scope: 403."""
    if soak.rng.random() < 0.5:
        await soak.call(
            "wrong_scope",
            "POST",
            "/v1/responses",
            key="reader",
            expect={403},
            json=soak.new_body(BAD_SOURCE),
        )
    else:
        await soak.call(
            "wrong_scope",
            "GET",
            "/v1/orgs/HQ/index",
            key="writer",
            expect={403},
            params={"period": "2026"},
        )


async def out_of_scale(soak: Soak) -> None:
    body = soak.new_body(BAD_SOURCE)
    body["answers"]["overall"] = soak.rng.choice([-1, 11, 99, 4.5])
    await soak.call("out_of_scale", "POST", "/v1/responses", expect={422}, json=body)


async def unknown_org(soak: Soak) -> None:
    """An org that does not exist, or one outside a bound key's subtree: 422 alike."""
    if soak.rng.random() < 0.5:
        body = soak.new_body(BAD_SOURCE)
        body["org"] = "NO-SUCH-ORG"
        key = "writer"
    else:
        body = soak.new_body_in(BOUND_ORG, inside=False)
        body["source"] = BAD_SOURCE
        key = "bound"
    await soak.call("unknown_org", "POST", "/v1/responses", key=key, expect={422}, json=body)


def _oversize_body(soak: Soak) -> bytes:
    body = soak.new_body(BAD_SOURCE)
    body["answers"]["comment"] = "x" * (MAX_BODY_BYTES + 1024)
    return orjson.dumps(body)


async def oversize(soak: Soak) -> None:
    """A body over 1 MiB announced by its Content-Length: 413."""
    await soak.call(
        "oversize",
        "POST",
        "/v1/responses",
        expect={413},
        content=_oversize_body(soak),
        headers={"Content-Type": "application/json"},
    )


async def oversize_chunked(soak: Soak) -> None:
    """A body over 1 MiB sent in chunks without a length: 413."""
    raw = _oversize_body(soak)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 64 * 1024):
            yield raw[i : i + 64 * 1024]

    await soak.call(
        "oversize_chunked",
        "POST",
        "/v1/responses",
        expect={413},
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )


async def bad_query(soak: Soak) -> None:
    path, params, status = soak.rng.choice(BAD_QUERIES)
    await soak.call("bad_query", "GET", path, key="reader", params=params, expect={status})


CLASSES: list[tuple[Callable[[Soak], Awaitable[None]], int]] = [
    (post_new, 30),
    (post_retry, 8),
    (post_conflict, 4),
    (post_batch, 3),
    (index, 10),
    (index_children, 4),
    (index_series, 4),
    (list_orgs, 3),
    (list_responses, 4),
    (get_response, 4),
    (bad_json, 2),
    (bad_content_type, 2),
    (bad_key, 2),
    (wrong_scope, 1),
    (out_of_scale, 2),
    (unknown_org, 2),
    (oversize, 1),
    (oversize_chunked, 1),
    (bad_query, 3),
]


# -- the run ----------------------------------------------------------------------------------


async def client_loop(soak: Soak, deadline: float) -> None:
    kinds = [kind for kind, _ in CLASSES]
    weights = [weight for _, weight in CLASSES]
    while time.monotonic() < deadline:
        await soak.rng.choices(kinds, weights)[0](soak)


async def sample_rss(pid: int, soak: Soak, every: float, into: list[RssSample]) -> None:
    while True:
        into.append(RssSample.take(pid, time.monotonic() - soak.started))
        await asyncio.sleep(every)


@dataclass
class Run:
    """What a run of the traffic leaves to report."""

    soak: Soak
    samples: list[RssSample]
    measured: float  # seconds after the warm-up
    client_cpu: float  # CPU seconds this process (the load generator) used during the traffic
    wall: float


async def run_traffic(
    base: str,
    keys: dict[str, str],
    pid: int,
    *,
    seconds: float,
    warmup: float,
    concurrency: int,
    batch_size: int,
    sample_every: float,
    seed: int,
    console: Console,
) -> Run:
    """Mixed traffic for `seconds` from `concurrency` clients, RSS sampled alongside."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    samples: list[RssSample] = []
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        started = time.monotonic()
        cpu = time.process_time()
        soak = Soak(
            client,
            keys,
            orgs=org_tree(),
            seed=seed,
            batch_size=batch_size,
            measure_from=started + warmup,
            console=console,
        )
        deadline = started + seconds
        sampler = asyncio.create_task(sample_rss(pid, soak, sample_every, samples))
        clients = [asyncio.create_task(client_loop(soak, deadline)) for _ in range(concurrency)]
        columns = (
            TextColumn("soak"),
            BarColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[requests]:,} requests, {task.fields[rate]:,.0f}/s"),
            TextColumn("unexpected {task.fields[unexpected]}"),
            TextColumn("RSS {task.fields[rss]:,.0f} MB"),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("soak", total=seconds, requests=0, rate=0, unexpected=0, rss=0)
            while not all(c.done() for c in clients):
                await asyncio.wait(clients, timeout=1)
                now = time.monotonic()
                if now > deadline + 120:
                    raise SystemExit("the clients did not stop within 2 minutes of the deadline")
                done = sum(s.count for s in soak.stats.values())
                progress.update(
                    task,
                    completed=min(now - started, seconds),
                    requests=done,
                    rate=done / (now - started),
                    unexpected=sum(s.unexpected for s in soak.stats.values()),
                    rss=samples[-1].mb if samples else 0,
                )
        ended = time.monotonic()
        cpu = time.process_time() - cpu
        for c in clients:
            c.result()  # an exception in a client is a bug of this script: surface it
        sampler.cancel()
        samples.append(RssSample.take(pid, ended - started))
    return Run(soak, samples, ended - (started + warmup), cpu, ended - started)


async def count_rows(url: str) -> tuple[int, int]:
    """Rows stored by the soak, and rows stored from bodies that had to be refused."""
    conn = await asyncpg.connect(plain(url))
    try:
        good = await conn.fetchval("SELECT count(*) FROM responses WHERE source = $1", SOURCE)
        bad = await conn.fetchval("SELECT count(*) FROM responses WHERE source = $1", BAD_SOURCE)
        return int(good), int(bad)
    finally:
        await conn.close()


def server_errors(log: Path, upto: int) -> list[str]:
    """Lines of the server's log (its first `upto` bytes) at level error or above, or not JSON."""
    with log.open("rb") as f:
        text = f.read(upto).decode(errors="replace")
    lines = []
    for raw in text.splitlines():
        try:
            level = json.loads(raw).get("level")
        except ValueError:
            level = None
        if level not in {"debug", "info", "warning"} and raw.strip():
            lines.append(raw)
    return lines


def summarize(
    run: Run, *, warmup: float, stored: tuple[int, int], errors: list[str], options: dict[str, Any]
) -> dict[str, Any]:
    soak, samples, measured = run.soak, run.samples, run.measured

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    classes = {}
    for name, stats in sorted(soak.stats.items()):
        classes[name] = {
            "expected": sorted(stats.expected),
            "count": stats.count,
            "unexpected": stats.unexpected,
            "statuses": dict(sorted(stats.statuses.items())),
            "p50_ms": ms(percentile(stats.latencies, 0.50)),
            "p99_ms": ms(percentile(stats.latencies, 0.99)),
        }
    latencies = [x for stats in soak.stats.values() for x in stats.latencies]
    steady = [s for s in samples if s.at >= warmup] or samples[-1:]
    start_mb, end_mb = steady[0].mb, samples[-1].mb
    trees = sorted({s.pids for s in samples})
    good_rows, bad_rows = stored
    return {
        "options": options,
        "requests": sum(s.count for s in soak.stats.values()),
        "requests_after_warmup": len(latencies),
        "seconds_after_warmup": round(measured, 1),
        "load_generator_cpu_share": round(run.client_cpu / run.wall, 2),
        "throughput_rps": round(len(latencies) / measured, 1),
        "p50_ms": ms(percentile(latencies, 0.50)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(max(latencies, default=None)),
        "unexpected": sum(s.unexpected for s in soak.stats.values()),
        "unexpected_examples": soak.examples,
        "classes": classes,
        "stored": {
            "acknowledged": soak.acknowledged,
            "rows": good_rows,
            "rows_from_refused_bodies": bad_rows,
            "ok": good_rows == soak.acknowledged and bad_rows == 0,
        },
        "server_error_lines": errors[:20],
        "rss_mb": {
            "start_after_warmup": round(start_mb, 1),
            "end": round(end_mb, 1),
            "max": round(max(s.mb for s in samples), 1),
            "drift": round(end_mb - start_mb, 1),
            "slope_mb_per_min": (
                None if (slope := slope_per_minute(steady)) is None else round(slope, 2)
            ),
            "process_trees": [list(pids) for pids in trees],
            "samples": [[round(s.at, 1), round(s.mb, 1)] for s in samples],
        },
    }


def print_report(report: dict[str, Any], console: Console) -> None:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    table = Table(title="soak: requests by class (latency after the warm-up)")
    for column in ("class", "expected", "count", "statuses", "unexpected", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in {"class", "statuses"} else "right")
    for name, c in report["classes"].items():
        statuses = ", ".join(f"{k}: {v:,}" for k, v in c["statuses"].items())
        table.add_row(
            name,
            ",".join(map(str, c["expected"])),
            f"{c['count']:,}",
            statuses,
            str(c["unexpected"]),
            num(c["p50_ms"]),
            num(c["p99_ms"]),
        )
    console.print(table)
    rss = report["rss_mb"]
    stored = report["stored"]
    opts = report["options"]
    console.print(
        f"{opts['minutes']} min, {opts['workers']} workers, {opts['concurrency']} clients, "
        f"warm-up {opts['warmup']} s: {report['requests']:,} requests, unexpected "
        f"{report['unexpected']}; after the warm-up {report['requests_after_warmup']:,} in "
        f"{report['seconds_after_warmup']} s = {report['throughput_rps']:,} req/s, "
        f"p50 {num(report['p50_ms'])} ms, p99 {num(report['p99_ms'])} ms, "
        f"max {num(report['max_ms'])} ms; the load generator used "
        f"{report['load_generator_cpu_share']:.0%} of a core"
    )
    console.print(
        f"server RSS (master + workers): {rss['start_after_warmup']} MB after the warm-up, "
        f"{rss['end']} MB at the end, {rss['max']} MB max; drift {rss['drift']:+} MB "
        f"(slope {rss['slope_mb_per_min']} MB/min); process sets seen: {len(rss['process_trees'])}"
    )
    console.print(
        f"stored: {stored['acknowledged']:,} acknowledged, {stored['rows']:,} rows; "
        f"{stored['rows_from_refused_bodies']} rows from refused bodies "
        f"({'ok' if stored['ok'] else 'MISMATCH'}); "
        f"server error log lines: {len(report['server_error_lines'])}"
    )
    for line in report["unexpected_examples"][:10] + report["server_error_lines"][:10]:
        console.print(f"  [red]{line[:400]}[/red]", highlight=False)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@contextmanager
def serve(url: str, port: int, workers: int, log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """The server under test, stopped (SIGTERM, then SIGKILL after a minute) on the way out."""
    proc = start_server(url, port, "--workers", str(workers), env=SERVER_ENV, log=log)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(
    minutes: Annotated[float, typer.Option(help="How long the traffic runs.")] = 5.0,
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 2,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients.")] = 16,
    warmup: Annotated[
        float, typer.Option(help="Seconds left out of latency, throughput and the RSS start.")
    ] = 20.0,
    preload: Annotated[int, typer.Option(help="Responses loaded before the traffic.")] = 20_000,
    batch_size: Annotated[int, typer.Option(help="Items per batch request.")] = 100,
    sample_every: Annotated[float, typer.Option(help="Seconds between RSS samples.")] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed of the traffic mix.")] = 7,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8771,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the report here as JSON.")
    ] = None,
    keep_database: Annotated[bool, typer.Option(help="Leave the scratch database.")] = False,
) -> None:
    seconds = minutes * 60
    if warmup >= seconds / 2:
        raise SystemExit("--warmup must be under half of the run")
    if not port_is_free(port):
        raise SystemExit(f"something already listens on port {port}: pick another --port")
    # Wide enough for the report's table when the output is a file or a pipe.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    server = server_url()
    url = database_url(server, DATABASE)
    asyncio.run(recreate_database(server, DATABASE))
    try:
        asyncio.run(setup(url))
        if preload:
            load(url, count=preload, seed=1, workers=2)
            asyncio.run(finish(url, rebuild=True))
        keys = {
            "writer": create_key(url, "responses:write"),
            "reader": create_key(url, "indices:read", "responses:read"),
            "bound": create_key(url, "responses:write", org=BOUND_ORG),
        }
        with tempfile.TemporaryDirectory(prefix="cx-soak-") as tmp:
            log_path = Path(tmp) / "server.log"
            with log_path.open("ab") as log, serve(url, port, workers, log) as proc:
                run = asyncio.run(
                    run_traffic(
                        f"http://127.0.0.1:{port}",
                        keys,
                        proc.pid,
                        seconds=seconds,
                        warmup=warmup,
                        concurrency=concurrency,
                        batch_size=batch_size,
                        sample_every=sample_every,
                        seed=seed,
                        console=console,
                    )
                )
                # Only what was logged while the traffic ran: shutdown may log on its own.
                errors = server_errors(log_path, log_path.stat().st_size)
                stored = asyncio.run(count_rows(url))
    finally:
        if not keep_database:
            asyncio.run(drop_database(server, DATABASE))
    options = {
        "minutes": minutes,
        "workers": workers,
        "concurrency": concurrency,
        "warmup": warmup,
        "preload": preload,
        "batch_size": batch_size,
        "seed": seed,
    }
    report = summarize(run, warmup=warmup, stored=stored, errors=errors, options=options)
    print_report(report, console)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if report["unexpected"] or not report["stored"]["ok"] or errors:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
