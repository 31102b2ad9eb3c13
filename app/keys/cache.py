"""Verified keys kept in each worker, dropped the moment the database announces a change.

Every change to `api_keys` (a revocation, any update, a delete; '*' for a truncate) is announced
on the channel `cx_keys` when its transaction commits (migration 5c2d8e41a7b9). `listen()` holds
one connection per worker on that channel and drops the announced key; the cache serves only
while that connection is known to be alive (pinged four times a second, trusted for 0.75 s from
the last ping that came back), so a key revoked anywhere (HTTP, the command line, SQL) stops
working in this worker within a second, even when the notification is lost with a connection
that died silently. Without a listener (a test app without lifespan, a database away)
nothing is cached and every request looks its key up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.keys.service import KEY_PATTERN, Principal, authenticate, hash_secret
from app.platform.db import connect_driver

logger = logging.getLogger("cx_survey.keys")

CHANNEL = "cx_keys"
APPLICATION_NAME = "cx-survey keys"  # the listening connection, as pg_stat_activity shows it
TTL_SECONDS = 300.0  # a bound on what no notification covers (an org's name, say)
PING_SECONDS = 0.25
# The cache serves only this long after the last ping that came back was sent: a connection that
# dies silently (no close, no error) cannot keep a revoked key working for a second.
TRUST_SECONDS = 0.75


@dataclass(frozen=True, slots=True)
class _Entry:
    secret_hash: bytes
    principal: Principal
    until: float


class KeyCache:
    """Principals by key id, each with its secret's hash (compared in constant time)."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._generation = 0  # bumped by every drop: a lookup older than a drop is not kept
        self._trusted_until = 0.0
        self.listening = False

    def get(self, key_id: str, secret: str) -> Principal | None:
        now = time.monotonic()
        if not self.listening or now > self._trusted_until:
            return None
        entry = self._entries.get(key_id)
        if entry is None or entry.until < now:
            return None
        if not hmac.compare_digest(hash_secret(secret), entry.secret_hash):
            return None  # the database decides (401)
        return entry.principal

    @property
    def generation(self) -> int:
        return self._generation

    def put(self, secret: str, principal: Principal, *, generation: int) -> None:
        """Keep a principal looked up while the cache stood at `generation`, unless a key
        changed since (that lookup may have read the key before the change)."""
        if self.listening and generation == self._generation:
            until = time.monotonic() + TTL_SECONDS
            self._entries[principal.key_id] = _Entry(hash_secret(secret), principal, until)

    def drop(self, key_id: str) -> None:
        self._generation += 1
        if key_id == "*":
            self._entries.clear()
        else:
            self._entries.pop(key_id, None)

    def vouch(self, until: float) -> None:
        """The listening connection was alive (every announcement before was received): serve
        until `until` (a monotonic time) unless vouched for again."""
        self._trusted_until = max(self._trusted_until, until)

    def open(self) -> None:
        self.drop("*")
        self.listening = True
        self.vouch(time.monotonic() + TRUST_SECONDS)

    def close(self) -> None:
        self.listening = False
        self._trusted_until = 0.0
        self.drop("*")


async def verify(
    cache: KeyCache, sessionmaker: async_sessionmaker[AsyncSession], raw_key: str
) -> Principal:
    """The principal of a presented key: from the cache, else looked up (and kept)."""
    match = KEY_PATTERN.fullmatch(raw_key)
    if match is not None:
        found = cache.get(*match.groups())
        if found is not None:
            return found
    generation = cache.generation
    async with sessionmaker() as session, session.begin():
        principal = await authenticate(session, raw_key=raw_key)
    assert match is not None  # authenticate refuses a malformed key
    cache.put(match.group(2), principal, generation=generation)
    return principal


async def listen(cache: KeyCache, engine: AsyncEngine, *, stop: asyncio.Event) -> None:
    """Keep `cache` in step with `api_keys` until `stop`; reconnect after a failure."""
    while not stop.is_set():
        conn: Any = None
        try:
            conn = await connect_driver(engine, name=APPLICATION_NAME)
            lost = asyncio.Event()

            def on_lost(_conn: Any, lost: asyncio.Event = lost) -> None:
                cache.close()  # at once: nothing announces a change from now on
                lost.set()

            conn.add_termination_listener(on_lost)
            await conn.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: cache.drop(payload))
            cache.open()
            while not (stop.is_set() or lost.is_set()):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PING_SECONDS)
                if not (stop.is_set() or lost.is_set()):
                    sent = time.monotonic()
                    await asyncio.wait_for(conn.execute("SELECT 1"), TRUST_SECONDS)
                    cache.vouch(sent + TRUST_SECONDS)
        except Exception as error:  # the database may be away: look keys up meanwhile
            logger.warning("key notifications lost: %s", type(error).__name__)
        finally:
            cache.close()
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PING_SECONDS)
