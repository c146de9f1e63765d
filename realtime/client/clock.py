"""The server's clock, seen from the client: NTP's exchange over ``time.sync``.

Each exchange records four times: the client sends (t0, client clock), the
server receives (t1) and answers (t2) (server clock, Unix milliseconds), the
client receives (t3). Then, as in NTP (RFC 5905)::

    offset     = ((t1 - t0) + (t2 - t3)) / 2     # server clock minus client clock
    round_trip = (t3 - t0) - (t2 - t1)           # time on the wire, both ways

The offset is exact when the two directions take equally long; otherwise it is
off by half their difference, never more than half the round trip. Queueing
delay (jitter) only ever adds to the round trip, so the exchange with the
shortest round trip is the most trustworthy (NTP's clock filter): ``ClockSync``
keeps the last ``window`` samples and uses the fastest. A stalled exchange is
slow by definition and never chosen; the window lets the estimate follow a
clock that drifts. docs/protocol.md, "Clock", is the description for other
clients.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .hub import HubClient


@dataclass(frozen=True)
class Sample:
    """One exchange: the server's clock minus ours, and the round trip (milliseconds)."""

    offset: float
    round_trip: float

    @classmethod
    def from_times(cls, *, client_sent: float, server_received: float, server_sent: float, client_received: float):
        return cls(
            offset=((server_received - client_sent) + (server_sent - client_received)) / 2,
            round_trip=(client_received - client_sent) - (server_sent - server_received),
        )


class ClockSync:
    """The offset estimate from the recent exchanges: that of the fastest one."""

    def __init__(self, *, window: int = 16) -> None:
        self._samples: deque[Sample] = deque(maxlen=window)

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def _fastest(self) -> Sample | None:
        return min(self._samples, key=lambda sample: sample.round_trip, default=None)

    @property
    def synced(self) -> bool:
        return bool(self._samples)

    @property
    def offset(self) -> float:
        """Server clock minus client clock, in milliseconds (0 before any sample)."""
        fastest = self._fastest()
        return fastest.offset if fastest is not None else 0.0

    @property
    def error_bound(self) -> float | None:
        """How far ``offset`` can be off at worst: half the fastest round trip."""
        fastest = self._fastest()
        return fastest.round_trip / 2 if fastest is not None else None

    def to_local(self, server_ms: float) -> float:
        """A server time (Unix ms) on this client's clock."""
        return server_ms - self.offset

    def to_server(self, local_ms: float) -> float:
        return local_ms + self.offset


async def clock_sync(
    client: HubClient,
    clock: ClockSync | None = None,
    *,
    samples: int = 8,
    spacing: float = 0.05,
    now: Callable[[], float] = time.time,
) -> ClockSync:
    """Run ``samples`` exchanges ``spacing`` seconds apart (within the frame-rate
    limit) and return the clock with them added."""
    clock = clock or ClockSync()
    for number in range(samples):
        if number:
            await asyncio.sleep(spacing)
        sent = now() * 1000
        answer = (await client.request("time.sync", content={"client_sent": sent}))["content"]
        clock.add(
            Sample.from_times(
                client_sent=sent,
                server_received=answer["server_received"],
                server_sent=answer["server_sent"],
                client_received=now() * 1000,
            )
        )
    return clock
