"""Moderator actions: mute with expiry, unmute, the review queue and clearing a
flag, at the service level and once through each REST endpoint (with reactions
and unban, whose services predate their endpoints)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone

from accounts.constants import Role
from audit.constants import AuditAction
from audit.models import AuditEvent
from chat.constants import BlockedWordAction, ModerationStatus, RoomRole
from chat.errors import Forbidden, Invalid, NotFound
from chat.models import BlockedWord, Message, Reaction, RoomBan, RoomMember
from chat.services.messages import message_send
from chat.services.moderation import message_flag_clear, room_member_mute, room_member_unmute
from chat.services.rooms import room_ban, room_join
from tests.accounts.conftest import error_of
from tests.chat.conftest import as_principal
from tests.chat.test_api import client_for
from tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


def soon(seconds: float = 600) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


def audits(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


# --- Mute ---------------------------------------------------------------------------


def test_a_muted_member_cannot_post_until_the_mute_expires(public_room, alice_p, bob_p):
    member = room_member_mute(
        actor=alice_p, room_id=public_room.pk, user_id=bob_p.user_id, until=soon(1), reason="calm down"
    )
    assert member.muted_until is not None

    with pytest.raises(Forbidden) as caught:
        message_send(actor=bob_p, room_id=public_room.pk, client_id="m1", body="hey")
    assert caught.value.details["muted_until"] == member.muted_until.isoformat()

    time.sleep(1.2)
    message, created = message_send(actor=bob_p, room_id=public_room.pk, client_id="m2", body="back")
    assert created and message.seq == 1

    (event,) = audits(AuditAction.ROOM_MEMBER_MUTED)
    assert (event.actor_id, event.tenant_id, event.target_type, event.target_id) == (
        alice_p.user_id,
        public_room.tenant_id,
        "chat.room",
        str(public_room.pk),
    )
    assert event.details == {"user_id": bob_p.user_id, "until": member.muted_until.isoformat(), "reason": "calm down"}


def test_only_room_or_tenant_moderators_mute(public_room, alice_p, bob_p, carol_p, tenant_mod):
    room_join(actor=carol_p, room_id=public_room.pk)

    with pytest.raises(Forbidden):
        room_member_mute(actor=bob_p, room_id=public_room.pk, user_id=carol_p.user_id, until=soon())
    # A tenant moderator need not be in the room.
    room_member_mute(actor=as_principal(tenant_mod), room_id=public_room.pk, user_id=carol_p.user_id, until=soon())

    assert RoomMember.objects.get(room=public_room, user_id=carol_p.user_id).muted_until is not None


def test_mute_refuses_the_owner_oneself_non_members_and_bad_times(public_room, alice_p, bob_p, carol_p, dave_p):
    RoomMember.objects.filter(room=public_room, user_id=bob_p.user_id).update(role=RoomRole.MODERATOR)
    with pytest.raises(Forbidden):
        room_member_mute(actor=bob_p, room_id=public_room.pk, user_id=alice_p.user_id, until=soon())
    with pytest.raises(Invalid):
        room_member_mute(actor=alice_p, room_id=public_room.pk, user_id=alice_p.user_id, until=soon())
    with pytest.raises(NotFound):
        room_member_mute(actor=alice_p, room_id=public_room.pk, user_id=carol_p.user_id, until=soon())
    with pytest.raises(Invalid):
        room_member_mute(actor=alice_p, room_id=public_room.pk, user_id=bob_p.user_id, until=soon(-1))
    with pytest.raises(Invalid):
        room_member_mute(actor=alice_p, room_id=public_room.pk, user_id=bob_p.user_id, until=soon(31 * 86400))
    # Another tenant's moderator does not learn the room exists.
    with pytest.raises(NotFound):
        room_member_mute(actor=dave_p, room_id=public_room.pk, user_id=bob_p.user_id, until=soon())

    assert audits(AuditAction.ROOM_MEMBER_MUTED) == []


def test_unmute_lifts_the_mute_once_and_is_idempotent(public_room, alice_p, bob_p):
    room_member_mute(actor=alice_p, room_id=public_room.pk, user_id=bob_p.user_id, until=soon())

    room_member_unmute(actor=alice_p, room_id=public_room.pk, user_id=bob_p.user_id)
    room_member_unmute(actor=alice_p, room_id=public_room.pk, user_id=bob_p.user_id)

    assert RoomMember.objects.get(room=public_room, user_id=bob_p.user_id).muted_until is None
    assert len(audits(AuditAction.ROOM_MEMBER_UNMUTED)) == 1
    message_send(actor=bob_p, room_id=public_room.pk, client_id="m", body="free")


# --- Review queue -------------------------------------------------------------------


@pytest.fixture
def flagged(settings, tenant, public_room, bob_p):
    """A message of bob's in the public room, flagged by a blocked word."""
    settings.CHAT_MODERATORS = ["chat.moderation.BlockedWordsModerator"]
    BlockedWord.objects.create(tenant=tenant, phrase="spam", action=BlockedWordAction.FLAG)
    message, _ = message_send(actor=bob_p, room_id=public_room.pk, client_id="f", body="spam spam")
    message_send(actor=bob_p, room_id=public_room.pk, client_id="ok", body="fine")
    return message


def test_clearing_a_flag_keeps_the_message_and_the_reason_and_is_audited(flagged, public_room, alice_p):
    message = message_flag_clear(actor=alice_p, room_id=public_room.pk, seq=flagged.seq)
    message_flag_clear(actor=alice_p, room_id=public_room.pk, seq=flagged.seq)

    message.refresh_from_db()
    assert (message.moderation_status, message.moderation_reason) == (ModerationStatus.OK, "Blocked words: spam")
    (event,) = audits(AuditAction.CHAT_MESSAGE_FLAG_CLEARED)
    assert event.target_id == str(flagged.pk)
    assert event.details == {"room_id": public_room.pk, "seq": flagged.seq, "reason": "Blocked words: spam"}


def test_only_moderators_clear_flags(flagged, public_room, bob_p):
    with pytest.raises(Forbidden):
        message_flag_clear(actor=bob_p, room_id=public_room.pk, seq=flagged.seq)

    assert Message.objects.get(pk=flagged.pk).moderation_status == ModerationStatus.FLAGGED


# --- REST ---------------------------------------------------------------------------


def _url(room, tail: str) -> str:
    return f"/api/v1/rooms/{room.pk}/{tail}"


def test_rest_flagged_list_shows_the_queue_to_moderators_only(flagged, public_room, user, bob, tenant_mod):
    outsider_moderator = UserFactory(username="gmod", tenant=TenantFactory(slug="initech"), role=Role.MODERATOR)

    for viewer in (user, tenant_mod):
        response = client_for(viewer).get("/api/v1/messages/flagged/")
        assert response.status_code == 200, response.content
        (item,) = response.json()["results"]
        assert item["room_id"] == public_room.pk
        assert item["moderation_status"] == "flagged"
        assert item["moderation_reason"] == "Blocked words: spam"
        assert (item["message"]["seq"], item["message"]["body"]) == (flagged.seq, "spam spam")
    # A plain member, and another tenant's moderator, moderate nothing here.
    assert client_for(bob).get("/api/v1/messages/flagged/").json()["results"] == []
    assert client_for(outsider_moderator).get("/api/v1/messages/flagged/").json()["results"] == []
    filtered = client_for(user).get("/api/v1/messages/flagged/", {"room_id": public_room.pk + 1000}).json()
    assert filtered["results"] == []


def test_rest_clear_flag_empties_the_queue(flagged, public_room, user, bob):
    refused = client_for(bob).post(_url(public_room, f"messages/{flagged.seq}/clear-flag/"))
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"

    response = client_for(user).post(_url(public_room, f"messages/{flagged.seq}/clear-flag/"))

    assert response.status_code == 200, response.content
    assert response.json()["moderation_status"] == "ok"
    assert client_for(user).get("/api/v1/messages/flagged/").json()["results"] == []


def test_rest_mute_and_unmute(public_room, user, bob, bob_p):
    until = soon()
    response = client_for(user).post(
        _url(public_room, f"members/{bob.pk}/mute/"), {"until": until.isoformat(), "reason": "spam"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["user_id"] == bob.pk
    assert response.json()["muted_until"] is not None

    muted = client_for(bob).post(_url(public_room, "messages/"), {"client_id": "x", "body": "hi"}, format="json")
    assert muted.status_code == 403
    assert error_of(muted)["details"]["muted_until"]

    refused = client_for(bob).post(_url(public_room, f"members/{bob.pk}/unmute/"))
    assert refused.status_code == 403
    response = client_for(user).post(_url(public_room, f"members/{bob.pk}/unmute/"))
    assert (response.status_code, response.json()["muted_until"]) == (200, None)

    missing_until = client_for(user).post(_url(public_room, f"members/{bob.pk}/mute/"), {}, format="json")
    assert missing_until.status_code == 400 and "until" in error_of(missing_until)["details"]["fields"]


def test_rest_unban(public_room, user, alice_p, carol):
    room_ban(actor=alice_p, room_id=public_room.pk, user_id=carol.pk)

    response = client_for(user).post(_url(public_room, f"members/{carol.pk}/unban/"))
    again = client_for(user).post(_url(public_room, f"members/{carol.pk}/unban/"))

    assert response.status_code == 204
    assert not RoomBan.objects.filter(room=public_room, user=carol).exists()
    assert again.status_code == 404
    assert len(audits(AuditAction.ROOM_MEMBER_UNBANNED)) == 1


def test_rest_reactions_add_and_remove(public_room, alice_p, bob, carol):
    message_send(actor=alice_p, room_id=public_room.pk, client_id="r", body="react to me")
    url = _url(public_room, "messages/1/reactions/")

    added = client_for(bob).post(url, {"emoji": "🔥"}, format="json")
    repeated = client_for(bob).post(url, {"emoji": "🔥"}, format="json")
    assert (added.status_code, repeated.status_code) == (204, 204)
    assert list(Reaction.objects.values_list("user_id", "emoji")) == [(bob.pk, "🔥")]

    # carol has not joined the public room.
    outsider = client_for(carol).post(url, {"emoji": "👍"}, format="json")
    assert outsider.status_code == 403

    removed = client_for(bob).delete(f"{url}{quote('🔥')}/")
    assert removed.status_code == 204
    assert not Reaction.objects.exists()
