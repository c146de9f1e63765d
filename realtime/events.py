"""Channel-layer events and the one helper that broadcasts them after commit.

Services emit events only through ``event_send_on_commit``, so every broadcast
in the project can be found by grepping for it. An event is a frozen dataclass
whose ``type`` is namespaced (``session.revoked``); on the channel layer it
travels as ``{"type", "content", "room"?, "seq"?}`` and the consumer routes it
by ``type`` to the event handler registered in ``realtime.registry``.

Broadcasts are best effort: the channel layer may drop a message (capacity,
Redis restart). Anything that must happen, such as closing a revoked user's
sockets, has a safety net on the consumer side (the periodic auth re-check).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


@dataclass(frozen=True)
class Event:
    """Base of every event payload; subclasses set ``type`` and add their fields."""

    type: ClassVar[str]


@dataclass(frozen=True)
class SessionRevoked(Event):
    """The user's sessions were revoked: every open socket of the user closes with 4401."""

    type: ClassVar[str] = "session.revoked"
    reason: str


@dataclass(frozen=True)
class SystemMaintenance(Event):
    """Planned maintenance, announced to a tenant's sockets or to everyone's
    (``realtime.groups.tenant_group`` / ``everyone_group``). Times are ISO 8601."""

    type: ClassVar[str] = "system.maintenance"
    message: str
    starts_at: str | None = None
    ends_at: str | None = None


def event_message(event: Event, *, room: str | None = None, seq: int | None = None) -> dict[str, Any]:
    """The channel-layer message for ``event``."""
    message: dict[str, Any] = {"type": event.type, "content": asdict(event)}
    if room is not None:
        message["room"] = room
    if seq is not None:
        message["seq"] = seq
    return message


def _group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(group, message)


def event_send_on_commit(*, group: str, event: Event, room: str | None = None, seq: int | None = None) -> None:
    """Broadcast ``event`` to ``group`` once the current transaction commits (at once
    outside a transaction). A failed send is logged, never raised: the write it
    describes has already committed."""
    message = event_message(event, room=room, seq=seq)
    # robust: Django logs a failing callback instead of raising it into the
    # caller, whose transaction has already committed.
    transaction.on_commit(lambda: _group_send(group, message), robust=True)
