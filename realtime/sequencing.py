"""Per-room ordering of sequenced frames: exactly once, in seq order, gaps filled from the store.

Room traffic reaches a socket over best-effort fan-out (``realtime.fanout``): a
frame can be lost (a Redis reconnect, a full queue), duplicated (the live frame
and the re-read of the same seq) or overtaken. The store is the truth: every
room frame carries the room's ``seq``, and ``Room.last_seq`` is advanced under
the room's row lock, so seqs commit in order and without holes. A
``SequencedStream`` turns that unreliable feed into the exact sequence
``last+1, last+2, …``: in-order frames go out at once, duplicates are dropped,
and a jump triggers one read of the missing range through ``fetch_missing``
(the caller's async function over PostgreSQL).

Pure asyncio, no Django, no transport: one stream per (socket, room).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

Frame = Mapping[str, Any]


class FetchMissing(Protocol):
    def __call__(self, *, after: int, upto: int | None) -> Awaitable[Sequence[Frame]]:
        """The stored frames with ``after < seq <= upto`` (``upto=None``: up to the
        newest), ascending. It may return only the first page of the range when
        the stream was given ``page_size``; a seq it does not return is taken not
        to exist (deleted, or not visible to the reader)."""


# Frames held while a gap is being filled; past this the stream stops holding
# and re-reads everything instead, so a socket stuck behind a slow read cannot
# grow without bound.
DEFAULT_MAX_BUFFERED = 1000


class SequencedStream:
    """Delivers the frames of one room to one receiver exactly once, in seq order.

    ``receive`` and ``resync`` may be called from several tasks: while one of
    them is reading the store, the others only buffer, and the reading task
    releases everything in order before it returns. Errors of ``fetch_missing``
    propagate to the task that called it; the stream keeps its state, and the
    next ``receive`` or ``resync`` tries again.
    """

    def __init__(
        self,
        *,
        last_delivered_seq: int,
        deliver: Callable[[Frame], None],
        fetch_missing: FetchMissing,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        page_size: int | None = None,
    ) -> None:
        self._last = last_delivered_seq
        self._deliver = deliver
        self._fetch_missing = fetch_missing
        self._max_buffered = max_buffered
        self._page_size = page_size
        self._held: dict[int, Frame] = {}
        self._fetching = False
        self._resync_wanted = False
        self.duplicates = 0
        self.fetches = 0

    @property
    def last_delivered_seq(self) -> int:
        return self._last

    @property
    def buffered(self) -> int:
        return len(self._held)

    @property
    def reading(self) -> bool:
        """A read of the store is in flight (arrivals are being held)."""
        return self._fetching

    def take_next(self, seq: int) -> bool:
        """The common case of ``receive``, without a frame or a coroutine: when
        ``seq`` is the very next one and nothing is held or being read, it counts
        as delivered and True is returned (the caller sends it); otherwise False
        and nothing changes (the caller goes through ``receive``)."""
        if seq == self._last + 1 and not self._fetching and not self._held:
            self._last = seq
            return True
        return False

    async def receive(self, frame: Frame) -> None:
        """Take one live frame (with ``seq``)."""
        seq = frame["seq"]
        if seq <= self._last or seq in self._held:
            self.duplicates += 1
            return
        if len(self._held) >= self._max_buffered:
            # Too far behind: forget what is held and re-read everything after
            # the last delivered seq, this frame included.
            self._held.clear()
            self._resync_wanted = True
        else:
            self._held[seq] = frame
        if not self._fetching:
            await self._pump()

    async def resync(self) -> None:
        """Read everything after the last delivered seq up to the newest (after a
        lost subscription, or on (re)joining the room)."""
        self._resync_wanted = True
        if not self._fetching:
            await self._pump()

    async def _pump(self) -> None:
        self._fetching = True
        try:
            while True:
                self._release()
                if self._resync_wanted:
                    self._resync_wanted = False
                    await self._fill(upto=None)
                    continue
                if not self._held:
                    return
                await self._fill(upto=min(self._held) - 1)
        finally:
            self._fetching = False

    def _release(self) -> None:
        held = self._held
        while held:
            frame = held.pop(self._last + 1, None)
            if frame is None:
                return
            self._last += 1
            self._deliver(frame)

    async def _fill(self, *, upto: int | None) -> None:
        """Deliver the stored frames in (last, upto]; afterwards nothing at or below
        ``upto`` is missing any more (what the store did not return does not exist)."""
        while True:
            self.fetches += 1
            before = self._last
            frames = await self._fetch_missing(after=self._last, upto=upto)
            for frame in frames:
                seq = frame["seq"]
                if seq <= self._last or (upto is not None and seq > upto):
                    continue
                self._held.pop(seq, None)
                self._last = seq
                self._deliver(frame)
            # A short page ends the range; a full one that moved nothing forward
            # would only repeat itself.
            if self._page_size is None or len(frames) < self._page_size or self._last == before:
                break
        if upto is not None and upto > self._last:
            self._last = upto
        # Held frames the read overtook are duplicates now.
        for seq in [seq for seq in self._held if seq <= self._last]:
            del self._held[seq]
