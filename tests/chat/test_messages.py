"""Message use cases: gap-free seqs under concurrency, idempotent resend, mute and
ban, edit history, tombstones and reactions."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.constants import AuditAction
from audit.models import AuditEvent
from chat.constants import MESSAGE_BODY_MAX_LENGTH
from chat.errors import Conflict, Forbidden, Invalid, NotFound
from chat.models import Message, MessageEdit, Reaction, Room, RoomBan, RoomMember
from chat.services.messages import message_delete, message_edit, message_send, reaction_add, reaction_remove
from chat.services.rooms import room_create, room_join
from tests.chat.conftest import as_principal, requires_postgres
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_send_numbers_messages_in_order_and_updates_the_room(public_room, alice_p, bob_p):
    first, created = message_send(actor=alice_p, room_id=public_room.pk, client_id="a1", body="hello")
    second, _ = message_send(actor=bob_p, room_id=public_room.pk, client_id="b1", body="hi", reply_to_seq=1)

    assert created is True
    assert (first.seq, second.seq, second.reply_to_id) == (1, 2, first.pk)
    assert Room.objects.get(pk=public_room.pk).last_seq == 2
    assert RoomMember.objects.get(room=public_room, user_id=bob_p.user_id).last_read_seq == 2


def test_resend_with_the_same_client_id_returns_the_stored_message(public_room, alice_p):
    first, created = message_send(actor=alice_p, room_id=public_room.pk, client_id="dup", body="hello")
    again, created_again = message_send(actor=alice_p, room_id=public_room.pk, client_id="dup", body="hello?")

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk and again.body == "hello"
    assert Room.objects.get(pk=public_room.pk).last_seq == 1


def test_same_client_id_from_another_sender_is_another_message(public_room, alice_p, bob_p):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="same", body="a")
    _message, created = message_send(actor=bob_p, room_id=public_room.pk, client_id="same", body="b")

    assert created is True


@pytest.mark.parametrize(
    ("body", "client_id", "field"),
    [
        ("   \n ", "c", "body"),
        ("x" * (MESSAGE_BODY_MAX_LENGTH + 1), "c", "body"),
        ("ok", "", "client_id"),
        ("ok", "x" * 65, "client_id"),
    ],
)
def test_invalid_input_is_refused_and_nothing_is_stored(public_room, alice_p, body, client_id, field):
    with pytest.raises(Invalid) as error:
        message_send(actor=alice_p, room_id=public_room.pk, client_id=client_id, body=body)

    assert list(error.value.details["fields"]) == [field]
    assert not Message.objects.exists()


def test_body_is_stored_exactly_as_given(public_room, alice_p):
    body = "  <script>alert(1)</script> & more  "
    message, _ = message_send(actor=alice_p, room_id=public_room.pk, client_id="h", body=body)

    assert Message.objects.get(pk=message.pk).body == body


def test_reply_to_an_unknown_seq_is_invalid(public_room, alice_p):
    with pytest.raises(Invalid):
        message_send(actor=alice_p, room_id=public_room.pk, client_id="r", body="x", reply_to_seq=9)


def test_muted_member_is_refused(public_room, bob_p):
    RoomMember.objects.filter(room=public_room, user_id=bob_p.user_id).update(
        muted_until=timezone.now() + timedelta(minutes=5)
    )

    with pytest.raises(Forbidden) as error:
        message_send(actor=bob_p, room_id=public_room.pk, client_id="m", body="hi")
    assert "muted_until" in error.value.details


def test_banned_user_is_refused(public_room, alice_p, bob_p):
    # A ban row next to a membership (made in the admin) is enforced too.
    RoomBan.objects.create(tenant_id=public_room.tenant_id, room=public_room, user_id=bob_p.user_id)

    with pytest.raises(Forbidden):
        message_send(actor=bob_p, room_id=public_room.pk, client_id="b", body="hi")


def test_edit_keeps_history_and_only_the_sender_may_edit(public_room, alice_p, bob_p):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="e", body="first")

    edited = message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="second")
    message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="third")

    assert edited.edited_at is not None
    assert list(MessageEdit.objects.filter(message=edited).values_list("previous_body", flat=True)) == [
        "first",
        "second",
    ]
    with pytest.raises(Forbidden):
        message_edit(actor=bob_p, room_id=public_room.pk, seq=1, body="hijack")
    with pytest.raises(NotFound):
        message_edit(actor=alice_p, room_id=public_room.pk, seq=7, body="nope")


def test_sender_delete_is_a_tombstone_that_keeps_its_seq(public_room, alice_p):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="d", body="oops")
    message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="oops!")

    tombstone = message_delete(actor=alice_p, room_id=public_room.pk, seq=1)

    row = Message.objects.get(pk=tombstone.pk)
    assert (row.seq, row.body, row.deleted_by_id) == (1, "", alice_p.user_id)
    assert row.deleted_at is not None
    assert not MessageEdit.objects.filter(message=row).exists()  # retracted with the message
    assert not AuditEvent.objects.filter(action=AuditAction.CHAT_MESSAGE_DELETED_BY_MODERATOR).exists()
    with pytest.raises(Conflict):
        message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="back")
    # Deleting again is a no-op.
    assert message_delete(actor=alice_p, room_id=public_room.pk, seq=1).deleted_at == row.deleted_at


def test_moderator_delete_is_audited_and_keeps_the_body_for_review(public_room, alice_p, bob_p):
    message_send(actor=bob_p, room_id=public_room.pk, client_id="x", body="rude words")

    message_delete(actor=alice_p, room_id=public_room.pk, seq=1)

    message = Message.objects.get(seq=1)
    assert message.body == ""
    assert list(message.edits.values_list("previous_body", flat=True)) == ["rude words"]
    audit = AuditEvent.objects.get(action=AuditAction.CHAT_MESSAGE_DELETED_BY_MODERATOR)
    assert audit.details == {"room_id": public_room.pk, "seq": 1, "sender_id": bob_p.user_id}


def test_tenant_moderator_deletes_without_being_in_the_room(public_room, alice_p, tenant_mod, carol_p):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="x", body="hi")

    with pytest.raises(Forbidden):
        message_delete(actor=carol_p, room_id=public_room.pk, seq=1)
    message_delete(actor=as_principal(tenant_mod), room_id=public_room.pk, seq=1)

    assert Message.objects.get(seq=1).deleted_by_id == tenant_mod.pk


def test_member_cannot_delete_someone_elses_message(public_room, alice_p, bob_p):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="x", body="hi")

    with pytest.raises(Forbidden):
        message_delete(actor=bob_p, room_id=public_room.pk, seq=1)


def test_reactions_are_idempotent_and_refused_on_tombstones(public_room, alice_p, bob_p):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="x", body="hi")

    assert reaction_add(actor=bob_p, room_id=public_room.pk, seq=1, emoji="🎸") is True
    assert reaction_add(actor=bob_p, room_id=public_room.pk, seq=1, emoji="🎸") is False
    assert Reaction.objects.count() == 1
    assert reaction_remove(actor=bob_p, room_id=public_room.pk, seq=1, emoji="🎸") is True
    assert reaction_remove(actor=bob_p, room_id=public_room.pk, seq=1, emoji="🎸") is False
    with pytest.raises(Invalid):
        reaction_add(actor=bob_p, room_id=public_room.pk, seq=1, emoji=" ")

    message_delete(actor=alice_p, room_id=public_room.pk, seq=1)
    with pytest.raises(Conflict):
        reaction_add(actor=bob_p, room_id=public_room.pk, seq=1, emoji="🎸")


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_get_unique_gap_free_seqs(tenant):
    senders = [UserFactory(username=f"s{index}", tenant=tenant) for index in range(6)]
    owner = as_principal(senders[0])
    room = room_create(actor=owner, name="busy")
    principals = [as_principal(user) for user in senders]
    for principal in principals[1:]:
        room_join(actor=principal, room_id=room.pk)
    per_sender = 8
    barrier = threading.Barrier(len(principals))
    errors: list[BaseException] = []

    def send_all(principal) -> None:
        try:
            barrier.wait()
            for index in range(per_sender):
                message_send(actor=principal, room_id=room.pk, client_id=f"{principal.user_id}-{index}", body="x")
                # Every sender also retries one message: it must not take a new seq.
                if index == 0:
                    message_send(actor=principal, room_id=room.pk, client_id=f"{principal.user_id}-0", body="x")
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send_all, args=(principal,)) for principal in principals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    total = len(principals) * per_sender
    seqs = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1))
    assert Room.objects.get(pk=room.pk).last_seq == total
    # Each sender's own messages are in the order they sent them.
    for principal in principals:
        own = Message.objects.filter(room=room, sender_id=principal.user_id).order_by("seq")
        assert [m.client_id for m in own] == [f"{principal.user_id}-{index}" for index in range(per_sender)]
