"""Where a session's track is, on this client's clock.

A ``playback.state`` says the track is at ``position_ms`` at ``anchor_ms`` on
the server's clock and advances at ``rate`` while ``playing``. With the offset
from ``realtime.client.clock``, a client places its player at the same second
as everyone else's, and reports where it actually is (``playback.position``)
so the server can send a correction. docs/protocol.md, "Listening sessions".
"""

from __future__ import annotations

import time
from typing import Any

from .clock import ClockSync


def position_at(state: dict[str, Any], server_ms: float) -> float:
    """The track's position (ms) at ``server_ms`` according to ``state``."""
    if not state.get("playing") or server_ms <= state["anchor_ms"]:
        return float(state["position_ms"])
    return state["position_ms"] + (server_ms - state["anchor_ms"]) * state["rate"]


def position_now(state: dict[str, Any], clock: ClockSync, *, local_ms: float | None = None) -> float:
    """Where the track is now (or at ``local_ms`` on this client's clock)."""
    local_ms = time.time() * 1000 if local_ms is None else local_ms
    return position_at(state, clock.to_server(local_ms))


def position_report(state: dict[str, Any], clock: ClockSync, *, player_position_ms: float) -> dict[str, Any]:
    """The content of a ``playback.position`` frame: where the player is, now."""
    return {
        "session": state["session"],
        "revision": state["revision"],
        "position_ms": int(player_position_ms),
        "at_ms": int(clock.to_server(time.time() * 1000)),
    }
