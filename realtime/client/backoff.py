"""Reconnect delays: exponential backoff with full jitter.

The n-th consecutive failed attempt waits a random time between 0 and
``min(cap, base * 2**n)`` seconds ("full jitter", as in the AWS Architecture
Blog's "Exponential Backoff And Jitter"): after a server restart, thousands of
clients spread their reconnects over the whole window instead of arriving in
waves. The counter resets once a connection has stayed up for
``stable_after`` seconds, so a client that was connected for hours reconnects
quickly after a deploy, while one whose sockets die right after opening keeps
backing off.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Reconnect timing. Defaults suit interactive clients against one region."""

    # First retry window; doubles per consecutive failure.
    base: float = 0.5
    # No wait longer than this: a user should not stare at "reconnecting" for minutes.
    cap: float = 30.0
    # A connection that lived this long proves the server is healthy again.
    stable_after: float = 10.0
    # Added to the jittered delay after 4429 (too many connections) and 4430
    # (rate-limit abuse): retrying at once cannot succeed before another
    # socket closes or the server's one-minute abuse window passes.
    throttled_floor: float = 30.0

    def delay(self, attempt: int, *, throttled: bool = False) -> float:
        """Seconds to wait before reconnect ``attempt`` (0 for the first retry)."""
        window = min(self.cap, self.base * (2 ** min(attempt, 32)))
        jittered = random.uniform(0, window)  # noqa: S311 (timing jitter, not security)
        return jittered + self.throttled_floor if throttled else jittered
