"""realtime.sequencing: exactly once and in order over a lossy, duplicating, reordering feed."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.sequencing import SequencedStream


class Store:
    """The "database": the stored frames of one room, and a log of the reads."""

    def __init__(self, seqs, *, page_size: int | None = None, yields: list[int] | None = None) -> None:
        self.frames = [{"seq": seq, "body": f"m{seq}"} for seq in sorted(seqs)]
        self.page_size = page_size
        self.reads: list[tuple[int, int | None]] = []
        self.gate: asyncio.Event | None = None
        self.fail_next = False
        self._yields = list(yields or [])

    async def fetch(self, *, after: int, upto: int | None):
        self.reads.append((after, upto))
        if self.gate is not None:
            await self.gate.wait()
        # Let other arrivals interleave with the read, as a real query would.
        for _ in range(self._yields.pop(0) if self._yields else 0):
            await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("database unavailable")
        rows = [f for f in self.frames if f["seq"] > after and (upto is None or f["seq"] <= upto)]
        return rows[: self.page_size] if self.page_size else rows


def stream_on(store: Store, *, last: int = 0, **kwargs) -> tuple[SequencedStream, list[int]]:
    delivered: list[int] = []
    stream = SequencedStream(
        last_delivered_seq=last,
        deliver=lambda frame: delivered.append(frame["seq"]),
        fetch_missing=store.fetch,
        page_size=store.page_size,
        **kwargs,
    )
    return stream, delivered


def frame(seq: int) -> dict:
    return {"seq": seq, "body": f"m{seq}"}


async def test_in_order_frames_are_delivered_at_once_without_reading_the_store():
    store = Store(range(1, 4))
    stream, delivered = stream_on(store)

    for seq in (1, 2, 3):
        await stream.receive(frame(seq))

    assert delivered == [1, 2, 3]
    assert store.reads == []
    assert stream.last_delivered_seq == 3


async def test_a_frame_at_or_below_the_last_delivered_seq_is_a_duplicate():
    store = Store(range(1, 6))
    stream, delivered = stream_on(store, last=3)

    await stream.receive(frame(2))
    await stream.receive(frame(3))
    await stream.receive(frame(4))
    await stream.receive(frame(4))

    assert delivered == [4]
    assert stream.duplicates == 3


async def test_a_gap_reads_exactly_the_missing_range_then_releases_the_held_frame():
    store = Store(range(1, 11))
    stream, delivered = stream_on(store, last=2)

    await stream.receive(frame(6))

    assert store.reads == [(2, 5)]
    assert delivered == [3, 4, 5, 6]


async def test_arrivals_during_a_read_are_buffered_and_released_in_order():
    store = Store(range(1, 11))
    store.gate = asyncio.Event()
    stream, delivered = stream_on(store)

    reader = asyncio.create_task(stream.receive(frame(4)))
    await asyncio.sleep(0)
    assert store.reads == [(0, 3)]
    for seq in (7, 5, 2, 5, 8):
        await stream.receive(frame(seq))
    assert delivered == []
    assert stream.buffered == 5

    store.gate.set()
    await reader

    # 1-3 read, 4-5 held, 6 read (the second gap), 7-8 held; 2 and the second 5 dropped.
    assert delivered == [1, 2, 3, 4, 5, 6, 7, 8]
    assert store.reads == [(0, 3), (5, 6)]
    assert stream.buffered == 0


async def test_resync_reads_everything_after_the_last_delivered_seq():
    store = Store(range(1, 8))
    stream, delivered = stream_on(store, last=4)

    await stream.resync()

    assert store.reads == [(4, None)]
    assert delivered == [5, 6, 7]


async def test_seqs_the_store_does_not_return_are_skipped_not_waited_for():
    store = Store([1, 2, 4, 5])  # 3 was deleted
    stream, delivered = stream_on(store)

    await stream.receive(frame(1))
    await stream.receive(frame(4))
    await stream.receive(frame(5))

    assert delivered == [1, 2, 4, 5]


async def test_a_failed_read_keeps_the_held_frames_and_the_next_arrival_retries():
    store = Store(range(1, 6))
    store.fail_next = True
    stream, delivered = stream_on(store)

    with pytest.raises(ConnectionError):
        await stream.receive(frame(3))
    assert delivered == []
    assert stream.buffered == 1

    await stream.receive(frame(4))

    assert delivered == [1, 2, 3, 4]


async def test_reads_page_through_a_long_gap():
    store = Store(range(1, 12), page_size=4)
    stream, delivered = stream_on(store)

    await stream.receive(frame(11))

    assert delivered == list(range(1, 12))
    assert store.reads == [(0, 10), (4, 10), (8, 10)]


async def test_an_overflowing_buffer_turns_into_one_full_reread():
    store = Store(range(1, 21))
    store.gate = asyncio.Event()
    stream, delivered = stream_on(store, max_buffered=3)

    reader = asyncio.create_task(stream.receive(frame(2)))
    await asyncio.sleep(0)
    for seq in range(3, 10):
        await stream.receive(frame(seq))
    assert stream.buffered <= 3
    store.gate.set()
    await reader

    assert delivered == list(range(1, 21))
    assert (1, None) in store.reads or (0, None) in store.reads


@st.composite
def scenarios(draw):
    size = draw(st.integers(min_value=0, max_value=40))
    deleted = draw(st.sets(st.integers(min_value=1, max_value=max(size, 1)), max_size=3)) if size else set()
    stored = [seq for seq in range(1, size + 1) if seq not in deleted]
    # Losses, duplicates and any order: a list drawn from the stored seqs.
    arrivals = draw(st.lists(st.sampled_from(stored), max_size=3 * size)) if stored else []
    workers = draw(st.integers(min_value=1, max_value=4))
    return {
        "stored": stored,
        "arrivals": arrivals,
        "workers": workers,
        "page_size": draw(st.none() | st.integers(min_value=1, max_value=5)),
        "max_buffered": draw(st.integers(min_value=1, max_value=12)),
        "yields": draw(st.lists(st.integers(min_value=0, max_value=3), max_size=20)),
        "pauses": draw(st.lists(st.integers(min_value=0, max_value=2), max_size=40)),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_loss_duplication_and_order_yields_every_stored_seq_once_in_order(scenario):
    async def run() -> list[int]:
        store = Store(scenario["stored"], page_size=scenario["page_size"], yields=scenario["yields"])
        stream, delivered = stream_on(store, max_buffered=scenario["max_buffered"])
        pauses = list(scenario["pauses"])

        async def feed(part):
            for seq in part:
                await stream.receive(frame(seq))
                for _ in range(pauses.pop(0) if pauses else 0):
                    await asyncio.sleep(0)

        workers = scenario["workers"]
        arrivals = scenario["arrivals"]
        await asyncio.gather(*(feed(arrivals[i::workers]) for i in range(workers)))
        # Some tasks return while another is still reading: wait for it to finish.
        while stream.reading:
            await asyncio.sleep(0)
        # The tail cannot be known lost until the subscription says so.
        await stream.resync()
        return delivered

    delivered = asyncio.run(run())

    assert delivered == scenario["stored"]


async def test_take_next_accepts_only_the_next_seq_with_nothing_held_or_being_read():
    store = Store(range(1, 10))
    stream, delivered = stream_on(store)

    assert stream.take_next(1)
    assert stream.last_delivered_seq == 1
    # A duplicate, and a jump, are left to receive().
    assert not stream.take_next(1)
    assert not stream.take_next(3)
    assert stream.last_delivered_seq == 1

    # While a gap is being filled nothing passes the fast path, not even the next seq.
    store.gate = asyncio.Event()
    reading = asyncio.ensure_future(stream.receive(frame(4)))
    await asyncio.sleep(0)
    assert stream.reading
    assert not stream.take_next(2)
    store.gate.set()
    await reading
    assert delivered == [2, 3, 4]
    assert stream.take_next(5)
    assert stream.last_delivered_seq == 5
