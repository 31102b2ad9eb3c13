"""Verified keys are kept per worker and dropped when the database announces a change: a key
revoked anywhere stops working within a second, also when the listening connection is lost.

The app runs its start-up (the listener is started there) on committed transactions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.keys import cache
from app.keys.scopes import Scope
from app.keys.service import create_key
from tests.conftest import bearer

DEADLINE = 1.0


@pytest.fixture
async def running(committed_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The committed app started (its key listener listening), and a client."""
    async with committed_app.router.lifespan_context(committed_app):
        for _ in range(100):
            if committed_app.state.keys.listening:
                break
            await asyncio.sleep(0.05)
        assert committed_app.state.keys.listening
        transport = httpx.ASGITransport(app=committed_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def _key(app: Any) -> tuple[str, dict[str, str]]:
    async with app.state.sessionmaker() as session, session.begin():
        issued = await create_key(session, name="t", scopes=[Scope.responses_read])
    return issued.key.id, bearer(issued.secret_key)


async def _status(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await client.get("/v1/responses", headers=headers)).status_code


async def _refused_within(client: httpx.AsyncClient, headers: dict[str, str]) -> float:
    """Seconds until the key gets a 401 (fails the test after DEADLINE)."""
    start = time.monotonic()
    while (status := await _status(client, headers)) != 401:
        assert status == 200
        assert time.monotonic() - start < DEADLINE, "a revoked key still works"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def _lookups(
    monkeypatch: pytest.MonkeyPatch, after: Callable[[Any], None] | None = None
) -> list[str]:
    """The keys looked up in the database from now on, one entry per lookup (`after`: run on
    each principal found, before the cache sees it)."""
    ids: list[str] = []
    authenticate = cache.authenticate

    async def counted(*args: Any, **kwargs: Any) -> Any:
        ids.append(kwargs["raw_key"].split("_")[1])
        found = await authenticate(*args, **kwargs)
        if after is not None:
            after(found)
        return found

    monkeypatch.setattr(cache, "authenticate", counted)
    return ids


async def test_a_verified_key_is_served_from_the_cache(
    running: httpx.AsyncClient, committed_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, headers = await _key(committed_app)
    lookups = _lookups(monkeypatch)
    for _ in range(5):
        assert await _status(running, headers) == 200
    assert len(lookups) == 1
    # A wrong secret under a cached key id is not served from the cache: the database says 401.
    wrong = {"Authorization": headers["Authorization"][:-4] + "AAAA"}
    assert await _status(running, wrong) == 401
    assert len(lookups) == 2


@pytest.mark.parametrize("how", ["http", "sql"])
async def test_a_revoked_key_stops_working_within_a_second(
    running: httpx.AsyncClient,
    committed_app: Any,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    how: str,
) -> None:
    key_id, headers = await _key(committed_app)
    assert await _status(running, headers) == 200  # now cached
    if how == "http":
        r = await running.delete(f"/v1/keys/{key_id}", headers=committed_admin)
        assert r.status_code == 200, r.text
    else:  # by hand, outside the service
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": key_id}
            )
    await _refused_within(running, headers)


async def test_without_its_listener_the_cache_serves_nothing(
    running: httpx.AsyncClient, committed_app: Any, engine: AsyncEngine
) -> None:
    key_id, headers = await _key(committed_app)
    assert await _status(running, headers) == 200
    async with engine.begin() as conn:
        ended = await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": cache.APPLICATION_NAME},
        )
        assert ended.all() == [(True,)]
    # The worker notices the lost connection (at the latest at its next ping) and stops
    # trusting what it kept; a revocation meanwhile, which no one announces to it, holds.
    for _ in range(200):
        if not committed_app.state.keys.listening:
            break
        await asyncio.sleep(0.01)
    assert not committed_app.state.keys.listening
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": key_id}
        )
    assert await _status(running, headers) == 401
    # It listens again, with nothing kept from before.
    for _ in range(300):
        if committed_app.state.keys.listening:
            break
        await asyncio.sleep(0.01)
    assert committed_app.state.keys.listening
    assert await _status(running, headers) == 401


def test_a_lookup_that_began_before_a_drop_is_not_kept() -> None:
    from app.keys.service import Principal

    keys = cache.KeyCache()
    keys.open()
    principal = Principal(key_id="abc", name="t", scopes=frozenset({Scope.admin}))
    before = keys.generation
    keys.drop("abc")  # the key changed while the lookup ran
    keys.put("s" * 20, principal, generation=before)
    assert keys.get("abc", "s" * 20) is None
    keys.put("s" * 20, principal, generation=keys.generation)
    assert keys.get("abc", "s" * 20) == principal
    assert keys.get("abc", "t" * 20) is None
    keys.drop("*")
    assert keys.get("abc", "s" * 20) is None


def test_the_cache_serves_only_while_pings_vouch_for_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.keys.service import Principal

    now = [1000.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])
    keys = cache.KeyCache()
    keys.open()
    principal = Principal(key_id="abc", name="t", scopes=frozenset({Scope.admin}))
    keys.put("s" * 20, principal, generation=keys.generation)
    now[0] += cache.TRUST_SECONDS - 0.01
    assert keys.get("abc", "s" * 20) == principal
    # No ping came back for longer than the trust window: a connection that died silently.
    now[0] += 0.02
    assert keys.get("abc", "s" * 20) is None
    keys.vouch(now[0] + cache.TRUST_SECONDS)  # a ping came back
    assert keys.get("abc", "s" * 20) == principal
    assert cache.TRUST_SECONDS + cache.PING_SECONDS <= 1.0


async def test_a_key_changed_during_its_lookup_is_not_kept(
    running: httpx.AsyncClient, committed_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, headers = await _key(committed_app)
    # The key is announced as changed while its lookup runs.
    lookups = _lookups(monkeypatch, after=lambda found: committed_app.state.keys.drop(found.key_id))
    assert await _status(running, headers) == 200
    assert await _status(running, headers) == 200
    assert len(lookups) == 2  # the first lookup was not kept
