"""JSON logs carry the request id, in a real daphne process.

The client's ``X-Request-ID`` is used when it is sane, echoed in the response
and written on the log lines of that request; anything else is replaced by a
fresh id.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, stop_process, subprocess_env, wait_for_port


@pytest.fixture(scope="module")
def daphne_with_log(django_db_setup, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("daphne-log") / "daphne.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "spotify_agent.asgi:application"],
            cwd=ROOT,
            env=subprocess_env(LOG_FORMAT="json", LOG_LEVEL="INFO"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}", log
    finally:
        stop_process(proc)


def get(url: str, request_id: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"X-Request-ID": request_id})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["X-Request-ID"]
    except urllib.error.HTTPError as error:
        return error.code, error.headers["X-Request-ID"]


def json_lines_with(log: Path, request_id: str, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = []
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("request_id") == request_id:
                    lines.append(record)
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_log_lines_of_a_request_carry_the_client_request_id(daphne_with_log):
    base, log = daphne_with_log

    status, echoed = get(f"{base}/no-such-page", "client-req-0001")

    assert status == 404
    assert echoed == "client-req-0001"
    records = json_lines_with(log, "client-req-0001")
    assert records, log.read_text()[-2000:]
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])
    assert any(record["logger"] == "django.request" and record["level"] == "WARNING" for record in records)


def test_a_bogus_request_id_is_replaced(daphne_with_log):
    base, log = daphne_with_log

    status, echoed = get(f"{base}/no-such-page-either", "bad id\twith spaces")

    assert status == 404
    assert echoed != "bad id\twith spaces"
    assert len(echoed) == 32 and int(echoed, 16) >= 0
    assert json_lines_with(log, echoed)
