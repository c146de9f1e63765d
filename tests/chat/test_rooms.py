"""Room use cases: create, direct rooms, join, leave, invite, kick, ban, and the access rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.constants import AuditAction
from audit.models import AuditEvent
from chat.constants import RoomKind, RoomRole
from chat.errors import Conflict, Forbidden, Invalid, NotFound
from chat.models import Room, RoomBan, RoomInvitation, RoomMember
from chat.selectors import room_get_for_member, rooms_for_user
from chat.services.messages import message_send
from chat.services.rooms import (
    direct_room_open,
    room_ban,
    room_create,
    room_invite,
    room_join,
    room_kick,
    room_leave,
    room_unban,
)
from realtime.protocol import ErrorCode

pytestmark = pytest.mark.django_db


def test_creator_becomes_owner_and_names_are_unique_per_tenant(alice_p, bob_p, dave_p):
    room = room_create(actor=alice_p, name="  general ", topic="hi")

    assert (room.name, room.kind, room.last_seq) == ("general", RoomKind.PUBLIC, 0)
    assert RoomMember.objects.get(room=room).role == RoomRole.OWNER
    with pytest.raises(Conflict):
        room_create(actor=bob_p, name="general")
    # Another tenant may reuse the name.
    assert room_create(actor=dave_p, name="general").tenant_id != room.tenant_id


def test_room_create_refuses_bad_names_and_direct_kind(alice_p):
    with pytest.raises(Invalid) as empty:
        room_create(actor=alice_p, name="   ")
    with pytest.raises(Invalid):
        room_create(actor=alice_p, name="x", kind=RoomKind.DIRECT)

    assert empty.value.code == ErrorCode.INVALID
    assert empty.value.details == {"fields": {"name": ["A room name has 1 to 100 characters."]}}


def test_direct_room_is_unique_per_pair_and_has_both_members(alice_p, bob_p, user, bob):
    room, created = direct_room_open(actor=alice_p, user_id=bob.pk)
    again, created_again = direct_room_open(actor=bob_p, user_id=user.pk)

    assert (created, created_again) == (True, False)
    assert again.pk == room.pk
    assert room.direct_key == f"{min(user.pk, bob.pk)}:{max(user.pk, bob.pk)}"
    assert set(RoomMember.objects.filter(room=room).values_list("user_id", flat=True)) == {user.pk, bob.pk}


def test_direct_room_with_another_tenants_user_or_oneself_is_refused(alice_p, user, other_user):
    with pytest.raises(NotFound):
        direct_room_open(actor=alice_p, user_id=other_user.pk)
    with pytest.raises(Invalid):
        direct_room_open(actor=alice_p, user_id=user.pk)
    assert not Room.objects.exists()


def test_join_public_room_is_idempotent(public_room, bob_p, bob):
    membership = room_join(actor=bob_p, room_id=public_room.pk)

    assert membership.user_id == bob.pk
    assert RoomMember.objects.filter(room=public_room, user=bob).count() == 1


def test_private_room_needs_an_invitation_and_non_members_get_not_found(private_room, alice_p, bob_p, bob):
    with pytest.raises(NotFound):
        room_join(actor=bob_p, room_id=private_room.pk)
    with pytest.raises(NotFound):
        room_get_for_member(actor=bob_p, room_id=private_room.pk)

    room_invite(actor=alice_p, room_id=private_room.pk, user_id=bob.pk)
    room_join(actor=bob_p, room_id=private_room.pk)

    assert RoomInvitation.objects.get(room=private_room, invitee=bob).accepted_at is not None
    assert room_get_for_member(actor=bob_p, room_id=private_room.pk).role == RoomRole.MEMBER


def test_another_tenants_room_is_not_found_for_every_use_case(public_room, dave_p):
    for call in (
        lambda: room_get_for_member(actor=dave_p, room_id=public_room.pk),
        lambda: room_join(actor=dave_p, room_id=public_room.pk),
        lambda: message_send(actor=dave_p, room_id=public_room.pk, client_id="c1", body="hi"),
        lambda: room_kick(actor=dave_p, room_id=public_room.pk, user_id=1),
    ):
        with pytest.raises(NotFound) as error:
            call()
        assert error.value.code == "not_found"


def test_public_room_not_joined_is_forbidden_for_history_and_sending(public_room, carol_p):
    with pytest.raises(Forbidden) as error:
        room_get_for_member(actor=carol_p, room_id=public_room.pk)
    with pytest.raises(Forbidden):
        message_send(actor=carol_p, room_id=public_room.pk, client_id="c1", body="hi")

    assert error.value.code == "forbidden"


def test_only_room_moderators_invite(private_room, alice_p, bob_p, bob, carol):
    room_invite(actor=alice_p, room_id=private_room.pk, user_id=bob.pk)
    room_join(actor=bob_p, room_id=private_room.pk)

    with pytest.raises(Forbidden):
        room_invite(actor=bob_p, room_id=private_room.pk, user_id=carol.pk)
    with pytest.raises(Conflict):
        room_invite(actor=alice_p, room_id=private_room.pk, user_id=bob.pk)


def test_leave_removes_the_membership(public_room, bob_p, bob):
    room_leave(actor=bob_p, room_id=public_room.pk)

    assert not RoomMember.objects.filter(room=public_room, user=bob).exists()
    with pytest.raises(Forbidden):
        room_leave(actor=bob_p, room_id=public_room.pk)


def test_kick_is_for_moderators_and_audited(public_room, alice_p, bob_p, user, bob):
    with pytest.raises(Forbidden):
        room_kick(actor=bob_p, room_id=public_room.pk, user_id=user.pk)

    room_kick(actor=alice_p, room_id=public_room.pk, user_id=bob.pk)

    assert not RoomMember.objects.filter(room=public_room, user=bob).exists()
    event = AuditEvent.objects.get(action=AuditAction.ROOM_MEMBER_KICKED)
    assert (event.tenant_id, event.target_id, event.details) == (
        public_room.tenant_id,
        str(public_room.pk),
        {"user_id": bob.pk},
    )


def test_owner_cannot_be_kicked_even_by_a_tenant_moderator(public_room, tenant_mod, user):
    from tests.chat.conftest import as_principal

    with pytest.raises(Forbidden):
        room_kick(actor=as_principal(tenant_mod), room_id=public_room.pk, user_id=user.pk)


def test_ban_removes_refuses_rejoin_until_expiry_and_is_audited(public_room, alice_p, bob_p, bob):
    until = timezone.now() + timedelta(hours=1)
    ban = room_ban(actor=alice_p, room_id=public_room.pk, user_id=bob.pk, until=until, reason="spam")

    assert ban.until == until
    assert not RoomMember.objects.filter(room=public_room, user=bob).exists()
    with pytest.raises(Forbidden):
        room_join(actor=bob_p, room_id=public_room.pk)
    audit = AuditEvent.objects.get(action=AuditAction.ROOM_MEMBER_BANNED)
    assert audit.details == {"user_id": bob.pk, "until": until.isoformat(), "reason": "spam"}

    # Once the ban has expired, joining works again.
    RoomBan.objects.filter(pk=ban.pk).update(until=timezone.now() - timedelta(seconds=1))
    room_join(actor=bob_p, room_id=public_room.pk)


def test_unban_lifts_the_ban(public_room, alice_p, bob_p, bob):
    room_ban(actor=alice_p, room_id=public_room.pk, user_id=bob.pk)
    room_unban(actor=alice_p, room_id=public_room.pk, user_id=bob.pk)

    room_join(actor=bob_p, room_id=public_room.pk)
    assert AuditEvent.objects.filter(action=AuditAction.ROOM_MEMBER_UNBANNED).count() == 1
    with pytest.raises(NotFound):
        room_unban(actor=alice_p, room_id=public_room.pk, user_id=bob.pk)


def test_rooms_for_user_counts_unread_in_one_query(public_room, alice_p, bob_p, django_assert_num_queries):
    other = room_create(actor=alice_p, name="music")
    room_join(actor=bob_p, room_id=other.pk)
    for index in range(3):
        message_send(actor=alice_p, room_id=public_room.pk, client_id=f"g{index}", body="hello")
    message_send(actor=alice_p, room_id=other.pk, client_id="m1", body="hello")
    message_send(actor=bob_p, room_id=other.pk, client_id="m2", body="mine")

    with django_assert_num_queries(1):
        unread = {m.room.name: m.unread for m in rooms_for_user(actor=bob_p)}

    # bob's own message moved his marker past alice's earlier one.
    assert unread == {"general": 3, "music": 0}
