"""``realtime.client.HubClient``'s transport against a real daphne: password
login, hello, ping, heartbeats, token refresh on the open socket, reconnection
with backoff after the server goes away, and what each close code makes it do.
4429 and 4403 (an Origin the server does not allow) come from the real daphne;
4500, which it sends only when the server itself fails, comes from a local
``websockets`` server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from audit.constants import AuditAction
from realtime.client import (
    CLIENT_CONNECTED,
    CLIENT_DISCONNECTED,
    BackoffPolicy,
    ConnectionLost,
    HubClient,
    HubClosed,
    HubError,
    PasswordTokenProvider,
    hub_url,
)
from realtime.client.tokens import AuthenticationFailed, token_expiry
from tests.conftest import ROOT, subprocess_env
from tests.factories import DEFAULT_PASSWORD

from .client_support import RecordingTokens, RestartableDaphne
from .conftest import FAST_TIMERS, access_token, audit_actions

pytestmark = pytest.mark.django_db(transaction=True)

FAST_BACKOFF = BackoffPolicy(base=0.1, cap=0.5, stable_after=1.0, throttled_floor=0.0)


async def next_event(client: HubClient, kind: str, timeout: float = 10.0) -> dict:
    """The next event of type ``kind`` (earlier events of other types are skipped)."""
    async with asyncio.timeout(timeout):
        async for frame in client.events():
            if frame["type"] == kind:
                return frame
    raise AssertionError(f"events() ended before a {kind!r} frame")


@pytest.fixture
def daphne(transactional_db, tmp_path):
    """A dedicated daphne with second-scale timers; stopped before the test's
    database flush so its writes cannot race it."""
    server = RestartableDaphne(tmp_path, **FAST_TIMERS)
    server.start()
    yield server
    server.stop()


# --- Pure parts ----------------------------------------------------------------------


def test_backoff_uses_full_jitter_within_a_doubling_capped_window():
    policy = BackoffPolicy(base=0.5, cap=4.0, throttled_floor=30.0)
    for attempt, window in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (100, 4.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= delay <= window for delay in delays)
        # Full jitter spreads over the whole window rather than clustering at its top.
        assert min(delays) < window * 0.25
        assert max(delays) > window * 0.75
    throttled = [policy.delay(0, throttled=True) for _ in range(50)]
    assert all(30.0 <= delay <= 30.5 for delay in throttled)


def test_hub_url_accepts_the_server_or_the_endpoint():
    assert hub_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/ws/"
    assert hub_url("https://api.example.com/") == "wss://api.example.com/ws/"
    assert hub_url("ws://127.0.0.1:8000/ws/") == "ws://127.0.0.1:8000/ws/"
    with pytest.raises(ValueError, match="ftp"):
        hub_url("ftp://example.com")


def test_token_expiry_reads_the_exp_claim(user):
    token = access_token(user, lifetime=timedelta(seconds=120))
    assert abs(token_expiry(token) - (time.time() + 120)) < 5
    assert token_expiry("not-a-jwt") is None


# --- Against daphne --------------------------------------------------------------------


@pytest.mark.live
async def test_password_login_connects_and_ping_is_answered(live_server_url, user):
    provider = PasswordTokenProvider(live_server_url, username="alice", password=DEFAULT_PASSWORD)
    async with HubClient(live_server_url, token_provider=provider) as client:
        assert client.connected
        assert client.hello["content"]["user"] == {"id": user.pk, "username": "alice", "role": "member"}
        pong = await client.ping()
        assert pong["server_time"].endswith("Z")
        # A second call reuses the cached access token instead of logging in again.
        assert await provider() == await provider()


@pytest.mark.live
async def test_wrong_password_stops_the_client(live_server_url, user):
    provider = PasswordTokenProvider(live_server_url, username="alice", password="wrong-password")
    client = HubClient(live_server_url, token_provider=provider)
    with pytest.raises(HubClosed, match="credentials refused"):
        async with client:
            pass
    with pytest.raises(AuthenticationFailed):
        await provider()


@pytest.mark.live
async def test_error_answer_raises_hub_error_with_code(live_server_url, user):
    async with HubClient(live_server_url, token_provider=RecordingTokens(user)) as client:
        with pytest.raises(HubError) as caught:
            await client.request("no.such.type", content={"x": 1})
        assert caught.value.code == "unknown_type"
        # The socket is still usable after an error answer.
        assert "server_time" in await client.ping()


async def test_heartbeats_keep_a_quiet_socket_open(daphne, user):
    # The server closes a socket silent for 2 x heartbeat_interval (2 s here).
    async with HubClient(daphne.url, token_provider=RecordingTokens(user), backoff=FAST_BACKOFF) as client:
        assert client.hello["content"]["heartbeat_interval"] == 2
        await asyncio.sleep(6)
        assert client.connected
        assert client.sessions == 1


async def test_token_is_refreshed_on_the_open_socket_before_it_expires(daphne, user):
    tokens = RecordingTokens(user, lifetime=timedelta(seconds=6))
    async with HubClient(daphne.url, token_provider=tokens, backoff=FAST_BACKOFF) as client:
        # Past the first token's expiry: without an auth frame the server closes with 4401.
        await asyncio.sleep(8)
        assert client.connected
        assert client.sessions == 1
        assert tokens.calls[0] is False
        assert tokens.calls[1:] and all(tokens.calls[1:])


async def test_expired_token_fetches_a_new_one_and_reconnects_at_once(daphne, user):
    expired = await database_sync_to_async(access_token)(user, lifetime=timedelta(seconds=-60))
    tokens = RecordingTokens(user, first=expired)
    client = HubClient(daphne.url, token_provider=tokens, backoff=BackoffPolicy(base=30, cap=30))
    async with client:
        assert client.sessions == 1
        # No backoff before the first retry after 4401: only a new token was needed.
        disconnected = await next_event(client, CLIENT_DISCONNECTED)
        assert disconnected["content"]["code"] == 4401
        assert disconnected["content"]["retry_in"] == 0
    assert tokens.calls == [False, True]


async def test_reconnects_with_backoff_after_the_server_restarts(daphne, user):
    async with HubClient(daphne.url, token_provider=RecordingTokens(user), backoff=FAST_BACKOFF) as client:
        await next_event(client, CLIENT_CONNECTED)
        daphne.stop()
        first = await next_event(client, CLIENT_DISCONNECTED)
        # While the server is down every attempt fails and waits within the backoff window.
        retries = [await next_event(client, CLIENT_DISCONNECTED) for _ in range(3)]
        assert all(0 <= frame["content"]["retry_in"] <= FAST_BACKOFF.cap for frame in [first, *retries])
        assert not client.connected
        with pytest.raises(TimeoutError):
            await client.request("ping", timeout=0.3)

        daphne.start()
        await next_event(client, CLIENT_CONNECTED, timeout=15)
        assert client.sessions == 2
        assert "server_time" in await client.ping()


async def test_a_request_waiting_for_an_answer_fails_when_the_socket_drops(daphne, user):
    async with HubClient(daphne.url, token_provider=RecordingTokens(user), backoff=FAST_BACKOFF) as client:
        ws = client._ws
        waiting = asyncio.create_task(client.request("ping", timeout=5))
        await asyncio.sleep(0)
        # Drop the TCP connection under the request, as a network failure would.
        ws.transport.abort()
        with pytest.raises(ConnectionLost):
            await waiting
        await client.wait_connected(10)
        assert client.sessions == 2


# --- Close codes from a stub server ---------------------------------------------------


async def _closing_server(code: int):
    """A WebSocket server that closes every connection with ``code`` right after the handshake."""
    attempts: list[float] = []

    async def handler(ws):
        attempts.append(time.monotonic())
        await ws.close(code, "stub")

    server = await serve(handler, "127.0.0.1", 0)
    return server, attempts


async def _static_token(*, force: bool = False) -> str:
    return "stub-token"


@pytest.mark.live
async def test_close_4403_stops_the_client_for_good(live_server_url, user):
    """An Origin outside WS_ALLOWED_ORIGINS: refused once, never retried."""
    client = HubClient(
        live_server_url,
        token_provider=PasswordTokenProvider(live_server_url, username=user.username, password=DEFAULT_PASSWORD),
        backoff=FAST_BACKOFF,
        origin="https://not-allowed.example",
    )
    client.start()
    with pytest.raises(HubClosed) as caught:
        async with asyncio.timeout(10):
            async for _frame in client.events():
                pass
    assert caught.value.code == 4403
    await asyncio.sleep(0.5)
    refused = await audit_actions(action=AuditAction.WS_REJECTED, actor_id=None)
    assert [row.details.get("reason") for row in refused] == ["origin_forbidden"]
    assert client.sessions == 0
    with pytest.raises(HubClosed):
        await client.ping()
    await client.close()


async def test_close_4429_backs_off_longer_than_other_codes():
    policy = BackoffPolicy(base=0.05, cap=0.1, stable_after=60, throttled_floor=2.0)
    delays: dict[int, list[float]] = {}
    for code in (4500, 4429):
        server, _attempts = await _closing_server(code)
        port = server.sockets[0].getsockname()[1]
        client = HubClient(f"ws://127.0.0.1:{port}/ws/", token_provider=_static_token, backoff=policy)
        client.start()
        try:
            frame = await next_event(client, CLIENT_DISCONNECTED)
            delays[code] = frame["content"]["retry_in"]
            # The stub never says hello: the socket never counted as connected.
            assert frame["content"]["code"] == code
        finally:
            await client.close()
            server.close()
            await server.wait_closed()
    assert delays[4500] <= 0.1
    assert 2.0 <= delays[4429] <= 2.1


# --- The command line ----------------------------------------------------------------------


@pytest.mark.live
def test_cli_ping_reports_the_round_trip(live_server_url, user):
    result = subprocess.run(
        [sys.executable, "-m", "realtime.client", "ping", "--url", live_server_url, "--username", "alice"],
        cwd=ROOT,
        env=subprocess_env(HUB_PASSWORD=DEFAULT_PASSWORD),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "as alice (acme); pong in" in result.stdout


@pytest.mark.live
def test_cli_reports_refused_credentials(live_server_url, user):
    result = subprocess.run(
        [sys.executable, "-m", "realtime.client", "ping", "--url", live_server_url, "--username", "alice"],
        cwd=ROOT,
        env=subprocess_env(HUB_PASSWORD="wrong-password"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "credentials refused" in result.stderr


@pytest.mark.live
async def test_past_the_connection_cap_the_real_server_closes_4429_and_the_client_waits(
    live_server_url, user, settings
):
    token = await database_sync_to_async(access_token)(user)

    async def provider(*, force: bool = False) -> str:
        return token

    headers = {"Authorization": f"Bearer {token}"}
    others = [await connect(hub_url(live_server_url), additional_headers=headers) for _ in range(5)]
    try:
        for ws in others:
            assert json.loads(await ws.recv())["type"] == "hello"
        policy = BackoffPolicy(base=0.05, cap=0.1, stable_after=60, throttled_floor=2.0)
        client = HubClient(hub_url(live_server_url), token_provider=provider, backoff=policy)
        client.start()
        try:
            frame = await next_event(client, CLIENT_DISCONNECTED)
        finally:
            await client.close()
    finally:
        for ws in others:
            await ws.close()
    assert settings.MAX_WS_CONNECTIONS_PER_USER == 5
    assert frame["content"]["code"] == 4429
    assert 2.0 <= frame["content"]["retry_in"] <= 2.1
