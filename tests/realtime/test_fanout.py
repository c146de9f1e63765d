"""realtime.fanout: one subscription per topic per process, on the real Redis and in memory."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import redis
from django.conf import settings
from django.db import transaction
from prometheus_client import REGISTRY

from realtime.fanout import MemoryFanoutHub, RedisFanoutHub, close_fanout, get_fanout, publish_on_commit
from realtime.groups import room_topic
from realtime.protocol import encode, envelope
from tests.conftest import free_port


class Inbox:
    """A subscriber with a bounded outbound queue, as a socket has."""

    def __init__(self, maxsize: int = 100) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self.resyncs: list[str] = []
        self.seqs: list[int | None] = []

    def deliver(self, text: str, seq: int | None = None) -> None:
        self.queue.put_nowait(text)
        self.seqs.append(seq)

    def resync(self, topic: str) -> None:
        self.resyncs.append(topic)

    async def next(self, timeout: float = 3.0) -> str:
        return await asyncio.wait_for(self.queue.get(), timeout)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def eventually(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
def admin_redis():
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def redis_hubs():
    """Builds hubs that stand for separate server processes, on a channel prefix
    of this test only (pub/sub channels are shared by every Redis database)."""
    prefix = f"test-fanout-{uuid.uuid4().hex[:8]}"
    hubs: list[RedisFanoutHub] = []

    def make(**kwargs) -> RedisFanoutHub:
        hub = RedisFanoutHub(
            url=settings.REDIS_URL,
            channel_prefix=prefix,
            client_name=f"{prefix}-{len(hubs)}",
            **kwargs,
        )
        hubs.append(hub)
        return hub

    make.prefix = prefix
    yield make
    for hub in hubs:
        await hub.aclose()


def numsub(client: redis.Redis, channel: str) -> int:
    return dict(client.pubsub_numsub(channel))[channel]


@pytest.mark.redis
async def test_each_process_subscribes_once_and_every_local_socket_gets_the_same_text(redis_hubs, admin_redis):
    topic = room_topic(tenant_id=1, room_id=7)
    hub_a, hub_b = redis_hubs(), redis_hubs()
    a1, a2, b1 = Inbox(), Inbox(), Inbox()
    hub_a.subscribe(topic, a1)
    hub_a.subscribe(topic, a2)
    hub_b.subscribe(topic, b1)
    await hub_a.wait_subscribed(topic, timeout=3)
    await hub_b.wait_subscribed(topic, timeout=3)
    published = metric("realtime_fanout_published_total")
    delivered = metric("realtime_fanout_delivered_total")

    text = encode(envelope("chat.message", {"body": "hé"}, room="7", seq=1))
    await hub_a.publish(topic, text)

    assert [await a1.next(), await a2.next(), await b1.next()] == [text, text, text]
    # Two processes: two Redis subscribers, however many sockets each serves.
    assert numsub(admin_redis, f"{redis_hubs.prefix}.{topic}") == 2
    assert metric("realtime_fanout_published_total") - published == 1
    assert metric("realtime_fanout_delivered_total") - delivered == 3


@pytest.mark.redis
async def test_the_last_local_subscriber_leaving_drops_the_redis_subscription(redis_hubs, admin_redis):
    topic = room_topic(tenant_id=1, room_id=8)
    channel = f"{redis_hubs.prefix}.{topic}"
    hub = redis_hubs()
    first, second = Inbox(), Inbox()
    hub.subscribe(topic, first)
    hub.subscribe(topic, second)
    await hub.wait_subscribed(topic, timeout=3)
    assert numsub(admin_redis, channel) == 1

    hub.unsubscribe(topic, first)
    await asyncio.sleep(0.2)
    assert numsub(admin_redis, channel) == 1

    hub.unsubscribe(topic, second)
    await eventually(lambda: numsub(admin_redis, channel) == 0)
    assert hub.topics() == set()

    # Joining again subscribes again and delivers.
    third = Inbox()
    hub.subscribe(topic, third)
    await hub.wait_subscribed(topic, timeout=3)
    await hub.publish(topic, "again")
    assert await third.next() == "again"
    assert first.queue.empty()
    assert second.queue.empty()


@pytest.mark.redis
async def test_topics_carry_the_tenant_so_the_same_room_id_never_mixes(redis_hubs):
    hub = redis_hubs()
    mine, theirs = Inbox(), Inbox()
    topic_1 = room_topic(tenant_id=1, room_id=5)
    topic_2 = room_topic(tenant_id=2, room_id=5)
    hub.subscribe(topic_1, mine)
    hub.subscribe(topic_2, theirs)
    await hub.wait_subscribed(topic_1, timeout=3)
    await hub.wait_subscribed(topic_2, timeout=3)

    await hub.publish(topic_1, "for tenant 1")
    await hub.publish(topic_2, "for tenant 2")

    assert await mine.next() == "for tenant 1"
    assert await theirs.next() == "for tenant 2"
    await asyncio.sleep(0.1)
    assert mine.queue.empty()
    assert theirs.queue.empty()


@pytest.mark.redis
async def test_a_killed_pubsub_connection_is_reestablished_and_every_subscriber_resyncs(redis_hubs, admin_redis):
    topics = [room_topic(tenant_id=3, room_id=1), room_topic(tenant_id=3, room_id=2)]
    hub = redis_hubs()
    sockets = {topics[0]: [Inbox(), Inbox()], topics[1]: [Inbox()]}
    for topic, inboxes in sockets.items():
        for inbox in inboxes:
            hub.subscribe(topic, inbox)
        await hub.wait_subscribed(topic, timeout=3)
    reconnects = metric("realtime_fanout_reconnects_total")
    resyncs = metric("realtime_fanout_resyncs_total")

    # Sever only this hub's pub/sub connection: other clients of the shared Redis are left alone.
    ids = [c["id"] for c in admin_redis.client_list(_type="pubsub") if c["name"] == f"{redis_hubs.prefix}-0"]
    assert len(ids) == 1
    assert admin_redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub", "ID", ids[0]) == 1

    every_inbox = [inbox for inboxes in sockets.values() for inbox in inboxes]
    await eventually(lambda: all(inbox.resyncs for inbox in every_inbox))
    for topic, inboxes in sockets.items():
        for inbox in inboxes:
            assert inbox.resyncs == [topic]
    assert metric("realtime_fanout_reconnects_total") - reconnects == 1
    assert metric("realtime_fanout_resyncs_total") - resyncs == 3

    # resync() came after the new subscription was confirmed: publishing now is delivered.
    for topic in topics:
        await hub.publish(topic, f"after {topic}")
    for topic, inboxes in sockets.items():
        for inbox in inboxes:
            assert await inbox.next() == f"after {topic}"
    new_ids = [c["id"] for c in admin_redis.client_list(_type="pubsub") if c["name"] == f"{redis_hubs.prefix}-0"]
    assert len(new_ids) == 1
    assert new_ids != ids


@pytest.mark.redis
async def test_a_full_subscriber_queue_drops_for_that_socket_only(redis_hubs):
    topic = room_topic(tenant_id=1, room_id=9)
    hub = redis_hubs()
    slow, fast = Inbox(maxsize=1), Inbox()
    hub.subscribe(topic, slow)
    hub.subscribe(topic, fast)
    await hub.wait_subscribed(topic, timeout=3)
    dropped = metric("realtime_fanout_dropped_total")

    await hub.publish(topic, "one")
    await hub.publish(topic, "two")

    assert [await fast.next(), await fast.next()] == ["one", "two"]
    assert await slow.next() == "one"
    assert slow.queue.empty()
    assert metric("realtime_fanout_dropped_total") - dropped == 1


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_publish_on_commit_publishes_once_after_commit_and_never_on_rollback(redis_hubs, settings):
    settings.FANOUT_CHANNEL_PREFIX = redis_hubs.prefix
    topic = room_topic(tenant_id=4, room_id=1)
    hub = redis_hubs()
    inbox = Inbox()
    hub.subscribe(topic, inbox)
    await hub.wait_subscribed(topic, timeout=3)
    committed = envelope("chat.message", {"body": "kept"}, room="1", seq=1)
    seen_inside: list[bool] = []

    def service(frame, *, rollback: bool) -> None:
        with transaction.atomic():
            publish_on_commit(topic=topic, frame=frame)
            seen_inside.append(inbox.queue.empty())
            if rollback:
                transaction.set_rollback(True)

    await asyncio.to_thread(service, envelope("chat.message", {"body": "lost"}, seq=1), rollback=True)
    await asyncio.to_thread(service, committed, rollback=False)

    assert await inbox.next() == encode(committed)
    await asyncio.sleep(0.1)
    assert inbox.queue.empty()
    assert seen_inside == [True, True]


@pytest.mark.django_db(transaction=True)
async def test_publish_on_commit_logs_and_counts_a_redis_failure_without_raising(settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.FANOUT_PUBLISH_TIMEOUT = 0.5
    failures = metric("realtime_fanout_publish_failures_total")

    def service() -> None:
        with transaction.atomic():
            publish_on_commit(topic=room_topic(tenant_id=1, room_id=1), frame=envelope("chat.message"))

    await asyncio.to_thread(service)

    assert metric("realtime_fanout_publish_failures_total") - failures == 1
    assert "fan-out publish failed" in caplog.text


@pytest.mark.django_db(transaction=True)
async def test_memory_backend_delivers_within_the_process_including_from_service_threads(settings):
    settings.REDIS_URL = None
    await close_fanout()
    hub = get_fanout()
    try:
        assert isinstance(hub, MemoryFanoutHub)
        assert get_fanout() is hub
        topic = room_topic(tenant_id=1, room_id=2)
        first, second, other = Inbox(), Inbox(), Inbox()
        hub.subscribe(topic, first)
        hub.subscribe(topic, second)
        hub.subscribe(room_topic(tenant_id=2, room_id=2), other)
        await hub.wait_subscribed(topic)

        await hub.publish(topic, "direct")
        frame = envelope("chat.message", {"body": "from a service"}, seq=2)

        def service() -> None:
            assert threading.current_thread() is not threading.main_thread()
            with transaction.atomic():
                publish_on_commit(topic=topic, frame=frame)

        await asyncio.to_thread(service)

        assert [await first.next(), await first.next()] == ["direct", encode(frame)]
        assert [await second.next(), await second.next()] == ["direct", encode(frame)]
        assert other.queue.empty()

        hub.unsubscribe(topic, first)
        hub.unsubscribe(topic, second)
        assert hub.topics() == {room_topic(tenant_id=2, room_id=2)}
    finally:
        await close_fanout()


async def test_memory_backend_counts_refusals_and_keeps_delivering_to_others():
    hub = MemoryFanoutHub()
    topic = room_topic(tenant_id=1, room_id=3)

    class Broken:
        def deliver(self, text: str, seq: int | None = None) -> None:
            raise RuntimeError("socket gone")

        def resync(self, topic: str) -> None:
            pass

    healthy = Inbox()
    hub.subscribe(topic, Broken())
    hub.subscribe(topic, healthy)
    dropped = metric("realtime_fanout_dropped_total")

    hub.dispatch(topic, "x")

    assert await healthy.next() == "x"
    assert metric("realtime_fanout_dropped_total") - dropped == 1
