"""Over a real server: a client that sends its whole body before reading still gets the 413."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.conftest import bearer
from tests.scratch import cli_env, cli_key, scratch_database, served


async def test_an_oversize_body_gets_413_not_a_reset_connection(
    server_url: str, tmp_path: Path
) -> None:
    async with scratch_database(server_url) as url:
        env = cli_env(url, fold_interval_seconds="0")
        key = await cli_key(env, tmp_path, "responses:write")
        headers = {**bearer(key), "Content-Type": "application/json"}
        body = b'{"items": "' + b"x" * (3 * 1024 * 1024 // 2) + b'"}'  # 1.5 MiB, declared
        async with served(env, tmp_path, workers=1) as api:
            statuses = []
            async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as client:
                for _ in range(20):  # httpx writes the whole body before it reads the answer
                    r = await client.post("/v1/responses", content=body, headers=headers)
                    statuses.append(r.status_code)
                    assert r.headers["content-type"] == "application/problem+json"
                # The connection was read clean: it serves the next request.
                ok = await client.get("/livez")
            assert statuses == [413] * 20
            assert ok.status_code == 200
            # Far over the limit (20 MiB, declared or chunked): still the 413, never a reset.
            huge = b'{"items": "' + b"x" * (20 * 1024 * 1024) + b'"}'

            async def chunks() -> AsyncIterator[bytes]:
                for start in range(0, len(huge), 1024 * 1024):
                    yield huge[start : start + 1024 * 1024]

            async with httpx.AsyncClient(base_url=api.base_url, timeout=60) as client:
                for content in (huge, chunks()):
                    r = await client.post("/v1/responses", content=content, headers=headers)
                    assert r.status_code == 413, r.text
                    assert r.json()["type"].endswith("/payload-too-large")

            # A client that waits for "100 Continue" is refused before it sends the body.
            host, port = api.base_url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                (
                    "POST /v1/responses HTTP/1.1\r\nHost: test\r\n"
                    f"Authorization: {headers['Authorization']}\r\n"
                    "Content-Type: application/json\r\nExpect: 100-continue\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 30)
            writer.close()
            assert status_line.startswith(b"HTTP/1.1 413"), status_line
