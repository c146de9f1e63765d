"""Rate limits of client frames: the token bucket on Redis and in memory, one
socket's limiter, and the limits as a client of a real daphne sees them."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from django.conf import settings as django_settings

from realtime import limits
from realtime.limits import (
    FrameLimiter,
    TokenBucket,
    family_of,
    memory_buckets,
    rate_limit_take,
    redis_client_close,
    redis_key,
)

from .conftest import access_token, bearer, connected, expect_close, open_ws, recv_json, ws_url


@pytest.fixture(params=["redis", "memory"])
async def backend(request, settings):
    """Run a test against the Redis script and the in-memory table alike."""
    if request.param == "redis":
        if not django_settings.REDIS_URL:
            pytest.skip("needs REDIS_URL (the real Redis)")
    else:
        settings.REDIS_URL = ""
        memory_buckets.clear()
    yield request.param
    if request.param == "redis":
        await redis_client_close()


def test_family_is_the_prefix_before_the_dot():
    assert [family_of(t) for t in ("chat.send", "playlist.op.apply", "ping")] == ["chat", "playlist", "ping"]


async def test_burst_then_refusal_with_accurate_retry_after(backend):
    decisions = [await rate_limit_take(key="t1:u1:demo", rate=10.0, burst=3) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert all(d.retry_after == 0 for d in decisions[:3])
    # Empty bucket at 10 tokens/s: one token is at most 0.1 s away.
    assert 0.05 < decisions[3].retry_after <= 0.1

    await asyncio.sleep(decisions[3].retry_after + 0.02)
    assert (await rate_limit_take(key="t1:u1:demo", rate=10.0, burst=3)).allowed


async def test_bucket_refills_over_time_up_to_its_burst(backend):
    for _ in range(5):
        assert (await rate_limit_take(key="t1:u1:refill", rate=20.0, burst=5)).allowed
    assert not (await rate_limit_take(key="t1:u1:refill", rate=20.0, burst=5)).allowed

    await asyncio.sleep(0.6)  # 12 tokens' worth of time, capped at the burst of 5

    allowed = [(await rate_limit_take(key="t1:u1:refill", rate=20.0, burst=5)).allowed for _ in range(7)]
    assert allowed[:5] == [True] * 5
    assert allowed[6] is False


async def test_buckets_are_independent_per_key(backend):
    assert (await rate_limit_take(key="t1:u1:solo", rate=1.0, burst=1)).allowed
    assert not (await rate_limit_take(key="t1:u1:solo", rate=1.0, burst=1)).allowed
    assert (await rate_limit_take(key="t2:u1:solo", rate=1.0, burst=1)).allowed


async def test_invalid_limits_are_refused(backend):
    with pytest.raises(ValueError):
        await rate_limit_take(key="t1:u1:bad", rate=0, burst=1)


@pytest.mark.redis
async def test_redis_bucket_is_one_key_that_carries_the_tenant_and_expires():
    try:
        await rate_limit_take(key="t7:u9:chat", rate=2.0, burst=4)
    finally:
        await redis_client_close()
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    try:
        key = redis_key("rl", "t7:u9:chat")
        assert key.startswith(f"{django_settings.CACHES['default']['KEY_PREFIX']}:ws:rl:t7:")
        state = client.hgetall(key)
        assert float(state[b"tokens"]) == pytest.approx(3.0, abs=0.05)
        # Refilled from 3 to 4 tokens at 2/s in 0.5 s, plus a second of margin.
        assert 0 < client.pttl(key) <= 1500
    finally:
        client.close()


def test_token_bucket_arithmetic():
    bucket = TokenBucket(rate=4.0, burst=2, now=100.0)
    assert bucket.take(100.0).allowed
    assert bucket.take(100.0).allowed
    refused = bucket.take(100.0)
    assert (refused.allowed, refused.retry_after) == (False, 0.25)
    assert not bucket.take(100.2).allowed
    assert bucket.take(100.25).allowed
    assert bucket.take(200.0).allowed and bucket.tokens == 1.0  # capped at burst


async def test_limiter_applies_the_socket_bucket_then_the_user_bucket(backend):
    limits = {"default": (100.0, 100), "ping": (1.0, 2)}
    user_limits = {"default": (100.0, 100), "ping": (1.0, 3)}
    first = FrameLimiter(tenant_id=1, user_id=5, limits=limits, user_limits=user_limits, close_after=10)
    second = FrameLimiter(tenant_id=1, user_id=5, limits=limits, user_limits=user_limits, close_after=10)

    assert [(await first.admit("ping")).allowed for _ in range(3)] == [True, True, False]
    # The user's shared bucket had 3: the second socket gets the last one.
    assert [(await second.admit("ping")).allowed for _ in range(2)] == [True, False]
    # Families not listed share the default bucket, and it is untouched.
    assert (await first.admit("anything")).allowed


async def test_a_family_without_a_user_bucket_is_bounded_per_socket_only(backend, monkeypatch):
    limits = {"default": (100.0, 100), "ping": (1.0, 2)}
    user_limits = {"default": (100.0, 1), "ping": None}
    sockets = [
        FrameLimiter(tenant_id=1, user_id=9, limits=limits, user_limits=user_limits, close_after=10) for _ in range(3)
    ]

    async def no_round_trip(**kwargs):
        raise AssertionError(f"the shared bucket was consulted: {kwargs}")

    monkeypatch.setattr("realtime.limits.rate_limit_take", no_round_trip)
    # Each socket gets its own burst of two; no shared bucket caps them together.
    for limiter in sockets:
        assert [(await limiter.admit("ping")).allowed for _ in range(3)] == [True, True, False]


async def test_limiter_reports_abuse_after_consecutive_refusals(backend):
    limiter = FrameLimiter(
        tenant_id=1,
        user_id=6,
        limits={"default": (0.5, 1)},
        user_limits={"default": (100.0, 100)},
        close_after=4,
        close_window=10.0,
    )
    verdicts = [await limiter.admit("chat") for _ in range(5)]

    assert [v.allowed for v in verdicts] == [True, False, False, False, False]
    assert [v.abusive for v in verdicts] == [False, False, False, False, True]
    assert 1.9 < verdicts[1].retry_after <= 2.0


async def test_an_accepted_frame_resets_the_run_of_refusals(backend):
    limiter = FrameLimiter(
        tenant_id=1,
        user_id=7,
        limits={"default": (20.0, 1)},
        user_limits={"default": (100.0, 100)},
        close_after=3,
        close_window=10.0,
    )
    assert (await limiter.admit("chat")).allowed
    assert not (await limiter.admit("chat")).allowed
    assert not (await limiter.admit("chat")).allowed
    await asyncio.sleep(0.06)
    assert (await limiter.admit("chat")).allowed
    assert not (await limiter.admit("chat")).abusive
    assert not (await limiter.admit("chat")).abusive


# --- On a real daphne ------------------------------------------------------------------


@pytest.fixture
def token(user) -> str:
    return access_token(user)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_ping_flood_is_rate_limited_and_the_socket_stays_usable(live_server_url, token):
    socket_rate, socket_burst = django_settings.WS_RATE_LIMITS["ping"]
    flood = socket_burst + 12
    assert flood - socket_burst < django_settings.WS_RATE_LIMIT_CLOSE_AFTER
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        for i in range(flood):
            await ws.send(json.dumps({"type": "ping", "id": i}))
        answers = [await recv_json(ws) for _ in range(flood)]

        assert [a["id"] for a in answers] == list(range(flood))
        pongs = [a for a in answers if a["type"] == "pong"]
        limited = [a for a in answers if a["type"] == "error"]
        assert socket_burst <= len(pongs) <= socket_burst + 2  # a token may refill meanwhile
        assert len(pongs) + len(limited) == flood
        assert {a["code"] for a in limited} == {"rate_limited"}
        assert all(0 < a["retry_after"] <= 1 / socket_rate for a in limited)

        await asyncio.sleep(limited[-1]["retry_after"] + 0.05)
        await ws.send('{"type": "ping", "id": "after"}')
        answer = await recv_json(ws)
    assert (answer["type"], answer["id"]) == ("pong", "after")


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_ignoring_rate_limits_closes_the_socket(live_server_url, token):
    _rate, socket_burst = django_settings.WS_RATE_LIMITS["ping"]
    close_after = django_settings.WS_RATE_LIMIT_CLOSE_AFTER
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        for i in range(socket_burst + close_after + 20):
            await ws.send(json.dumps({"type": "ping", "id": i}))
        code, frames = await expect_close(ws, timeout=5)

    assert code == 4430
    limited = [f for f in frames if f["type"] == "error"]
    # The refusal that reaches the threshold closes instead of answering.
    assert len(limited) >= close_after - 1
    assert {f["code"] for f in limited} == {"rate_limited"}


@pytest.mark.redis
async def test_takes_from_many_sockets_share_one_pipeline_and_keep_their_order(monkeypatch):
    if not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (the real Redis)")
    pipelines: list[int] = []
    real = limits.redis_script_many

    async def counting(lua, calls):
        pipelines.append(len(calls))
        return await real(lua, calls)

    monkeypatch.setattr(limits, "redis_script_many", counting)
    try:
        # 12 sockets of one user take at once from a bucket of 10.
        decisions = await asyncio.gather(
            *(rate_limit_take(key="t1:u1:coalesced", rate=1.0, burst=10) for _ in range(12))
        )
        assert [d.allowed for d in decisions] == [True] * 10 + [False] * 2
        assert pipelines == [12]
        # One alone is one round trip, as before.
        assert not (await rate_limit_take(key="t1:u1:coalesced", rate=1.0, burst=10)).allowed
        assert pipelines == [12, 1]
    finally:
        await redis_client_close()


async def test_a_failed_pipeline_fails_every_take_in_it():
    async def broken(lua, calls):
        raise redis.ConnectionError("Redis is down")

    coalescer = limits.ScriptCoalescer("return 1")
    original, limits.redis_script_many = limits.redis_script_many, broken
    try:
        results = await asyncio.gather(
            coalescer.call(keys=["a"], args=[]), coalescer.call(keys=["b"], args=[]), return_exceptions=True
        )
    finally:
        limits.redis_script_many = original
    assert [type(r) for r in results] == [redis.ConnectionError, redis.ConnectionError]
