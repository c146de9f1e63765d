"""Delivery metrics: outcomes per channel, latency from send to provider, dead letters.

Deliveries are sent by Celery workers, whose process metrics nobody scrapes
(prefork children would each need a port). So, as ``listening.metrics`` does
for its worker-side counts, workers count in the cache (Redis in production:
one fleet-wide value) and every web process reads the counts at scrape time
through ``DeliveryCollector`` (registered in ``NotificationsConfig.ready``):
all web processes export the same numbers, and alert rules take their ``max``.

- ``notifications_deliveries_total{channel, outcome}``: ``sent`` (the provider
  took it), ``retried`` (a retryable failure, another attempt scheduled),
  ``failed`` (dead-lettered), ``fallback`` (a failed push replaced by another
  channel).
- ``notifications_delivery_latency_seconds{channel}``: a histogram of the time
  from the notification's creation to the provider taking it (quiet-hour
  holds and digests included: it is what the user waited).
- ``notifications_deliveries_dead{channel}``: deliveries in the dead-letter
  state now (read from the database at scrape time).

docs/operations.md, "Notifications", describes them and the alert rules.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from django.core.cache import cache
from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .constants import Channel

logger = logging.getLogger(__name__)

OUTCOMES = ("sent", "retried", "failed", "fallback")
# Seconds: an in-app push takes well under a second, a retried email minutes,
# a digest or a quiet-hours hold hours.
LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400)
_PREFIX = "notifications:metrics"


def _outcome_key(channel: str, outcome: str) -> str:
    return f"{_PREFIX}:outcome:{channel}:{outcome}"


def _bucket_index(seconds: float) -> int:
    for index, bound in enumerate(LATENCY_BUCKETS):
        if seconds <= bound:
            return index
    return len(LATENCY_BUCKETS)  # +Inf


def _bucket_key(channel: str, index: int) -> str:
    return f"{_PREFIX}:latency:{channel}:{index}"


def _latency_sum_key(channel: str) -> str:
    # Milliseconds, so the cache's integer increment can add them.
    return f"{_PREFIX}:latency:{channel}:sum_ms"


def _incr(key: str, by: int) -> None:
    cache.add(key, 0, timeout=None)
    cache.incr(key, by)


def deliveries_record(*, outcomes: Iterable[tuple[str, str]] = (), latencies: Iterable[tuple[str, float]] = ()) -> None:
    """Count (channel, outcome) pairs and observe (channel, seconds) latencies,
    one cache increment per distinct key. Never raises: the deliveries it
    describes are committed."""
    try:
        increments: Counter[str] = Counter(_outcome_key(channel, outcome) for channel, outcome in outcomes)
        for channel, observed in latencies:
            seconds = max(0.0, observed)
            increments[_bucket_key(channel, _bucket_index(seconds))] += 1
            increments[_latency_sum_key(channel)] += round(seconds * 1000)
        for key, by in increments.items():
            _incr(key, by)
    except Exception:
        logger.exception("counting delivery outcomes failed")


def _families():
    return (
        CounterMetricFamily(
            "notifications_deliveries",
            "Delivery attempts' outcomes per channel (sent, retried, failed, fallback).",
            labels=["channel", "outcome"],
        ),
        HistogramMetricFamily(
            "notifications_delivery_latency_seconds",
            "Time from a notification's creation to its provider taking it, per channel.",
            labels=["channel"],
        ),
        GaugeMetricFamily(
            "notifications_deliveries_dead",
            "Deliveries dead-lettered (failed), waiting for staff, per channel.",
            labels=["channel"],
        ),
    )


class DeliveryCollector(Collector):
    """Reads the fleet-wide counts from the cache and the dead letters from the database."""

    def describe(self):
        # Given, registration does not call collect(): no query at start-up.
        return list(_families())

    def collect(self):
        outcomes, latency, dead = _families()
        channels = list(Channel.values)
        keys = [_outcome_key(c, o) for c in channels for o in OUTCOMES]
        for channel in channels:
            keys += [_bucket_key(channel, i) for i in range(len(LATENCY_BUCKETS) + 1)]
            keys.append(_latency_sum_key(channel))
        try:
            values = cache.get_many(keys)
        except Exception:
            logger.exception("reading delivery metrics failed")
            values = {}
        for channel in channels:
            for outcome in OUTCOMES:
                outcomes.add_metric([channel, outcome], values.get(_outcome_key(channel, outcome), 0))
            buckets, total = [], 0
            for index, bound in enumerate((*LATENCY_BUCKETS, float("inf"))):
                total += values.get(_bucket_key(channel, index), 0)
                buckets.append(("+Inf" if bound == float("inf") else str(float(bound)), total))
            latency.add_metric([channel], buckets, values.get(_latency_sum_key(channel), 0) / 1000)
        try:
            from .constants import DeliveryStatus
            from .models import Delivery

            counts = dict(
                Delivery.objects.filter(status=DeliveryStatus.FAILED)
                .order_by()
                .values_list("channel")
                .annotate(n=Count("pk"))
            )
        except Exception:
            logger.exception("counting dead letters for metrics failed")
            counts = {}
        for channel in channels:
            dead.add_metric([channel], counts.get(channel, 0))
        yield outcomes
        yield latency
        yield dead
