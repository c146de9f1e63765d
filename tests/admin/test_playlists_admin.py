"""Playlist back office: read-only screens, the revert page and the share-link
revoke action, each going through the playlist services."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from accounts.services.tokens import principal_for_user
from audit.constants import AuditAction
from audit.models import AuditEvent
from playlists.admin import ops_summary
from playlists.constants import CollaboratorRole, OpKind, SimilarityKind
from playlists.models import Playlist, PlaylistItem, PlaylistOp, PlaylistShareLink, TrackPlay, TrackSimilarity
from playlists.services.editing import playlist_apply_op
from playlists.services.playlists import playlist_create
from playlists.services.sharing import collaborator_set, share_link_create
from realtime.fanout import get_fanout
from realtime.groups import playlist_topic
from tests.chat.conftest import Listener
from tests.factories import UserFactory
from tests.playlists.conftest import make_tracks

from .conftest import changeform_data

pytestmark = pytest.mark.django_db


def _track_ids(playlist) -> list[int]:
    return list(PlaylistItem.objects.filter(playlist=playlist).order_by("position").values_list("track_id", flat=True))


@pytest.fixture
def mix(tenant, user):
    """alice's playlist, built through the services: r1 inserts three tracks, r2
    moves one, r3 removes one and renames the playlist, and a late remove of the
    same item changes nothing; bob is an editor; one share link; some listening
    history and suggestion rows."""
    alice = principal_for_user(user)
    bob = UserFactory(username="bob", tenant=tenant)
    tracks = make_tracks(tenant, 3)
    playlist = playlist_create(actor=alice, title="Road trip")
    collaborator_set(actor=alice, playlist_id=playlist.pk, user_id=bob.pk, role=CollaboratorRole.EDITOR)

    def edit(op, client_op_id, base=None):
        playlist.refresh_from_db()
        base = playlist.revision if base is None else base
        return playlist_apply_op(
            actor=alice, playlist_id=playlist.pk, base_revision=base, op=op, client_op_id=client_op_id
        )

    edit({"op": "batch", "ops": [{"op": "insert", "index": i, "track": t.pk} for i, t in enumerate(tracks)]}, "a-1")
    items = [str(item_id) for item_id in playlist.items.order_by("position").values_list("item_id", flat=True)]
    edit({"op": "move", "item_id": items[2], "index": 0}, "a-2")
    edit({"op": "batch", "ops": [{"op": "remove", "item_id": items[0]}, {"op": "update", "title": "Renamed"}]}, "a-3")
    assert not edit({"op": "remove", "item_id": items[0]}, "a-4", base=2).committed
    link = share_link_create(actor=alice, playlist_id=playlist.pk, role=CollaboratorRole.VIEWER).link
    TrackPlay.objects.create(tenant=tenant, user=user, track=tracks[0], played_at=timezone.now())
    TrackSimilarity.objects.create(
        tenant=tenant, track=tracks[0], similar=tracks[1], kind=SimilarityKind.AUDIO, score=0.9, together=2
    )
    playlist.refresh_from_db()
    return SimpleNamespace(playlist=playlist, tracks=tracks, link=link, bob=bob)


def _staff(*permissions: str):
    staff = UserFactory(username="helpdesk", tenant=None, is_staff=True)
    for codename in permissions:
        staff.user_permissions.add(Permission.objects.get(content_type__app_label="playlists", codename=codename))
    return staff


@pytest.fixture
def playlist_listener():
    """Frames published on playlist topics through the real fan-out (Redis)."""
    listener = Listener()

    def subscribe(playlist):
        topic = playlist_topic(tenant_id=playlist.tenant_id, playlist_id=playlist.pk)

        async def run():
            hub = get_fanout()
            hub.subscribe(topic, listener)
            await hub.wait_subscribed(topic, timeout=3)

        listener.loop = listener.loop or asyncio.new_event_loop()
        listener.loop.run_until_complete(run())

    listener.subscribe_playlist = subscribe
    yield listener
    listener.close()


def test_ops_summary_reads_like_a_sentence():
    ops = [
        {"op": "insert", "index": 0, "item": {}},
        {"op": "move", "item_id": "x", "from": 1, "to": 0},
        {"op": "insert", "index": 1, "item": {}},
        {"op": "update", "set": {"description": "d", "title": "t"}, "previous": {}},
    ]
    assert ops_summary(ops) == "insert 2, move 1, update title and description"
    assert ops_summary([]) == "no change"


def test_every_playlist_screen_renders(superuser_client, mix):
    op = PlaylistOp.objects.get(playlist=mix.playlist, revision=3)
    similarity = TrackSimilarity.objects.get()
    pages = {
        "playlist": mix.playlist.pk,
        "playlistop": op.pk,
        "playlistsharelink": mix.link.pk,
        "trackplay": TrackPlay.objects.get().pk,
        "tracksimilarity": similarity.pk,
        "track": mix.tracks[0].pk,
    }
    for model, pk in pages.items():
        changelist = superuser_client.get(reverse(f"admin:playlists_{model}_changelist"))
        assert changelist.status_code == 200, model
        assert changelist.context["cl"].result_count >= 1, model
        assert superuser_client.get(reverse(f"admin:playlists_{model}_change", args=[pk])).status_code == 200, model

    page = superuser_client.get(reverse("admin:playlists_playlist_change", args=[mix.playlist.pk])).content.decode()
    assert "remove 1, update title" in page  # r3 in the recent op log
    assert "bob" in page and mix.link.token_prefix in page
    assert mix.link.token_hash not in page
    op_page = superuser_client.get(reverse("admin:playlists_playlistop_change", args=[op.pk])).content.decode()
    assert "&quot;title&quot;: &quot;Renamed&quot;" in op_page  # ops as pretty JSON, escaped
    links = superuser_client.get(reverse("admin:playlists_playlistsharelink_changelist")).content.decode()
    assert mix.link.token_hash not in links
    by_kind = superuser_client.get(reverse("admin:playlists_playlistop_changelist"), {"kind__exact": OpKind.REVERT})
    assert by_kind.context["cl"].result_count == 0
    by_playlist = superuser_client.get(
        reverse("admin:playlists_playlistop_changelist"), {"playlist__id__exact": mix.playlist.pk}
    )
    assert by_playlist.context["cl"].result_count == 4
    changed_nothing = superuser_client.get(reverse("admin:playlists_playlistop_changelist"), {"changed": "no"})
    assert [entry.client_op_id for entry in changed_nothing.context["cl"].result_list] == ["a-4"]


def test_nothing_is_added_or_deleted_on_the_read_only_screens(superuser_client, mix):
    for model in ("playlist", "playlistop", "playlistsharelink", "trackplay", "tracksimilarity"):
        assert superuser_client.get(reverse(f"admin:playlists_{model}_add")).status_code == 403, model
    url = reverse("admin:playlists_playlist_delete", args=[mix.playlist.pk])
    assert superuser_client.post(url, {"post": "yes"}).status_code == 403
    assert Playlist.objects.filter(pk=mix.playlist.pk).exists()


def test_content_fields_are_not_editable(superuser_client, mix):
    url = reverse("admin:playlists_playlist_change", args=[mix.playlist.pk])
    response = superuser_client.get(url)
    assert response.context["adminform"].form.fields == {}  # every field is shown read-only
    data = changeform_data(response)
    data.update(title="Hijacked", description="x", visibility="public", revision="99")

    assert superuser_client.post(url, data).status_code == 403

    mix.playlist.refresh_from_db()
    assert (mix.playlist.title, mix.playlist.visibility, mix.playlist.revision) == ("Renamed", "private", 3)
    assert not AuditEvent.objects.filter(action=AuditAction.ADMIN_CHANGED).exists()


@pytest.mark.redis
def test_the_revert_page_reverts_through_the_service(
    superuser_client, superuser, mix, playlist_listener, django_capture_on_commit_callbacks
):
    playlist = mix.playlist
    at_r1 = [mix.tracks[0].pk, mix.tracks[1].pk, mix.tracks[2].pk]
    assert _track_ids(playlist) == [mix.tracks[2].pk, mix.tracks[1].pk]
    url = reverse("admin:playlists_playlist_revert", args=[playlist.pk])
    page = superuser_client.get(url)
    assert page.status_code == 200
    assert page.context["form"].initial["revision"] == 2
    assert "insert 3" in page.content.decode()
    client_op_id = page.context["form"].initial["client_op_id"]
    playlist_listener.subscribe_playlist(playlist)

    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(url, {"revision": "1", "client_op_id": client_op_id})

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:playlists_playlist_change", args=[playlist.pk])
    playlist.refresh_from_db()
    assert (playlist.revision, playlist.title) == (4, "Road trip")
    assert _track_ids(playlist) == at_r1
    entry = PlaylistOp.objects.get(playlist=playlist, revision=4)
    assert (entry.kind, entry.actor_id, entry.client_op_id) == (OpKind.REVERT, superuser.pk, client_op_id)
    [frame] = playlist_listener.drain()
    assert frame["type"] == "playlist.changed"
    assert (frame["content"]["revision"], frame["content"]["kind"]) == (4, "revert")
    assert frame["content"]["actor"] == {"id": superuser.pk, "username": superuser.username}
    [changed] = AuditEvent.objects.filter(action=AuditAction.ADMIN_CHANGED)
    assert (changed.tenant_id, changed.actor_id, changed.target_id) == (
        playlist.tenant_id,
        superuser.pk,
        str(playlist.pk),
    )
    assert "Reverted to revision 1 as revision 4" in changed.details["change_message"]

    # Submitting the same page again reverts nothing more.
    again = superuser_client.post(url, {"revision": "1", "client_op_id": client_op_id})
    assert again.status_code == 302
    playlist.refresh_from_db()
    assert playlist.revision == 4
    assert PlaylistOp.objects.filter(playlist=playlist).count() == 5


def test_the_revert_page_refuses_revisions_outside_the_history(superuser_client, mix, user):
    url = reverse("admin:playlists_playlist_revert", args=[mix.playlist.pk])

    for revision in ("3", "7", "-1", "x"):
        response = superuser_client.post(url, {"revision": revision, "client_op_id": "admin-revert-test"})
        assert response.status_code == 200, revision
        assert response.context["form"].errors["revision"], revision

    mix.playlist.refresh_from_db()
    assert mix.playlist.revision == 3
    assert not PlaylistOp.objects.filter(kind=OpKind.REVERT).exists()
    missing = reverse("admin:playlists_playlist_revert", args=[mix.playlist.pk + 1000])
    assert superuser_client.get(missing).status_code == 404
    fresh = playlist_create(actor=principal_for_user(user), title="Empty")
    page = superuser_client.get(reverse("admin:playlists_playlist_revert", args=[fresh.pk])).content.decode()
    assert "nothing to revert to" in page and 'name="revision"' not in page


def test_the_revoke_action_revokes_and_audits(superuser_client, superuser, mix, user):
    other = share_link_create(actor=principal_for_user(user), playlist_id=mix.playlist.pk, role="editor").link
    already = timezone.now() - timedelta(days=1)
    PlaylistShareLink.objects.filter(pk=other.pk).update(revoked_at=already)
    url = reverse("admin:playlists_playlistsharelink_changelist")

    response = superuser_client.post(url, {"action": "revoke_links", "_selected_action": [mix.link.pk, other.pk]})

    assert response.status_code == 302
    mix.link.refresh_from_db()
    other.refresh_from_db()
    assert mix.link.revoked_at is not None
    assert other.revoked_at == already  # an already revoked link keeps its first revocation
    [event] = AuditEvent.objects.filter(action=AuditAction.PLAYLIST_SHARE_LINK_REVOKED)
    assert (event.actor_type, event.actor_id, event.tenant_id) == ("user", superuser.pk, mix.playlist.tenant_id)
    assert (event.target_type, event.target_id, event.details) == (
        "playlist",
        str(mix.playlist.pk),
        {"link": mix.link.pk},
    )


def test_staff_without_the_permissions_cannot_revert_or_revoke(client, mix):
    client.force_login(_staff("view_playlist", "view_playlistsharelink"))
    revert_url = reverse("admin:playlists_playlist_revert", args=[mix.playlist.pk])

    change = client.get(reverse("admin:playlists_playlist_change", args=[mix.playlist.pk]))
    assert change.status_code == 200
    assert revert_url not in change.content.decode()
    assert client.get(revert_url).status_code == 403
    assert client.post(revert_url, {"revision": "1", "client_op_id": "admin-revert-x"}).status_code == 403
    changelist = reverse("admin:playlists_playlistsharelink_changelist")
    assert "revoke_links" not in client.get(changelist).content.decode()
    client.post(changelist, {"action": "revoke_links", "_selected_action": [mix.link.pk]})

    mix.playlist.refresh_from_db()
    mix.link.refresh_from_db()
    assert mix.playlist.revision == 3
    assert mix.link.revoked_at is None
    assert not AuditEvent.objects.filter(action=AuditAction.PLAYLIST_SHARE_LINK_REVOKED).exists()


def test_staff_with_the_permissions_can_revert_and_revoke(client, mix):
    staff = _staff("view_playlist", "change_playlist", "view_playlistsharelink", "change_playlistsharelink")
    client.force_login(staff)
    revert_url = reverse("admin:playlists_playlist_revert", args=[mix.playlist.pk])

    assert revert_url in client.get(reverse("admin:playlists_playlist_change", args=[mix.playlist.pk])).content.decode()
    assert client.post(revert_url, {"revision": "2", "client_op_id": "admin-revert-y"}).status_code == 302
    changelist = reverse("admin:playlists_playlistsharelink_changelist")
    client.post(changelist, {"action": "revoke_links", "_selected_action": [mix.link.pk]})

    mix.playlist.refresh_from_db()
    mix.link.refresh_from_db()
    assert mix.playlist.revision == 4
    assert PlaylistOp.objects.get(playlist=mix.playlist, revision=4).actor_id == staff.pk
    assert mix.link.revoked_at is not None
