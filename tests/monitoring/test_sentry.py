"""Sentry: credentials never leave the process.

``sentry_init`` runs in a subprocess (its integrations patch Django and Celery
for the life of the process) that reports to a local HTTP server standing in
for Sentry's ingest endpoint.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from monitoring.sentry import FILTERED, scrub_event
from tests.conftest import ROOT, subprocess_env

SECRET_JWT = "eyJhbGciOiJIUzI1NiJ9.secret-payload.signature"
SECRET_TICKET = "wsticket-0123456789abcdef"


def event_with_secrets() -> dict:
    return {
        "request": {
            "url": f"https://api.example.com/ws/?ticket={SECRET_TICKET}",
            "query_string": f"room=7&ticket={SECRET_TICKET}",
            "headers": {
                "Authorization": f"Bearer {SECRET_JWT}",
                "Cookie": "sessionid=abc",
                "User-Agent": "pytest",
            },
            "cookies": {"sessionid": "abc"},
        },
        "breadcrumbs": {"values": [{"category": "httplib", "data": {"url": f"/ws/?ticket={SECRET_TICKET}&x=1"}}]},
    }


def test_scrub_event_removes_credentials_and_keeps_the_rest():
    event = scrub_event(event_with_secrets(), {})

    request = event["request"]
    assert request["headers"] == {"Authorization": FILTERED, "Cookie": FILTERED, "User-Agent": "pytest"}
    assert request["cookies"] == FILTERED
    assert request["query_string"] == f"room=7&ticket={FILTERED}"
    assert request["url"] == f"https://api.example.com/ws/?ticket={FILTERED}"
    assert event["breadcrumbs"]["values"][0]["data"]["url"] == f"/ws/?ticket={FILTERED}&x=1"


class _Ingest(BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.received.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_sentry_init_reports_scrubbed_events_with_the_integrations():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingest)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/42"
    script = f"""
import json, django, sentry_sdk
django.setup()
from monitoring.sentry import sentry_init
sentry_init(dsn={dsn!r}, environment="ci", traces_sample_rate=0.0)
options = sentry_sdk.get_client().options
print(json.dumps({{
    "integrations": sorted(sentry_sdk.get_client().integrations),
    "send_default_pii": options["send_default_pii"],
    "release": options["release"],
}}))
sentry_sdk.capture_event(json.loads({json.dumps(event_with_secrets())!r}))
sentry_sdk.flush(timeout=5)
"""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=subprocess_env(GIT_SHA="abc1234", SENTRY_DSN=""),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()

    assert proc.returncode == 0, proc.stderr
    reported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"django", "celery", "redis"} <= set(reported["integrations"])
    assert reported["send_default_pii"] is False
    assert reported["release"] == "abc1234"
    envelope = b"".join(server.received).decode()
    assert SECRET_JWT not in envelope
    assert SECRET_TICKET not in envelope
    assert "room=7" in envelope
