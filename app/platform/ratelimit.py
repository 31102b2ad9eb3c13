"""Per-key rate limits: a token bucket per API key, in Redis when configured, else per process.

A key holds at most `burst` tokens and earns `rate` tokens a second; each request spends one,
and a request finding less than one token is refused with 429 and the seconds until it would
have one. With `CX_REDIS_URL` every worker process shares the buckets (one atomic script per
request, Redis's own clock), so the limit is exact across processes. Without it each process
keeps its own buckets: with W workers a key may get up to W times the rate (see
docs/reliability.md). No database write happens on any path.

A key may carry its own `rate` and `burst` (`cx-survey keys create --rate N --burst M`): a
touchpoint posting bursts gets a bigger bucket than an interactive client. Keys without them
use the settings.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any, Protocol

from app.platform.config import Settings
from app.platform.errors import TooManyRequests
from app.platform.metrics import RATE_LIMITED

logger = logging.getLogger("cx_survey.ratelimit")

# Beyond this many buckets a process forgets the full ones (keys idle long enough to be at burst:
# forgetting them changes nothing).
_MAX_BUCKETS = 10_000
KEYS = "This API key"
ADDRESSES = "This address"
# After Redis fails, how long to use the local buckets before trying Redis again.
_REDIS_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    tokens: float
    wait: float  # seconds until one token is there (0 when allowed)


def spend(tokens: float, elapsed: float, *, rate: float, burst: int) -> Decision:
    """Refill a bucket holding `tokens` for `elapsed` seconds, then try to spend one token."""
    tokens = min(float(burst), tokens + max(elapsed, 0.0) * rate)
    if tokens >= 1.0:
        return Decision(True, tokens - 1.0, 0.0)
    return Decision(False, tokens, (1.0 - tokens) / rate)


def retry_after(wait: float) -> int:
    """Whole seconds for `Retry-After`: never 0, which would invite an immediate retry."""
    return max(1, math.ceil(wait))


@dataclass(frozen=True)
class Limit:
    """A key's own limit; a part it leaves None is the limiter's default."""

    rate: float | None
    burst: int | None

    def over(self, rate: float, burst: int) -> tuple[float, int]:
        return (
            self.rate if self.rate is not None else rate,
            self.burst if self.burst is not None else burst,
        )


class Limiter(Protocol):
    async def check(self, key_id: str, own: Limit | None = None) -> None: ...

    async def close(self) -> None: ...


class Unlimited:
    """CX_RATE_LIMIT_PER_SECOND=0: every request passes."""

    async def check(self, key_id: str, own: Limit | None = None) -> None:
        return None

    async def close(self) -> None:
        return None


class LocalLimiter:
    """Buckets in this process's memory."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        subject: str = KEYS,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.subject = subject
        # key id -> (tokens, stamp, seconds to refill the bucket from empty)
        self.buckets: dict[str, tuple[float, float, float]] = {}

    def decide(self, key_id: str, own: Limit | None = None) -> Decision:
        rate, burst = own.over(self.rate, self.burst) if own else (self.rate, self.burst)
        now = self.clock()
        tokens, stamp, _ = self.buckets.get(key_id, (float(burst), now, 0.0))
        decision = spend(tokens, now - stamp, rate=rate, burst=burst)
        if key_id not in self.buckets and len(self.buckets) >= _MAX_BUCKETS:
            self._forget_full(now)
        self.buckets[key_id] = (decision.tokens, now, burst / rate)
        return decision

    def _forget_full(self, now: float) -> None:
        for key_id, (_, stamp, refill) in list(self.buckets.items()):
            if now - stamp >= refill:
                del self.buckets[key_id]

    async def check(self, key_id: str, own: Limit | None = None) -> None:
        refuse(self.decide(key_id, own), subject=self.subject)

    async def close(self) -> None:
        return None


# KEYS[1] the bucket; ARGV rate, burst. Redis's clock, so that every process agrees on time.
_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(wait)}
"""


class RedisLimiter:
    """Buckets in Redis, shared by every process; the local buckets stand in while it is down."""

    def __init__(
        self,
        client: Any,
        *,
        rate: float,
        burst: int,
        prefix: str = "cx:ratelimit:",
        subject: str = KEYS,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self.subject = subject
        self.client = client
        self.script = self.client.register_script(_BUCKET_SCRIPT)
        self.fallback = LocalLimiter(rate=rate, burst=burst, subject=subject)
        self.down_until = 0.0

    async def decide(self, key_id: str, own: Limit | None = None) -> Decision:
        if time.monotonic() < self.down_until:
            return self.fallback.decide(key_id, own)
        rate, burst = own.over(self.rate, self.burst) if own else (self.rate, self.burst)
        try:
            allowed, tokens, wait = await self.script(
                keys=[self.prefix + key_id], args=[rate, burst]
            )
        except Exception as exc:  # any Redis failure: limit locally rather than fail requests
            logger.warning(
                "rate limit store unreachable, limiting per process for %.0f s: %s",
                _REDIS_BACKOFF_SECONDS,
                type(exc).__name__,
            )
            self.down_until = time.monotonic() + _REDIS_BACKOFF_SECONDS
            return self.fallback.decide(key_id, own)
        return Decision(bool(int(allowed)), float(tokens), float(wait))

    async def check(self, key_id: str, own: Limit | None = None) -> None:
        refuse(await self.decide(key_id, own), subject=self.subject)

    async def close(self) -> None:
        await self.client.aclose()


def refuse(decision: Decision, *, subject: str = KEYS) -> None:
    """Raise 429 for a refused decision."""
    if not decision.allowed:
        RATE_LIMITED.inc()
        seconds = retry_after(decision.wait)
        raise TooManyRequests(
            f"{subject} is over its rate limit; retry in {seconds} s.", retry_after=seconds
        )


def build_limiter(settings: Settings, *, public: bool = False) -> Limiter:
    """The limiter the settings ask for: of API keys, or (`public`) of client addresses on
    the public routes."""
    if public:
        rate, burst = settings.public_rate_limit_per_second, settings.public_rate_limit_burst
        prefix, subject = "cx:public:", ADDRESSES
    else:
        rate, burst = settings.rate_limit_per_second, settings.rate_limit_burst
        prefix, subject = "cx:ratelimit:", KEYS
    if rate <= 0:
        return Unlimited()
    if settings.redis_url:
        import redis.asyncio as redis

        client = redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return RedisLimiter(client, rate=rate, burst=burst, prefix=prefix, subject=subject)
    return LocalLimiter(rate=rate, burst=burst, subject=subject)


def client_address(
    peer: str | None, forwarded_for: list[str], trusted: Sequence[IPv4Network | IPv6Network]
) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest
    address in X-Forwarded-For (read from the right) that is not a trusted proxy itself.

    `forwarded_for`: every X-Forwarded-For header of the request, in order.
    """
    address = peer or "unknown"
    if not trusted or not _trusted(address, trusted):
        return address
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ip_address(hop)
        except ValueError:
            return address  # a garbled chain: believe nothing of it beyond the proxy
        address = hop
        if not _trusted(hop, trusted):
            return hop
    return address


def _trusted(address: str, trusted: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
