"""Opening ``/ws/``: the three ways to authenticate, and every refusal (close 4401/4403)
with nothing delivered before it. Drives a real daphne."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import override_settings
from websockets.exceptions import ConnectionClosed

from accounts.services.tokens import access_token_authenticate, ws_ticket_issue
from audit.constants import ActorType, AuditAction

from .conftest import (
    ALLOWED_ORIGIN,
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


def _ticket(token: str) -> str:
    _user, principal = access_token_authenticate(raw_token=token)
    return ws_ticket_issue(principal=principal).ticket


async def test_header_token_is_accepted_and_ping_answered(live_server_url, user, token):
    async with open_ws(ws_url(live_server_url), additional_headers=bearer(token)) as ws:
        hello = await connected(ws)
        assert hello["content"]["protocol"] == 1
        assert hello["content"]["user"] == {"id": user.pk, "username": "alice", "role": "member"}
        assert hello["content"]["tenant"] == "acme"

        await ws.send('{"type": "ping", "id": "p1"}')
        pong = await recv_json(ws)

    assert pong["type"] == "pong"
    assert pong["id"] == "p1"
    server_time = datetime.fromisoformat(pong["content"]["server_time"])
    assert abs((server_time - datetime.now(tz=UTC)).total_seconds()) < 5
    assert pong["timestamp"].endswith("Z")


@pytest.mark.redis
async def test_ticket_is_accepted_once(live_server_url, user, token):
    ticket = await database_sync_to_async(_ticket)(token)

    async with open_ws(ws_url(live_server_url, f"ticket={ticket}"), origin=ALLOWED_ORIGIN) as ws:
        hello = await connected(ws)
        assert hello["content"]["user"]["id"] == user.pk

    async with open_ws(ws_url(live_server_url, f"ticket={ticket}"), origin=ALLOWED_ORIGIN) as ws:
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])
    rejected = await wait_for_audit(action=AuditAction.WS_REJECTED)
    assert rejected[-1].details == {"reason": "ticket_invalid", "method": "ticket"}


@pytest.mark.redis
async def test_expired_ticket_is_refused(live_server_url, user, token):
    with override_settings(WS_TICKET_TTL=1):
        ticket = await database_sync_to_async(_ticket)(token)
    await asyncio.sleep(1.5)

    async with open_ws(ws_url(live_server_url, f"ticket={ticket}"), origin=ALLOWED_ORIGIN) as ws:
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])


@pytest.mark.redis
async def test_ticket_without_origin_is_refused(live_server_url, user, token):
    ticket = await database_sync_to_async(_ticket)(token)

    async with open_ws(ws_url(live_server_url, f"ticket={ticket}")) as ws:
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])


async def test_first_frame_token_is_accepted(live_server_url, user, token):
    async with open_ws(ws_url(live_server_url), origin=ALLOWED_ORIGIN) as ws:
        await ws.send(f'{{"type": "auth", "id": 1, "token": "{token}"}}')
        hello = await connected(ws)
        ack = await recv_json(ws)
        assert hello["content"]["user"]["id"] == user.pk
        assert ack["type"] == "ack"
        assert ack["id"] == 1
        assert ack["content"]["expires_at"].endswith("Z")

        await ws.send('{"type": "ping"}')
        assert (await recv_json(ws))["type"] == "pong"


async def test_first_frame_without_origin_is_refused(live_server_url, token):
    async with open_ws(ws_url(live_server_url)) as ws:
        # The server may close before the frame is even sent: it needs none.
        with contextlib.suppress(ConnectionClosed):
            await ws.send(f'{{"type": "auth", "token": "{token}"}}')
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])


async def test_first_frame_timeout_closes(fast_server_url):
    started = time.monotonic()
    async with open_ws(ws_url(fast_server_url), origin=ALLOWED_ORIGIN) as ws:
        code, frames = await expect_close(ws, timeout=4)
    assert (code, frames) == (4401, [])
    assert time.monotonic() - started >= 0.9
    rejected = await wait_for_audit(action=AuditAction.WS_REJECTED)
    assert rejected[-1].details == {"reason": "auth_timeout", "method": "first_frame"}


async def test_other_frame_before_auth_closes(live_server_url):
    async with open_ws(ws_url(live_server_url), origin=ALLOWED_ORIGIN) as ws:
        await ws.send('{"type": "ping", "id": "p"}')
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])


def _claims(user, tenant) -> dict:
    now = int(time.time())
    return {
        "token_type": "access",
        "exp": now + 300,
        "iat": now,
        "jti": "f" * 32,
        "user_id": str(user.pk),
        "tenant_id": tenant.pk,
        "aud": settings.JWT_AUDIENCE,
        "iss": settings.JWT_ISSUER,
    }


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [("not-the-signing-key-but-long-enough-0123456789", "HS256"), (None, "none")],
    ids=["wrong-key", "alg-none"],
)
async def test_forged_token_is_refused(live_server_url, tenant, user, key, algorithm):
    forged = jwt.encode(_claims(user, tenant), key, algorithm=algorithm)

    async with open_ws(ws_url(live_server_url), additional_headers=bearer(forged)) as ws:
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])
    rejected = await wait_for_audit(action=AuditAction.WS_REJECTED)
    assert rejected[-1].details == {"reason": "token_invalid", "method": "header"}
    assert rejected[-1].actor_type == ActorType.ANONYMOUS


async def test_expired_token_is_refused(live_server_url, user):
    expired = await database_sync_to_async(access_token)(user, lifetime=timedelta(seconds=-1))

    async with open_ws(ws_url(live_server_url), additional_headers=bearer(expired)) as ws:
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])


async def test_missing_credentials_are_refused(live_server_url):
    async with open_ws(ws_url(live_server_url)) as ws:
        code, frames = await expect_close(ws)
    assert (code, frames) == (4401, [])
    rejected = await wait_for_audit(action=AuditAction.WS_REJECTED)
    assert rejected[-1].details == {"reason": "token_missing", "method": "header"}


async def test_forbidden_origin_is_refused(live_server_url, token):
    async with open_ws(
        ws_url(live_server_url), origin="https://evil.example.net", additional_headers=bearer(token)
    ) as ws:
        code, frames = await expect_close(ws)
    assert (code, frames) == (4403, [])
