"""Request bodies over the size limits are refused with 413 before anything is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from app.platform.limits import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES
from tests.factories import response_body
from tests.responses.conftest import assert_problem


async def _count(connection: AsyncConnection) -> int:
    return int((await connection.exec_driver_sql("SELECT count(*) FROM responses")).scalar_one())


async def test_single_post_over_one_mib_is_413(
    client: httpx.AsyncClient, setup: dict[str, str], connection: AsyncConnection
) -> None:
    body = orjson.dumps(response_body(answers={"overall": 4, "comment": "x" * MAX_BODY_BYTES}))
    r = await client.post(
        "/v1/responses",
        content=body,
        headers={**setup, "Content-Type": "application/json"},
    )
    assert_problem(r, 413, "payload-too-large")
    assert await _count(connection) == 0


async def test_batch_may_exceed_one_mib_but_not_ten(
    client: httpx.AsyncClient, setup: dict[str, str], connection: AsyncConnection
) -> None:
    comment = "y" * 1900
    items = [
        response_body(external_id=f"big-{i}", answers={"overall": 3, "comment": comment})
        for i in range(1000)
    ]
    body = orjson.dumps({"items": items})
    assert MAX_BODY_BYTES < len(body) < MAX_BATCH_BODY_BYTES
    r = await client.post(
        "/v1/responses/batch", content=body, headers={**setup, "Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["created"] == 1000

    huge = orjson.dumps({"items": items, "padding": "z" * MAX_BATCH_BODY_BYTES})
    r = await client.post(
        "/v1/responses/batch", content=huge, headers={**setup, "Content-Type": "application/json"}
    )
    assert_problem(r, 413, "payload-too-large")
    assert await _count(connection) == 1000


async def test_other_routes_keep_the_one_mib_limit(
    client: httpx.AsyncClient, setup: dict[str, str]
) -> None:
    body = orjson.dumps({"code": "X", "name": "n" * MAX_BODY_BYTES})
    r = await client.post(
        "/v1/orgs", content=body, headers={**setup, "Content-Type": "application/json"}
    )
    assert_problem(r, 413, "payload-too-large")


async def test_a_chunked_body_is_cut_off_at_the_limit(
    client: httpx.AsyncClient, setup: dict[str, str], connection: AsyncConnection
) -> None:
    chunks_sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield b'{"survey": "delivery-csat", "answers": {"comment": "'
        for _ in range(64):  # 4 MiB in 64 KiB chunks, no Content-Length
            chunks_sent += 1
            yield b"x" * 65536
        yield b'"}}'

    r = await client.post(
        "/v1/responses", content=chunks(), headers={**setup, "Content-Type": "application/json"}
    )
    assert_problem(r, 413, "payload-too-large")
    assert "content-length" not in r.request.headers
    assert await _count(connection) == 0
