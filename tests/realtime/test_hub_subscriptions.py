"""A socket's room subscription on the fan-out: the seq header read once per
process, holding until start, replay then live without loss or duplicates,
gap fills from the store, and re-subscribing a topic in the same tick."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from django.conf import settings
from django.db import transaction

from realtime.fanout import MemoryFanoutHub, RedisFanoutHub, close_fanout, get_fanout, pack, publish_on_commit, unpack
from realtime.groups import room_topic
from realtime.protocol import encode, envelope
from realtime.subscriptions import RoomSubscription, StoredFrame

TOPIC = room_topic(tenant_id=1, room_id=1)


def frame_text(seq: int | None, body: str = "") -> str:
    return encode(envelope("chat.message" if seq is not None else "chat.typing", {"body": body}, room="1", seq=seq))


class Store:
    """The room's stored messages, as ``fetch_missing`` reads them (one page at a time)."""

    def __init__(self, seqs, page: int = 100) -> None:
        self.frames = {seq: StoredFrame(seq=seq, text=frame_text(seq, "stored")) for seq in seqs}
        self.page = page
        self.reads: list[tuple[int, int | None]] = []

    async def fetch(self, *, after: int, upto: int | None) -> list[StoredFrame]:
        self.reads.append((after, upto))
        await asyncio.sleep(0)  # a real read suspends
        seqs = sorted(seq for seq in self.frames if seq > after and (upto is None or seq <= upto))
        return [self.frames[seq] for seq in seqs[: self.page]]


def subscription(store: Store) -> tuple[RoomSubscription, list[str]]:
    sent: list[str] = []
    return RoomSubscription(topic=TOPIC, send=sent.append, fetch_missing=store.fetch), sent


def seqs_of(texts: list[str]) -> list[int | None]:
    return [json.loads(text).get("seq") for text in texts]


def test_the_payload_header_carries_the_seq_and_the_frame_untouched():
    text = frame_text(7, "a\nb")
    assert unpack(pack(text, 7)) == (text, 7)
    assert unpack(pack(text)) == (text, None)
    assert pack(text, 7).startswith("7\n")


@pytest.mark.django_db(transaction=True)
async def test_publish_on_commit_hands_subscribers_the_text_and_the_seq_without_parsing(settings):
    settings.REDIS_URL = None
    await close_fanout()
    hub = get_fanout()
    received: list[tuple[str, int | None]] = []

    class Subscriber:
        def deliver(self, text: str, seq: int | None) -> None:
            received.append((text, seq))

        def resync(self, topic: str) -> None:
            pass

    try:
        assert isinstance(hub, MemoryFanoutHub)
        hub.subscribe(TOPIC, Subscriber())
        message = envelope("chat.message", {"body": "hi"}, room="1", seq=3)
        typing = envelope("chat.typing", {"typing": True}, room="1")

        def service() -> None:
            with transaction.atomic():
                publish_on_commit(topic=TOPIC, frame=message)
                publish_on_commit(topic=TOPIC, frame=typing)

        await asyncio.to_thread(service)
        async with asyncio.timeout(3):
            while len(received) < 2:
                await asyncio.sleep(0.01)
        assert received == [(encode(message), 3), (encode(typing), None)]
    finally:
        await close_fanout()


async def test_frames_are_held_until_start_and_the_replay_comes_first():
    store = Store(range(1, 6))
    sub, sent = subscription(store)
    sub.deliver(frame_text(None, "typing"), None)
    sub.deliver(frame_text(5), 5)  # published after the store read: also in the replay
    sub.deliver(frame_text(6), 6)
    assert sent == []

    await sub.start(last_seq=2, replay=True)

    assert seqs_of(sent) == [3, 4, 5, None, 6]
    assert sub.last_delivered_seq == 6


async def test_without_replay_only_frames_after_the_start_seq_go_out():
    store = Store(range(1, 4))
    sub, sent = subscription(store)
    sub.deliver(frame_text(3), 3)  # committed before the ack's read: the client pages for it
    await sub.start(last_seq=3, replay=False)
    sub.deliver(frame_text(4), 4)
    assert seqs_of(sent) == [4]
    assert store.reads == []


async def test_in_order_live_frames_are_delivered_inline_and_duplicates_dropped():
    store = Store([])
    sub, sent = subscription(store)
    await sub.start(last_seq=0, replay=False)
    tasks_before = len(asyncio.all_tasks())
    for seq in (1, 2, 2, 3, 1):
        sub.deliver(frame_text(seq), seq)
    # Delivered synchronously, in deliver() itself: no task per frame.
    assert seqs_of(sent) == [1, 2, 3]
    assert len(asyncio.all_tasks()) == tasks_before
    assert store.reads == []


async def test_a_gap_is_filled_from_the_store_before_later_frames():
    store = Store(range(1, 8))
    sub, sent = subscription(store)
    await sub.start(last_seq=1, replay=False)
    sub.deliver(frame_text(5), 5)  # 2-4 were lost on the way
    sub.deliver(frame_text(6), 6)
    async with asyncio.timeout(2):
        while len(sent) < 5:
            await asyncio.sleep(0.01)
    assert seqs_of(sent) == [2, 3, 4, 5, 6]
    assert store.reads == [(1, 4)]


async def test_resync_reads_what_was_published_while_the_subscription_was_lost():
    store = Store(range(1, 5))
    sub, sent = subscription(store)
    await sub.start(last_seq=2, replay=False)
    sub.resync(TOPIC)
    async with asyncio.timeout(2):
        while len(sent) < 2:
            await asyncio.sleep(0.01)
    assert seqs_of(sent) == [3, 4]


async def test_a_closed_subscription_delivers_nothing_more():
    store = Store(range(1, 10))
    sub, sent = subscription(store)
    await sub.start(last_seq=0, replay=False)
    sub.deliver(frame_text(5), 5)  # starts a read of 1-4
    sub.close()
    sub.deliver(frame_text(None), None)
    await asyncio.sleep(0.05)
    assert sent == []


@pytest.mark.redis
async def test_a_topic_dropped_and_wanted_again_in_the_same_tick_is_ready_at_once():
    prefix = f"test-hub-{uuid.uuid4().hex[:8]}"
    hub = RedisFanoutHub(url=settings.REDIS_URL, channel_prefix=prefix, client_name=prefix)
    store = Store([])
    first, _ = subscription(store)
    second, sent = subscription(store)
    try:
        hub.subscribe(TOPIC, first)
        await hub.wait_subscribed(TOPIC, timeout=3)
        # A socket re-joining: the old subscription goes, the new one comes, before
        # the connection task runs.
        hub.unsubscribe(TOPIC, first)
        hub.subscribe(TOPIC, second)
        await hub.wait_subscribed(TOPIC, timeout=3)
        await second.start(last_seq=0, replay=False)

        await hub.publish(TOPIC, frame_text(1), seq=1)
        async with asyncio.timeout(3):
            while not sent:
                await asyncio.sleep(0.01)
        assert seqs_of(sent) == [1]
    finally:
        await hub.aclose()
