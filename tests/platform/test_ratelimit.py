"""Per-key token buckets: the arithmetic, the local and Redis stores, and the 429 answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.platform.config import Settings
from app.platform.ratelimit import (
    Limit,
    LocalLimiter,
    RedisLimiter,
    Unlimited,
    build_limiter,
    retry_after,
    spend,
)
from tests.conftest import KeyFactory, bearer

PROBLEM = "application/problem+json"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_allows_burst_then_refuses_with_the_wait_for_one_token() -> None:
    tokens = 3.0
    for _ in range(3):
        decision = spend(tokens, 0.0, rate=2.0, burst=3)
        assert decision.allowed
        tokens = decision.tokens
    refused = spend(tokens, 0.0, rate=2.0, burst=3)
    assert not refused.allowed
    assert refused.wait == pytest.approx(0.5)
    assert spend(tokens, 0.5, rate=2.0, burst=3).allowed


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after(0.001) == 1
    assert retry_after(1.0) == 1
    assert retry_after(1.2) == 2


@hypothesis.settings(deadline=None)  # a stalled CI machine is not a slow example
@given(
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_no_window_admits_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = Clock()
    limiter = LocalLimiter(rate=rate, burst=burst, clock=clock)
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap
        if limiter.decide("k").allowed:
            admitted.append(clock.now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + rate * (admitted[j] - start) + 1e-6


def test_keys_have_buckets_of_their_own_and_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = LocalLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.decide("a").allowed
    assert not limiter.decide("a").allowed
    assert limiter.decide("b").allowed
    clock.now += 5
    limiter._forget_full(clock.now)
    assert limiter.buckets == {}


async def test_the_settings_choose_the_limiter(settings: Settings) -> None:
    off = settings.model_copy(update={"rate_limit_per_second": 0})
    assert isinstance(build_limiter(off), Unlimited)
    assert isinstance(build_limiter(settings), LocalLimiter)
    shared = build_limiter(settings.model_copy(update={"redis_url": LOCAL_REDIS}))
    assert isinstance(shared, RedisLimiter)
    await shared.close()


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    app: Any, client: httpx.AsyncClient, make_key: KeyFactory
) -> None:
    app.state.limiter = LocalLimiter(rate=0.5, burst=3, clock=Clock())  # a slow run refills none
    busy, calm = bearer(await make_key("admin")), bearer(await make_key("admin"))
    answers = [(await client.get("/v1/stages", headers=busy)).status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    refused = await client.get("/v1/orgs", headers=busy)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert refused.headers["retry-after"] == "2"  # 1 token at 0.5 tokens a second
    assert refused.json()["type"].endswith("/rate-limited")
    assert (await client.get("/v1/stages", headers=calm)).status_code == 200


async def test_requests_refused_before_authentication_spend_nothing(
    app: Any, client: httpx.AsyncClient, make_key: KeyFactory
) -> None:
    app.state.limiter = LocalLimiter(rate=0.01, burst=1)
    key = await make_key("admin")
    key_id = key.split("_")[1]
    wrong = bearer(f"cx_{key_id}_{'x' * 43}")
    for _ in range(3):
        assert (await client.get("/v1/stages", headers=wrong)).status_code == 401
    assert (await client.get("/v1/stages", headers=bearer(key))).status_code == 200


@pytest.fixture(params=["server", "fake"])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The Redis on 127.0.0.1:6379 (when one answers), and an in-process fake that runs Lua."""
    import fakeredis
    import redis.asyncio as redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    client: Any = fakeredis.FakeAsyncRedis()
    if request.param == "server":
        server = redis.from_url(LOCAL_REDIS, socket_connect_timeout=0.5)
        try:
            await server.ping()
            await client.aclose()
            client = server
        except (RedisConnectionError, OSError):
            await server.aclose()
    try:
        yield client
    finally:
        await client.aclose()


async def test_workers_sharing_redis_share_one_bucket(redis_client: Any) -> None:
    prefix = f"cx:test:{uuid.uuid4().hex}:"
    # Two limiters on one store stand for two worker processes.
    workers = [RedisLimiter(redis_client, rate=0.01, burst=5, prefix=prefix) for _ in range(2)]
    decisions = [await workers[i % 2].decide("k") for i in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert decisions[-1].wait > 0
    assert (await workers[0].decide("other")).allowed


async def test_redis_out_of_reach_falls_back_to_local_buckets() -> None:
    import redis.asyncio as redis

    unreachable = redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    limiter = RedisLimiter(unreachable, rate=0.01, burst=2)
    try:
        outcomes = [(await limiter.decide("k")).allowed for _ in range(3)]
    finally:
        await limiter.close()
    assert outcomes == [True, True, False]


async def test_a_key_with_its_own_rate_gets_its_own_bucket(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    app.state.limiter = LocalLimiter(rate=0.5, burst=2, clock=Clock())  # a frozen clock
    r = await client.post(
        "/v1/keys", json={"name": "shop", "scopes": ["admin"], "rate": 1000}, headers=admin
    )
    assert r.status_code == 201, r.text
    assert (r.json()["rate"], r.json()["burst"]) == (1000.0, 2000)  # burst: twice the rate
    shop = bearer(r.json()["key"])
    r = await client.post(
        "/v1/keys",
        json={"name": "tight", "scopes": ["admin"], "rate": 1, "burst": 1},
        headers=admin,
    )
    tight = bearer(r.json()["key"])
    # The touchpoint posts a burst far over the service's default of 2 ...
    statuses = {(await client.get("/v1/stages", headers=shop)).status_code for _ in range(50)}
    assert statuses == {200}
    # ... a key with a smaller bucket of its own is held to it, and one without to the default.
    assert (await client.get("/v1/stages", headers=tight)).status_code == 200
    refused = await client.get("/v1/stages", headers=tight)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    listed = {k["name"]: k for k in (await client.get("/v1/keys", headers=shop)).json()["items"]}
    assert (listed["tight"]["rate"], listed["tight"]["burst"]) == (1.0, 1)
    assert (listed["test"]["rate"], listed["test"]["burst"]) == (None, None)


async def test_redis_buckets_take_the_key_s_own_limit(redis_client: Any) -> None:
    limiter = RedisLimiter(redis_client, rate=0.01, burst=1, prefix=f"cx:test:{uuid.uuid4()}:")
    own = Limit(rate=0.01, burst=3)
    outcomes = [(await limiter.decide("k", own)).allowed for _ in range(4)]
    assert outcomes == [True, True, True, False]
    assert [(await limiter.decide("d")).allowed for _ in range(2)] == [True, False]
    # A burst of its own alone keeps the limiter's rate.
    local = LocalLimiter(rate=0.01, burst=1, clock=Clock())
    assert [local.decide("b", Limit(None, 2)).allowed for _ in range(3)] == [True, True, False]
    assert local.decide("b", Limit(None, 2)).wait == pytest.approx(100.0)
