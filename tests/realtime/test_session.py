"""An open socket: frames and their answers, token expiry and refresh,
revocation, heartbeat, and the audit of its lifecycle. Drives a real daphne."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from accounts.models import User
from accounts.services.users import user_set_active
from audit.constants import AuditAction
from audit.services import Actor

from .conftest import (
    access_token,
    bearer,
    connected,
    expect_close,
    open_ws,
    recv_json,
    wait_for_audit,
    ws_url,
)

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def token(user) -> str:
    return access_token(user)


async def test_malformed_json_is_answered_and_socket_stays_open(live_server_url, token):
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        await ws.send('{"type": "ping", "id": ')
        answer = await recv_json(ws)
        assert answer["type"] == "error"
        assert answer["code"] == "bad_json"
        assert "id" not in answer

        await ws.send('{"type": "ping", "id": 7}')
        assert (await recv_json(ws))["id"] == 7


async def test_unknown_type_is_answered_with_its_id(live_server_url, token):
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        await ws.send('{"type": "nope.nothing", "id": "x-1"}')
        answer = await recv_json(ws)
    assert answer["type"] == "error"
    assert answer["code"] == "unknown_type"
    assert answer["id"] == "x-1"


async def test_invalid_envelope_is_answered_with_its_id(live_server_url, token):
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        await ws.send('{"type": "ping", "id": "c-2", "content": []}')
        answer = await recv_json(ws)
    assert (answer["type"], answer["code"], answer["id"]) == ("error", "invalid", "c-2")


async def test_oversized_frame_is_refused_and_socket_stays_open(live_server_url, token):
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        padding = "x" * settings.WS_MAX_FRAME_BYTES
        await ws.send(json.dumps({"type": "ping", "id": 1, "content": {"pad": padding}}))
        answer = await recv_json(ws)
        assert (answer["type"], answer["code"]) == ("error", "too_large")

        await ws.send('{"type": "ping", "id": 2}')
        assert (await recv_json(ws))["type"] == "pong"


async def test_token_expiry_closes_an_open_socket(live_server_url, user):
    short = await database_sync_to_async(access_token)(user, lifetime=timedelta(seconds=2))
    started = time.monotonic()
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(short)) as ws:
        await connected(ws)
        code, frames = await expect_close(ws, timeout=5)
    assert (code, frames) == (4401, [])
    assert time.monotonic() - started >= 1.0
    closed = await wait_for_audit(action=AuditAction.WS_DISCONNECTED, actor_id=user.pk)
    assert closed[-1].details["reason"] == "token_expired"
    assert closed[-1].details["code"] == 4401


async def test_fresh_auth_frame_keeps_the_socket_open(live_server_url, user):
    short = await database_sync_to_async(access_token)(user, lifetime=timedelta(seconds=2))
    fresh = await database_sync_to_async(access_token)(user)
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(short)) as ws:
        await connected(ws)
        await ws.send(json.dumps({"type": "auth", "id": "r1", "token": fresh}))
        ack = await recv_json(ws)
        assert (ack["type"], ack["id"]) == ("ack", "r1")

        await asyncio.sleep(2.5)
        await ws.send('{"type": "ping", "id": "after"}')
        pong = await recv_json(ws)
    assert (pong["type"], pong["id"]) == ("pong", "after")


async def test_auth_frame_of_another_user_closes(live_server_url, user, other_user, token):
    intruder = await database_sync_to_async(access_token)(other_user)
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        await ws.send(json.dumps({"type": "auth", "id": "r1", "token": intruder}))
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])


@pytest.mark.redis
async def test_deactivation_closes_open_sockets_at_once(live_server_url, user, token):
    async with (
        open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as first,
        open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as second,
    ):
        await connected(first)
        await connected(second)
        await database_sync_to_async(user_set_active)(user=user, active=False, actor=Actor.system("test"))
        # Below the 5 s re-check interval: only the broadcast can be this fast.
        assert settings.WS_AUTH_RECHECK_INTERVAL >= 5
        results = await asyncio.gather(expect_close(first, timeout=3), expect_close(second, timeout=3))
    assert results == [(4401, []), (4401, [])]


async def test_recheck_closes_a_socket_whose_user_was_deactivated_silently(fast_server_url, user, token):
    async with open_ws(ws_url(fast_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        # A raw update emits no event: only the periodic re-check can notice it.
        await database_sync_to_async(User.objects.filter(pk=user.pk).update)(is_active=False)
        code, frames = await expect_close(ws, timeout=3)
    assert (code, frames) == (4401, [])
    closed = await wait_for_audit(action=AuditAction.WS_DISCONNECTED, actor_id=user.pk)
    assert closed[-1].details["reason"] == "user_inactive"


async def test_silent_socket_is_closed_by_heartbeat(fast_server_url, token):
    started = time.monotonic()
    async with open_ws(ws_url(fast_server_url), additional_headers=bearer(token)) as ws:
        await connected(ws)
        code, frames = await expect_close(ws, timeout=6)
    assert (code, frames) == (4408, [])
    # 2 x WS_HEARTBEAT_INTERVAL (2 s) of silence.
    assert time.monotonic() - started >= 3.5


async def test_connect_and_disconnect_are_audited(live_server_url, tenant, user, token):
    async with open_ws(
        ws_url(live_server_url), additional_headers={**bearer(token), "User-Agent": "hub-test/1.0"}
    ) as ws:
        await connected(ws)
        opened = await wait_for_audit(action=AuditAction.WS_CONNECTED, actor_id=user.pk)
    closed = await wait_for_audit(action=AuditAction.WS_DISCONNECTED, actor_id=user.pk)

    assert opened[-1].tenant_id == tenant.pk
    assert opened[-1].details == {"method": "header"}
    assert opened[-1].user_agent == "hub-test/1.0"
    assert opened[-1].ip == "127.0.0.1"
    assert closed[-1].details["reason"] == "client"
    assert closed[-1].details["code"] == 1000
