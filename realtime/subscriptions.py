"""One socket's subscription to one room's fan-out topic: ordering, holding, resync.

A ``RoomSubscription`` is the ``realtime.fanout.Subscriber`` the hub sees for a
(socket, room) pair. Frames without a seq (typing, presence, receipts, edits,
deletes, reactions, membership changes) go straight to the socket's outbound
queue. Frames with a seq (``chat.message``) pass through a
``realtime.sequencing.SequencedStream``, so the socket gets each message once
and in order; a gap, and a ``resync`` after a lost Redis subscription, read
the missing seqs from the store through the ``fetch_missing`` the room's
family provides (the only slow path).

A subscription starts *pending*: it is registered with the hub before the
joining handler reads the store (so nothing published after that read can be
missed) and holds what arrives until ``start(last_seq)``, which the handler
calls once its answer is queued, so the replay and the live frames follow the
answer. What a room is, and who may read it, is the family's business
(``chat.handlers``); this module knows only topics, seqs and encoded frames.
docs/protocol.md, "Rooms", describes the guarantees clients get.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from django.conf import settings

from .sequencing import SequencedStream

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFrame:
    """A frame re-read from the store: its seq and its encoded text."""

    seq: int
    text: str


FetchFrames = Callable[..., Awaitable[Sequence[StoredFrame]]]


class RoomSubscription:
    """The frames of one topic for one socket. ``deliver`` never blocks or awaits."""

    def __init__(self, *, topic: str, send: Callable[[str], None], fetch_missing: FetchFrames) -> None:
        self.topic = topic
        self._send = send
        self._fetch_missing = fetch_missing
        self._stream: SequencedStream | None = None
        # Frames that arrived before start(), in arrival order.
        self._pending: list[tuple[str, int | None]] | None = []
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    @property
    def started(self) -> bool:
        return self._stream is not None

    @property
    def last_delivered_seq(self) -> int | None:
        return self._stream.last_delivered_seq if self._stream is not None else None

    # --- fanout.Subscriber -------------------------------------------------------------

    def deliver(self, text: str, seq: int | None) -> None:
        if self._closed:
            return
        if self._pending is not None:
            self._pending.append((text, seq))
            return
        self._route(text, seq)

    def resync(self, topic: str) -> None:
        # Before start() there is nothing to catch up: start() reads the store itself.
        if self._stream is not None and not self._closed:
            self._spawn(self._stream.resync())

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, *, last_seq: int, replay: bool) -> None:
        """Begin delivering after ``last_seq``: with ``replay``, every stored frame
        after it first (in seq order, page by page), then what arrived meanwhile."""
        if self._stream is not None or self._closed:
            return
        self._stream = SequencedStream(
            last_delivered_seq=last_seq,
            deliver=self._release,
            fetch_missing=self._fetch,
            page_size=settings.MESSAGE_BATCH_SIZE,
        )
        if replay:
            # Frames arriving during the read are held by the stream (it is reading).
            await self._guard(self._stream.resync())
        pending, self._pending = self._pending, None
        for text, seq in pending or ():
            self._route(text, seq)

    def close(self) -> None:
        """Stop delivering; cancels reads of the store still in flight."""
        self._closed = True
        self._pending = None
        for task in tuple(self._tasks):
            task.cancel()

    # --- internals ------------------------------------------------------------------------

    def _route(self, text: str, seq: int | None) -> None:
        if seq is None:
            self._send(text)
            return
        stream = self._stream
        if stream.take_next(seq):
            # In order, nothing held: the frame goes out with no further work.
            self._send(text)
            return
        frame = {"seq": seq, "text": text}
        last = stream.last_delivered_seq
        # SequencedStream.receive only suspends when it has to read the store (a
        # gap opened while no read is in flight). Every other case completes at
        # once: run it inline instead of paying a task per socket per message.
        if stream.reading or seq <= last or (seq == last + 1 and not stream.buffered):
            _run_inline(stream.receive(frame))
        else:
            self._spawn(stream.receive(frame))

    def _release(self, frame) -> None:
        if not self._closed:
            self._send(frame["text"])

    async def _fetch(self, *, after: int, upto: int | None) -> list[dict]:
        frames = await self._fetch_missing(after=after, upto=upto)
        return [{"seq": frame.seq, "text": frame.text} for frame in frames]

    async def _guard(self, coroutine: Awaitable[None]) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            # The stream keeps its place: the next frame or resync reads again.
            logger.exception("room catch-up read failed", extra={"topic": self.topic})

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self._guard(coroutine))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _run_inline(coroutine) -> None:
    """Run a coroutine that never suspends to completion, synchronously."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("a sequenced frame expected to complete inline suspended")
