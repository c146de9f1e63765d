"""The read marker (monotonic, clamped) and the resume selector (recovered or not)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from chat.errors import Invalid
from chat.models import RoomMember
from chat.selectors import messages_after, messages_page, unread_counts
from chat.services.messages import message_delete, message_send
from chat.services.reads import read_mark

pytestmark = pytest.mark.django_db


def _send(room, actor, count: int) -> None:
    for index in range(count):
        message_send(actor=actor, room_id=room.pk, client_id=f"{actor.user_id}-{index}", body=f"message {index}")


def test_read_marker_never_moves_back_and_is_clamped(public_room, alice_p, bob_p):
    _send(public_room, alice_p, 5)

    assert read_mark(actor=bob_p, room_id=public_room.pk, seq=3) == 3
    assert read_mark(actor=bob_p, room_id=public_room.pk, seq=1) == 3
    assert read_mark(actor=bob_p, room_id=public_room.pk, seq=99) == 5
    assert unread_counts(actor=bob_p) == {public_room.pk: 0}
    with pytest.raises(Invalid):
        read_mark(actor=bob_p, room_id=public_room.pk, seq=-1)


def test_unread_counts_follow_the_marker(public_room, alice_p, bob_p):
    _send(public_room, alice_p, 4)
    read_mark(actor=bob_p, room_id=public_room.pk, seq=1)

    assert unread_counts(actor=bob_p) == {public_room.pk: 3}
    assert unread_counts(actor=alice_p) == {public_room.pk: 0}


def test_messages_page_is_in_seq_order_and_bounded(public_room, alice_p):
    _send(public_room, alice_p, 6)

    assert [m.seq for m in messages_page(room=public_room, limit=2)] == [5, 6]
    assert [m.seq for m in messages_page(room=public_room, before_seq=5, limit=2)] == [3, 4]
    assert [m.seq for m in messages_page(room=public_room, after_seq=2, limit=3)] == [3, 4, 5]
    with override_settings(MESSAGE_BATCH_SIZE=4):
        assert len(messages_page(room=public_room, limit=100)) == 4


def test_resume_is_recovered_when_every_seq_is_present_tombstones_included(public_room, alice_p):
    _send(public_room, alice_p, 5)
    message_delete(actor=alice_p, room_id=public_room.pk, seq=3)

    batch = messages_after(room=public_room, last_seq=1, limit=2)

    assert batch.recovered is True and batch.missing == []
    assert [m.seq for m in batch.messages] == [2, 3]
    assert batch.has_more is True
    assert batch.room_last_seq == 5


def test_resume_reports_missing_ranges_after_retention(public_room, alice_p):
    _send(public_room, alice_p, 8)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM chat_message WHERE room_id = %s AND seq IN (2, 3, 6, 8)", [public_room.pk])

    batch = messages_after(room=public_room, last_seq=1)

    assert batch.recovered is False
    assert batch.missing == [(2, 3), (6, 6), (8, 8)]
    assert [m.seq for m in batch.messages] == [4, 5, 7]
    assert batch.has_more is False


def test_resume_from_the_head_is_trivially_recovered(public_room, alice_p):
    _send(public_room, alice_p, 2)

    batch = messages_after(room=public_room, last_seq=2)

    assert (batch.recovered, batch.messages, batch.missing) == (True, [], [])


def test_private_receipts_are_still_stored(public_room, alice_p, bob_p):
    _send(public_room, alice_p, 2)
    RoomMember.objects.filter(room=public_room, user_id=bob_p.user_id).update(receipts_private=True)

    assert read_mark(actor=bob_p, room_id=public_room.pk, seq=2) == 2
