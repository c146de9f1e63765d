"""Events chat broadcasts, their payloads, and the one helper that sends them.

Every payload is a frozen dataclass subclassing ``realtime.events.Event`` with a
namespaced ``type``; builders turn rows into payloads so REST and WebSocket
render a message identically. Only ``chat.services`` call ``chat_event_send``,
which broadcasts after commit to the room's group (or, for an invitation, to
the invitee's own group). Envelopes carry ``room`` (the room id as a string)
and, for ``chat.message``, the message's ``seq``, which clients use to resume
(docs/api.md, "Chat").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from realtime.events import Event, event_send_on_commit
from realtime.groups import room_group, user_group
from realtime.protocol import timestamp

from .models import Message


@dataclass(frozen=True)
class UserRef:
    id: int
    username: str


@dataclass(frozen=True)
class MessagePayload:
    """A message as every client sees it. A tombstone has ``deleted`` true and an empty body."""

    id: int
    seq: int
    sender: UserRef | None
    body: str
    reply_to_seq: int | None
    created_at: str
    edited_at: str | None
    deleted: bool


@dataclass(frozen=True)
class ChatMessageEvent(Event):
    """A new message; the envelope's ``seq`` is the message's."""

    type: ClassVar[str] = "chat.message"
    room: int
    seq: int
    message: MessagePayload


@dataclass(frozen=True)
class ChatEditedEvent(Event):
    type: ClassVar[str] = "chat.edited"
    room: int
    seq: int
    message: MessagePayload


@dataclass(frozen=True)
class ChatDeletedEvent(Event):
    """A message became a tombstone; ``by_moderator`` when someone other than the sender deleted it."""

    type: ClassVar[str] = "chat.deleted"
    room: int
    seq: int
    by_moderator: bool


@dataclass(frozen=True)
class ChatReactionEvent(Event):
    """``count`` is how many users now react to the message with ``emoji``."""

    type: ClassVar[str] = "chat.reaction"
    room: int
    seq: int
    user: UserRef
    emoji: str
    action: str
    count: int


@dataclass(frozen=True)
class ChatReadEvent(Event):
    """A read receipt: ``user`` has read up to ``seq``. Never sent for private receipts."""

    type: ClassVar[str] = "chat.read"
    room: int
    user: UserRef
    seq: int


@dataclass(frozen=True)
class RoomMemberJoinedEvent(Event):
    type: ClassVar[str] = "room.member_joined"
    room: int
    user: UserRef
    role: str


@dataclass(frozen=True)
class RoomMemberLeftEvent(Event):
    """A member left, was kicked or banned (``reason``). The member's own sockets
    receive it too, so they can leave the room's group."""

    type: ClassVar[str] = "room.member_left"
    room: int
    user: UserRef
    reason: str


@dataclass(frozen=True)
class RoomInvitedEvent(Event):
    """Sent to the invitee's own sockets: they are not in the room's group yet."""

    type: ClassVar[str] = "room.invited"
    room: int
    name: str
    invited_by: UserRef


# --- Builders ---------------------------------------------------------------------


def user_ref(user) -> UserRef:
    return UserRef(id=user.pk, username=user.get_username())


def message_payload(message: Message) -> MessagePayload:
    """The payload of ``message``; load it with ``sender`` and ``reply_to`` selected."""
    return MessagePayload(
        id=message.pk,
        seq=message.seq,
        sender=user_ref(message.sender) if message.sender_id is not None else None,
        body=message.body,
        reply_to_seq=message.reply_to.seq if message.reply_to_id is not None else None,
        created_at=timestamp(message.created_at),
        edited_at=timestamp(message.edited_at) if message.edited_at else None,
        deleted=message.deleted_at is not None,
    )


def message_payload_dict(message: Message) -> dict[str, Any]:
    return asdict(message_payload(message))


# --- The one sender ---------------------------------------------------------------


def chat_event_send(
    *, tenant_id: int, room_id: int, event: Event, seq: int | None = None, to_user_id: int | None = None
) -> None:
    """Broadcast ``event`` after the current transaction commits: to the room's
    group, or to one user's sockets when ``to_user_id`` is given."""
    if to_user_id is not None:
        group = user_group(tenant_id=tenant_id, user_id=to_user_id)
    else:
        group = room_group(tenant_id=tenant_id, room_id=room_id)
    event_send_on_commit(group=group, event=event, room=str(room_id), seq=seq)
