"""Ephemeral room signals: typing indicators and presence changes. Nothing is stored.

Both go to rooms' fan-out topics like any room event, but they are not part of
a room's message sequence (no ``seq``) and a client that misses one loses
nothing durable: a typing indicator expires by itself and presence can be read
again from ``room.join``'s ``members_online``.

Typing is throttled per user and room across every server through the cache
(Redis in production), so a client sending a frame per keystroke costs the room
one broadcast per ``TYPING_THROTTLE`` seconds. docs/protocol.md, "Chat",
describes both from the client's side.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import transaction

from accounts.principals import Principal

from ..events import ChatTypingEvent, PresenceEvent, UserRef, chat_event_send
from ..models import RoomMember
from ..selectors import room_get_for_member

# At most one "typing" broadcast per user and room per this many seconds.
TYPING_THROTTLE = 3
# Clients drop an indicator this long after the last broadcast: longer than the
# throttle, so a user who keeps typing never flickers off between two broadcasts.
TYPING_EXPIRES_IN = 6


def _typing_key(*, tenant_id: int, room_id: int, user_id: int) -> str:
    return f"chat:typing:t{tenant_id}:r{room_id}:u{user_id}"


def typing_signal(*, actor: Principal, room_id: int, typing: bool) -> bool:
    """Tell the room that the caller started (``typing``) or stopped typing.

    The caller must be a member (checked on every call). Returns whether a
    ``chat.typing`` was broadcast: a start is broadcast at most once per
    ``TYPING_THROTTLE`` seconds; a stop only when a start was broadcast within
    that window (so the indicator clears at once), never otherwise.
    """
    membership = room_get_for_member(actor=actor, room_id=room_id)
    key = _typing_key(tenant_id=actor.tenant_id, room_id=room_id, user_id=actor.user_id)
    if typing:
        # add() is atomic (SET NX): one winner per window across all servers.
        if not cache.add(key, 1, timeout=TYPING_THROTTLE):
            return False
    elif not cache.delete(key):
        return False
    chat_event_send(
        tenant_id=membership.tenant_id,
        room_id=room_id,
        event=ChatTypingEvent(
            room=room_id,
            user=UserRef(id=actor.user_id, username=actor.username or ""),
            typing=typing,
            expires_in=TYPING_EXPIRES_IN,
        ),
    )
    return True


def presence_broadcast(*, tenant_id: int, user_id: int, status: str) -> int:
    """Announce a user's new presence to every room they are a member of: one
    publish per room. Returns the number of rooms."""
    room_ids = list(RoomMember.objects.for_tenant(tenant_id).filter(user_id=user_id).values_list("room_id", flat=True))
    # Outside a transaction publish_on_commit sends at once; atomic() batches
    # the publishes after the read, as every other broadcast is sent.
    with transaction.atomic():
        for room_id in room_ids:
            chat_event_send(tenant_id=tenant_id, room_id=room_id, event=PresenceEvent(user=user_id, status=status))
    return len(room_ids)
