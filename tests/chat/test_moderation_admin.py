"""The admin side of moderation: the flagged-messages filter and its review
action, and the per-tenant blocked words screen."""

from __future__ import annotations

import pytest

from audit.constants import AuditAction
from audit.models import AuditEvent
from chat.constants import BlockedWordAction, ModerationStatus
from chat.models import BlockedWord, Message
from chat.services.messages import message_send
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MESSAGES = "/admin/chat/message/"
BLOCKED_WORDS = "/admin/chat/blockedword/"


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="root-admin", tenant=None, is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def messages(settings, tenant, public_room, alice_p, bob_p):
    """Three messages in the public room, the second flagged by a blocked word."""
    settings.CHAT_MODERATORS = ["chat.moderation.BlockedWordsModerator"]
    BlockedWord.objects.create(tenant=tenant, phrase="spam", action=BlockedWordAction.FLAG)
    sent = [
        message_send(actor=actor, room_id=public_room.pk, client_id=f"c{index}", body=body)[0]
        for index, (actor, body) in enumerate(((alice_p, "hello"), (bob_p, "spam here"), (alice_p, "bye")))
    ]
    return sent


def test_the_flagged_filter_lists_only_flagged_messages(staff_client, messages):
    response = staff_client.get(MESSAGES, {"moderation_status__exact": "flagged"})

    assert response.status_code == 200
    assert [message.pk for message in response.context["cl"].result_list] == [messages[1].pk]
    assert "Blocked words: spam" in response.content.decode()
    everything = staff_client.get(MESSAGES)
    assert everything.context["cl"].result_count == 3


def test_the_clear_flag_action_clears_and_audits(staff_client, messages):
    response = staff_client.post(
        MESSAGES,
        {"action": "clear_flag", "_selected_action": [message.pk for message in messages], "index": 0},
    )

    assert response.status_code == 302
    assert Message.objects.get(pk=messages[1].pk).moderation_status == ModerationStatus.OK
    # One flag was set, so one review is recorded, attributed to the staff member.
    (event,) = AuditEvent.objects.filter(action=AuditAction.CHAT_MESSAGE_FLAG_CLEARED)
    assert (event.actor_label, event.tenant_id) == ("root-admin", messages[1].tenant_id)


def test_blocked_words_are_added_per_tenant_and_unique_ignoring_case(staff_client, tenant, other_tenant):
    added = staff_client.post(
        f"{BLOCKED_WORDS}add/", {"tenant": tenant.pk, "phrase": "  Buy   followers ", "action": "reject"}
    )
    assert added.status_code == 302, added.context["adminform"].form.errors if added.context else added
    rule = BlockedWord.objects.get(tenant=tenant)
    assert (rule.phrase, rule.action, rule.created_by.username) == ("Buy followers", "reject", "root-admin")
    assert AuditEvent.objects.filter(action=AuditAction.ADMIN_ADDED, target_type="chat.blockedword").exists()

    duplicate = staff_client.post(
        f"{BLOCKED_WORDS}add/", {"tenant": tenant.pk, "phrase": "buy FOLLOWERS", "action": "flag"}
    )
    assert duplicate.status_code == 200
    assert "phrase" in duplicate.context["adminform"].form.errors
    blank = staff_client.post(f"{BLOCKED_WORDS}add/", {"tenant": tenant.pk, "phrase": "   ", "action": "flag"})
    assert "phrase" in blank.context["adminform"].form.errors
    # The same phrase is another tenant's own rule.
    other = staff_client.post(
        f"{BLOCKED_WORDS}add/", {"tenant": other_tenant.pk, "phrase": "buy followers", "action": "flag"}
    )
    assert other.status_code == 302
    assert BlockedWord.objects.count() == 2


def test_renaming_a_rule_onto_another_of_its_tenant_is_refused(staff_client, tenant):
    BlockedWord.objects.create(tenant=tenant, phrase="spam")
    rule = BlockedWord.objects.create(tenant=tenant, phrase="scam")

    response = staff_client.post(f"{BLOCKED_WORDS}{rule.pk}/change/", {"phrase": "SPAM", "action": "flag"})

    assert response.status_code == 200
    assert "phrase" in response.context["adminform"].form.errors
    assert BlockedWord.objects.get(pk=rule.pk).phrase == "scam"
