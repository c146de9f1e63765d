"""Chat and playlist admin: tenant-consistent edits and read-only playlist items."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.constants import AuditAction
from audit.models import AuditEvent
from chat.models import Room, RoomMember
from playlists.models import Playlist, PlaylistItem, Track

pytestmark = pytest.mark.django_db


def _room_add_data(tenant, members: list) -> dict:
    data = {
        "tenant": tenant.pk,
        "name": "general",
        "kind": "public",
        "topic": "",
        "members-TOTAL_FORMS": str(len(members)),
        "members-INITIAL_FORMS": "0",
        "members-MIN_NUM_FORMS": "0",
        "members-MAX_NUM_FORMS": "1000",
    }
    for index, user in enumerate(members):
        data[f"members-{index}-user"] = user.pk
        data[f"members-{index}-role"] = "member"
    return data


def test_room_with_members_added_inline_takes_the_room_tenant(superuser_client, tenant, user, member):
    response = superuser_client.post(reverse("admin:chat_room_add"), _room_add_data(tenant, [user, member]))

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    room = Room.objects.get(name="general")
    assert sorted(RoomMember.objects.filter(room=room).values_list("tenant_id", flat=True)) == [tenant.pk, tenant.pk]
    [added] = AuditEvent.objects.filter(action=AuditAction.ADMIN_ADDED)
    assert (added.tenant_id, added.target_type) == (tenant.pk, "chat.room")
    assert len(added.details["change_message"]) == 3  # the room and its two members


def test_room_member_from_another_tenant_is_refused(superuser_client, tenant, user, other_user):
    response = superuser_client.post(reverse("admin:chat_room_add"), _room_add_data(tenant, [user, other_user]))

    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors
    assert errors[1] == {"user": ["This belongs to another tenant."]}
    assert not Room.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="admin.").exists()


def test_room_member_added_directly_takes_the_room_tenant(superuser_client, tenant, user, other_user):
    room = Room.objects.create(tenant=tenant, name="general")
    url = reverse("admin:chat_roommember_add")

    refused = superuser_client.post(url, {"room": room.pk, "user": other_user.pk, "role": "member"})
    accepted = superuser_client.post(url, {"room": room.pk, "user": user.pk, "role": "moderator"})

    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {"user": ["This belongs to another tenant."]}
    assert accepted.status_code == 302
    membership = RoomMember.objects.get(room=room)
    assert (membership.user_id, membership.tenant_id, membership.role) == (user.pk, tenant.pk, "moderator")


def test_playlists_are_not_added_in_the_admin(superuser_client, tenant, user):
    # Only playlist_create writes the owner's collaborator row and the snapshot
    # the history starts from (playlists.admin explains the read-only screens).
    response = superuser_client.post(
        reverse("admin:playlists_playlist_add"),
        {"tenant": tenant.pk, "owner": user.pk, "title": "Mix", "description": "", "visibility": "private"},
    )

    assert response.status_code == 403
    assert not Playlist.objects.exists()


def test_playlist_items_are_read_only(superuser_client, tenant, user):
    track = Track.objects.create(tenant=tenant, uri="spotify:track:1", title="Song", artist="Band", duration_ms=61000)
    playlist = Playlist.objects.create(tenant=tenant, owner=user, title="Mix")
    PlaylistItem.objects.create(tenant=tenant, playlist=playlist, track=track, position=0)

    response = superuser_client.get(reverse("admin:playlists_playlist_change", args=[playlist.pk]))

    assert response.status_code == 200
    [inline] = [i for i in response.context["inline_admin_formsets"] if i.opts.model is PlaylistItem]
    assert not (inline.has_add_permission or inline.has_change_permission or inline.has_delete_permission)
    assert "Band - Song" in response.content.decode()
    changelist = superuser_client.get(reverse("admin:playlists_track_changelist"))
    assert "1:01" in changelist.content.decode()
