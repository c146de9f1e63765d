"""Each chat event's payload, as it arrives after commit: room frames on the real
fan-out, a user's own events on the real channel layer."""

from __future__ import annotations

import pytest

from chat.constants import RoomKind
from chat.models import RoomMember
from chat.services.messages import message_delete, message_edit, message_send, reaction_add, reaction_remove
from chat.services.reads import read_mark
from chat.services.rooms import room_ban, room_create, room_invite, room_join, room_kick, room_leave
from realtime.groups import user_group

pytestmark = pytest.mark.django_db

TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def _one(messages: list[dict]) -> dict:
    assert len(messages) == 1, messages
    return messages[0]


def _message_shape(payload: dict, *, seq: int, sender, body: str, deleted: bool = False) -> None:
    assert set(payload) == {
        "id",
        "seq",
        "sender",
        "body",
        "reply_to_seq",
        "created_at",
        "edited_at",
        "deleted",
        "attachments",
    }
    assert payload["attachments"] == []
    assert payload["seq"] == seq
    assert payload["sender"] == {"id": sender.user_id, "username": sender.username}
    assert (payload["body"], payload["deleted"]) == (body, deleted)


def test_chat_message_carries_room_seq_and_payload(public_room, alice_p, listener, django_capture_on_commit_callbacks):
    listener.subscribe_room(public_room)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message_send(actor=alice_p, room_id=public_room.pk, client_id="c1", body="hello")
    # Persist before broadcast: nothing is sent until the transaction commits.
    assert listener.drain(timeout=0.1) == []
    for callback in callbacks:
        callback()

    event = _one(listener.drain())
    assert (event["type"], event["room"], event["seq"]) == ("chat.message", str(public_room.pk), 1)
    assert set(event["content"]) == {"room", "seq", "message"}
    assert (event["content"]["room"], event["content"]["seq"]) == (public_room.pk, 1)
    _message_shape(event["content"]["message"], seq=1, sender=alice_p, body="hello")
    assert event["content"]["message"]["reply_to_seq"] is None
    assert event["content"]["message"]["edited_at"] is None


def test_resend_emits_nothing(public_room, alice_p, listener, django_capture_on_commit_callbacks):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="c1", body="hello")
    listener.subscribe_room(public_room)

    with django_capture_on_commit_callbacks(execute=True):
        message_send(actor=alice_p, room_id=public_room.pk, client_id="c1", body="hello")

    assert listener.drain(timeout=0.1) == []


def test_edit_delete_and_reaction_events(public_room, alice_p, bob_p, listener, django_capture_on_commit_callbacks):
    import re

    message_send(actor=alice_p, room_id=public_room.pk, client_id="c1", body="hello")
    listener.subscribe_room(public_room)

    with django_capture_on_commit_callbacks(execute=True):
        message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="hello!")
        reaction_add(actor=bob_p, room_id=public_room.pk, seq=1, emoji="🔥")
        reaction_remove(actor=bob_p, room_id=public_room.pk, seq=1, emoji="🔥")
        message_delete(actor=alice_p, room_id=public_room.pk, seq=1)

    edited, added, removed, deleted = listener.drain()
    assert edited["type"] == "chat.edited" and set(edited["content"]) == {"room", "seq", "message"}
    _message_shape(edited["content"]["message"], seq=1, sender=alice_p, body="hello!")
    assert re.match(TIMESTAMP, edited["content"]["message"]["edited_at"])
    bob_ref = {"id": bob_p.user_id, "username": "bob"}
    assert added == {
        "type": "chat.reaction",
        "room": str(public_room.pk),
        "content": {"room": public_room.pk, "seq": 1, "user": bob_ref, "emoji": "🔥", "action": "added", "count": 1},
    }
    assert removed["content"]["action"] == "removed" and removed["content"]["count"] == 0
    assert deleted == {
        "type": "chat.deleted",
        "room": str(public_room.pk),
        "content": {"room": public_room.pk, "seq": 1, "by_moderator": False},
    }


def test_read_receipt_unless_private(public_room, alice_p, bob_p, listener, django_capture_on_commit_callbacks):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="c1", body="hello")
    message_send(actor=alice_p, room_id=public_room.pk, client_id="c2", body="again")
    listener.subscribe_room(public_room)

    with django_capture_on_commit_callbacks(execute=True):
        read_mark(actor=bob_p, room_id=public_room.pk, seq=1)
        read_mark(actor=bob_p, room_id=public_room.pk, seq=1)  # did not move: no receipt
    receipt = _one(listener.drain())
    assert receipt["type"] == "chat.read"
    assert receipt["content"] == {"room": public_room.pk, "user": {"id": bob_p.user_id, "username": "bob"}, "seq": 1}

    RoomMember.objects.filter(room=public_room, user_id=bob_p.user_id).update(receipts_private=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert read_mark(actor=bob_p, room_id=public_room.pk, seq=2) == 2
    assert listener.drain(timeout=0.1) == []


def test_membership_events(alice_p, bob_p, carol_p, listener, django_capture_on_commit_callbacks):
    room = room_create(actor=alice_p, name="club", kind=RoomKind.PRIVATE)
    listener.subscribe_room(room)
    inbox = listener.another()
    inbox.subscribe(user_group(tenant_id=bob_p.tenant_id, user_id=bob_p.user_id))

    with django_capture_on_commit_callbacks(execute=True):
        room_invite(actor=alice_p, room_id=room.pk, user_id=bob_p.user_id)
        room_join(actor=bob_p, room_id=room.pk)
        room_leave(actor=bob_p, room_id=room.pk)
        room_invite(actor=alice_p, room_id=room.pk, user_id=carol_p.user_id)
        room_join(actor=carol_p, room_id=room.pk)
        room_kick(actor=alice_p, room_id=room.pk, user_id=carol_p.user_id)
        room_ban(actor=alice_p, room_id=room.pk, user_id=bob_p.user_id)

    invited, own_left = inbox.drain()
    assert invited["type"] == "room.invited"
    # The leaver's own copy, which makes each of their sockets drop the room's stream.
    assert (own_left["type"], own_left["room"]) == ("room.member_left", str(room.pk))
    assert invited["content"] == {
        "room": room.pk,
        "name": "club",
        "invited_by": {"id": alice_p.user_id, "username": "alice"},
    }
    joined, left, carol_joined, kicked = listener.drain()
    bob_ref = {"id": bob_p.user_id, "username": "bob"}
    assert joined == {
        "type": "room.member_joined",
        "room": str(room.pk),
        "content": {"room": room.pk, "user": bob_ref, "role": "member"},
    }
    assert left["type"] == "room.member_left"
    assert left["content"] == {"room": room.pk, "user": bob_ref, "reason": "left"}
    assert carol_joined["type"] == "room.member_joined"
    assert kicked["content"]["reason"] == "kicked"
    # Bob had left, so banning him emits no member_left.
