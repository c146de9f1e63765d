"""Streaming quality adaptation: which rung of the bitrate ladder one listener should stream.

Clients report, about once a second while audio plays, the throughput they
measured and the seconds of audio buffered ahead of the playhead.
``BitrateAdvisor`` turns one listener's reports into a recommended bitrate of
``LADDER_KBPS``, with hysteresis so the recommendation does not flap:

- start at ``START_KBPS``;
- **down at once** when the buffer is below ``PANIC_BUFFER_SECONDS`` (to the
  lowest rung) or the throughput estimate is below the current bitrate x
  ``DOWN_SAFETY`` (to the highest rung whose bitrate x ``DOWN_SAFETY`` fits);
- **up one rung at a time**, only after the estimate has stayed above the next
  rung x ``UP_MARGIN`` with the buffer at ``HEALTHY_BUFFER_SECONDS`` or more,
  on every report for ``HOLD_SECONDS``; one failing report restarts the hold.

The band between ``DOWN_SAFETY`` and ``UP_MARGIN``, and the hold, are the
hysteresis: a link that sits near a rung stays on the lower one.

Pure Python and deterministic (the caller passes the clock in ``Report.at``),
so the rule is unit-tested on recorded traces (tests/listening/traces/). What
it leaves to others: ``listening.handlers.quality`` keeps one advisor per socket and
speaks the ``quality.*`` frames. docs/protocol.md, "Streaming quality", is the
client-facing description of this rule.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# The bitrates the music provider encodes each track at (the low, normal, high
# and very high tiers music services commonly offer): 24 kbps is speech-grade
# audio that still plays on a 2G link, 320 kbps the top quality.
LADDER_KBPS: tuple[int, ...] = (24, 96, 160, 320)

# Where a listener starts before any estimate exists. 96 kbps sounds acceptable
# and plays on any link that can stream music at all; starting at the top would
# stall the first seconds of a slow link while the estimate builds up, whereas
# starting low costs only the ~10 s per rung the climb takes on a good link.
START_KBPS = 96

# A rung is kept only while the estimate covers its bitrate with 20% to spare:
# HTTP/TLS/TCP overhead takes a few percent, and the throughput inside one
# report's second varies more than the report shows. Below that the buffer
# drains, so the down-switch is immediate.
DOWN_SAFETY = 1.2

# Going up needs the estimate to exceed the *next* rung by 50%. The gap between
# 1.2 and 1.5 is the hysteresis band: right after an up-switch the estimate is
# still 1.5 / 1.2 = 1.25 times the level that would send it back down: the
# estimate must lose a fifth before the switch is undone, more than the
# harmonic mean of an unchanged link wanders.
UP_MARGIN = 1.5

# How long the up conditions must hold, on every report, before an up-switch.
# Long enough that a 1-second spike (it stays in the estimate window for
# ESTIMATE_WINDOW reports, half of this) cannot carry it alone, and that links
# oscillating every few seconds (a congested café) never qualify; short enough
# that a good link climbs from START_KBPS to the top in about half a minute.
HOLD_SECONDS = 10.0

# Below 4 s of buffered audio a stall is a few seconds away, sooner than the
# estimate can be trusted to fall (a dead link reports nothing new): drop to the
# lowest rung, whose chunks download fastest, whatever the estimate says.
PANIC_BUFFER_SECONDS = 4.0

# Up-switches only with 12 s buffered. If the estimate that justified the switch
# was wrong, the higher rung drains the buffer; 8 s above the panic level leaves
# time for the immediate down-switch (one bad report) long before a stall.
HEALTHY_BUFFER_SECONDS = 12.0

# The estimate is the harmonic mean of the last 5 reports (about 5 s). The
# harmonic mean is dominated by the smallest samples: a single 1-second spike
# to 10 times the link's rate raises it by only ~20%, while a single collapse pulls
# it down at once. That asymmetry is what adaptation wants (FESTIVE, Jiang et
# al., CoNEXT 2012, uses it for the same reason); an arithmetic mean or an EWMA
# lets one spike drag the estimate up by a share of the spike's whole size. Five samples
# keep a drop visible within a report or two and a recovery within 5 s.
ESTIMATE_WINDOW = 5

# Reports come about once a second. After a silence longer than 5 s nothing
# says the up conditions held through it, and the samples before it describe
# a link that may be gone (a pause, a tunnel, a handover): the hold and the
# estimate window both start over.
MAX_REPORT_GAP_SECONDS = 5.0


class Reason(StrEnum):
    """Why the advice is what it is (a closed set, sent to the client)."""

    START = "start"  # the first advice on this socket: START_KBPS
    HOLD = "hold"  # no change
    DOWN_THROUGHPUT = "down_throughput"  # the estimate no longer covers the rung
    DOWN_BUFFER = "down_buffer"  # buffer below the panic level: the lowest rung
    UP = "up"  # one rung up after the hold


class InvalidReport(ValueError):
    """A report value is not a finite, non-negative number; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _finite(field: str, value: Any, *, non_negative: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidReport(field, f"{field} must be a number.")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        raise InvalidReport(field, f"{field} must be a finite number.") from None
    if not math.isfinite(number):
        raise InvalidReport(field, f"{field} must be a finite number.")
    if non_negative and number < 0:
        raise InvalidReport(field, f"{field} must not be negative.")
    return number


@dataclass(frozen=True)
class Report:
    """One client measurement: kbps measured while downloading, seconds of audio
    buffered ahead of the playhead, and when (seconds on the caller's monotonic
    clock). Construction validates: a bad value raises ``InvalidReport``."""

    throughput_kbps: float
    buffer_seconds: float
    at: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "throughput_kbps", _finite("throughput_kbps", self.throughput_kbps, non_negative=True))
        object.__setattr__(self, "buffer_seconds", _finite("buffer_seconds", self.buffer_seconds, non_negative=True))
        object.__setattr__(self, "at", _finite("at", self.at, non_negative=False))


@dataclass(frozen=True)
class Advice:
    """The bitrate to stream now. ``changed`` is true when it differs from the
    previous advice (and on the first, which has no previous one)."""

    bitrate_kbps: int
    changed: bool
    reason: Reason
    estimate_kbps: float


def harmonic_mean(samples: list[float] | deque[float]) -> float:
    """0 when any sample is 0 (a link that delivered nothing has no rate to average)."""
    if not samples or min(samples) <= 0:
        return 0.0
    return len(samples) / sum(1 / sample for sample in samples)


class BitrateAdvisor:
    """One listener's adaptation state: recent throughput samples, the current
    rung and since when the up conditions have held. Not thread-safe; one per
    socket."""

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=ESTIMATE_WINDOW)
        self._rung = LADDER_KBPS.index(START_KBPS)
        self._last_at: float | None = None
        self._hold_since: float | None = None

    @property
    def bitrate_kbps(self) -> int:
        return LADDER_KBPS[self._rung]

    @property
    def estimate_kbps(self) -> float:
        return harmonic_mean(self._samples)

    def advise(self, report: Report) -> Advice:
        """Take one report and return the bitrate to stream. Raises ``InvalidReport``
        (a ``ValueError``) when ``report.at`` is earlier than the previous report's."""
        first = self._last_at is None
        if self._last_at is not None:
            if report.at < self._last_at:
                raise InvalidReport("at", "at must not be earlier than the previous report's.")
            if report.at - self._last_at > MAX_REPORT_GAP_SECONDS:
                self._samples.clear()
                self._hold_since = None
        self._last_at = report.at
        self._samples.append(report.throughput_kbps)
        estimate = self.estimate_kbps

        reason = self._decide(report, estimate)
        if reason is Reason.HOLD and first:
            reason = Reason.START
        return Advice(
            bitrate_kbps=self.bitrate_kbps,
            changed=first or reason in (Reason.UP, Reason.DOWN_BUFFER, Reason.DOWN_THROUGHPUT),
            reason=reason,
            estimate_kbps=estimate,
        )

    def _decide(self, report: Report, estimate: float) -> Reason:
        down = self._down(report, estimate)
        if down is not None:
            # Any report that fails the up conditions restarts the hold; these all do.
            self._hold_since = None
            return down
        if self._up(report, estimate):
            # The climb to the rung after this one needs a hold of its own.
            self._hold_since = None
            self._rung += 1
            return Reason.UP
        return Reason.HOLD

    def _down(self, report: Report, estimate: float) -> Reason | None:
        """Apply a down-switch if one is due; HOLD when one would be but the rung
        is already low enough; None when the rung is still covered."""
        if report.buffer_seconds < PANIC_BUFFER_SECONDS:
            target, reason = 0, Reason.DOWN_BUFFER
        elif estimate < self.bitrate_kbps * DOWN_SAFETY:
            fitting = [index for index, rung in enumerate(LADDER_KBPS) if rung * DOWN_SAFETY <= estimate]
            target, reason = (fitting[-1] if fitting else 0), Reason.DOWN_THROUGHPUT
        else:
            return None
        if target >= self._rung:
            return Reason.HOLD
        self._rung = target
        return reason

    def _up(self, report: Report, estimate: float) -> bool:
        """Track the hold; True once the up conditions have held for HOLD_SECONDS."""
        if self._rung == len(LADDER_KBPS) - 1:
            return False
        next_rung = LADDER_KBPS[self._rung + 1]
        if estimate <= next_rung * UP_MARGIN or report.buffer_seconds < HEALTHY_BUFFER_SECONDS:
            self._hold_since = None
            return False
        if self._hold_since is None:
            self._hold_since = report.at
        return report.at - self._hold_since >= HOLD_SECONDS
