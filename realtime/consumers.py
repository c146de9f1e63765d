"""The hub's single consumer: transport, parsing, limits and dispatch, nothing else.

It owns the socket's lifecycle: accept-then-close refusals decided by
``realtime.middleware``, the first-frame authentication window, the deadlines
that end a socket (access-token expiry, missed heartbeats;
armed on the process-wide ``realtime.timers`` scheduler, not a task per
socket; the periodic auth re-check and the refresh of the socket's
registry slot and presence run for all sockets of the process at once in
``realtime.upkeep``), the user's slot in the connection registry
(``realtime.connections``), the rate limits of client frames
(``realtime.limits``), the outgoing frames (``realtime.outbox``: written at
once, bounded only behind a server that makes ``send`` wait), its
channel-layer groups (the user's, the tenant's and everyone's; re-joined after a Redis restart,
which channels_redis would otherwise turn into a 1011 close), the audit of
connect/disconnect (buffered, written in batches by ``realtime.auditing``), the
socket's room subscriptions on the fan-out (``realtime.subscriptions``:
created by handlers, all dropped on disconnect) and its presence
(``realtime.presence``: registered at authentication, refreshed by the
upkeep, removed with a grace period on disconnect; changes
are handed to the listeners registered with ``registry.presence_listener``).
What a frame *means* is decided by the handler registered for its type
(``realtime.registry``); what a channel-layer event does, likewise. Database
work goes through services and selectors wrapped in ``database_sync_to_async``
(in the handlers, ``realtime.upkeep`` and ``realtime.auditing``).
docs/protocol.md is the client-facing description.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.principals import Principal
from accounts.services.tokens import AuthenticationError
from audit.services import RequestContext

from .auditing import lifecycle_audit
from .connections import connection_slot_acquire, connection_slot_release
from .fanout import get_fanout
from .groups import everyone_group, tenant_group, user_group
from .limits import DEFAULT_FAMILY, FrameLimiter, family_of
from .middleware import HandshakeAuth
from .outbox import Outbox
from .presence import (
    presence_connect,
    presence_disconnect,
    presence_set_away,
)
from .protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    CloseCode,
    ErrorCode,
    ProtocolError,
    Reply,
    encode,
    envelope,
    error,
    parse_client_frame,
    timestamp,
)
from .registry import registry
from .services import ws_connection_closed, ws_connection_opened, ws_connection_rejected
from .subscriptions import FetchFrames, RoomSubscription
from .timers import Deadlines
from .upkeep import hub_upkeep
from .wire import direct_wire

logger = logging.getLogger(__name__)

# How long joining a room waits for Redis to confirm the topic's subscription.
_SUBSCRIBE_TIMEOUT = 5.0
# Retries of a failed channel-layer receive: quick first (a restarted Redis is
# usually back at once), doubling to the cap, jittered so a server's sockets do
# not reconnect in the same millisecond.
_LAYER_RETRY_INITIAL = 0.1
_LAYER_RETRY_MAX = 5.0


_WEBSOCKET_HANDLERS = {
    "websocket.connect": "websocket_connect",
    "websocket.receive": "websocket_receive",
    "websocket.disconnect": "websocket_disconnect",
}


class HubConsumer(AsyncWebsocketConsumer):
    """``/ws/``: one instance per socket. Implements ``realtime.registry.Connection``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._principal: Principal | None = None
        self._method = ""
        self._authenticated_at: datetime | None = None
        self._context = RequestContext()
        self._groups: set[str] = set()
        self._closing = False
        self._close_code: int | None = None
        self._close_reason = ""
        self._opened_at = 0.0
        self._last_frame_at = 0.0
        self._connection_id = uuid.uuid4().hex
        self._slot_held = False
        self._limiter: FrameLimiter | None = None
        self._deadlines: Deadlines | None = None
        # Outgoing frames (realtime.outbox), created once the socket is accepted.
        self._outbox: Outbox | None = None
        self._tasks: set[asyncio.Task] = set()
        self._rooms: dict[str, RoomSubscription] = {}
        self._after_reply: list[Callable[[], Awaitable[None]]] = []
        self._present = False

    # --- The channel layer, surviving a Redis outage ------------------------------

    # Channels' __call__ assigns ``channel_receive`` and then waits on it together
    # with the socket. channels_redis raises out of receive() when its Redis
    # connection drops, which would end the consumer and close the socket with
    # 1011; the property hands Channels a receive that retries instead.
    @property
    def channel_receive(self) -> Callable[[], Awaitable[dict[str, Any]]]:
        return self._channel_receive

    @channel_receive.setter
    def channel_receive(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._layer_receive = receive

    async def _channel_receive(self) -> dict[str, Any]:
        delay = _LAYER_RETRY_INITIAL
        rejoin = False
        while True:
            try:
                if rejoin:
                    # A restarted Redis has forgotten the groups: join them again
                    # (group_add is idempotent) before listening.
                    for group in tuple(self._groups):
                        await self.channel_layer.group_add(group, self.channel_name)
                    rejoin = False
                return await self._layer_receive()
            except (RedisError, OSError) as exc:
                if delay == _LAYER_RETRY_INITIAL:
                    logger.warning("channel layer unavailable, retrying: %s", exc)
                rejoin = True
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 (jitter)
            delay = min(delay * 2, _LAYER_RETRY_MAX)

    # --- Connection (the surface handlers use) ------------------------------------

    @property
    def principal(self) -> Principal | None:
        return self._principal

    @property
    def authenticated_at(self) -> datetime | None:
        return self._authenticated_at

    @property
    def connection_id(self) -> str:
        return self._connection_id

    @property
    def request_context(self) -> RequestContext:
        return self._context

    @property
    def holds_slot(self) -> bool:
        return self._slot_held

    @property
    def present(self) -> bool:
        return self._present

    def deliver(self, text: str) -> None:
        """Send one encoded frame to the client; never blocks.

        Past ``WS_MAX_OUTBOUND_BACKLOG`` frames waiting behind a send the server
        has not completed, or under daphne past ``WS_MAX_OUTBOUND_BYTES`` held
        for a client that stopped reading, the client is not keeping up: the
        backlog is dropped and the socket closed with 4413, so the client
        reconnects and resumes rather than the server buffering without bound
        (``realtime.outbox``, ``realtime.wire``)."""
        if self._closing or self._outbox is None:
            return
        self._outbox.put(text)

    def _overflowed(self) -> None:
        logger.warning("slow consumer: closing socket")
        self._spawn(self.close(CloseCode.SLOW_CONSUMER, "slow_consumer"))

    async def send_frame(self, frame: dict[str, Any]) -> None:
        self.deliver(encode(frame))

    async def group_join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self._groups.add(group)

    async def group_leave(self, group: str) -> None:
        self._groups.discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    async def room_subscribe(self, topic: str, *, fetch_missing: FetchFrames) -> RoomSubscription:
        """Subscribe this socket to ``topic`` (replacing an earlier subscription of it)
        and return once Redis has confirmed it; the subscription holds frames until
        its ``start``."""
        subscription = RoomSubscription(topic=topic, send=self.deliver, fetch_missing=fetch_missing)
        fanout = get_fanout()
        # Subscribe before dropping an earlier subscription, so the process keeps
        # its Redis subscription to the topic throughout.
        fanout.subscribe(topic, subscription)
        self.room_unsubscribe(topic)
        self._rooms[topic] = subscription
        try:
            await fanout.wait_subscribed(topic, timeout=_SUBSCRIBE_TIMEOUT)
        except BaseException:
            self.room_unsubscribe(topic)
            raise
        return subscription

    def room_unsubscribe(self, topic: str) -> bool:
        """Stop receiving ``topic``; False if the socket was not subscribed."""
        subscription = self._rooms.pop(topic, None)
        if subscription is None:
            return False
        subscription.close()
        get_fanout().unsubscribe(topic, subscription)
        return True

    def room_subscriptions(self) -> set[str]:
        return set(self._rooms)

    def after_reply(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` once the answer to the frame being handled is queued."""
        self._after_reply.append(callback)

    async def presence_set(self, *, away: bool) -> None:
        change = await presence_set_away(
            tenant_id=self._principal.tenant_id,
            user_id=self._principal.user_id,
            connection_id=self._connection_id,
            away=away,
        )
        await registry.presence_changed(change)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self._closing:
            return
        self._closing = True
        hub_upkeep().unwatch(self)
        # A plain int: autobahn refuses int subclasses such as IntEnum members.
        self._close_code = int(code if code is not None else CloseCode.NORMAL)
        self._close_reason = reason or ""
        if self._deadlines is not None:
            self._deadlines.cancel_all()
        if self._outbox is not None:
            await self._outbox.flush()
        await super().close(code=self._close_code)

    async def close_unauthenticated(self, reason: str) -> None:
        """Close with 4401. Before authentication the refusal is audited as such;
        after it, ``reason`` goes into the disconnect record."""
        if self._closing:
            return
        if self._principal is None:
            lifecycle_audit().record(ws_connection_rejected(reason=reason, method=self._method, context=self._context))
        await self.close(CloseCode.UNAUTHENTICATED, reason)

    async def authenticate(self, *, principal: Principal, method: str) -> None:
        """Start the socket's session, or extend it with a fresh credential of the same user."""
        if self._principal is not None:
            if (principal.user_id, principal.tenant_id) != (self._principal.user_id, self._principal.tenant_id):
                await self.close_unauthenticated("user_mismatch")
                return
            self._principal = principal
            self._authenticated_at = timezone.now()
            self._arm_expiry()
            return

        if not await self._acquire_slot(principal):
            lifecycle_audit().record(
                ws_connection_rejected(reason="too_many_connections", method=method, context=self._context)
            )
            await self.close(CloseCode.TOO_MANY_CONNECTIONS, "too_many_connections")
            return
        if self._closing:
            # The authentication window ended while the slot was being taken.
            await self._release_slot(principal)
            return
        self._principal = principal
        self._method = method
        self._authenticated_at = timezone.now()
        self._limiter = FrameLimiter(tenant_id=principal.tenant_id, user_id=principal.user_id)
        self._deadlines.cancel("auth")
        self._arm_expiry()
        hub_upkeep().watch(self)
        await self.group_join(user_group(tenant_id=principal.tenant_id, user_id=principal.user_id))
        await self.group_join(tenant_group(tenant_id=principal.tenant_id))
        await self.group_join(everyone_group())
        await self._presence_connect()
        lifecycle_audit().record(ws_connection_opened(principal=principal, method=method, context=self._context))
        await self.send_frame(
            envelope(
                "hello",
                {
                    "protocol": PROTOCOL_VERSION,
                    "user": {"id": principal.user_id, "username": principal.username, "role": principal.role},
                    "tenant": principal.tenant_slug,
                    "expires_at": timestamp(principal.expires_at) if principal.expires_at else None,
                    "heartbeat_interval": settings.WS_HEARTBEAT_INTERVAL,
                    "max_frame_bytes": settings.WS_MAX_FRAME_BYTES,
                },
            )
        )

    # --- ASGI lifecycle ----------------------------------------------------------------

    async def connect(self) -> None:
        # Always accept first: a close before accept becomes an HTTP 403 without a close code.
        await self.accept()
        self._outbox = Outbox(
            lambda text: self.base_send({"type": "websocket.send", "text": text}),
            limit=settings.WS_MAX_OUTBOUND_BACKLOG,
            on_overflow=self._overflowed,
            wire=direct_wire(self.base_send, limit=settings.WS_MAX_OUTBOUND_BYTES),
        )
        self._context = RequestContext.from_scope(self.scope)
        self._opened_at = self._last_frame_at = self._now()
        handshake: HandshakeAuth = self.scope.get("ws_auth") or HandshakeAuth.refused("header", "token_missing")
        self._method = handshake.method
        if handshake.close_code is not None:
            lifecycle_audit().record(
                ws_connection_rejected(reason=handshake.reason, method=handshake.method, context=self._context)
            )
            await self.close(handshake.close_code, handshake.reason)
            return
        self._deadlines = Deadlines()
        self._deadlines.arm("auth", settings.WS_AUTH_TIMEOUT, self._guarded(self._auth_timeout))
        self._deadlines.arm("heartbeat", self._heartbeat_limit(), self._guarded(self._heartbeat_check))
        if handshake.principal is not None:
            await self.authenticate(principal=handshake.principal, method=handshake.method)

    async def disconnect(self, code: int) -> None:
        self._closing = True
        hub_upkeep().unwatch(self)
        if self._deadlines is not None:
            self._deadlines.cancel_all()
        if self._outbox is not None:
            self._outbox.discard()
        if self._principal is not None:
            await registry.connection_closed(self)
        for topic in list(self._rooms):
            self.room_unsubscribe(topic)
        for group in list(self._groups):
            await self.group_leave(group)
        if self._principal is not None:
            await self._presence_disconnect()
            await self._release_slot(self._principal)
            lifecycle_audit().record(
                ws_connection_closed(
                    principal=self._principal,
                    code=self._close_code if self._close_code is not None else code,
                    reason=self._close_reason or ("server" if self._close_code is not None else "client"),
                    duration_seconds=self._now() - self._opened_at,
                    context=self._context,
                )
            )

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # As Channels' own, minus its close_old_connections on the database thread
        # (see dispatch); this consumer's groups are left in disconnect().
        await self.disconnect(message["code"])
        raise StopConsumer

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing:
            return
        self._last_frame_at = self._now()
        try:
            message = self._parse(text_data, bytes_data)
        except ProtocolError as exc:
            if self._principal is None:
                await self.close_unauthenticated("auth_expected")
                return
            frame_id = exc.details.pop("id", None)
            # Unreadable frames count against the default family, like any other.
            if await self._admit(DEFAULT_FAMILY, frame_id):
                await self.send_frame(error(exc.code, exc.message, frame_id=frame_id, details=exc.details))
            return
        if self._principal is None:
            if message.type != "auth":
                # Before authentication only the auth frame is processed.
                await self.close_unauthenticated("auth_expected")
                return
        elif not await self._admit(family_of(message.type), message.id):
            return
        await self._dispatch_message(message)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channel-layer events are routed through the registry, not to methods
        # named after their type, so a family adds events without touching this class.
        if message["type"].startswith("websocket."):
            # Straight to websocket_connect/receive/disconnect. Channels' own
            # dispatch first runs close_old_connections on its single database
            # thread for every frame, so each frame would queue behind whatever
            # database work the process is doing. This consumer never touches
            # the ORM itself: database_sync_to_async closes stale connections
            # around each call it makes.
            name = _WEBSOCKET_HANDLERS.get(message["type"])
            if name is None:
                raise ValueError(f"No handler for message type {message['type']}")
            await getattr(self, name)(message)
            return
        if self._closing or self._principal is None:
            return
        handler = registry.event_handler(message["type"])
        if handler is None:
            logger.warning("no handler for channel-layer event", extra={"event": message["type"]})
            return
        try:
            await handler(self, message)
        except Exception:
            # One faulty event must not take the socket (and its other groups) down.
            logger.exception("event handler failed", extra={"event": message["type"]})

    # --- Internals: frames ------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    @staticmethod
    def _parse(text_data: str | None, bytes_data: bytes | None) -> ClientMessage:
        if text_data is None:
            raise ProtocolError(ErrorCode.BAD_JSON, "Only JSON text frames are accepted.")
        if len(text_data.encode()) > settings.WS_MAX_FRAME_BYTES:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes.",
                details={"max_bytes": settings.WS_MAX_FRAME_BYTES},
            )
        return parse_client_frame(text_data)

    async def _admit(self, family: str, frame_id: str | int | None) -> bool:
        """Apply the rate limits; answer ``rate_limited`` or close 4430 when refused."""
        verdict = await self._limiter.admit(family)
        if verdict.allowed:
            return True
        if verdict.abusive:
            await self.close(CloseCode.RATE_LIMIT_ABUSE, "rate_limit_abuse")
            return False
        await self.send_frame(
            error(
                ErrorCode.RATE_LIMITED,
                f"Too many {family!r} frames; retry after {verdict.retry_after} s.",
                frame_id=frame_id,
                retry_after=verdict.retry_after,
            )
        )
        return False

    async def _dispatch_message(self, message: ClientMessage) -> None:
        handler = registry.message_handler(message.type)
        if handler is None:
            await self.send_frame(
                error(ErrorCode.UNKNOWN_TYPE, f"Unknown message type {message.type!r}.", frame_id=message.id)
            )
            return
        try:
            reply = await handler(self, message)
        except ProtocolError as exc:
            await self.send_frame(
                error(exc.code, exc.message, frame_id=message.id, details=exc.details, retry_after=exc.retry_after)
            )
            return
        except Exception:
            logger.exception("message handler failed", extra={"type": message.type})
            await self.send_frame(
                error(ErrorCode.INTERNAL, "The server failed to process the frame.", frame_id=message.id)
            )
            return
        finally:
            callbacks, self._after_reply = self._after_reply, []
        reply = reply or Reply()
        # A bare ack only answers a frame that asked for one (carried an id).
        if message.id is not None or reply.type != "ack":
            await self.send_frame(envelope(reply.type, reply.content, id=message.id))
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                logger.exception("after-reply callback failed", extra={"type": message.type})

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- Internals: deadlines ------------------------------------------------------------------

    def _guarded(self, callback: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if self._closing:
                return
            try:
                await callback()
            except Exception:
                # Without its deadlines a socket would outlive its credential: fail closed.
                logger.exception("WebSocket deadline failed")
                await self.close(CloseCode.INTERNAL_ERROR, "watchdog_failed")

        return run

    def _heartbeat_limit(self) -> float:
        return 2 * settings.WS_HEARTBEAT_INTERVAL

    async def _heartbeat_check(self) -> None:
        remaining = self._last_frame_at + self._heartbeat_limit() - self._now()
        if remaining <= 0:
            await self.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat_timeout")
            return
        # A frame arrived since the timer was armed: wait for the rest of the window.
        self._deadlines.arm("heartbeat", remaining, self._guarded(self._heartbeat_check))

    async def _auth_timeout(self) -> None:
        if self._principal is None:
            await self.close_unauthenticated("auth_timeout")

    def _arm_expiry(self) -> None:
        expires_at = self._principal.expires_at
        if expires_at is None:
            self._deadlines.cancel("expiry")
            return
        remaining = (expires_at - timezone.now()).total_seconds()
        self._deadlines.arm("expiry", remaining, self._guarded(self._expiry_check))

    async def _expiry_check(self) -> None:
        expires_at = self._principal.expires_at
        if expires_at is not None and expires_at <= timezone.now():
            await self.close_unauthenticated("token_expired")
            return
        # A refresh moved the expiry (or the clocks disagree): wait again.
        self._arm_expiry()

    async def principal_rechecked(self, checked: Principal, verdict: Principal | AuthenticationError) -> None:
        """The periodic re-check's verdict on ``checked`` (``realtime.recheck``)."""
        if self._closing:
            return
        if isinstance(verdict, AuthenticationError):
            await self.close_unauthenticated(verdict.code)
        elif self._principal is checked:
            # A refresh that landed while the check ran carries a newer expiry: keep it.
            self._principal = verdict

    # --- Internals: presence ------------------------------------------------------------------

    async def _presence_connect(self) -> None:
        principal = self._principal
        self._present = True
        try:
            change = await presence_connect(
                tenant_id=principal.tenant_id, user_id=principal.user_id, connection_id=self._connection_id
            )
        except Exception:
            # Presence is a courtesy: a Redis outage must not refuse the socket.
            # The next refresh registers the connection again.
            logger.exception("presence unavailable")
            return
        await registry.presence_changed(change)

    async def _presence_disconnect(self) -> None:
        if not self._present:
            return
        self._present = False
        principal = self._principal
        try:
            # The "offline" decision runs PRESENCE_GRACE_SECONDS later, after this
            # consumer is gone: the callback must not need it.
            await presence_disconnect(
                tenant_id=principal.tenant_id,
                user_id=principal.user_id,
                connection_id=self._connection_id,
                on_change=registry.presence_changed,
            )
        except Exception:
            # The connection lapses by itself after PRESENCE_TTL_SECONDS.
            logger.exception("presence disconnect failed")

    # --- Internals: the connection registry ------------------------------------------------------

    async def _acquire_slot(self, principal: Principal) -> bool:
        try:
            self._slot_held = await connection_slot_acquire(
                tenant_id=principal.tenant_id, user_id=principal.user_id, connection_id=self._connection_id
            )
        except Exception:
            # Fail open: the cap protects resources, not data; a Redis outage
            # must not lock every user out of the hub.
            logger.exception("connection registry unavailable")
            return True
        return self._slot_held

    async def slot_lost(self) -> None:
        """The upkeep found this socket's registry entry expired (the process
        stalled past the TTL) and the user's other sockets took the room."""
        self._slot_held = False
        await self.close(CloseCode.TOO_MANY_CONNECTIONS, "too_many_connections")

    async def _release_slot(self, principal: Principal) -> None:
        if not self._slot_held:
            return
        self._slot_held = False
        try:
            await connection_slot_release(
                tenant_id=principal.tenant_id, user_id=principal.user_id, connection_id=self._connection_id
            )
        except Exception:
            # The entry expires by itself within WS_CONNECTION_TTL.
            logger.exception("connection registry release failed")
