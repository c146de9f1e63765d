"""The benchmark harness at a toy size, so it cannot rot: both servers, real
daphne processes, 20 sockets in 5 rooms of 4, two send steps. A smoke test,
not a benchmark: it checks that every message reaches every member, not how fast."""

import json
import subprocess
import sys

import pytest
from django.conf import settings

from tests.conftest import ROOT, subprocess_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_harness_delivers_every_message_on_both_servers(tmp_path):
    env = subprocess_env()
    output = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--servers=reference,hub",
            "--scenarios=small",
            "--small-rooms=5",
            "--small-members=4",
            "--small-rates=0.25,0.5",
            "--step-seconds=1",
            "--drain=1",
            "--workers=1",
            "--no-migrate",
            f"--database-url={env.get('DATABASE_URL', '')}",
            f"--redis-url={settings.REDIS_URL or ''}",
            f"--output={output}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    rows = json.loads(output.read_text())["scenarios"]["small"]
    assert set(rows) == {"reference", "hub"}
    for server, row in rows.items():
        assert row["connected"]["connected"] == 20, (server, row["connected"])
        assert row["joined"] == {"joined": 20, "rooms": 5, "failures": {}}, server
        assert len(row["steps"]) == 2
        for step in row["steps"]:
            assert step["sent"] > 0, (server, step)
            assert step["delivered"] == step["expected"] == step["sent"] * 4, (server, step)
            assert step["lost"] == step["duplicated"] == 0, (server, step)
            assert step["errors"] == {}, (server, step)
