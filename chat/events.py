"""Events chat broadcasts, their payloads, and the one helper that sends them.

Every payload is a frozen dataclass subclassing ``realtime.events.Event`` with a
namespaced ``type``; builders turn rows into payloads so REST and WebSocket
render a message identically. Only ``chat.services`` call ``chat_event_send``.

Room traffic goes through the fan-out (``realtime.fanout.publish_on_commit`` on
the room's topic): the frame is encoded once, after commit, and each server
process hands the same text to its subscribed sockets, so a message costs the
same whatever the room's size. Events for one user (an invitation, and the
personal copy of ``room.member_left`` that makes the leaver's sockets drop the
room's stream) stay on the channel layer, to the user's group. Envelopes carry
``room`` (the room id as a string) and, for ``chat.message`` only, the
message's ``seq``, which orders delivery and resume (docs/protocol.md,
"Chat"); edits, deletes and reactions name the message's seq in their content
but are not part of the sequence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from realtime.events import Event, event_send_on_commit
from realtime.fanout import publish_many_on_commit, publish_on_commit
from realtime.groups import room_topic, user_group
from realtime.protocol import envelope, timestamp

from .models import Attachment, Message


@dataclass(frozen=True)
class UserRef:
    id: int
    username: str


@dataclass(frozen=True)
class AttachmentRef:
    """A file a message carries; the client downloads it from ``/api/v1/attachments/{id}/``."""

    id: int
    name: str
    content_type: str
    size: int


@dataclass(frozen=True)
class MessagePayload:
    """A message as every client sees it, whether its room is encrypted or not.
    A tombstone has ``deleted`` true, an empty body and no attachments."""

    id: int
    seq: int
    sender: UserRef | None
    body: str
    reply_to_seq: int | None
    created_at: str
    edited_at: str | None
    deleted: bool
    attachments: list[AttachmentRef]


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


@dataclass(frozen=True)
class ChatTypingEvent(Event):
    """Ephemeral, never stored: ``user`` is typing (or stopped); clients drop the
    indicator after ``expires_in`` seconds without a new one."""

    type: ClassVar[str] = "chat.typing"
    room: int
    user: UserRef
    typing: bool
    expires_in: float


@dataclass(frozen=True)
class PresenceEvent(Event):
    """A member of the room went ``online``, ``away`` or ``offline`` (sent to each of their rooms)."""

    type: ClassVar[str] = "presence"
    user: int
    status: str


# --- Builders ---------------------------------------------------------------------


def user_ref(user) -> UserRef:
    return UserRef(id=user.pk, username=user.get_username())


def attachment_ref(attachment) -> AttachmentRef:
    return AttachmentRef(
        id=attachment.pk, name=attachment.name, content_type=attachment.content_type, size=attachment.size
    )


def message_payload(message: Message, *, attachments: Iterable[Attachment] | None = None) -> MessagePayload:
    """The payload of ``message``, body decrypted; load it with ``sender`` and
    ``reply_to`` selected and ``attachments`` prefetched, or pass ``attachments``
    when the caller already holds them (a message it has just stored)."""
    return MessagePayload(
        id=message.pk,
        seq=message.seq,
        sender=user_ref(message.sender) if message.sender_id is not None else None,
        body=message.text,
        reply_to_seq=message.reply_to.seq if message.reply_to_id is not None else None,
        created_at=timestamp(message.created_at),
        edited_at=timestamp(message.edited_at) if message.edited_at else None,
        deleted=message.deleted_at is not None,
        attachments=[
            attachment_ref(attachment)
            for attachment in (message.attachments.all() if attachments is None else attachments)
        ],
    )


def message_payload_dict(message: Message) -> dict[str, Any]:
    return asdict(message_payload(message))


def event_frame(event: Event, *, room_id: int, seq: int | None = None) -> dict[str, Any]:
    """The server envelope of a room event, as every member's socket receives it."""
    return envelope(event.type, asdict(event), room=str(room_id), seq=seq)


def chat_message_frame(message: Message) -> dict[str, Any]:
    """The ``chat.message`` frame of a stored message (live and replayed alike)."""
    event = ChatMessageEvent(room=message.room_id, seq=message.seq, message=message_payload(message))
    return event_frame(event, room_id=message.room_id, seq=message.seq)


# --- The one sender ---------------------------------------------------------------


def chat_event_send(
    *, tenant_id: int, room_id: int, event: Event, seq: int | None = None, to_user_id: int | None = None
) -> None:
    """Broadcast ``event`` after the current transaction commits: to the room's
    fan-out topic (``seq`` for ``chat.message`` only), or to one user's sockets
    over the channel layer when ``to_user_id`` is given."""
    if to_user_id is not None:
        group = user_group(tenant_id=tenant_id, user_id=to_user_id)
        event_send_on_commit(group=group, event=event, room=str(room_id), seq=seq)
        return
    publish_on_commit(
        topic=room_topic(tenant_id=tenant_id, room_id=room_id), frame=event_frame(event, room_id=room_id, seq=seq)
    )
    if isinstance(event, RoomMemberLeftEvent):
        # The leaver's sockets stop streaming the room at once, on whichever server.
        event_send_on_commit(
            group=user_group(tenant_id=tenant_id, user_id=event.user.id), event=event, room=str(room_id)
        )


def chat_messages_send(messages: list[tuple[Message, MessagePayload]]) -> None:
    """Broadcast ``chat.message`` for each stored message after the transaction
    commits, in one Redis round trip for the lot (``message_send_many``)."""
    publish_many_on_commit(
        [
            (
                room_topic(tenant_id=message.tenant_id, room_id=message.room_id),
                event_frame(
                    ChatMessageEvent(room=message.room_id, seq=message.seq, message=payload),
                    room_id=message.room_id,
                    seq=message.seq,
                ),
            )
            for message, payload in messages
        ]
    )
