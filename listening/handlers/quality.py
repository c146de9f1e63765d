"""The ``quality.*`` WebSocket family: streaming quality.

- ``quality.report`` {"throughput_kbps": <number>, "buffer_seconds": <number>}:
  what the client measured while downloading audio and how many seconds it has
  buffered. Answered by ``quality.advice`` {"bitrate_kbps", "changed",
  "reason", "ladder"}; a missing, non-number, non-finite or negative value is
  ``invalid`` and names the field in ``details.fields``.

The rule is ``listening.quality``'s; this module only parses, keeps one
``BitrateAdvisor`` per socket and renders. The state lives with the socket, in
memory, keyed weakly by the connection object so it goes when the socket does;
a reconnect (or another device) starts over at the conservative starting
rung, which is the safe direction. Nothing touches the database.
docs/protocol.md, "Streaming quality", is the client-facing description.
"""

from __future__ import annotations

import time
import weakref

from prometheus_client import Counter

from realtime.protocol import ClientMessage, Reply, invalid_field
from realtime.registry import Connection, registry

from ..quality import LADDER_KBPS, BitrateAdvisor, InvalidReport, Reason, Report

# Direction only: a per-user or per-socket label would grow the series without bound.

SWITCHES = Counter("listening_bitrate_switches_total", "Bitrate changes advised to streaming clients.", ["direction"])
for _direction in ("up", "down"):
    SWITCHES.labels(direction=_direction)  # export both series from the start, at 0

_DIRECTIONS = {Reason.UP: "up", Reason.DOWN_THROUGHPUT: "down", Reason.DOWN_BUFFER: "down"}

_advisors: weakref.WeakKeyDictionary[Connection, BitrateAdvisor] = weakref.WeakKeyDictionary()


@registry.message("quality.report")
async def handle_quality_report(conn: Connection, message: ClientMessage) -> Reply:
    try:
        report = Report(
            throughput_kbps=message.content.get("throughput_kbps"),
            buffer_seconds=message.content.get("buffer_seconds"),
            # The server's clock, not the client's: the hold is measured on
            # a clock the client cannot skew, and monotonic never goes back.
            at=time.monotonic(),
        )
    except InvalidReport as exc:
        raise invalid_field(exc.field, str(exc)) from None
    advisor = _advisors.get(conn)
    if advisor is None:
        advisor = _advisors[conn] = BitrateAdvisor()
    advice = advisor.advise(report)
    if advice.reason in _DIRECTIONS:
        SWITCHES.labels(direction=_DIRECTIONS[advice.reason]).inc()
    return Reply(
        "quality.advice",
        {
            "bitrate_kbps": advice.bitrate_kbps,
            "changed": advice.changed,
            "reason": advice.reason.value,
            "ladder": list(LADDER_KBPS),
        },
    )
