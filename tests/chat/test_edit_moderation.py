"""Edits pass the moderation pipeline as sends do: a reject changes nothing, a
flag stores the edit and puts the message in the review queue."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from chat.constants import BlockedWordAction, ModerationStatus
from chat.errors import Moderated
from chat.models import BlockedWord, Message, MessageEdit
from chat.selectors import messages_flagged
from chat.services.messages import message_edit, message_send
from tests.accounts.conftest import error_of
from tests.chat.test_api import client_for

pytestmark = pytest.mark.django_db

SHIPPED = list(django_settings.CHAT_MODERATORS)


@pytest.fixture(autouse=True)
def moderation_on(settings, tenant):
    settings.CHAT_MODERATORS = SHIPPED
    BlockedWord.objects.create(tenant=tenant, phrase="spam", action=BlockedWordAction.FLAG)
    BlockedWord.objects.create(tenant=tenant, phrase="buy followers", action=BlockedWordAction.REJECT)


@pytest.fixture
def sent(public_room, alice_p) -> Message:
    return message_send(actor=alice_p, room_id=public_room.pk, client_id="c", body="a harmless message")[0]


def test_an_edit_moderation_rejects_changes_nothing(
    sent, public_room, alice_p, listener, django_capture_on_commit_callbacks
):
    listener.subscribe_room(public_room)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Moderated) as caught:
        message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="now BUY followers here")

    assert (caught.value.code, caught.value.details) == ("moderated", {"reason": "blocked_word"})
    message = Message.objects.get(pk=sent.pk)
    assert (message.text, message.edited_at, message.moderation_status) == ("a harmless message", None, "ok")
    assert not MessageEdit.objects.exists()
    assert listener.drain(timeout=0.1) == []


def test_a_flagged_edit_is_stored_and_queued_for_moderators(sent, public_room, alice_p, tenant_mod):
    from tests.chat.conftest import as_principal

    edited = message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="some spam after all")

    assert edited.text == "some spam after all"
    stored = Message.objects.get(pk=sent.pk)
    assert (stored.moderation_status, stored.moderation_reason) == (ModerationStatus.FLAGGED, "Blocked words: spam")
    assert [m.pk for m in messages_flagged(actor=as_principal(tenant_mod))] == [sent.pk]
    # A later clean edit does not clear the flag: only a moderator's review does.
    message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="sorry, fixed")
    assert Message.objects.get(pk=sent.pk).moderation_status == ModerationStatus.FLAGGED


def test_edits_count_towards_flooding(settings, sent, public_room, alice_p):
    settings.CHAT_FLOOD_MAX_MESSAGES = 2  # the send above was the first

    message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="edit one")
    with pytest.raises(Moderated) as caught:
        message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="edit two")

    assert caught.value.details == {"reason": "flood"}
    # An unchanged body is no edit: it is neither screened nor counted.
    message_edit(actor=alice_p, room_id=public_room.pk, seq=1, body="edit one")


def test_rest_edit_answers_422_moderated(sent, user, public_room):
    response = client_for(user).patch(
        f"/api/v1/rooms/{public_room.pk}/messages/1/", {"body": "buy followers"}, format="json"
    )

    assert (response.status_code, error_of(response)["code"]) == (422, "moderated")
    assert Message.objects.get(pk=sent.pk).text == "a harmless message"
