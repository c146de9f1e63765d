"""The ``room.*``, ``chat.*`` and ``presence.*`` WebSocket families.

Adapters only: each handler parses the frame, calls one chat service or
selector through ``database_sync_to_async`` (which check the caller's
membership, role and bans on every call, not only at join) and renders the
result. ``chat.errors`` map mechanically to ``error`` frames with their
``.code`` and details.

Live delivery is the fan-out's (``realtime.fanout``): ``room.join`` subscribes
the socket to the room's topic *first*, waits until Redis confirms it, then
reads PostgreSQL, and starts the subscription only once the ``ack`` is queued,
so the replay after ``last_seq`` and the live frames follow the ack with
nothing lost or duplicated (``realtime.subscriptions`` orders by seq and reads
gaps back through ``_stored_frames``). docs/protocol.md, "Chat", is the
client-facing description.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.principals import Principal
from realtime.batching import Batcher
from realtime.calls import call_service
from realtime.groups import room_topic
from realtime.presence import PresenceChange, PresenceState, presence_get
from realtime.protocol import ClientMessage, ErrorCode, ProtocolError, Reply, encode, envelope, invalid_field
from realtime.registry import Connection, registry
from realtime.subscriptions import StoredFrame

from .errors import DomainError
from .events import chat_message_frame, message_payload_dict
from .selectors import messages_after, messages_page, room_get_for_member, room_members, rooms_for_user
from .services.ephemeral import presence_broadcast, typing_signal
from .services.messages import (
    SendRequest,
    message_delete,
    message_edit,
    message_send_many,
    reaction_add,
    reaction_remove,
)
from .services.reads import read_mark
from .services.rooms import room_join, room_leave

# --- Parsing ----------------------------------------------------------------------


def _room_id(message: ClientMessage) -> int:
    """The frame's room id. Missing is ``invalid``; anything that cannot name a
    room is ``not_found``, like a room that does not exist."""
    if message.room is None:
        raise invalid_field("room", "'room' is required.")
    if not message.room.isascii() or not message.room.isdigit() or len(message.room) > 18:
        raise ProtocolError(ErrorCode.NOT_FOUND, "No such room.")
    return int(message.room)


def _seq(content: dict[str, Any], field: str = "seq", *, required: bool = True) -> int | None:
    value = content.get(field)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_field(field, f"{field} must be a non-negative integer.")
    return value


def _string(content: dict[str, Any], field: str) -> str:
    value = content.get(field)
    if not isinstance(value, str):
        raise invalid_field(field, f"{field} must be a string.")
    return value


def _ids(content: dict[str, Any], field: str) -> list[int]:
    """An optional list of ids (the service checks what they name and how many)."""
    value = content.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and item > 0 for item in value
    ):
        raise invalid_field(field, f"{field} must be a list of positive integers.")
    return value


_call = call_service


def _topic(conn: Connection, room_id: int) -> str:
    return room_topic(tenant_id=conn.principal.tenant_id, room_id=room_id)


# --- Reads used by the handlers ---------------------------------------------------------


def _join_state(*, actor: Principal, room_id: int, last_seq: int | None) -> dict[str, Any]:
    """What ``room.join``'s ack reports, read after the subscription is confirmed."""
    membership = room_get_for_member(actor=actor, room_id=room_id)
    room = membership.room
    # limit=1: the replay itself is paged by the subscription; this read is for
    # the room's newest seq and whether the range after last_seq is intact.
    batch = messages_after(room=room, last_seq=last_seq or 0, limit=1)
    if last_seq is not None and last_seq > batch.room_last_seq:
        raise invalid_field("last_seq", "last_seq is ahead of the room's newest message.")
    return {
        "last_seq": batch.room_last_seq,
        # The member's own read marker and what lies after it, as GET /rooms/ reports.
        "last_read_seq": membership.last_read_seq,
        "unread": max(0, batch.room_last_seq - membership.last_read_seq),
        "recovered": batch.recovered if last_seq is not None else True,
        "missing": [list(span) for span in batch.missing] if last_seq is not None else [],
        "member_ids": [member.user_id for member in room_members(room=room)],
    }


def _stored_frames(*, actor: Principal, room_id: int, after: int, upto: int | None) -> list[StoredFrame]:
    """Stored ``chat.message`` frames with ``after < seq <= upto`` (one page), with the
    membership checked again: a gap fill never reads a room the caller has left."""
    membership = room_get_for_member(actor=actor, room_id=room_id)
    page = messages_page(room=membership.room, after_seq=after, limit=settings.MESSAGE_BATCH_SIZE)
    return [
        StoredFrame(seq=message.seq, text=encode(chat_message_frame(message)))
        for message in page
        if upto is None or message.seq <= upto
    ]


def _history(
    *, actor: Principal, room_id: int, before_seq: int | None, after_seq: int | None, limit: int | None
) -> tuple[list, bool]:
    room = room_get_for_member(actor=actor, room_id=room_id).room
    page = messages_page(room=room, before_seq=before_seq, after_seq=after_seq, limit=limit)
    if not page:
        return page, False
    if after_seq is not None:
        more = messages_page(room=room, after_seq=page[-1].seq, limit=1)
    else:
        more = messages_page(room=room, before_seq=page[0].seq, limit=1)
    return page, bool(more)


# --- room.* -------------------------------------------------------------------------------


@registry.message("room.join")
async def handle_room_join(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    last_seq = _seq(message.content, "last_seq", required=False)
    actor = conn.principal
    await _call(room_join, actor=actor, room_id=room_id)
    topic = _topic(conn, room_id)

    async def fetch_missing(*, after: int, upto: int | None) -> list[StoredFrame]:
        try:
            return await database_sync_to_async(_stored_frames)(actor=actor, room_id=room_id, after=after, upto=upto)
        except DomainError:
            # No longer a member (left, kicked, banned): the stream ends here.
            conn.room_unsubscribe(topic)
            return []

    # Subscribe first, read after: whatever commits after the read is published
    # after the subscription is confirmed, so it arrives live.
    subscription = await conn.room_subscribe(topic, fetch_missing=fetch_missing)
    try:
        state = await _call(_join_state, actor=actor, room_id=room_id, last_seq=last_seq)
        presence = await presence_get(tenant_id=actor.tenant_id, user_ids=state["member_ids"])
    except BaseException:
        conn.room_unsubscribe(topic)
        raise
    start_after = last_seq if last_seq is not None else state["last_seq"]

    async def start() -> None:
        await subscription.start(last_seq=start_after, replay=last_seq is not None)

    conn.after_reply(start)
    return Reply(
        "ack",
        {
            "room": str(room_id),
            "last_seq": state["last_seq"],
            "recovered": state["recovered"],
            "missing": state["missing"],
            "last_read_seq": state["last_read_seq"],
            "unread": state["unread"],
            "members_online": sorted(user for user, status in presence.items() if status != PresenceState.OFFLINE),
        },
    )


@registry.message("room.leave")
async def handle_room_leave(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    await _call(room_leave, actor=conn.principal, room_id=room_id)
    conn.room_unsubscribe(_topic(conn, room_id))
    return Reply("ack", {"room": str(room_id)})


@registry.message("room.unsubscribe")
async def handle_room_unsubscribe(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    conn.room_unsubscribe(_topic(conn, room_id))
    return Reply("ack", {"room": str(room_id)})


@registry.event("room.member_left")
async def handle_room_member_left_event(conn: Connection, event: dict[str, Any]) -> None:
    # The personal copy sent to the leaver's own group (chat.events): every
    # socket of theirs stops streaming the room. The room's frame itself came
    # through the fan-out.
    conn.room_unsubscribe(_topic(conn, int(event["room"])))


@registry.event("room.invited")
async def handle_room_invited_event(conn: Connection, event: dict[str, Any]) -> None:
    await conn.send_frame(envelope("room.invited", event["content"], room=event["room"]))


# --- chat.* -------------------------------------------------------------------------------


# Sends that reach a process while its previous batch is being written are
# stored together, up to this many per transaction (realtime.batching).
SEND_BATCH_MAX = 100
_sends = Batcher(message_send_many, max_batch=SEND_BATCH_MAX)


@registry.message("chat.message")
async def handle_chat_message(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    content = message.content
    request = SendRequest(
        actor=conn.principal,
        room_id=room_id,
        client_id=_string(content, "client_id"),
        body=_string(content, "body"),
        reply_to_seq=_seq(content, "reply_to_seq", required=False),
        attachments=_ids(content, "attachments"),
    )
    # Stored with the other sends that reach this process meanwhile (group commit).
    outcome = await _sends.submit(request)
    if isinstance(outcome, DomainError):
        raise ProtocolError(outcome.code, outcome.message, details=outcome.details)
    sent, created = outcome
    return Reply("ack", {"seq": sent.seq, "message_id": sent.pk, "created": created})


@registry.message("chat.edit")
async def handle_chat_edit(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    seq = _seq(message.content)
    body = _string(message.content, "body")
    edited = await _call(message_edit, actor=conn.principal, room_id=room_id, seq=seq, body=body)
    return Reply("ack", {"seq": edited.seq})


@registry.message("chat.delete")
async def handle_chat_delete(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    seq = _seq(message.content)
    deleted = await _call(message_delete, actor=conn.principal, room_id=room_id, seq=seq, context=conn.request_context)
    return Reply("ack", {"seq": deleted.seq})


_REACTIONS = {"add": reaction_add, "remove": reaction_remove}


@registry.message("chat.react")
async def handle_chat_react(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    seq = _seq(message.content)
    emoji = _string(message.content, "emoji")
    service = _REACTIONS.get(message.content.get("action"))
    if service is None:
        raise invalid_field("action", "action is 'add' or 'remove'.")
    changed = await _call(service, actor=conn.principal, room_id=room_id, seq=seq, emoji=emoji)
    return Reply("ack", {"seq": seq, "changed": changed})


@registry.message("chat.read")
async def handle_chat_read(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    marker = await _call(read_mark, actor=conn.principal, room_id=room_id, seq=_seq(message.content))
    return Reply("ack", {"last_read_seq": marker})


def _unread(*, actor: Principal, room_id: int | None) -> list[dict[str, Any]]:
    """The caller's read marker and unread count per room (``rooms_for_user``, as
    REST's room list), or for one room after the usual access check."""
    memberships = rooms_for_user(actor=actor)
    if room_id is not None:
        memberships = memberships.filter(room_id=room_get_for_member(actor=actor, room_id=room_id).room_id)
    return [
        {"room": str(room), "unread": unread, "last_read_seq": last_read_seq}
        for room, unread, last_read_seq in memberships.order_by("room_id").values_list(
            "room_id", "unread", "last_read_seq"
        )
    ]


@registry.message("chat.unread")
async def handle_chat_unread(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message) if message.room is not None else None
    rooms = await _call(_unread, actor=conn.principal, room_id=room_id)
    return Reply("chat.unread", {"rooms": rooms})


@registry.message("chat.history")
async def handle_chat_history(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    content = message.content
    limit = content.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise invalid_field("limit", "limit must be an integer.")
    page, has_more = await _call(
        _history,
        actor=conn.principal,
        room_id=room_id,
        before_seq=_seq(content, "before_seq", required=False),
        after_seq=_seq(content, "after_seq", required=False),
        limit=limit,
    )
    return Reply(
        "chat.history",
        {"room": str(room_id), "messages": [message_payload_dict(m) for m in page], "has_more": has_more},
    )


@registry.message("chat.typing")
async def handle_chat_typing(conn: Connection, message: ClientMessage) -> Reply:
    room_id = _room_id(message)
    typing = message.content.get("typing")
    if not isinstance(typing, bool):
        raise invalid_field("typing", "typing must be true or false.")
    broadcast = await _call(typing_signal, actor=conn.principal, room_id=room_id, typing=typing)
    return Reply("ack", {"broadcast": broadcast})


# --- presence -----------------------------------------------------------------------------

_STATUSES = {"online": False, "away": True}


@registry.message("presence.set")
async def handle_presence_set(conn: Connection, message: ClientMessage) -> Reply:
    status = message.content.get("status")
    if status not in _STATUSES:
        raise invalid_field("status", "status is 'online' or 'away'.")
    await conn.presence_set(away=_STATUSES[status])
    return Reply("ack", {"status": status})


@registry.presence_listener
async def broadcast_presence(change: PresenceChange) -> None:
    await database_sync_to_async(presence_broadcast)(
        tenant_id=change.tenant_id, user_id=change.user_id, status=str(change.state)
    )
