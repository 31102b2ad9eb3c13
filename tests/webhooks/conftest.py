"""A real HTTP receiver on loopback, and the app with the worker's settings for tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.platform.config import Settings
from app.webhooks import worker

# The schedule 5 s, 5 min, ... 10 h, scaled to about 4.6 s in all.
SCALE = 0.00005


@dataclass
class Receiver:
    """Records every request; answers with `statuses` in turn (the last one repeats)."""

    port: int
    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0  # seconds before answering (a receiver that hangs)
    answer_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def app(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status = self.statuses[min(len(self.seen), len(self.statuses) - 1)]
        self.seen.append((headers, body))
        if self.delay:
            await asyncio.sleep(self.delay)
        await send(
            {"type": "http.response.start", "status": status, "headers": self.answer_headers}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = self.task = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(port=free_port())
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_allow_http": True,
            "webhook_allow_private": True,
            "webhook_retry_scale": SCALE,
            "webhook_poll_seconds": 0,  # the tests drive the worker themselves
        }
    )


@pytest.fixture
async def hook_app(hook_settings: Settings, engine: AsyncEngine) -> AsyncIterator[Any]:
    from tests.conftest import TABLES

    application = create_app(hook_settings, engine=engine)
    try:
        yield application
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
            await conn.exec_driver_sql(
                "UPDATE tree_state SET version = gen_random_uuid()::text, tree_date = NULL"
            )


@pytest.fixture
async def hook_client(hook_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hook_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture
async def hook_admin(hook_app: Any) -> dict[str, str]:
    from app.keys.scopes import Scope
    from app.keys.service import create_key

    async with hook_app.state.sessionmaker() as session, session.begin():
        issued = await create_key(session, name="admin", scopes=[Scope.admin])
    return {"Authorization": f"Bearer {issued.secret_key}"}


async def drain(
    engine: AsyncEngine, settings: Settings, until: Callable[[], bool], seconds: float = 15
) -> None:
    """Run the worker's rounds until `until()` holds (or fail after `seconds`)."""
    deadline = asyncio.get_running_loop().time() + seconds
    async with httpx.AsyncClient() as client:
        while not until():
            assert asyncio.get_running_loop().time() < deadline, "the deliveries did not happen"
            if not await worker.deliver_due(engine, client, settings):
                await asyncio.sleep(0.02)
