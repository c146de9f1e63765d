"""The per-user connection cap (registry on Redis and in memory, and 4429 on a
real daphne) and the bounded outbound queue of a socket (4413)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
import redis
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.urls import re_path

from audit.constants import AuditAction
from realtime import consumers
from realtime.connections import (
    connection_slot_acquire,
    connection_slot_count,
    connection_slot_refresh,
    connection_slot_release,
    memory_registry,
    registry_key,
)
from realtime.limits import redis_client_close
from realtime.middleware import WebSocketAuthMiddleware

from .conftest import access_token, bearer, connected, expect_close, open_ws, recv_json, wait_for_audit, ws_url


@pytest.fixture(params=["redis", "memory"])
async def backend(request, settings):
    if request.param == "redis":
        if not django_settings.REDIS_URL:
            pytest.skip("needs REDIS_URL (the real Redis)")
    else:
        settings.REDIS_URL = ""
    yield request.param
    if request.param == "redis":
        await redis_client_close()


async def test_slots_are_capped_per_user_and_released(backend):
    user = {"tenant_id": 1, "user_id": 10}
    taken = [await connection_slot_acquire(**user, connection_id=f"c{i}", limit=3) for i in range(4)]
    assert taken == [True, True, True, False]
    assert await connection_slot_count(**user) == 3
    # Another user, or the same user id in another tenant, has slots of its own.
    assert await connection_slot_acquire(tenant_id=1, user_id=11, connection_id="c0", limit=3)
    assert await connection_slot_acquire(tenant_id=2, user_id=10, connection_id="c0", limit=3)

    await connection_slot_release(**user, connection_id="c1")
    await connection_slot_release(**user, connection_id="never-held")
    assert await connection_slot_acquire(**user, connection_id="c3", limit=3)
    assert not await connection_slot_acquire(**user, connection_id="c4", limit=3)
    # Refreshing a held slot succeeds even at the cap.
    assert await connection_slot_refresh(**user, connection_id="c0", limit=3)

    for cid in ("c0", "c2", "c3"):
        await connection_slot_release(**user, connection_id=cid)
    assert await connection_slot_count(**user) == 0
    await connection_slot_release(tenant_id=1, user_id=11, connection_id="c0")
    await connection_slot_release(tenant_id=2, user_id=10, connection_id="c0")


async def test_slots_that_are_not_refreshed_expire(backend, settings):
    settings.WS_CONNECTION_TTL = 0.2 if backend == "memory" else 1
    user = {"tenant_id": 1, "user_id": 12}
    assert await connection_slot_acquire(**user, connection_id="gone", limit=1)
    assert not await connection_slot_acquire(**user, connection_id="new", limit=1)

    time.sleep(settings.WS_CONNECTION_TTL + 0.05)

    assert await connection_slot_acquire(**user, connection_id="new", limit=1)
    assert await connection_slot_count(**user) == 1
    await connection_slot_release(**user, connection_id="new")
    memory_registry.release(user=(1, 12), connection_id="gone")


@pytest.mark.redis
async def test_the_redis_set_carries_the_tenant_and_expires_with_its_members():
    try:
        await connection_slot_acquire(tenant_id=3, user_id=4, connection_id="x", limit=2)
    finally:
        await redis_client_close()
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    try:
        key = registry_key(tenant_id=3, user_id=4)
        assert ":ws:conn:t3:u4" in key
        assert client.zrange(key, 0, -1) == [b"x"]
        assert 0 < client.pttl(key) <= django_settings.WS_CONNECTION_TTL * 1000
    finally:
        client.close()


# --- On a real daphne ------------------------------------------------------------------


@database_sync_to_async
def tokens_of(*users) -> list[str]:
    return [access_token(u) for u in users]


async def ping(ws, frame_id) -> dict:
    await ws.send(json.dumps({"type": "ping", "id": frame_id}))
    return await recv_json(ws)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_the_socket_past_the_cap_is_closed_4429_and_the_others_stay(live_server_url, user, other_user):
    cap = django_settings.MAX_WS_CONNECTIONS_PER_USER
    token, other = await tokens_of(user, other_user)
    url = ws_url(live_server_url)
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(open_ws(url, additional_headers=bearer(token))) for _ in range(cap)]
        for ws in sockets:
            await connected(ws)

        async with open_ws(url, additional_headers=bearer(token)) as extra:
            code, frames = await expect_close(extra)
        assert (code, frames) == (4429, [])
        refused = await wait_for_audit(action=AuditAction.WS_REJECTED, details__reason="too_many_connections")
        assert len(refused) == 1

        for i, ws in enumerate(sockets):
            assert (await ping(ws, i))["type"] == "pong"
        # Another user is not affected.
        async with open_ws(url, additional_headers=bearer(other)) as theirs:
            await connected(theirs)

        # Closing one socket frees its slot as soon as daphne has let it go.
        await sockets[0].close()
        await wait_for_audit(action=AuditAction.WS_DISCONNECTED, actor_id=user.pk)
        async with open_ws(url, additional_headers=bearer(token)) as replacement:
            await connected(replacement)
            assert (await ping(replacement, "r"))["type"] == "pong"


@pytest.mark.live
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_entries_of_a_crashed_process_do_not_count(live_server_url, tenant, user):
    (token,) = await tokens_of(user)
    cap = django_settings.MAX_WS_CONNECTIONS_PER_USER
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    key = registry_key(tenant_id=tenant.pk, user_id=user.pk)
    now_ms = int(time.time() * 1000)
    try:
        # A process that died a while ago left its sockets' entries behind.
        client.zadd(key, {f"crashed-{i}": now_ms - 10_000 for i in range(cap)})
        async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
            await connected(ws)
        await wait_for_audit(action=AuditAction.WS_DISCONNECTED, actor_id=user.pk)
        assert client.zcard(key) == 0  # purged by the script, and our slot released

        # Live entries of another process do count: the same key is being read.
        client.zadd(key, {f"elsewhere-{i}": now_ms + 60_000 for i in range(cap)})
        async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
            code, frames = await expect_close(ws)
        assert (code, frames) == (4429, [])
    finally:
        client.delete(key)
        client.close()


# --- The outbound queue -------------------------------------------------------------------


class RecordingConsumer(consumers.HubConsumer):
    """The hub's consumer, remembering its instances so a test can call ``deliver``."""

    instances: list[consumers.HubConsumer] = []

    async def connect(self) -> None:
        RecordingConsumer.instances.append(self)
        await super().connect()


class Gate:
    """An ASGI server's socket that can stop taking frames: ``websocket.send``
    waits while the gate is shut (backpressure from a client that stopped reading)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def wrap(self, app):
        async def gated(scope, receive, send):
            async def gated_send(message):
                if message["type"] == "websocket.send":
                    await self.open.wait()
                await send(message)

            await app(scope, receive, gated_send)

        return gated


@pytest.fixture
async def hub(user):
    RecordingConsumer.instances.clear()
    token = await database_sync_to_async(access_token)(user)
    gate = Gate()
    app = gate.wrap(WebSocketAuthMiddleware(URLRouter([re_path(r"^ws/$", RecordingConsumer.as_asgi())])))
    comm = WebsocketCommunicator(app, "/ws/", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected_, _ = await comm.connect()
    assert connected_
    assert (await comm.receive_json_from())["type"] == "hello"
    yield comm, RecordingConsumer.instances[-1], gate
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_frames_go_out_at_once_and_in_order(hub, settings):
    comm, consumer, _gate = hub
    for i in range(10):
        consumer.deliver(json.dumps({"type": "demo", "n": i}))
        # The server took it before deliver() returned: nothing waits.
        assert consumer._outbox.waiting == 0

    received = [(await comm.receive_json_from())["n"] for _ in range(10)]
    assert received == list(range(10))
    assert await comm.receive_nothing(timeout=0.1)


@pytest.mark.django_db(transaction=True)
async def test_frames_wait_in_order_behind_a_server_that_is_not_taking_them(hub):
    comm, consumer, gate = hub
    gate.open.clear()
    for i in range(5):
        consumer.deliver(json.dumps({"type": "demo", "n": i}))
    await asyncio.sleep(0.05)
    # The first send is suspended at the gate; the other four wait behind it.
    assert consumer._outbox.waiting == 4
    assert await comm.receive_nothing(timeout=0.1)

    gate.open.set()
    consumer.deliver(json.dumps({"type": "demo", "n": 5}))
    received = [(await comm.receive_json_from())["n"] for _ in range(6)]
    assert received == list(range(6))


@pytest.mark.django_db(transaction=True)
async def test_overflowing_the_backlog_closes_4413(hub, settings, user):
    comm, consumer, gate = hub
    limit = settings.WS_MAX_OUTBOUND_BACKLOG
    gate.open.clear()
    # One send suspended at the gate, then `limit` waiting: the next one overflows.
    for i in range(limit + 2):
        consumer.deliver(json.dumps({"type": "demo", "n": i}))
    consumer.deliver("dropped: the socket is closing")

    output = await comm.receive_output(timeout=1)
    assert output == {"type": "websocket.close", "code": 4413}
    await comm.send_input({"type": "websocket.disconnect", "code": 4413})
    closed = await wait_for_audit(action=AuditAction.WS_DISCONNECTED, actor_id=user.pk)
    assert (closed[-1].details["code"], closed[-1].details["reason"]) == (4413, "slow_consumer")
