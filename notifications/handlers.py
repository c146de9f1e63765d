"""The ``notification.*`` WebSocket family: a user's inbox from their sockets.

- ``notification.ack`` {notification}: the ``notification`` frame arrived;
  its WebSocket delivery becomes ``delivered`` (``services.inbox.notification_ack``).
  Answers ``ack`` {notification, status}. Acking is not reading.
- ``notification.read`` {notification} or {all: true}: mark one or every
  notification read; answers ``ack`` {notification, unread} or {read, unread}.
- ``notification.unread`` {}: answers ``ack`` {unread}.

The server → client ``notification`` frame: the WebSocket provider
(``notifications.providers.websocket``) sends a ``notification`` event to the
user's group, and ``handle_notification_event`` forwards it to each socket.
docs/protocol.md, "Notifications".
"""

from __future__ import annotations

import uuid
from typing import Any

from realtime.calls import call_service
from realtime.protocol import ClientMessage, Reply, envelope, invalid_field
from realtime.registry import Connection, registry

from .providers.websocket import EVENT_TYPE
from .selectors import unread_count
from .services.inbox import notification_ack, notification_read, notifications_read_all


def _notification_id(content: dict[str, Any]) -> str:
    """The frame's notification id, a UUID string (the service answers
    ``not_found`` for one that names nothing in the user's inbox)."""
    value = content.get("notification")
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid_field("notification", "notification is the notification's id (a UUID string).") from None


@registry.message("notification.ack")
async def handle_notification_ack(conn: Connection, message: ClientMessage) -> Reply:
    notification_id = _notification_id(message.content)
    result = await call_service(notification_ack, actor=conn.principal, notification_id=notification_id)
    return Reply(content={"notification": result.notification_id, "status": result.status})


@registry.message("notification.read")
async def handle_notification_read(conn: Connection, message: ClientMessage) -> Reply:
    if "all" in message.content:
        if message.content["all"] is not True:
            raise invalid_field("all", "all must be true.")
        result = await call_service(notifications_read_all, actor=conn.principal)
        return Reply(content={"read": result.marked, "unread": result.unread})
    notification_id = _notification_id(message.content)
    result = await call_service(notification_read, actor=conn.principal, notification_id=notification_id)
    return Reply(content={"notification": notification_id, "unread": result.unread})


@registry.message("notification.unread")
async def handle_notification_unread(conn: Connection, message: ClientMessage) -> Reply:
    return Reply(content={"unread": await call_service(unread_count, actor=conn.principal)})


@registry.event(EVENT_TYPE)
async def handle_notification_event(conn: Connection, event: dict) -> None:
    """Forward a notification sent to the user's group to this socket."""
    await conn.send_frame(envelope(EVENT_TYPE, event.get("content", {})))
