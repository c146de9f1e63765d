"""The per-user connection registry behind ``MAX_WS_CONNECTIONS_PER_USER``.

A user's open sockets, across every daphne process, are the members of one
Redis sorted set (``<prefix>:ws:conn:t<tenant>:u<user>``) scored by the
moment each entry expires. An entry lives ``WS_CONNECTION_TTL`` seconds
unless its socket refreshes it (``realtime.upkeep`` refreshes every socket of a
process every third of the TTL, in one pipeline),
so the slots of a crashed process free themselves; a clean disconnect releases
its slot at once. Acquiring is one Lua script: purge expired entries, count,
add if below the cap. Time comes from the Redis server, one clock for all
processes.

The embedded default (no ``REDIS_URL``) runs one process and keeps the same
table in memory. The consumer decides what a refusal means (close 4429, see
docs/protocol.md); this module only counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from .limits import redis_client, redis_key, redis_script, redis_script_many

logger = logging.getLogger(__name__)

# KEYS[1] = the user's set; ARGV = connection id, cap, ttl (ms).
# Returns 1 if the connection holds a slot (newly or already), else 0. An
# existing member is refreshed whatever the count, so refreshing and acquiring
# are the same script.
_ACQUIRE_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
-- Every member expires within ttl, so the set itself may go with them.
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""


def registry_key(*, tenant_id: int | None, user_id: int | None) -> str:
    return redis_key("conn", f"t{tenant_id}", f"u{user_id}")


class _MemoryRegistry:
    """The same table for the embedded default's single process (monotonic clock)."""

    def __init__(self) -> None:
        self._users: dict[tuple[int | None, int | None], dict[str, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, *, user: tuple[int | None, int | None], connection_id: str, limit: int, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            entries = {cid: expiry for cid, expiry in self._users.get(user, {}).items() if expiry > now}
            if connection_id not in entries and len(entries) >= limit:
                self._users[user] = entries
                return False
            entries[connection_id] = now + ttl
            self._users[user] = entries
            return True

    def release(self, *, user: tuple[int | None, int | None], connection_id: str) -> None:
        with self._lock:
            entries = self._users.get(user)
            if entries is not None:
                entries.pop(connection_id, None)
                if not entries:
                    del self._users[user]

    def count(self, *, user: tuple[int | None, int | None]) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for expiry in self._users.get(user, {}).values() if expiry > now)


memory_registry = _MemoryRegistry()


async def connection_slot_acquire(
    *, tenant_id: int | None, user_id: int | None, connection_id: str, limit: int | None = None
) -> bool:
    """Take (or refresh) a slot for ``connection_id`` among the user's sockets.
    False when the user already holds ``limit`` live slots. Idempotent per id."""
    limit = settings.MAX_WS_CONNECTIONS_PER_USER if limit is None else limit
    ttl = settings.WS_CONNECTION_TTL
    if not settings.REDIS_URL:
        return memory_registry.acquire(user=(tenant_id, user_id), connection_id=connection_id, limit=limit, ttl=ttl)
    held = await redis_script(
        _ACQUIRE_LUA,
        keys=[registry_key(tenant_id=tenant_id, user_id=user_id)],
        args=[connection_id, limit, int(ttl * 1000)],
    )
    return bool(int(held))


# A refresh is an acquire of a slot already held: if the entry expired meanwhile
# (the process stalled past the TTL), it is taken again only if there is room.
connection_slot_refresh = connection_slot_acquire


@dataclass(frozen=True)
class Slot:
    tenant_id: int | None
    user_id: int | None
    connection_id: str


async def connection_slots_refresh(*, slots: Sequence[Slot], limit: int | None = None) -> list[bool]:
    """Refresh many slots in one Redis round trip (a process's periodic pass over
    its sockets); for each, whether it still holds a slot (see ``connection_slot_refresh``)."""
    limit = settings.MAX_WS_CONNECTIONS_PER_USER if limit is None else limit
    ttl = settings.WS_CONNECTION_TTL
    if not settings.REDIS_URL:
        return [
            memory_registry.acquire(
                user=(slot.tenant_id, slot.user_id), connection_id=slot.connection_id, limit=limit, ttl=ttl
            )
            for slot in slots
        ]
    ttl_ms = int(ttl * 1000)
    calls = [
        ([registry_key(tenant_id=slot.tenant_id, user_id=slot.user_id)], [slot.connection_id, limit, ttl_ms])
        for slot in slots
    ]
    results = await redis_script_many(_ACQUIRE_LUA, calls)
    return [bool(int(held)) for held in results]


async def connection_slot_release(*, tenant_id: int | None, user_id: int | None, connection_id: str) -> None:
    """Give the slot back (a clean disconnect). Safe if it was never held."""
    if not settings.REDIS_URL:
        memory_registry.release(user=(tenant_id, user_id), connection_id=connection_id)
        return
    await redis_client().zrem(registry_key(tenant_id=tenant_id, user_id=user_id), connection_id)


async def connection_slot_count(*, tenant_id: int | None, user_id: int | None) -> int:
    """Live slots of the user (operations and tests)."""
    if not settings.REDIS_URL:
        return memory_registry.count(user=(tenant_id, user_id))
    client = redis_client()
    key = registry_key(tenant_id=tenant_id, user_id=user_id)
    now_s, now_us = await client.time()
    return await client.zcount(key, f"({now_s * 1000 + now_us // 1000}", "+inf")
