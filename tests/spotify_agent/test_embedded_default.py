"""What `make run` promises, end to end, on the embedded default.

A fresh data directory, no DATABASE_URL and no REDIS_URL, DEBUG on: migrate,
seed_demo and the same `manage.py runserver` the Makefile starts. Then the
admin, the API docs and /readyz answer, a demo user's token opens the
WebSocket, and a forged one is refused with 4401.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import ROOT, free_port, stop_process, wait_for_port

PASSWORD = "demo-pass-2026"


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("embedded-var")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "SQLITE_PATH", "ALLOWED_HOSTS", "WS_ALLOWED_ORIGINS"}
    }
    env.update(DEBUG="1", VAR_DIR=str(var_dir), LOG_LEVEL="WARNING", SECURE_SSL_REDIRECT="0")

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    migrated = manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    seeded = manage("seed_demo", "--password", PASSWORD)
    assert seeded.returncode == 0, seeded.stderr
    assert "alice" in seeded.stdout and "/api/docs/" in seeded.stdout and "/ws/" in seeded.stdout

    port = free_port()
    log = var_dir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
    except RuntimeError:
        stop_process(proc)
        raise RuntimeError(log.read_text()[-4000:]) from None
    yield f"127.0.0.1:{port}"
    stop_process(proc)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _token(base: str, username: str) -> str:
    request = urllib.request.Request(
        f"http://{base}/api/v1/auth/token/",
        data=json.dumps({"username": username, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["access"]


def test_admin_docs_and_readiness_answer(embedded_server):
    status, body = _get(f"http://{embedded_server}/admin/login/")
    assert status == 200 and b"Django" in body
    status, body = _get(f"http://{embedded_server}/api/docs/")
    assert status == 200 and b"swagger" in body.lower()
    status, body = _get(f"http://{embedded_server}/readyz")
    report = json.loads(body)
    assert status == 200, report
    assert set(report["checks"]) >= {"database", "cache", "channel_layer", "celery_broker", "celery_worker"}


async def test_websocket_accepts_a_demo_token_and_refuses_a_forged_one(embedded_server):
    token = await asyncio.to_thread(_token, embedded_server, "alice")
    url = f"ws://{embedded_server}/ws/"

    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello["type"] == "hello"
        assert hello["content"]["user"]["username"] == "alice"
        assert hello["content"]["tenant"] == "demo"

    header, payload, _signature = token.split(".")
    forged = f"{header}.{payload}.{'A' * 43}"
    async with connect(url, additional_headers={"Authorization": f"Bearer {forged}"}, open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4401


def _api(base: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_notification_goes_out_inline_and_lands_in_the_inbox(embedded_server):
    # Tasks run inline on the embedded default: the send answers once delivered.
    alice = _token(embedded_server, "alice")
    status, sent = _api(
        embedded_server,
        "/api/v1/notifications/",
        alice,
        {
            "template_key": "playlist.track_added",
            "context": {"actor": "Alice", "track": "Song", "playlist": "Friday Mix"},
            "category": "playlists",
            "priority": "critical",
            "recipients": {"tenant": True},
        },
    )
    assert status == 201, sent
    status, report = _api(embedded_server, f"/api/v1/notifications/{sent['id']}/", alice)
    assert status == 200 and report["deliveries_by_status"]["websocket"] == {"sent": report["recipient_count"]}
    status, inbox = _api(embedded_server, "/api/v1/me/notifications/", _token(embedded_server, "bob"))
    assert status == 200 and inbox["results"][0]["title"] == "New track in Friday Mix"
    status, analytics = _api(embedded_server, "/api/v1/notifications/analytics/", alice)
    assert status == 200 and any(row["latency_ms"] for row in analytics["rows"])
