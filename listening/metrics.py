"""Playback drift as metrics: the fleet's, and each live session's latest.

``listening_drift_ms`` is a histogram of every reported drift (absolute), with
no session label. ``listening_session_drift_ms{session}`` is read at scrape
time: each report stores the session's latest drift in the cache (Redis in
production, so every server process sees every session) for a minute, and the
collector lists the live sessions that reported within it. A session that ends
or stops reporting drops out by itself; at most ``SESSIONS_EXPORTED`` series.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

DRIFT = Histogram(
    "listening_drift_ms",
    "Absolute drift between a client's reported position and the authoritative one (ms).",
    buckets=(10, 20, 40, 80, 160, 320, 640, 1280, 5000),
)
# A session's latest drift is forgotten this long after its last report.
DRIFT_TTL_SECONDS = 60
# Series of the per-session gauge at most: the label must stay bounded.
SESSIONS_EXPORTED = 1000


def _key(session_id: int) -> str:
    return f"listening:drift:{session_id}"


def drift_record(*, session_id: int, drift_ms: float) -> None:
    DRIFT.observe(abs(drift_ms))
    cache.set(_key(session_id), round(abs(drift_ms), 1), timeout=DRIFT_TTL_SECONDS)


def _family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "listening_session_drift_ms",
        "Latest absolute drift reported in each live listening session (ms).",
        labels=["session"],
    )


class SessionDriftCollector(Collector):
    """The latest drift of each live session that reported within a minute."""

    def describe(self):
        # Given, registration does not call collect(): no query at start-up.
        return [_family()]

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
