"""GET /metrics: admin only, Prometheus text, counts what happened, sums over worker processes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KeyFactory, bearer
from tests.factories import response_body, standard_setup
from tests.scratch import (
    cli_env,
    cli_key,
    free_port,
    scratch_database,
    served,
    throwaway_postgres,
)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a scrape (summed when several match)."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_metrics_need_the_admin_scope(
    client: httpx.AsyncClient, make_key: KeyFactory
) -> None:
    assert (await client.get("/metrics")).status_code == 401
    reader = bearer(await make_key("indices:read", "responses:read"))
    assert (await client.get("/metrics", headers=reader)).status_code == 403


async def test_metrics_count_requests_ingest_outcomes_index_queries_and_the_pool(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await standard_setup(client, admin)
    created = sample("cx_ingest_items_total", via="single", outcome="created")
    conflicts = sample("cx_ingest_items_total", via="single", outcome="conflict")
    batch_invalid = sample("cx_ingest_items_total", via="batch", outcome="invalid")
    answered = sample(
        "cx_http_requests_total", method="GET", route="/v1/responses/{response_id}", status="200"
    )
    index_count = sample("cx_index_query_seconds_count", kind="index")

    first = await client.post("/v1/responses", json=response_body(), headers=admin)
    assert first.status_code == 201
    other = response_body(answers={"overall": 1})
    assert (await client.post("/v1/responses", json=other, headers=admin)).status_code == 409
    items = [response_body(external_id="b-1"), response_body(external_id="b-2", org="NOWHERE")]
    batch = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
    assert batch.json()["counts"]["invalid"] == 1
    response_id = first.json()["id"]
    assert (await client.get(f"/v1/responses/{response_id}", headers=admin)).status_code == 200
    period = {"period": "2026-11"}
    index = await client.get("/v1/orgs/KR/index", params=period, headers=admin)
    assert index.status_code == 200

    scrape = await client.get("/metrics", headers=admin)
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    assert scraped(text, "cx_ingest_items_total", via="single", outcome="created") == created + 1
    assert scraped(text, "cx_ingest_items_total", via="single", outcome="conflict") == conflicts + 1
    assert scraped(text, "cx_ingest_items_total", via="batch", outcome="invalid") == (
        batch_invalid + 1
    )
    route = "/v1/responses/{response_id}"
    assert scraped(text, "cx_http_requests_total", method="GET", route=route, status="200") == (
        answered + 1
    )
    assert scraped(text, "cx_index_query_seconds_count", kind="index") == index_count + 1
    assert scraped(text, "cx_db_pool_capacity") > 0
    assert "cx_db_pool_connections" in text
    # Route templates only: no id, code or customer data in a label.
    assert f'/v1/responses/{response_id}"' not in text
    assert "customer-42" not in text


async def test_an_idempotent_replay_is_counted_under_its_route(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await standard_setup(client, admin)
    labels = {"method": "POST", "route": "/v1/responses", "status": "201"}
    before = sample("cx_http_requests_total", **labels)
    replays = sample("cx_idempotent_replays_total")
    headers = {**admin, "Idempotency-Key": "m-1"}
    for _ in range(2):
        assert (
            await client.post("/v1/responses", json=response_body(), headers=headers)
        ).status_code == 201
    assert sample("cx_http_requests_total", **labels) == before + 2
    assert sample("cx_idempotent_replays_total") == replays + 1


async def test_unknown_methods_and_paths_do_not_grow_the_label_set(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for i in range(3):
        await client.request("PROPFIND", f"/nowhere/{i}", headers=admin)
    text = (await client.get("/metrics", headers=admin)).text
    assert "/nowhere/" not in text
    assert "PROPFIND" not in text


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_scrape_sums_every_worker_process(
    server_url: str, tmp_path: Path, workers: int
) -> None:
    async with scratch_database(server_url) as url:
        env = cli_env(url, fold_interval_seconds="0")
        headers = bearer(await cli_key(env, tmp_path, "admin", name="ops"))
        async with served(env, tmp_path, workers=workers) as api:
            requests = 40

            async def one() -> int:
                # A client each: new connections spread over the workers.
                async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as client:
                    return (await client.get("/v1/stages", headers=headers)).status_code

            assert await asyncio.gather(*(one() for _ in range(requests))) == [200] * requests
            count = 0.0
            async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as client:
                # A worker counts a request just after its last byte is sent: scrape again for
                # a moment until the slowest has counted.
                for _ in range(100):
                    text = (await client.get("/metrics", headers=headers)).text
                    count = scraped(
                        text,
                        "cx_http_requests_total",
                        method="GET",
                        route="/v1/stages",
                        status="200",
                    )
                    if count >= requests:
                        break
                    await asyncio.sleep(0.1)
            assert count == requests, api.log()[-2000:]


async def test_the_metrics_port_answers_without_a_key_while_the_database_is_away(
    tmp_path: Path,
) -> None:
    async with throwaway_postgres() as server:
        url = server.database_url("postgres")
        port = free_port()
        env = cli_env(url, fold_interval_seconds="0", metrics_port=str(port))
        headers = bearer(await cli_key(env, tmp_path, "admin", name="ops"))
        async with served(env, tmp_path, workers=2) as api:
            async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as client:
                for _ in range(5):
                    assert (await client.get("/v1/stages", headers=headers)).status_code == 200
                await asyncio.to_thread(server.stop, "fast")
                assert (await client.get("/readyz")).status_code == 503
                assert (await client.get("/metrics", headers=headers)).status_code == 503
                async with httpx.AsyncClient(timeout=60) as scraper:
                    scrape = await scraper.get(f"http://127.0.0.1:{port}/metrics")
            assert scrape.status_code == 200, api.log()[-2000:]
            stages = scraped(
                scrape.text, "cx_http_requests_total", method="GET", route="/v1/stages"
            )
            assert stages == 5
            assert (
                scraped(scrape.text, "cx_http_requests_total", route="/readyz", status="503") == 1
            )


async def test_a_client_that_leaves_before_any_answer_is_499_not_500(
    app: Any, make_key: KeyFactory
) -> None:
    key = await make_key("admin")
    labels = {"method": "POST", "route": "/v1/responses"}
    before = {s: sample("cx_http_requests_total", **labels, status=s) for s in ("499", "500")}
    headers = [
        (b"authorization", f"Bearer {key}".encode()),
        (b"idempotency-key", b"left"),
        (b"content-type", b"application/json"),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/responses",
        "raw_path": b"/v1/responses",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("test", 80),
    }
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent == []
    assert sample("cx_http_requests_total", **labels, status="499") == before["499"] + 1
    assert sample("cx_http_requests_total", **labels, status="500") == before["500"]
