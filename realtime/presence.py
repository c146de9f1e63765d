"""Who is online: per user per tenant, across devices and server processes.

Each open socket is a connection id in a Redis sorted set per user, scored by
its expiry (Redis's own clock, so servers' clocks never matter). Heartbeats push
the expiry forward (``realtime.upkeep`` sends them for every socket of a process
in one pipeline per pass); a server that dies simply stops doing so, and its users'
connections lapse after ``PRESENCE_TTL_SECONDS`` without anyone calling
disconnect. A user is ``online`` with any live connection not flagged away,
``away`` when every live connection is, ``offline`` with none; several devices
count once.

Changes are reported once: the last reported state is stored next to the
connections and every transition is decided by one Lua script, atomically, so
two servers never both announce the same change. Going offline is not decided
when a socket closes but ``PRESENCE_GRACE_SECONDS`` later, so a reload or a
network switch does not flap. Broadcasting a change is the caller's job. Keys
carry the tenant; the in-memory backend serves the embedded default.

*Topic presence* (``topic_presence_*``) says who is on one topic, such as a
playlist, and what each socket shows there (viewing, editing, a selection):
one Redis hash per topic, each entry valid while its socket's connection above
is live, so a dead server's entries vanish with its connections.
docs/operations.md, "Fan-out and presence (server design)", explains the design.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

logger = logging.getLogger(__name__)


class PresenceState(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True)
class PresenceChange:
    """A user's presence moved to ``state``: broadcast it."""

    tenant_id: int
    user_id: int
    state: PresenceState


# KEYS: connections (zset id -> expiry ms), away (set of ids), reported (string).
# ARGV: op, connection id, ttl ms, key ttl s. Returns {state, changed (0/1)}.
# "disconnect" never reports: the decision waits for the grace period ("check").
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, conn = ARGV[1], ARGV[2]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if op == 'connect' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), conn)
  redis.call('SREM', KEYS[2], conn)
elseif op == 'heartbeat' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), conn)
elseif op == 'away' then
  if redis.call('ZSCORE', KEYS[1], conn) then redis.call('SADD', KEYS[2], conn) end
elseif op == 'back' then
  redis.call('SREM', KEYS[2], conn)
elseif op == 'disconnect' then
  redis.call('ZREM', KEYS[1], conn)
  redis.call('SREM', KEYS[2], conn)
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local state = 'offline'
if #live > 0 then
  state = 'away'
  for _, id in ipairs(live) do
    if redis.call('SISMEMBER', KEYS[2], id) == 0 then state = 'online' break end
  end
end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not redis.call('ZSCORE', KEYS[1], id) then redis.call('SREM', KEYS[2], id) end
end
local key_ttl = tonumber(ARGV[4])
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], key_ttl) end
end
if op == 'disconnect' then return {state, 0} end
local reported = redis.call('GET', KEYS[3]) or 'offline'
if state == reported then
  if state ~= 'offline' then redis.call('EXPIRE', KEYS[3], key_ttl) end
  return {state, 0}
end
if state == 'offline' then redis.call('DEL', KEYS[3]) else redis.call('SET', KEYS[3], state, 'EX', key_ttl) end
return {state, 1}
"""


# Read-only: the state of many users at once (``get``). KEYS: connections then
# away of each user, in pairs. The same rule as the script above (live connections are
# those expiring after now; online if any live one is not away).
_STATES_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local states = {}
for i = 1, #KEYS, 2 do
  local state = 'offline'
  local live = redis.call('ZRANGEBYSCORE', KEYS[i], '(' .. now, '+inf')
  if #live > 0 then
    state = 'away'
    for _, id in ipairs(live) do
      if redis.call('SISMEMBER', KEYS[i + 1], id) == 0 then state = 'online' break end
    end
  end
  states[#states + 1] = state
end
return states
"""
# Users per call of the read script: a 1,000-member room's join is a few calls.
_STATES_PER_CALL = 250


class RedisPresence:
    def __init__(self, *, url: str, ttl: float, key_prefix: str = "presence") -> None:
        self._client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
        )
        self._script = self._client.register_script(_SCRIPT)
        self._states = self._client.register_script(_STATES_SCRIPT)
        self._prefix = key_prefix
        self._ttl_ms = int(ttl * 1000)
        # Idle keys outlive the longest connection expiry, then vanish.
        self._key_ttl = int(ttl) + 3600

    def _keys(self, tenant_id: int, user_id: int) -> list[str]:
        base = f"{self._prefix}:t{tenant_id}:u{user_id}"
        return [f"{base}:conns", f"{base}:away", f"{base}:reported"]

    async def apply(self, op: str, *, tenant_id: int, user_id: int, connection_id: str = "") -> tuple[str, bool]:
        state, changed = await self._script(
            keys=self._keys(tenant_id, user_id), args=[op, connection_id, self._ttl_ms, self._key_ttl]
        )
        return state, bool(changed)

    async def apply_many(self, op: str, connections: Sequence[tuple[int, int, str]]) -> list[tuple[str, bool]]:
        """``apply`` for each (tenant_id, user_id, connection_id), in one round trip."""
        if not connections:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for tenant_id, user_id, connection_id in connections:
                args = [op, connection_id, self._ttl_ms, self._key_ttl]
                await self._script(keys=self._keys(tenant_id, user_id), args=args, client=pipe)
            results = await pipe.execute()
        return [(state, bool(changed)) for state, changed in results]

    async def get(self, *, tenant_id: int, user_ids: Iterable[int]) -> dict[int, str]:
        user_ids = list(user_ids)
        if not user_ids:
            return {}
        # One round trip for the whole list, a few hundred users per script call:
        # joining a big room reads every member's presence, and a call per user
        # made each join cost a millisecond per thousand members of Python alone.
        async with self._client.pipeline(transaction=False) as pipe:
            for start in range(0, len(user_ids), _STATES_PER_CALL):
                keys = [
                    key
                    for user_id in user_ids[start : start + _STATES_PER_CALL]
                    for key in self._keys(tenant_id, user_id)[:2]
                ]
                await self._states(keys=keys, args=[], client=pipe)
            results = await pipe.execute()
        states = [state for chunk in results for state in chunk]
        return dict(zip(user_ids, states, strict=True))

    # Topic presence: who is on one topic (a playlist), per socket, with a payload.

    def _topic_key(self, topic: str) -> str:
        return f"{self._prefix}:topic:{topic}"

    async def topic_set(self, *, topic: str, tenant_id: int, user_id: int, connection_id: str, data: str) -> None:
        key = self._topic_key(topic)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hset(key, connection_id, f"{tenant_id}:{user_id}:{data}")
            pipe.expire(key, self._key_ttl)
            await pipe.execute()

    async def topic_remove(self, *, topic: str, connection_id: str) -> bool:
        return bool(await self._client.hdel(self._topic_key(topic), connection_id))

    async def topic_members(self, *, topic: str) -> dict[str, str]:
        """Entries of live connections only: an entry whose connection lapsed (its
        server died without removing it) is dropped here, on read."""
        key = self._topic_key(topic)
        entries = await self._client.hgetall(key)
        if not entries:
            return {}
        parsed = {conn: value.split(":", 2) for conn, value in entries.items()}
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.time()
            for conn, (tenant_id, user_id, _data) in parsed.items():
                pipe.zscore(self._keys(int(tenant_id), int(user_id))[0], conn)
            now, *expiries = await pipe.execute()
        now_ms = now[0] * 1000 + now[1] // 1000
        live = {
            conn: data
            for (conn, (_t, _u, data)), expiry in zip(parsed.items(), expiries, strict=True)
            if expiry is not None and expiry > now_ms
        }
        dead = [conn for conn in parsed if conn not in live]
        if dead:
            await self._client.hdel(key, *dead)
        return live

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class _MemoryUser:
    connections: dict[str, float] = field(default_factory=dict)  # id -> monotonic expiry
    away: set[str] = field(default_factory=set)
    reported: str = PresenceState.OFFLINE


class MemoryPresence:
    """The embedded default: the same rules as the script, for one process."""

    def __init__(self, *, ttl: float) -> None:
        self._ttl = ttl
        self._users: dict[tuple[int, int], _MemoryUser] = {}
        self._topics: dict[str, dict[str, tuple[int, int, str]]] = {}

    def _state(self, user: _MemoryUser) -> str:
        now = time.monotonic()
        for connection_id in [c for c, expiry in user.connections.items() if expiry <= now]:
            del user.connections[connection_id]
        user.away &= set(user.connections)
        if not user.connections:
            return PresenceState.OFFLINE
        return PresenceState.AWAY if set(user.connections) <= user.away else PresenceState.ONLINE

    async def apply(self, op: str, *, tenant_id: int, user_id: int, connection_id: str = "") -> tuple[str, bool]:
        user = self._users.setdefault((tenant_id, user_id), _MemoryUser())
        self._state(user)
        if op in ("connect", "heartbeat"):
            user.connections[connection_id] = time.monotonic() + self._ttl
            if op == "connect":
                user.away.discard(connection_id)
        elif op == "away" and connection_id in user.connections:
            user.away.add(connection_id)
        elif op == "back":
            user.away.discard(connection_id)
        elif op == "disconnect":
            user.connections.pop(connection_id, None)
            user.away.discard(connection_id)
        state = self._state(user)
        if op == "disconnect" or state == user.reported:
            return state, False
        user.reported = state
        return state, True

    async def apply_many(self, op: str, connections: Sequence[tuple[int, int, str]]) -> list[tuple[str, bool]]:
        return [
            await self.apply(op, tenant_id=tenant_id, user_id=user_id, connection_id=connection_id)
            for tenant_id, user_id, connection_id in connections
        ]

    async def topic_set(self, *, topic: str, tenant_id: int, user_id: int, connection_id: str, data: str) -> None:
        self._topics.setdefault(topic, {})[connection_id] = (tenant_id, user_id, data)

    async def topic_remove(self, *, topic: str, connection_id: str) -> bool:
        return self._topics.get(topic, {}).pop(connection_id, None) is not None

    async def topic_members(self, *, topic: str) -> dict[str, str]:
        now = time.monotonic()
        entries = self._topics.get(topic, {})
        for conn, (tenant_id, user_id, _data) in list(entries.items()):
            user = self._users.get((tenant_id, user_id))
            if user is None or user.connections.get(conn, 0) <= now:
                del entries[conn]
        return {conn: data for conn, (_t, _u, data) in entries.items()}

    async def get(self, *, tenant_id: int, user_ids: Iterable[int]) -> dict[int, str]:
        return {
            user_id: self._state(self._users[(tenant_id, user_id)])
            if (tenant_id, user_id) in self._users
            else PresenceState.OFFLINE
            for user_id in user_ids
        }

    async def aclose(self) -> None:
        return


Backend = RedisPresence | MemoryPresence

# Per event loop, as redis.asyncio clients belong to the loop that opened them;
# the in-memory state is one per process.
_backends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisPresence] = weakref.WeakKeyDictionary()
_memory: MemoryPresence | None = None
# Grace-period checks in flight: referenced so they are not garbage-collected.
_pending_checks: set[asyncio.Task] = set()


def get_presence() -> Backend:
    global _memory  # noqa: PLW0603 (the process's one in-memory store)
    if not settings.REDIS_URL:
        if _memory is None:
            _memory = MemoryPresence(ttl=settings.PRESENCE_TTL_SECONDS)
        return _memory
    loop = asyncio.get_running_loop()
    backend = _backends.get(loop)
    if backend is None:
        backend = _backends[loop] = RedisPresence(url=settings.REDIS_URL, ttl=settings.PRESENCE_TTL_SECONDS)
    return backend


def _change(state: str, changed: bool, *, tenant_id: int, user_id: int) -> PresenceChange | None:
    return PresenceChange(tenant_id=tenant_id, user_id=user_id, state=PresenceState(state)) if changed else None


async def presence_connect(*, tenant_id: int, user_id: int, connection_id: str) -> PresenceChange | None:
    """A socket of the user opened. Returns the change to broadcast, if the user was not already shown present."""
    state, changed = await get_presence().apply(
        "connect", tenant_id=tenant_id, user_id=user_id, connection_id=connection_id
    )
    return _change(state, changed, tenant_id=tenant_id, user_id=user_id)


async def presence_heartbeat(*, tenant_id: int, user_id: int, connection_id: str) -> PresenceChange | None:
    """The socket is alive (call on each client ping). A change is returned only if the
    connection had lapsed meanwhile (a long pause) and the user reappears."""
    state, changed = await get_presence().apply(
        "heartbeat", tenant_id=tenant_id, user_id=user_id, connection_id=connection_id
    )
    return _change(state, changed, tenant_id=tenant_id, user_id=user_id)


async def presence_heartbeats(*, connections: Sequence[tuple[int, int, str]]) -> list[PresenceChange | None]:
    """``presence_heartbeat`` for many (tenant_id, user_id, connection_id) at once:
    one Redis round trip for a process's periodic pass over its sockets."""
    results = await get_presence().apply_many("heartbeat", connections)
    return [
        _change(state, changed, tenant_id=tenant_id, user_id=user_id)
        for (tenant_id, user_id, _connection_id), (state, changed) in zip(connections, results, strict=True)
    ]


async def presence_set_away(*, tenant_id: int, user_id: int, connection_id: str, away: bool) -> PresenceChange | None:
    """The client flagged this connection away (idle) or back."""
    state, changed = await get_presence().apply(
        "away" if away else "back", tenant_id=tenant_id, user_id=user_id, connection_id=connection_id
    )
    return _change(state, changed, tenant_id=tenant_id, user_id=user_id)


async def presence_check(*, tenant_id: int, user_id: int) -> PresenceChange | None:
    """Compare the user's current state with the last reported one, and report the difference once."""
    state, changed = await get_presence().apply("check", tenant_id=tenant_id, user_id=user_id)
    return _change(state, changed, tenant_id=tenant_id, user_id=user_id)


async def presence_disconnect(
    *,
    tenant_id: int,
    user_id: int,
    connection_id: str,
    on_change: Callable[[PresenceChange], Awaitable[None]] | None = None,
    grace: float | None = None,
) -> asyncio.Task[PresenceChange | None]:
    """A socket closed. Its connection is removed now; whether the user changed
    state is decided ``grace`` seconds later (``PRESENCE_GRACE_SECONDS``), so a
    reconnect in between reports nothing. Returns the scheduled check, whose
    result is also passed to ``on_change`` when there is a change."""
    await get_presence().apply("disconnect", tenant_id=tenant_id, user_id=user_id, connection_id=connection_id)
    delay = settings.PRESENCE_GRACE_SECONDS if grace is None else grace

    async def decide() -> PresenceChange | None:
        await asyncio.sleep(delay)
        change = await presence_check(tenant_id=tenant_id, user_id=user_id)
        if change is not None and on_change is not None:
            try:
                await on_change(change)
            except Exception:
                logger.exception("presence change callback failed")
        return change

    task = asyncio.get_running_loop().create_task(decide(), name="presence-grace")
    _pending_checks.add(task)
    task.add_done_callback(_pending_checks.discard)
    return task


async def presence_get(*, tenant_id: int, user_ids: Iterable[int]) -> dict[int, PresenceState]:
    """The current state of each user (one Redis round trip for the whole list)."""
    states = await get_presence().get(tenant_id=tenant_id, user_ids=user_ids)
    return {user_id: PresenceState(state) for user_id, state in states.items()}


async def topic_presence_set(
    *, topic: str, tenant_id: int, user_id: int, connection_id: str, data: dict[str, Any]
) -> None:
    """Show this socket on ``topic`` with ``data`` (replacing what it showed before).
    The entry lives as long as the socket's presence connection: a server that dies
    leaves entries that ``topic_presence_list`` drops once its sockets lapse."""
    await get_presence().topic_set(
        topic=topic,
        tenant_id=tenant_id,
        user_id=user_id,
        connection_id=connection_id,
        data=json.dumps(data, separators=(",", ":")),
    )


async def topic_presence_remove(*, topic: str, connection_id: str) -> bool:
    """Take this socket off ``topic``; False if it was not on it."""
    return await get_presence().topic_remove(topic=topic, connection_id=connection_id)


async def topic_presence_list(*, topic: str) -> list[dict[str, Any]]:
    """What every live socket on ``topic`` shows, ordered by connection id."""
    members = await get_presence().topic_members(topic=topic)
    return [json.loads(members[conn]) for conn in sorted(members)]


async def close_presence() -> None:
    """Close the running loop's Redis client and forget the in-memory store (shutdown, tests)."""
    global _memory  # noqa: PLW0603
    _memory = None
    backend = _backends.pop(asyncio.get_running_loop(), None)
    if backend is not None:
        await backend.aclose()
