"""The handler registry: message type → async handler, event type → async handler.

Each app declares its WebSocket family in its own ``handlers.py``::

    # chat/handlers.py
    from realtime.registry import registry

    @registry.message("chat.message")
    async def handle_chat_message(conn: Connection, message: ClientMessage) -> Reply | None: ...

    @registry.event("room.invited")
    async def handle_room_invited_event(conn: Connection, event: dict) -> None:
        await conn.send_frame(envelope("room.invited", event["content"], room=event["room"]))

``RealtimeConfig.ready`` imports every project app's ``handlers`` module, so
adding a family is adding that one module. The consumer only looks types up
here; a family that broadcasts presence registers a ``presence_listener``, and
one that keeps per-socket state elsewhere a ``close_listener``. A
message handler answers by returning ``None`` (the consumer sends ``ack``), a
``Reply``, or by raising ``ProtocolError``; docs/protocol.md has the rules.
Room traffic does not use channel-layer events: a handler subscribes the
socket to the room's fan-out topic (``Connection.room_subscribe``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured

from accounts.principals import Principal
from audit.services import RequestContext

from .presence import PresenceChange
from .protocol import ClientMessage, Reply
from .subscriptions import FetchFrames, RoomSubscription

logger = logging.getLogger(__name__)


class Connection(Protocol):
    """What a handler may do with the socket it serves (implemented by the consumer)."""

    @property
    def principal(self) -> Principal | None: ...

    async def send_frame(self, frame: dict[str, Any]) -> None:
        """Send one server envelope (build it with ``realtime.protocol``)."""

    async def group_join(self, group: str) -> None:
        """Receive the events broadcast to ``group`` (see ``realtime.groups``)."""

    async def group_leave(self, group: str) -> None: ...

    async def close(self, code: int | None = None, reason: str | None = None) -> None: ...

    async def close_unauthenticated(self, reason: str) -> None:
        """Close with 4401; ``reason`` (an auth error code) is audited, not sent."""

    async def authenticate(self, *, principal: Principal, method: str) -> None:
        """Start (or, for the same user, extend) the socket's authenticated session."""

    @property
    def authenticated_at(self) -> datetime | None: ...

    @property
    def connection_id(self) -> str:
        """This socket's id in the connection registry and in presence."""

    @property
    def request_context(self) -> RequestContext:
        """The client's address and agent, for services that audit."""

    def deliver(self, text: str) -> None:
        """Queue one frame already encoded (once, for many sockets); never blocks."""

    async def room_subscribe(self, topic: str, *, fetch_missing: FetchFrames) -> RoomSubscription:
        """Receive ``topic`` from the fan-out (``realtime.groups.room_topic``); returns once
        frames published from now on will arrive. The subscription holds them until
        its ``start(last_seq=..., replay=...)``; ``fetch_missing(after=, upto=)`` reads
        stored frames for gaps and replays."""

    def room_unsubscribe(self, topic: str) -> bool:
        """Stop receiving ``topic``; False if the socket was not subscribed."""

    def room_subscriptions(self) -> set[str]: ...

    def after_reply(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` right after the answer to the current frame is queued
        (a replay that must follow the ``ack``)."""

    async def presence_set(self, *, away: bool) -> None:
        """Flag this socket away (or back); a resulting change goes to the presence listeners."""


MessageHandler = Callable[[Connection, ClientMessage], Awaitable[Reply | None]]
EventHandler = Callable[[Connection, dict[str, Any]], Awaitable[None]]
PresenceListener = Callable[[PresenceChange], Awaitable[None]]
CloseListener = Callable[[Connection], Awaitable[None]]


class HandlerRegistry:
    def __init__(self) -> None:
        self._messages: dict[str, MessageHandler] = {}
        self._events: dict[str, EventHandler] = {}
        self._presence_listeners: list[PresenceListener] = []
        self._close_listeners: list[CloseListener] = []

    @staticmethod
    def _add(table: dict[str, Any], key: str, handler: Any) -> None:
        # A silent override would let one app hijack another's type.
        if key in table and table[key] is not handler:
            raise ImproperlyConfigured(f"WebSocket type {key!r} is registered twice.")
        table[key] = handler

    def message(self, message_type: str) -> Callable[[MessageHandler], MessageHandler]:
        """Decorator: handle client frames of ``message_type``."""

        def register(handler: MessageHandler) -> MessageHandler:
            self._add(self._messages, message_type, handler)
            return handler

        return register

    def event(self, event_type: str) -> Callable[[EventHandler], EventHandler]:
        """Decorator: handle channel-layer events of ``event_type`` sent to a group the socket joined."""

        def register(handler: EventHandler) -> EventHandler:
            self._add(self._events, event_type, handler)
            return handler

        return register

    def presence_listener(self, listener: PresenceListener) -> PresenceListener:
        """Decorator: called with each change of a user's presence (online, away,
        offline), once per change across all servers, to broadcast it."""
        if listener not in self._presence_listeners:
            self._presence_listeners.append(listener)
        return listener

    def presence_listeners(self) -> tuple[PresenceListener, ...]:
        return tuple(self._presence_listeners)

    async def presence_changed(self, change: PresenceChange | None) -> None:
        """Hand a change (if any) to every presence listener; one failing does not stop the others."""
        if change is None:
            return
        for listener in self._presence_listeners:
            try:
                await listener(change)
            except Exception:
                logger.exception("presence listener failed")

    def close_listener(self, listener: CloseListener) -> CloseListener:
        """Decorator: called with each authenticated socket as it closes, before its
        fan-out subscriptions end, so a family can clear what the socket showed
        (its presence on a playlist, say)."""
        if listener not in self._close_listeners:
            self._close_listeners.append(listener)
        return listener

    async def connection_closed(self, conn: Connection) -> None:
        """Run every close listener; one failing does not stop the others."""
        for listener in self._close_listeners:
            try:
                await listener(conn)
            except Exception:
                logger.exception("close listener failed")

    def message_handler(self, message_type: str) -> MessageHandler | None:
        return self._messages.get(message_type)

    def event_handler(self, event_type: str) -> EventHandler | None:
        return self._events.get(event_type)

    def message_types(self) -> list[str]:
        return sorted(self._messages)


registry = HandlerRegistry()
