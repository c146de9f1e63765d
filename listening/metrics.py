"""Playback drift as metrics: the fleet's, and each live session's latest; and
starts that waited for buffering members.

``listening_drift_ms`` is a histogram of every reported drift (absolute), with
no session label. ``listening_session_drift_ms{session}`` is read at scrape
time: each report stores the session's latest drift in the cache (Redis in
production, so every server process sees every session) for a minute, and the
collector lists the live sessions that reported within it. A session that ends
or stops reporting drops out by itself; at most ``SESSIONS_EXPORTED`` series.

``listening_start_waits_total`` counts starts that waited for members whose
player was buffering, ``listening_start_timeouts_total`` those that went on at
the deadline without someone (docs/protocol.md, "Buffering"). Deadline starts
happen in Celery workers, whose process metrics nobody scrapes, so both are
counted in the cache (Redis: one fleet-wide count) and read at scrape time:
every server process exports the same value.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

DRIFT = Histogram(
    "listening_drift_ms",
    "Absolute drift between a client's reported position and the authoritative one (ms).",
    buckets=(10, 20, 40, 80, 160, 320, 640, 1280, 5000),
)
# Fleet-wide counts of waiting starts, in the cache without expiry: metric name
# (without _total), help, cache key.
_START_COUNTERS = {
    "waited": (
        "listening_start_waits",
        "Starts that waited for members whose player was buffering.",
        "listening:starts:waited",
    ),
    "timed_out": (
        "listening_start_timeouts",
        "Starts that went on at the wait's deadline without a member still buffering.",
        "listening:starts:timed_out",
    ),
}
# A session's latest drift is forgotten this long after its last report.
DRIFT_TTL_SECONDS = 60
# Series of the per-session gauge at most: the label must stay bounded.
SESSIONS_EXPORTED = 1000


def _key(session_id: int) -> str:
    return f"listening:drift:{session_id}"


def drift_record(*, session_id: int, drift_ms: float) -> None:
    DRIFT.observe(abs(drift_ms))
    cache.set(_key(session_id), round(abs(drift_ms), 1), timeout=DRIFT_TTL_SECONDS)


def start_wait_record(*, timed_out: bool) -> None:
    """A waiting start began: when its members were ready or, ``timed_out``, at
    the deadline without someone. Never raises: the start is committed."""
    outcomes = ["waited", "timed_out"] if timed_out else ["waited"]
    try:
        for outcome in outcomes:
            key = _START_COUNTERS[outcome][2]
            cache.add(key, 0, timeout=None)
            cache.incr(key)
    except Exception:
        logger.exception("counting a waiting start failed")


def _start_families() -> list[CounterMetricFamily]:
    return [CounterMetricFamily(name, help_text) for name, help_text, _key in _START_COUNTERS.values()]


def _family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "listening_session_drift_ms",
        "Latest absolute drift reported in each live listening session (ms).",
        labels=["session"],
    )


class SessionDriftCollector(Collector):
    """The latest drift of each live session that reported within a minute, and
    the fleet's counts of waiting starts."""

    def describe(self):
        # Given, registration does not call collect(): no query at start-up.
        return [_family(), *_start_families()]

    def collect(self):
        from .constants import SessionStatus
        from .models import ListeningSession

        family = _family()
        try:
            ids = list(
                ListeningSession.objects.filter(status=SessionStatus.LIVE)
                .order_by("-pk")
                .values_list("pk", flat=True)[:SESSIONS_EXPORTED]
            )
            values = cache.get_many([_key(session_id) for session_id in ids])
        except Exception:
            # A scrape must not fail because the database or cache hiccups.
            logger.exception("reading session drift for metrics failed")
            values, ids = {}, []
        for session_id in ids:
            value = values.get(_key(session_id))
            if value is not None:
                family.add_metric([str(session_id)], value)
        yield family
        yield from self._starts()

    def _starts(self):
        keys = [key for _name, _help, key in _START_COUNTERS.values()]
        try:
            counts = cache.get_many(keys)
        except Exception:
            logger.exception("reading start counts for metrics failed")
            return
        for family, key in zip(_start_families(), keys, strict=True):
            family.add_metric([], counts.get(key, 0))
            yield family
