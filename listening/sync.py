"""Keeping listeners on the same second: what to do about a client's drift.

Pure Python. A client reports where its player is (``playback.position``) at a
moment of the server's clock (it knows the offset, ``realtime.client.clock``);
the server compares that with where the authoritative state says the track
is then, and answers with a correction from this rule:

* within ``DRIFT_TOLERANCE_MS``: nothing (below what ears tell apart in music
  heard in different rooms; lip-sync studies put the threshold near 45 ms);
* up to ``SEEK_THRESHOLD_MS``: play slightly slower or faster, by at most
  ``MAX_RATE_ADJUST``, until the drift is absorbed (a seek would be an audible
  jump, a 5% tempo change with time-stretching is not);
* beyond: seek to where the track is (absorbing a second at 5% would take 20 s).

docs/protocol.md, "Listening sessions", quotes these numbers to clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DRIFT_TOLERANCE_MS = 40
SEEK_THRESHOLD_MS = 1000
MAX_RATE_ADJUST = 0.05
# Aim to absorb a drift within this long (the adjust grows with the drift, up
# to MAX_RATE_ADJUST), so small drifts get a gentler, longer nudge.
CATCH_UP_MS = 4000


class CorrectionAction(StrEnum):
    NONE = "none"
    RATE = "rate"
    SEEK = "seek"


@dataclass(frozen=True)
class Correction:
    """``rate`` for ``duration_ms`` then back to the session's rate; or a seek."""

    action: CorrectionAction
    drift_ms: float  # the client's position minus the authoritative one: > 0 is ahead
    rate: float | None = None
    duration_ms: int | None = None


def correction(*, drift_ms: float, session_rate: float = 1.0) -> Correction:
    """What a client ``drift_ms`` away from the authoritative position should do."""
    size = abs(drift_ms)
    if size <= DRIFT_TOLERANCE_MS:
        return Correction(CorrectionAction.NONE, drift_ms)
    if size > SEEK_THRESHOLD_MS:
        return Correction(CorrectionAction.SEEK, drift_ms)
    adjust = min(MAX_RATE_ADJUST, size / CATCH_UP_MS)
    # Ahead: slow down; behind: speed up. Relative to the session's own rate.
    rate = session_rate * (1 - adjust if drift_ms > 0 else 1 + adjust)
    # The drift shrinks by adjust x session_rate milliseconds per millisecond.
    duration = round(size / (adjust * session_rate))
    return Correction(CorrectionAction.RATE, drift_ms, rate=round(rate, 4), duration_ms=duration)
