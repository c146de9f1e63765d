"""The moderation pipeline: each shipped moderator, the order and combination of
verdicts, what is stored and broadcast, and the ``moderated`` error over REST."""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings

from chat.constants import BlockedWordAction, ModerationStatus
from chat.errors import Moderated
from chat.models import BlockedWord, Message, Room
from chat.moderation import ALLOW, Moderator, Submission, flag, normalise, reject
from chat.services.messages import message_delete, message_send
from chat.services.rooms import room_create
from tests.accounts.conftest import error_of
from tests.chat.test_api import client_for

pytestmark = pytest.mark.django_db

# Read at import, before any fixture overrides it: what a deployment gets.
SHIPPED = list(django_settings.CHAT_MODERATORS)


@pytest.fixture(autouse=True)
def moderation_on(settings):
    settings.CHAT_MODERATORS = SHIPPED


def send(actor, room, body: str, client_id: str | None = None) -> Message:
    message, _created = message_send(
        actor=actor, room_id=room.pk, client_id=client_id or f"c-{time.time_ns()}", body=body
    )
    return message


def rejected(actor, room, body: str) -> Moderated:
    with pytest.raises(Moderated) as caught:
        send(actor, room, body)
    return caught.value


def test_the_three_shipped_moderators_are_on_by_default():
    assert SHIPPED == [
        "chat.moderation.FloodModerator",
        "chat.moderation.RepeatModerator",
        "chat.moderation.BlockedWordsModerator",
    ]


# --- Flood ------------------------------------------------------------------------


def test_flood_rejects_beyond_the_limit_per_user_and_room(settings, public_room, alice_p, bob_p):
    settings.CHAT_FLOOD_MAX_MESSAGES = 3
    settings.CHAT_FLOOD_WINDOW_SECONDS = 60
    for index in range(3):
        send(alice_p, public_room, f"message {index}")

    error = rejected(alice_p, public_room, "one too many")

    assert (error.code, error.details, error.http_status) == ("moderated", {"reason": "flood"}, 422)
    assert "at most 3 every 60 seconds" in error.message
    # Nothing stored, no seq taken.
    assert Message.objects.filter(room=public_room).count() == 3
    assert Room.objects.get(pk=public_room.pk).last_seq == 3
    # Another sender in the room, and the same sender in another room, have their own counts.
    send(bob_p, public_room, "hi")
    other_room = room_create(actor=alice_p, name="elsewhere")
    send(alice_p, other_room, "hi")


def test_flood_window_closes_and_sending_resumes(settings, public_room, alice_p):
    settings.CHAT_FLOOD_MAX_MESSAGES = 1
    settings.CHAT_FLOOD_WINDOW_SECONDS = 1
    send(alice_p, public_room, "first")
    rejected(alice_p, public_room, "second")

    time.sleep(1.2)

    assert send(alice_p, public_room, "third").seq == 2


def test_a_resend_of_an_accepted_message_is_not_counted_again(settings, public_room, alice_p):
    settings.CHAT_FLOOD_MAX_MESSAGES = 1
    send(alice_p, public_room, "once", client_id="same")

    again, created = message_send(actor=alice_p, room_id=public_room.pk, client_id="same", body="once")

    assert created is False and again.seq == 1


# --- Repeat -----------------------------------------------------------------------


def test_repeat_rejects_the_same_text_ignoring_case_spacing_and_invisible_characters(settings, public_room, alice_p):
    settings.CHAT_REPEAT_MAX_MESSAGES = 2
    send(alice_p, public_room, "Buy my mixtape")
    send(alice_p, public_room, "buy   MY mixtape ")

    error = rejected(alice_p, public_room, "buy my\u200b mixtape")

    assert error.details == {"reason": "repeat"}
    # Other text still goes through, and so does the same text in another room.
    send(alice_p, public_room, "buy my new mixtape")
    send(alice_p, room_create(actor=alice_p, name="promo"), "Buy my mixtape")


def test_repeat_counts_per_sender(settings, public_room, alice_p, bob_p):
    settings.CHAT_REPEAT_MAX_MESSAGES = 1
    send(alice_p, public_room, "+1")

    send(bob_p, public_room, "+1")
    rejected(alice_p, public_room, "+1")


def test_normalise_folds_compatibility_forms_and_drops_format_characters():
    assert normalise("\uff53\uff50\uff41\uff4d\u200d  here\n") == "spam here"


# --- Blocked words ----------------------------------------------------------------


@pytest.fixture
def blocked_words(tenant):
    BlockedWord.objects.create(tenant=tenant, phrase="spam", action=BlockedWordAction.FLAG)
    BlockedWord.objects.create(tenant=tenant, phrase="buy followers", action=BlockedWordAction.REJECT)


def test_a_flag_word_stores_the_message_flagged_and_delivers_it_as_usual(
    blocked_words, public_room, alice_p, listener, django_capture_on_commit_callbacks
):
    listener.subscribe_room(public_room)
    with django_capture_on_commit_callbacks(execute=True):
        message = send(alice_p, public_room, "This is SPAM!")

    message.refresh_from_db()
    assert message.moderation_status == ModerationStatus.FLAGGED
    assert message.moderation_reason == "Blocked words: spam"
    (event,) = listener.drain()
    assert event["type"] == "chat.message"
    # Clients see the message as any other: the flag is for moderators only.
    assert event["content"]["message"]["body"] == "This is SPAM!"
    assert "moderation_status" not in event["content"]["message"]


def test_blocked_words_match_whole_words_only(blocked_words, public_room, alice_p):
    assert send(alice_p, public_room, "the spammer is back").moderation_status == ModerationStatus.OK
    assert send(alice_p, public_room, "antispam filters").moderation_status == ModerationStatus.OK
    assert send(alice_p, public_room, "(spam)").moderation_status == ModerationStatus.FLAGGED


def test_a_reject_phrase_refuses_the_message_without_naming_the_phrase(blocked_words, public_room, alice_p):
    error = rejected(alice_p, public_room, "Want to BUY\n  followers cheap?")

    assert error.details == {"reason": "blocked_word"}
    assert "followers" not in error.message
    assert not Message.objects.filter(room=public_room).exists()


def test_a_reject_phrase_wins_over_a_flag_word_in_the_same_message(blocked_words, public_room, alice_p):
    rejected(alice_p, public_room, "spam: buy followers")


def test_blocked_words_are_per_tenant(blocked_words, other_tenant, dave_p):
    BlockedWord.objects.create(tenant=other_tenant, phrase="hello", action=BlockedWordAction.REJECT)
    room = room_create(actor=dave_p, name="globex-general")

    # Acme's rules do not apply in Globex...
    assert send(dave_p, room, "spam and buy followers").moderation_status == ModerationStatus.OK
    # ...and Globex's own do.
    rejected(dave_p, room, "hello")


def test_blocked_words_do_not_reach_another_tenant(other_tenant, public_room, alice_p):
    BlockedWord.objects.create(tenant=other_tenant, phrase="spam", action=BlockedWordAction.REJECT)

    assert send(alice_p, public_room, "spam").moderation_status == ModerationStatus.OK


# --- The pipeline -----------------------------------------------------------------

calls: list[str] = []


class FlagFirst(Moderator):
    name = "first"

    def check(self, submission):
        calls.append(self.name)
        return flag(self.name, "first said so")


class FlagSecond(Moderator):
    name = "second"

    def check(self, submission):
        calls.append(self.name)
        return flag(self.name, "second said so")


class RejectThird(Moderator):
    name = "third"

    def check(self, submission):
        calls.append(self.name)
        return reject(self.name, "third refuses")


class AllowLast(Moderator):
    name = "last"

    def check(self, submission):
        calls.append(self.name)
        return ALLOW


def _paths(*classes) -> list[str]:
    return [f"{__name__}.{cls.__name__}" for cls in classes]


@pytest.fixture
def recorded():
    calls.clear()
    yield calls
    calls.clear()


def test_moderators_run_in_order_and_a_reject_stops_the_pipeline(settings, recorded, public_room, alice_p):
    settings.CHAT_MODERATORS = _paths(FlagFirst, RejectThird, AllowLast)

    error = rejected(alice_p, public_room, "anything")

    assert recorded == ["first", "third"]
    assert (error.message, error.details) == ("third refuses", {"reason": "third"})
    assert not Message.objects.filter(room=public_room).exists()


def test_flags_are_combined_and_stored(settings, recorded, public_room, alice_p):
    settings.CHAT_MODERATORS = _paths(FlagSecond, AllowLast, FlagFirst)

    message = send(alice_p, public_room, "anything")

    assert recorded == ["second", "last", "first"]
    message.refresh_from_db()
    assert message.moderation_status == ModerationStatus.FLAGGED
    assert message.moderation_reason == "second said so; first said so"


def test_an_empty_pipeline_allows_everything(settings, public_room, alice_p):
    settings.CHAT_MODERATORS = []

    for _ in range(20):
        assert send(alice_p, public_room, "same").moderation_status == ModerationStatus.OK


def test_submission_recent_is_the_rooms_latest_messages_newest_first(public_room, alice_p, bob_p):
    send(alice_p, public_room, "one")
    send(bob_p, public_room, "two")
    send(alice_p, public_room, "three")
    message_delete(actor=alice_p, room_id=public_room.pk, seq=3)

    submission = Submission(tenant_id=public_room.tenant_id, room=public_room, sender_id=bob_p.user_id, body="x")

    assert [message.body for message in submission.recent] == ["two", "one"]


# --- Over REST --------------------------------------------------------------------


def test_rest_send_answers_422_moderated_when_rejected(settings, user, public_room):
    settings.CHAT_FLOOD_MAX_MESSAGES = 1
    api = client_for(user)
    url = f"/api/v1/rooms/{public_room.pk}/messages/"

    assert api.post(url, {"client_id": "a", "body": "hi"}, format="json").status_code == 201
    response = api.post(url, {"client_id": "b", "body": "hi again"}, format="json")

    assert response.status_code == 422
    assert error_of(response)["code"] == "moderated"
    assert error_of(response)["details"] == {"reason": "flood"}
