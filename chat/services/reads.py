"""The read marker: one "read up to seq" per member and room.

A marker only moves forward (a late or reordered ``read`` from another tab or
device never moves it back) and never past the room's newest message. Unread
counts are derived from it (``chat.selectors.rooms_for_user``).
"""

from __future__ import annotations

from django.db import transaction

from accounts.principals import Principal

from ..errors import Invalid
from ..events import ChatReadEvent, UserRef, chat_event_send
from ..models import RoomMember
from ..selectors import room_get_for_member


@transaction.atomic
def read_mark(*, actor: Principal, room_id: int, seq: int) -> int:
    """Mark the room read up to ``seq`` (clamped to the room's ``last_seq``).

    Returns the marker afterwards, which is never lower than before. The
    update is one conditional statement, so concurrent marks cannot move it
    back. Emits ``chat.read`` when it moved, unless the member keeps receipts
    private.
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise Invalid("seq must be a non-negative integer.", field="seq")
    membership = room_get_for_member(actor=actor, room_id=room_id)
    target = min(seq, membership.room.last_seq)
    # last_seq only grows, so clamping to the value just read stays valid; the
    # condition in the UPDATE is what keeps the marker monotonic.
    moved = RoomMember.objects.filter(pk=membership.pk, last_read_seq__lt=target).update(last_read_seq=target)
    current = RoomMember.objects.filter(pk=membership.pk).values_list("last_read_seq", flat=True).get()
    if moved and not membership.receipts_private:
        chat_event_send(
            tenant_id=membership.tenant_id,
            room_id=membership.room_id,
            event=ChatReadEvent(
                room=membership.room_id, user=UserRef(id=actor.user_id, username=actor.username or ""), seq=current
            ),
        )
    return current
