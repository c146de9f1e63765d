"""Helpers for driving ``/ws/`` on a real daphne with the ``websockets`` client.

Two servers: the session's ``live_server_url`` (production timers) and
``fast_server_url``, started once for this package with second-scale timers
so timeouts can be observed without slowing the suite down.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from accounts.services.tokens import TenantRefreshToken
from audit.models import AuditEvent
from tests.conftest import (
    daphne_server,
    wait_for_sockets_recorded,
)

# One of the origins the Makefile's TEST_ENV allows.
ALLOWED_ORIGIN = "https://app.example.com"

FAST_TIMERS = {
    "WS_AUTH_TIMEOUT": "1",
    "WS_AUTH_RECHECK_INTERVAL": "1",
    "WS_HEARTBEAT_INTERVAL": "2",
}


def ws_url(http_url: str, query: str = "") -> str:
    return http_url.replace("http://", "ws://", 1) + "/ws/" + (f"?{query}" if query else "")


def access_token(user, *, lifetime: timedelta | None = None) -> str:
    """A genuine access token of ``user``; ``lifetime`` shortens it below the setting's minimum."""
    token = TenantRefreshToken.for_user(user).access_token
    if lifetime is not None:
        token.set_exp(lifetime=lifetime)
    return str(token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def open_ws(url: str, **kwargs):
    """``websockets.connect`` with the library's own keepalive off: the tests
    decide when the client speaks."""
    kwargs.setdefault("open_timeout", 5)
    return connect(url, ping_interval=None, close_timeout=2, **kwargs)


async def recv_json(ws: ClientConnection, timeout: float = 3.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def expect_close(ws: ClientConnection, timeout: float = 3.0) -> tuple[int, list[dict]]:
    """Wait for the server to close; return the close code and the frames received before."""
    frames: list[dict] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed:
        pass
    except TimeoutError:
        pytest.fail(f"the socket was still open after {timeout}s (frames: {frames})")
    assert ws.close_code is not None
    return ws.close_code, frames


async def connected(ws: ClientConnection) -> dict:
    """Wait for the ``hello`` frame that starts an authenticated session."""
    frame = await recv_json(ws)
    assert frame["type"] == "hello", frame
    return frame


@database_sync_to_async
def audit_actions(**filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(**filters).order_by("created_at", "id"))


async def wait_for_audit(timeout: float = 3.0, **filters) -> list[AuditEvent]:
    """Audit rows are written by daphne; poll until one matches."""
    async with asyncio.timeout(timeout):
        while True:
            rows = await audit_actions(**filters)
            if rows:
                return rows
            await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
def _sockets_settled(request):
    """After a live test, wait until daphne has recorded every socket's end."""
    if request.node.get_closest_marker("live") is None:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    wait_for_sockets_recorded()


@pytest.fixture(scope="package")
def fast_server_url(django_db_setup, django_db_blocker, tmp_path_factory):
    """A second daphne with second-scale auth, re-check and heartbeat timers."""
    with daphne_server(tmp_path_factory.mktemp("daphne-fast"), **FAST_TIMERS) as url:
        yield url
