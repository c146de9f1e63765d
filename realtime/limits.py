"""Rate limits of the hub's client frames: token buckets per message family.

A frame's family is its type's prefix before the first dot (``chat.send`` →
``chat``; ``ping`` → ``ping``). Each family has two buckets, configured as data
in settings (``WS_RATE_LIMITS`` per socket, ``WS_USER_RATE_LIMITS`` per user
across all of the user's sockets and processes); families not listed share
the ``default`` entry, so junk types cannot create buckets without bound.

* The per-socket bucket lives in the consumer's memory: a socket lives in one
  process, so it needs no round trip.
* The per-user bucket is ``rate_limit_take``: one Lua script on Redis (atomic,
  one round trip, the key carries the tenant), or a process-local table on the
  embedded default, which runs a single process.

``FrameLimiter`` combines both for one socket and decides when refusals become
abuse (``WS_RATE_LIMIT_CLOSE_AFTER`` refusals in a row within
``WS_RATE_LIMIT_CLOSE_WINDOW`` seconds closes the socket with 4430). The
consumer only asks it. docs/protocol.md describes the limits for clients.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript

logger = logging.getLogger(__name__)

DEFAULT_FAMILY = "default"

# family -> (tokens per second, burst); in the per-user limits, None means the
# family has no shared bucket (only the per-socket one applies).
Limits = dict[str, tuple[float, int] | None]


@dataclass(frozen=True)
class RateDecision:
    """``retry_after``: seconds until one token is available (0.0 when allowed)."""

    allowed: bool
    retry_after: float = 0.0


def family_of(message_type: str) -> str:
    return message_type.split(".", 1)[0]


def limit_for(limits: Limits, family: str) -> tuple[str, float, int]:
    """The bucket name, rate and burst that apply to ``family``."""
    name = family if family in limits else DEFAULT_FAMILY
    rate, burst = limits[name]
    return name, float(rate), int(burst)


# --- Redis plumbing shared by the hub's limits ----------------------------------------

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()

# A small pool per process: each call is one short script. Blocking, so a burst
# waits for a connection instead of failing.
_POOL_SIZE = 20


def redis_client() -> Redis:
    """The running loop's async Redis client (asyncio connections belong to one loop)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        pool = BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=_POOL_SIZE,
            timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
        )
        client = _clients[loop] = Redis(connection_pool=pool)
    return client


async def redis_client_close() -> None:
    """Close the running loop's client, if any (before the loop itself ends)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


_scripts: dict[str, AsyncScript] = {}


async def redis_script(lua: str, *, keys: list[str], args: list) -> object:
    """Run a Lua script by its SHA (loaded on first use, and again after a Redis restart)."""
    client = redis_client()
    script = _scripts.get(lua)
    if script is None:
        script = _scripts[lua] = client.register_script(lua)
    return await script(keys=keys, args=args, client=client)


async def redis_script_many(lua: str, calls: Sequence[tuple[list[str], list]]) -> list:
    """Run a Lua script once per (keys, args) in ``calls``, in one pipeline (one round
    trip, not a transaction); the results in order."""
    if not calls:
        return []
    client = redis_client()
    script = _scripts.get(lua)
    if script is None:
        script = _scripts[lua] = client.register_script(lua)
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            await script(keys=keys, args=args, client=pipe)
        return await pipe.execute()


class ScriptCoalescer:
    """Runs the calls of one Lua script made by many sockets of a loop in one
    pipeline: while a pipeline is in flight, new calls wait for the next one.
    At low load a call is one round trip as before; under load the round trips
    stay flat while the pipelines grow. One per (loop, script)."""

    def __init__(self, lua: str) -> None:
        self._lua = lua
        self._pending: list[tuple[list[str], list, asyncio.Future]] = []
        self._runner: asyncio.Task | None = None

    def call(self, *, keys: list[str], args: list) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((keys, args, future))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run(), name="redis-script-pipeline")
        return future

    async def _run(self) -> None:
        # Yield once so the calls made in this loop iteration join the first pipeline.
        await asyncio.sleep(0)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await redis_script_many(self._lua, [(keys, args) for keys, args, _ in batch])
            except Exception as exc:  # noqa: BLE001 (handed to every caller)
                for _keys, _args, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_keys, _args, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, ScriptCoalescer]] = (
    weakref.WeakKeyDictionary()
)


def coalesced_script(lua: str, *, keys: list[str], args: list) -> asyncio.Future:
    """Run ``lua`` through the running loop's ``ScriptCoalescer`` for it."""
    per_loop = _coalescers.setdefault(asyncio.get_running_loop(), {})
    coalescer = per_loop.get(lua)
    if coalescer is None:
        coalescer = per_loop[lua] = ScriptCoalescer(lua)
    return coalescer.call(keys=keys, args=args)


def redis_key(*parts: str) -> str:
    """``<cache prefix>:ws:<parts>``: one deployment's prefix isolates all of its keys."""
    prefix = settings.CACHES["default"].get("KEY_PREFIX") or "sa"
    return ":".join((prefix, "ws", *parts))


# --- Token bucket ------------------------------------------------------------------------

# KEYS[1] = bucket hash {tokens, ts}; ARGV = rate (tokens/s), burst.
# Time comes from the Redis server so every process shares one clock. Returns
# {allowed, retry_after} with retry_after as a string: Lua numbers returned to
# Redis are truncated to integers.
_TAKE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
end
local allowed = 0
local retry_after = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry_after = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
-- Once full again the bucket equals a missing one: let it expire.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(retry_after)}
"""


class TokenBucket:
    """A process-local token bucket (monotonic clock). Not thread-safe: one owner."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, *, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> RateDecision:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return RateDecision(True)
        return RateDecision(False, (1 - self.tokens) / self.rate)

    def full_at(self) -> float:
        return self.updated + (self.burst - self.tokens) / self.rate


class _MemoryBuckets:
    """``rate_limit_take`` for the embedded default: one process, so a dict suffices.
    Buckets that have refilled completely are dropped by a periodic sweep."""

    _SWEEP_EVERY = 1024

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._takes = 0

    def take(self, *, key: str, rate: float, burst: int) -> RateDecision:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
                bucket = self._buckets[key] = TokenBucket(rate=rate, burst=burst, now=now)
            decision = bucket.take(now)
            self._takes += 1
            if self._takes % self._SWEEP_EVERY == 0:
                self._buckets = {k: b for k, b in self._buckets.items() if b.full_at() > now}
            return decision

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


memory_buckets = _MemoryBuckets()


async def rate_limit_take(*, key: str, rate: float, burst: int) -> RateDecision:
    """Take one token from the bucket ``key`` (``rate`` tokens per second, at most
    ``burst``); shared by every process on Redis. ``key`` must carry the tenant."""
    if rate <= 0 or burst < 1:
        raise ValueError("rate must be positive and burst at least 1")
    if not settings.REDIS_URL:
        return memory_buckets.take(key=key, rate=rate, burst=burst)
    # Every socket of the process takes from Redis in the same pipeline.
    allowed, retry_after = await coalesced_script(_TAKE_LUA, keys=[redis_key("rl", key)], args=[rate, burst])
    return RateDecision(bool(int(allowed)), float(retry_after))


# --- One socket's limits ------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """The verdict on one frame. ``abusive``: refusals went on long enough to close."""

    allowed: bool
    retry_after: float = 0.0
    abusive: bool = False


class FrameLimiter:
    """The limits of one authenticated socket: its own buckets, its user's shared
    buckets, and the run of consecutive refusals."""

    def __init__(
        self,
        *,
        tenant_id: int | None,
        user_id: int | None,
        limits: Limits | None = None,
        user_limits: Limits | None = None,
        close_after: int | None = None,
        close_window: float | None = None,
    ) -> None:
        self._user_key = f"t{tenant_id}:u{user_id}"
        self._limits = limits if limits is not None else settings.WS_RATE_LIMITS
        self._user_limits = user_limits if user_limits is not None else settings.WS_USER_RATE_LIMITS
        self._close_after = close_after if close_after is not None else settings.WS_RATE_LIMIT_CLOSE_AFTER
        self._close_window = close_window if close_window is not None else settings.WS_RATE_LIMIT_CLOSE_WINDOW
        self._buckets: dict[str, TokenBucket] = {}
        self._refusals: deque[float] = deque(maxlen=self._close_after)

    async def admit(self, family: str) -> Admission:
        decision = self._take_local(family)
        if decision.allowed:
            decision = await self._take_user(family)
        if decision.allowed:
            self._refusals.clear()
            return Admission(True)
        now = time.monotonic()
        self._refusals.append(now)
        abusive = len(self._refusals) >= self._close_after and now - self._refusals[0] <= self._close_window
        return Admission(False, round(decision.retry_after, 3), abusive)

    def _take_local(self, family: str) -> RateDecision:
        name, rate, burst = limit_for(self._limits, family)
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = TokenBucket(rate=rate, burst=burst)
        return bucket.take()

    async def _take_user(self, family: str) -> RateDecision:
        if family in self._user_limits and self._user_limits[family] is None:
            return RateDecision(True)
        name, rate, burst = limit_for(self._user_limits, family)
        try:
            return await rate_limit_take(key=f"{self._user_key}:{name}", rate=rate, burst=burst)
        except Exception:
            # Fail open: the per-socket bucket still bounds this socket, and a
            # Redis outage must not turn every frame into an error.
            logger.exception("user rate limit unavailable")
            return RateDecision(True)
