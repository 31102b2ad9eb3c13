"""Deliveries survive the service: `cx-survey serve` killed with SIGKILL after a change committed
and before its event was sent delivers it after the next start, with the same webhook-id."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from tests.conftest import _plain, bearer
from tests.factories import response_body, standard_setup
from tests.scratch import cli_env, cli_key, scratch_database, served, until
from tests.webhooks.conftest import Receiver, free_port


@pytest.fixture
async def database(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url) as url:
        yield url


async def test_sigkill_between_commit_and_send_delivers_after_restart(
    database: str, tmp_path: Path
) -> None:
    receiver = Receiver(port=free_port())
    await receiver.start()
    try:
        settings = {"webhook_allow_http": "true", "webhook_allow_private": "true"}
        # The first server's worker looks once, at start, then not for an hour: what is
        # committed after that start is in the outbox, unsent, when the process dies.
        sleepy = cli_env(database, webhook_poll_seconds="3600", **settings)
        key = await cli_key(sleepy, tmp_path, "admin")
        headers = bearer(key)
        async with served(sleepy, tmp_path, workers=1) as first:
            async with httpx.AsyncClient(base_url=first.base_url, timeout=30) as client:
                await standard_setup(client, headers)
                r = await client.post(
                    "/v1/webhooks",
                    json={"url": receiver.url, "events": ["response.created"]},
                    headers=headers,
                )
                assert r.status_code == 201, r.text
                secret = r.json()["secret"]
                when = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
                r = await client.post(
                    "/v1/responses", json=response_body(occurred_at=when), headers=headers
                )
                assert r.status_code == 201, r.text
                response_id = r.json()["id"]
            os.killpg(first.process.pid, signal.SIGKILL)
            await first.process.wait()
        assert receiver.seen == []
        conn = await asyncpg.connect(_plain(database))
        try:
            msg_id = await conn.fetchval("SELECT msg_id FROM webhook_deliveries")
            assert await conn.fetchval("SELECT status FROM webhook_deliveries") == "pending"
        finally:
            await conn.close()
        prompt = cli_env(database, webhook_poll_seconds="0.2", **settings)
        async with served(prompt, tmp_path, workers=1):
            assert await until(lambda: len(receiver.seen) >= 1, 30)
        headers_seen, body = receiver.seen[0]
        assert headers_seen["webhook-id"] == msg_id
        payload = Verifier(secret).verify(body, headers_seen)
        assert payload["data"]["id"] == response_id
        assert len(receiver.seen) == 1
    finally:
        await receiver.stop()
