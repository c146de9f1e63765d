"""The handler registry: message type → async handler, event type → async handler.

Each app declares its WebSocket family in its own ``handlers.py``::

    # chat/handlers.py
    from realtime.registry import registry

    @registry.message("chat.send")
    async def handle_chat_send(conn: Connection, message: ClientMessage) -> Reply | None: ...

    @registry.event("chat.message")
    async def handle_chat_message_event(conn: Connection, event: dict) -> None:
        await conn.send_frame(envelope("chat.message", event["content"], room=event["room"], seq=event["seq"]))

``RealtimeConfig.ready`` imports every project app's ``handlers`` module, so
adding a family is adding that one module. The consumer only looks types up
here. A message handler answers by returning ``None`` (the consumer sends
``ack``), a ``Reply``, or by raising ``ProtocolError``; docs/protocol.md has
the rules.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured

from accounts.principals import Principal

from .protocol import ClientMessage, Reply


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


MessageHandler = Callable[[Connection, ClientMessage], Awaitable[Reply | None]]
EventHandler = Callable[[Connection, dict[str, Any]], Awaitable[None]]


class HandlerRegistry:
    def __init__(self) -> None:
        self._messages: dict[str, MessageHandler] = {}
        self._events: dict[str, EventHandler] = {}

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

    def message_handler(self, message_type: str) -> MessageHandler | None:
        return self._messages.get(message_type)

    def event_handler(self, event_type: str) -> EventHandler | None:
        return self._events.get(event_type)

    def message_types(self) -> list[str]:
        return sorted(self._messages)


registry = HandlerRegistry()
