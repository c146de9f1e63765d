"""Metrics the project defines beyond django-prometheus's.

``CHANNEL_LAYER_DROPPED`` counts messages channels_redis discarded because a
consumer's channel was full. channels_redis computes that number inside its
group_send script and only logs it (at INFO); ``ChannelLayerDropCounter`` is a
logging handler on its logger that turns each such line into counter
increments, so a drop is never silent. Nothing relies on the channel layer for
delivery that matters (docs/operations.md, "Fan-out and presence").
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

CHANNEL_LAYER_DROPPED = Counter(
    "channel_layer_messages_dropped_total",
    "Channel-layer messages discarded because the receiving channel was over capacity.",
)

# channels_redis.core's message for a group_send that found full channels; its
# first argument is how many channels were over capacity.
_OVER_CAPACITY = "%s of %s channels over capacity in group %s"


class ChannelLayerDropCounter(logging.Handler):
    """Count channels_redis's over-capacity drops (attached in settings.LOGGING)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == _OVER_CAPACITY and record.args:
            try:
                CHANNEL_LAYER_DROPPED.inc(int(record.args[0]))
            except (TypeError, ValueError):
                self.handleError(record)


REALTIME_AUDIT_DROPPED = Counter(
    "realtime_audit_events_dropped_total",
    "Socket lifecycle audit events dropped because the database stayed unreachable past the buffer limit.",
)
