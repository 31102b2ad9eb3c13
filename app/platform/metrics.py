"""Prometheus metrics: requests and durations, ingest outcomes, index latency, pool usage.

`GET /metrics` (admin scope, platform/health.py) serves them in the text exposition format. Under
several worker processes (`cx-survey serve` sets PROMETHEUS_MULTIPROC_DIR) each worker writes
its samples to files there, and a scrape, answered by any one worker, adds up all of them.
"""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from sqlalchemy.ext.asyncio import AsyncEngine

# Whether the metrics live in files shared by worker processes. prometheus_client decides it
# once, when first imported, from PROMETHEUS_MULTIPROC_DIR: ask it, not the variable now.
MULTIPROCESS = values.ValueClass is not values.MutexValue
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "cx_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "cx_http_request_duration_seconds",
    "Time from request to the end of the answer, by method and route template.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
INGESTED = Counter(
    "cx_ingest_items_total",
    "Responses posted, by way in (single, batch, invitation) and outcome (created, duplicate, "
    "conflict, invalid, gone), as judged by the service; a single post whose body breaks the "
    "schema is only in cx_http_requests_total (status 422).",
    ["via", "outcome"],
)
INDEX_SECONDS = Histogram(
    "cx_index_query_seconds",
    "Time to compute an index or insight answer, by kind (index, children, series, "
    "pain_points, drivers).",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
POOL_CONNECTIONS = Gauge(
    "cx_db_pool_connections",
    "Database connections of the pools (all workers), by state (in_use, idle).",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_CAPACITY = Gauge(
    "cx_db_pool_capacity",
    "Connections the pools (all workers) may open: pool size plus overflow.",
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter("cx_rate_limited_total", "Requests refused with 429.")
IDEMPOTENT_REPLAYS = Counter(
    "cx_idempotent_replays_total", "POST requests answered from a stored Idempotency-Key answer."
)


def observe_pool(engine: AsyncEngine) -> None:
    """Record this process's pool usage (cheap: counters the pool keeps anyway)."""
    pool = engine.pool
    POOL_CONNECTIONS.labels("in_use").set(getattr(pool, "checkedout", lambda: 0)())
    POOL_CONNECTIONS.labels("idle").set(getattr(pool, "checkedin", lambda: 0)())


def exposition() -> bytes:
    """Every metric in the text format, summed over worker processes where there are several."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
