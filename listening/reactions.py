"""Audience reactions at concert scale: counted, not relayed.

Ten thousand listeners reacting must not become ten thousand frames to each of
them. A reaction increments a per-session counter in Redis (every server
process counts into the same hash); the first reaction of a window elects,
with ``SET NX``, the one process that broadcasts the window's counts
``REACTION_WINDOW_SECONDS`` later as one ``session.reactions`` frame. So a
session gets about two such frames a second, however many react. The flush
takes the counts and clears them in one Lua call, so a reaction is in exactly
one frame. If the elected process dies before its flush, its election lapses
after ``_ELECTION_TTL_MS`` and the next window's flush carries the counts over.

Each user may react ``REACTIONS_PER_SECOND`` times a second in a session;
more is ``rate_limited``. Redis is reached through its asyncio client, off
Channels' database thread (a reaction costs two round trips, no thread hop).
The embedded default (no ``REDIS_URL``) keeps the same state in memory.
docs/protocol.md, "Listening sessions", is the client-side description.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis.asyncio as aioredis
from django.conf import settings

from .events import session_reactions_publish

logger = logging.getLogger(__name__)

# The reactions a client may send: a closed list, so a frame stays small.
EMOJIS = ("🔥", "❤️", "👏", "😂", "😮", "🎉", "🙌", "💃")
# A flush every half second: reactions feel live, the frame rate stays at 2/s.
REACTION_WINDOW_SECONDS = 0.5
# A human tapping fast reaches 5 taps a second; more is a script.
REACTIONS_PER_SECOND = 5
# Counts outlive a lost flush long enough for the next one to carry them.
_COUNTS_TTL = 60
# A dead flusher's election lapses after two windows.
_ELECTION_TTL_MS = 1000

# KEYS: counts (hash), election. Returns the counts as [emoji, n, ...], cleared.
_FLUSH = """
local counts = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return counts
"""

_pending: set[asyncio.Task] = set()


class _Redis:
    def __init__(self, url: str) -> None:
        self._client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
        )
        self._flush = self._client.register_script(_FLUSH)

    async def allowed(self, key: str) -> bool:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            count, _ = await pipe.execute()
        return count <= REACTIONS_PER_SECOND

    async def count(self, counts: str, election: str, emoji: str) -> bool:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hincrby(counts, emoji, 1)
            pipe.expire(counts, _COUNTS_TTL)
            pipe.set(election, 1, nx=True, px=_ELECTION_TTL_MS)
            _, _, elected = await pipe.execute()
        return bool(elected)

    async def take(self, counts: str, election: str) -> dict[str, int]:
        flat = await self._flush(keys=[counts, election])
        return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def aclose(self) -> None:
        await self._client.aclose()


class _Memory:
    """One process's twin of ``_Redis`` (the embedded default)."""

    def __init__(self) -> None:
        self._budgets: dict[str, int] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._elections: dict[str, float] = {}

    async def allowed(self, key: str) -> bool:
        self._budgets[key] = self._budgets.get(key, 0) + 1
        return self._budgets[key] <= REACTIONS_PER_SECOND

    async def count(self, counts: str, election: str, emoji: str) -> bool:
        window = self._counts.setdefault(counts, {})
        window[emoji] = window.get(emoji, 0) + 1
        now = time.monotonic()
        if self._elections.get(election, 0) > now:
            return False
        self._elections[election] = now + _ELECTION_TTL_MS / 1000
        return True

    async def take(self, counts: str, election: str) -> dict[str, int]:
        self._elections.pop(election, None)
        return self._counts.pop(counts, {})


_redis: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Redis] = weakref.WeakKeyDictionary()
_memory = _Memory()


def _store() -> _Redis | _Memory:
    if not settings.REDIS_URL:
        return _memory
    loop = asyncio.get_running_loop()
    store = _redis.get(loop)
    if store is None:
        store = _redis[loop] = _Redis(settings.REDIS_URL)
    return store


def _keys(session_id: int) -> tuple[str, str]:
    return f"listening:reactions:{session_id}", f"listening:reactions:{session_id}:flush"


async def reaction_allowed(*, session_id: int, user_id: int) -> bool:
    """Count one reaction of the user against their budget for this second."""
    return await _store().allowed(f"listening:reactions:{session_id}:u{user_id}:{int(time.time())}")


async def reaction_count(*, tenant_id: int, session_id: int, emoji: str) -> None:
    """Count one reaction; the first of a window schedules the window's broadcast."""
    if await _store().count(*_keys(session_id), emoji):
        task = asyncio.get_running_loop().create_task(_flush_later(tenant_id=tenant_id, session_id=session_id))
        _pending.add(task)
        task.add_done_callback(_pending.discard)


async def _flush_later(*, tenant_id: int, session_id: int) -> None:
    await asyncio.sleep(REACTION_WINDOW_SECONDS)
    try:
        await reactions_flush(tenant_id=tenant_id, session_id=session_id)
    except Exception:
        logger.exception("reaction flush failed", extra={"session": session_id})


async def reactions_flush(*, tenant_id: int, session_id: int) -> dict[str, int]:
    """Broadcast the counts gathered since the last flush (if any) and reopen the
    election. Returns the counts sent."""
    counts = await _store().take(*_keys(session_id))
    if counts:
        await session_reactions_publish(
            tenant_id=tenant_id, session_id=session_id, counts=counts, window_ms=int(REACTION_WINDOW_SECONDS * 1000)
        )
    return counts


async def close_reactions() -> None:
    """Close the running loop's Redis client and drop pending flushes (shutdown, tests)."""
    for task in list(_pending):
        task.cancel()
    store = _redis.pop(asyncio.get_running_loop(), None)
    if store is not None:
        await store.aclose()
