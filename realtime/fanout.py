"""Per-process fan-out of room traffic: one Redis subscription per topic per process.

A message to a room costs one serialization and one ``PUBLISH``, whatever the
room's size: every server process with at least one local member of the room
holds one subscription to the room's topic (``realtime.groups.room_topic``) and
hands the same encoded text frame to each local subscriber. The channel layer's
per-member copies, wake-ups and encodes are gone from this path. A payload is
``"<seq>\n<frame>"`` (``pack``): the header is read once per process, so a
subscriber orders room messages by seq without parsing the frame.

What this module owns: the hub (``get_fanout()``, one per event loop), its Redis
pub/sub connection and reconnection, the in-memory backend of the embedded
default, ``publish_on_commit`` for services, and the fan-out metrics. What it
leaves to others: subscribers (the consumer) own their bounded outbound queue
and their ordering; ``realtime.sequencing`` fills gaps from PostgreSQL. Delivery
is best effort: after a lost subscription every local subscriber gets
``resync(topic)`` and re-reads by seq. docs/operations.md, "Fan-out and
presence (server design)", explains the design.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import transaction
from prometheus_client import Counter
from redis.backoff import NoBackoff
from redis.retry import Retry

from .protocol import encode

logger = logging.getLogger(__name__)

# No label carries a topic, room or user: the series count stays fixed.
PUBLISHED = Counter("realtime_fanout_published_total", "Frames published to a fan-out topic.")
PUBLISH_FAILURES = Counter("realtime_fanout_publish_failures_total", "Publishes that failed (frame not sent).")
DELIVERED = Counter("realtime_fanout_delivered_total", "Frames handed to local subscribers.")
DROPPED = Counter("realtime_fanout_dropped_total", "Frames a local subscriber refused (queue full or error).")
RESYNCS = Counter("realtime_fanout_resyncs_total", "resync() calls made after a lost subscription.")
RECONNECTS = Counter("realtime_fanout_reconnects_total", "Pub/sub connections re-established after a loss.")

# Silence on the pub/sub socket longer than this sends a PING; no answer within
# another interval means the connection is dead even if TCP has not noticed
# (a half-open socket never raises). Two intervals bound the detection time.
PING_INTERVAL = 5.0
# Reconnection backoff: fast first retry (a killed connection usually comes back
# at once), then doubling, with jitter so a restarted Redis is not hit by every
# process in the same millisecond.
BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 5.0


# What travels on a topic: "<seq>\n<frame text>", the seq empty for frames outside
# the room's message sequence. The header is read once per process per message,
# so a sequenced subscriber orders frames without parsing any JSON.
_HEADER_END = "\n"


def pack(text: str, seq: int | None = None) -> str:
    """The pub/sub payload of one encoded frame."""
    return f"{'' if seq is None else seq}{_HEADER_END}{text}"


def unpack(payload: str) -> tuple[str, int | None]:
    """The frame text and seq of a payload made by ``pack``."""
    header, _, text = payload.partition(_HEADER_END)
    return text, int(header) if header else None


class Subscriber(Protocol):
    """A local receiver of a topic, typically one socket (or one socket's room)."""

    def deliver(self, text: str, seq: int | None) -> None:
        """Queue ``text`` (an encoded server frame, ``seq`` its envelope's seq if any)
        for the socket. Must not block or await: raise (``asyncio.QueueFull``) to
        refuse it; the hub counts a drop."""

    def resync(self, topic: str) -> None:
        """Frames of ``topic`` may have been lost: re-read from the store by seq."""


class FanoutHub(ABC):
    """The local side of fan-out: which subscribers of this process want which topic.

    ``subscribe`` and ``unsubscribe`` are synchronous and only change local state;
    the backend catches up with Redis in the background. Callers that must not
    miss a frame published right after joining await ``wait_subscribed(topic)``
    and then read the store from their last seq (duplicates are dropped by seq).
    """

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}

    # --- local membership ---------------------------------------------------------

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        members = self._subscribers.get(topic)
        if members is None:
            members = self._subscribers[topic] = set()
            members.add(subscriber)
            self._topic_added(topic)
        else:
            members.add(subscriber)

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        members = self._subscribers.get(topic)
        if members is None:
            return
        members.discard(subscriber)
        if not members:
            del self._subscribers[topic]
            self._topic_removed(topic)

    def topics(self) -> set[str]:
        return set(self._subscribers)

    def subscriber_count(self, topic: str) -> int:
        return len(self._subscribers.get(topic, ()))

    # --- delivery -------------------------------------------------------------------

    def dispatch(self, topic: str, text: str, seq: int | None = None) -> None:
        """Hand ``text`` to every local subscriber of ``topic``. Never awaits."""
        members = self._subscribers.get(topic)
        if not members:
            return
        delivered = dropped = 0
        # A copy: a subscriber may leave the topic from inside deliver().
        for subscriber in tuple(members):
            try:
                subscriber.deliver(text, seq)
            except asyncio.QueueFull:
                dropped += 1
            except Exception:
                dropped += 1
                logger.exception("fan-out subscriber failed", extra={"topic": topic})
            else:
                delivered += 1
        # One counter update per message, not per socket.
        if delivered:
            DELIVERED.inc(delivered)
        if dropped:
            DROPPED.inc(dropped)

    def resync_all(self, topics: Iterable[str]) -> None:
        count = 0
        for topic in topics:
            for subscriber in tuple(self._subscribers.get(topic, ())):
                count += 1
                try:
                    subscriber.resync(topic)
                except Exception:
                    logger.exception("fan-out resync failed", extra={"topic": topic})
        if count:
            RESYNCS.inc(count)

    # --- backend hooks --------------------------------------------------------------

    @abstractmethod
    async def publish(self, topic: str, text: str, *, seq: int | None = None) -> None:
        """Send one encoded frame to every process subscribed to ``topic``."""

    @abstractmethod
    async def wait_subscribed(self, topic: str, *, timeout: float | None = None) -> None:
        """Return once frames published to ``topic`` from now on reach this process."""

    async def aclose(self) -> None:
        self._subscribers.clear()

    def _topic_added(self, topic: str) -> None:  # noqa: B027 - optional hook: the memory backend needs none
        """Called when the first local subscriber of ``topic`` arrives."""

    def _topic_removed(self, topic: str) -> None:  # noqa: B027
        """Called when the last local subscriber of ``topic`` leaves."""


class MemoryFanoutHub(FanoutHub):
    """The embedded default (no ``REDIS_URL``): dispatch within this process only."""

    async def publish(self, topic: str, text: str, *, seq: int | None = None) -> None:
        PUBLISHED.inc()
        _memory_broadcast(topic, pack(text, seq))

    async def wait_subscribed(self, topic: str, *, timeout: float | None = None) -> None:
        return


class RedisFanoutHub(FanoutHub):
    """Fan-out over Redis pub/sub: one pub/sub connection per hub, owned by one task.

    The task connects, subscribes every wanted topic, and then both reads messages
    and sends ``SUBSCRIBE``/``UNSUBSCRIBE`` as local membership changes. Any error
    on the connection ends the session: the task reconnects with backoff,
    re-subscribes, and calls ``resync`` on every local subscriber.
    """

    def __init__(
        self,
        *,
        url: str,
        channel_prefix: str,
        client_name: str = "realtime-fanout",
        ping_interval: float = PING_INTERVAL,
        publish_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self._prefix = f"{channel_prefix}."
        self._ping_interval = ping_interval
        # Errors surface to the session loop instead of being retried inside
        # redis-py: only the loop knows that a reconnect means a resync.
        no_retry = Retry(NoBackoff(), 0)
        self._listen_pool = aioredis.ConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=1,
            client_name=client_name,
            socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
            # Bounds SUBSCRIBE writes and the handshake; reads pass their own
            # timeout (the ping interval), so an idle topic never trips it.
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_keepalive=True,
            retry=no_retry,
        )
        publish_timeout = publish_timeout if publish_timeout is not None else settings.FANOUT_PUBLISH_TIMEOUT
        # Waits for a free connection instead of raising when the cap is hit
        # (redis-py's plain pool raises): a burst of publishes queues briefly.
        self._publish_client = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=settings.REDIS_MAX_CONNECTIONS,
                timeout=publish_timeout,
                socket_connect_timeout=min(settings.REDIS_CONNECT_TIMEOUT, publish_timeout),
                socket_timeout=publish_timeout,
                client_name=f"{client_name}-publish",
            )
        )
        self._wanted: set[str] = set()  # topics with local subscribers
        self._requested: set[str] = set()  # topics SUBSCRIBEd on the current connection
        self._pending: dict[str, int] = {}  # SUBSCRIBEs sent and not yet confirmed
        self._ready: dict[str, asyncio.Event] = {}  # set while confirmed on the connection
        self._resync_due: set[str] = set()  # topics to resync once re-subscribed after a loss
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self._session_ok = False
        self.connected = asyncio.Event()

    # --- FanoutHub --------------------------------------------------------------------

    async def publish(self, topic: str, text: str, *, seq: int | None = None) -> None:
        """One ``PUBLISH``. Raises on a Redis failure (the caller decides); counted either way."""
        try:
            await self._publish_client.publish(self._prefix + topic, pack(text, seq))
        except Exception:
            PUBLISH_FAILURES.inc()
            raise
        PUBLISHED.inc()

    async def wait_subscribed(self, topic: str, *, timeout: float | None = None) -> None:
        event = self._ready.get(topic)
        if event is None:
            raise LookupError(f"No local subscriber of {topic!r}.")
        async with asyncio.timeout(timeout):
            await event.wait()

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._listen_pool.aclose()
        await self._publish_client.aclose()
        await super().aclose()

    def _topic_added(self, topic: str) -> None:
        self._wanted.add(topic)
        ready = self._ready[topic] = asyncio.Event()
        if topic in self._requested and not self._pending.get(topic):
            # Dropped and wanted again before the connection task caught up: the
            # confirmed SUBSCRIBE still stands, and no new confirmation will come.
            ready.set()
        self._changed.set()
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="realtime-fanout")

    def _topic_removed(self, topic: str) -> None:
        self._wanted.discard(topic)
        self._ready.pop(topic, None)
        self._resync_due.discard(topic)
        self._changed.set()

    # --- the connection task ----------------------------------------------------------

    async def _run(self) -> None:
        backoff = BACKOFF_INITIAL
        lost = False
        while not self._closed:
            pubsub = aioredis.Redis(connection_pool=self._listen_pool).pubsub()
            try:
                await self._session(pubsub, after_loss=lost)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                if not lost:
                    logger.warning("fan-out pub/sub connection lost: %s", exc)
                lost = True
            except Exception:
                # Whatever went wrong, the hub must come back: a dead task would
                # leave every local socket without room traffic.
                logger.exception("fan-out pub/sub session failed")
                lost = True
            finally:
                self.connected.clear()
                self._requested.clear()
                self._pending.clear()
                for event in self._ready.values():
                    event.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if self._session_ok:
                backoff = BACKOFF_INITIAL
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 (jitter, not security)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self, pubsub: aioredis.client.PubSub, *, after_loss: bool) -> None:
        self._session_ok = False
        await pubsub.connect()
        if after_loss:
            # Frames published while the connection was down are gone: each local
            # subscriber re-reads from the store, once Redis has confirmed the
            # topic's new SUBSCRIBE (see _confirm), so nothing published after
            # the re-read can fall between the two.
            self._resync_due = set(self._wanted)
        await self._sync_subscriptions(pubsub)
        self.connected.set()
        self._session_ok = True
        if after_loss:
            RECONNECTS.inc()
            logger.info("fan-out pub/sub connection re-established", extra={"topics": len(self._wanted)})
        syncer = asyncio.create_task(self._syncer(pubsub))
        try:
            await self._reader(pubsub)
        finally:
            syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await syncer

    async def _syncer(self, pubsub: aioredis.client.PubSub) -> None:
        while True:
            await self._changed.wait()
            await self._sync_subscriptions(pubsub)

    async def _sync_subscriptions(self, pubsub: aioredis.client.PubSub) -> None:
        # Clear first: a change made while the commands are in flight re-arms it.
        self._changed.clear()
        add = sorted(self._wanted - self._requested)
        remove = sorted(self._requested - self._wanted)
        if remove:
            self._requested.difference_update(remove)
            await pubsub.execute_command("UNSUBSCRIBE", *(self._prefix + topic for topic in remove))
        if add:
            self._requested.update(add)
            for topic in add:
                self._pending[topic] = self._pending.get(topic, 0) + 1
            # execute_command, not pubsub.subscribe: redis-py's own bookkeeping
            # would re-subscribe behind our back on a reconnect it makes itself.
            await pubsub.execute_command("SUBSCRIBE", *(self._prefix + topic for topic in add))

    async def _reader(self, pubsub: aioredis.client.PubSub) -> None:
        prefix_length = len(self._prefix)
        ping_sent = False
        while True:
            message = await pubsub.parse_response(block=False, timeout=self._ping_interval)
            if message is None:
                if ping_sent:
                    raise ConnectionError("Redis did not answer PING on the pub/sub connection")
                await pubsub.execute_command("PING")
                ping_sent = True
                continue
            ping_sent = False
            kind = message[0]
            if kind == "message":
                self.dispatch(message[1][prefix_length:], *unpack(message[2]))
            elif kind == "subscribe":
                self._confirm(message[1][prefix_length:])

    def _confirm(self, topic: str) -> None:
        pending = self._pending.get(topic, 0) - 1
        if pending > 0:
            self._pending[topic] = pending
            return
        self._pending.pop(topic, None)
        event = self._ready.get(topic)
        if event is not None and topic in self._requested:
            event.set()
        if topic in self._resync_due:
            self._resync_due.discard(topic)
            self.resync_all((topic,))


# --- one hub per event loop ------------------------------------------------------------

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FanoutHub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def get_fanout() -> FanoutHub:
    """The hub of the running event loop (created on first use).

    One per loop rather than per process: redis.asyncio connections belong to the
    loop that opened them. A server process runs one loop, so one hub.
    """
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            if settings.REDIS_URL:
                hub = RedisFanoutHub(url=settings.REDIS_URL, channel_prefix=settings.FANOUT_CHANNEL_PREFIX)
            else:
                hub = MemoryFanoutHub()
            _hubs[loop] = hub
    return hub


async def close_fanout() -> None:
    """Close the running loop's hub (server shutdown, tests)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.pop(loop, None)
    if hub is not None:
        await hub.aclose()


def _memory_broadcast(topic: str, payload: str) -> None:
    """In-memory backend: every hub of this process, each on its own loop."""
    text, seq = unpack(payload)
    with _hubs_lock:
        targets = [(loop, hub) for loop, hub in _hubs.items() if isinstance(hub, MemoryFanoutHub)]
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    for loop, hub in targets:
        if loop is current:
            hub.dispatch(topic, text, seq)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(hub.dispatch, topic, text, seq)


# --- publishing from synchronous services ----------------------------------------------

_sync_clients: dict[tuple[str, float], redis.Redis] = {}
_sync_clients_lock = threading.Lock()


def _sync_client() -> redis.Redis:
    key = (settings.REDIS_URL, settings.FANOUT_PUBLISH_TIMEOUT)
    with _sync_clients_lock:
        client = _sync_clients.get(key)
        if client is None:
            timeout = settings.FANOUT_PUBLISH_TIMEOUT
            client = redis.Redis(
                connection_pool=redis.BlockingConnectionPool.from_url(
                    settings.REDIS_URL,
                    max_connections=settings.REDIS_MAX_CONNECTIONS,
                    timeout=timeout,
                    socket_connect_timeout=min(settings.REDIS_CONNECT_TIMEOUT, timeout),
                    socket_timeout=timeout,
                    client_name="realtime-fanout-publish",
                    # One quick retry covers a connection Redis closed while idle.
                    retry=Retry(NoBackoff(), 1),
                ),
            )
            _sync_clients[key] = client
    return client


def _publish_now(messages: list[tuple[str, str]]) -> None:
    """Publish each (topic, payload), in order, in one Redis round trip."""
    try:
        if settings.REDIS_URL:
            with _sync_client().pipeline(transaction=False) as pipe:
                for topic, payload in messages:
                    pipe.publish(f"{settings.FANOUT_CHANNEL_PREFIX}.{topic}", payload)
                pipe.execute()
        else:
            for topic, payload in messages:
                _memory_broadcast(topic, payload)
    except Exception:
        PUBLISH_FAILURES.inc(len(messages))
        logger.exception("fan-out publish failed", extra={"topics": sorted({topic for topic, _ in messages})})
        return
    PUBLISHED.inc(len(messages))


def publish_on_commit(*, topic: str, frame: dict[str, Any]) -> None:
    """Publish ``frame`` to ``topic`` once the current transaction commits (at once
    outside a transaction); nothing is sent on rollback.

    The frame is encoded here, once, with its ``seq`` in the payload's header, and
    every process hands the same text to its sockets. A failure is logged and
    counted, never raised: the change it announces is committed, and subscribers
    recover it from the store by seq.
    """
    publish_many_on_commit([(topic, frame)])


def publish_many_on_commit(frames: list[tuple[str, dict[str, Any]]]) -> None:
    """``publish_on_commit`` for several (topic, frame), published in order in one
    Redis round trip (a batch of messages stored together)."""
    if not frames:
        return
    messages = [(topic, pack(encode(frame), frame.get("seq"))) for topic, frame in frames]
    transaction.on_commit(lambda: _publish_now(messages), robust=True)
