"""The ASGI entry point as daphne imports it: what is loaded at startup is frozen
out of the garbage collector's full passes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT, subprocess_env

PROBE = """
import gc, json
import spotify_agent.asgi
frozen = gc.get_freeze_count()
gc.collect()
print(json.dumps({"frozen": frozen, "tracked": len(gc.get_objects())}))
"""


def test_the_startup_objects_are_frozen_out_of_full_collections():
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, check=True
    )
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    # Django, the apps and the libraries: far more than a full pass still has to visit.
    assert counts["frozen"] > 50_000
    assert counts["frozen"] > 3 * counts["tracked"]
