"""The playlists REST API once through each endpoint, with real JWTs and API keys:
shapes, the editing protocol over REST (transforms, idempotency, resync), roles
per playlist and per visibility, tenants, history, sharing and suggestions.
The rules themselves are tested at the service level (test_editing.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.constants import ApiScope
from accounts.services.api_clients import api_client_create
from accounts.services.tokens import token_pair_issue
from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from playlists.constants import CollaboratorRole, Visibility
from playlists.models import Playlist, PlaylistCollaborator, PlaylistItem, PlaylistShareLink
from playlists.services.editing import playlist_apply_op
from playlists.services.playlists import playlist_create
from playlists.services.sharing import collaborator_set
from playlists.suggestions import suggestions_rebuild
from tests.accounts.conftest import error_of
from tests.playlists.conftest import make_tracks

pytestmark = pytest.mark.django_db

PLAYLISTS = "/api/v1/playlists/"
REDEEM = "/api/v1/share-links/redeem/"


def url(playlist, tail: str = "") -> str:
    playlist_id = playlist if isinstance(playlist, int) else playlist.pk
    return f"{PLAYLISTS}{playlist_id}/{tail}"


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user).access}")
    return client


def key_client(tenant, *scopes: str) -> APIClient:
    key = api_client_create(tenant=tenant, name="+".join(scopes), scopes=list(scopes), actor=Actor.system()).key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def op(client, playlist, body: dict, **headers):
    return client.post(url(playlist, "ops/"), body, format="json", **headers)


def insert(index: int, track, **extra) -> dict:
    return {"op": "insert", "index": index, "track": track.pk, **extra}


def track_ids(playlist) -> list[int]:
    return list(PlaylistItem.objects.filter(playlist=playlist).order_by("position").values_list("track_id", flat=True))


def item_ids(playlist) -> list[str]:
    rows = PlaylistItem.objects.filter(playlist=playlist).order_by("position").values_list("item_id", flat=True)
    return [str(item_id) for item_id in rows]


def fill(actor, playlist, tracks) -> None:
    """Append ``tracks`` in one revision, through the service."""
    playlist.refresh_from_db()
    start = PlaylistItem.objects.filter(playlist=playlist).count()
    playlist_apply_op(
        actor=actor,
        playlist_id=playlist.pk,
        base_revision=playlist.revision,
        op={"op": "batch", "ops": [insert(start + n, track) for n, track in enumerate(tracks)]},
        client_op_id=f"fill-{playlist.revision}",
    )


def audited(action: str, playlist) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_type="playlist", target_id=str(playlist.pk)))


@pytest.fixture
def api(user, bob, carol, other_user):
    """Logged-in clients: alice (owner of ``playlist``), bob (its editor), carol
    (of the same tenant, no role yet) and dave (another tenant)."""
    return SimpleNamespace(
        alice=client_for(user), bob=client_for(bob), carol=client_for(carol), dave=client_for(other_user)
    )


# --- Playlists -------------------------------------------------------------------


def test_create_list_and_retrieve(api, user, playlist):
    created = api.alice.post(
        PLAYLISTS, {"title": "  Gym  ", "description": "loud", "visibility": "public"}, format="json"
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert body == {
        "playlist": body["playlist"],
        "revision": 0,
        "title": "Gym",
        "description": "loud",
        "items": [],
        "visibility": "public",
        "owner": user.pk,
        "role": "owner",
    }
    gym = body["playlist"]
    listed = api.alice.get(PLAYLISTS).json()
    assert [(row["id"], row["title"], row["owner_username"]) for row in listed["results"]] == [
        (gym, "Gym", "alice"),
        (playlist.pk, "Road trip", "alice"),
    ]
    # carol sees the public playlist only; bob, an editor, the private one too.
    assert [row["id"] for row in api.carol.get(PLAYLISTS).json()["results"]] == [gym]
    assert [row["id"] for row in api.bob.get(PLAYLISTS).json()["results"]] == [gym, playlist.pk]
    assert api.carol.get(url(gym)).json()["role"] == "viewer"
    assert api.bob.get(url(playlist)).json()["role"] == "editor"


def test_create_defaults_to_private_and_invalid_input_names_the_field(api):
    created = api.alice.post(PLAYLISTS, {"title": "Mine"}, format="json").json()
    assert created["visibility"] == "private" and created["description"] == ""
    assert api.carol.get(url(created["playlist"])).status_code == 404

    for body, field in (
        ({}, "title"),
        ({"title": " "}, "title"),
        ({"title": "x", "visibility": "secret"}, "visibility"),
    ):
        response = api.alice.post(PLAYLISTS, body, format="json")
        assert response.status_code == 400, body
        assert field in error_of(response)["details"]["fields"]


def test_detail_gives_items_in_order_with_their_tracks(api, people, playlist, tracks, user):
    fill(people.alice, playlist, [tracks[2], tracks[0]])

    body = api.alice.get(url(playlist)).json()

    assert body["revision"] == 1
    assert [item["track_id"] for item in body["items"]] == [tracks[2].pk, tracks[0].pk]
    first = body["items"][0]
    assert set(first) == {"item_id", "track_id", "added_by", "added_at", "track"}
    assert first["added_by"] == user.pk and first["item_id"] == item_ids(playlist)[0]
    assert first["track"] == {
        "id": tracks[2].pk,
        "uri": tracks[2].uri,
        "title": tracks[2].title,
        "artist": tracks[2].artist,
        "album": "",
        "duration_ms": tracks[2].duration_ms,
    }


def test_patch_changes_visibility_only_and_is_audited(api, playlist):
    changed = api.alice.patch(url(playlist), {"visibility": "public"}, format="json")

    assert changed.status_code == 200, changed.content
    assert changed.json()["visibility"] == "public"
    assert api.carol.get(url(playlist)).status_code == 200
    [event] = audited(AuditAction.PLAYLIST_VISIBILITY_CHANGED, playlist)
    assert event.details == {"from": "private", "to": "public"}

    # Title and description are content: they change through ops, so they are in history.
    renamed = api.alice.patch(url(playlist), {"visibility": "public", "title": "New"}, format="json")
    assert renamed.status_code == 400
    assert set(error_of(renamed)["details"]["fields"]) == {"title"}
    assert Playlist.objects.get(pk=playlist.pk).title == "Road trip"
    # Only the owner changes who may see it.
    assert api.bob.patch(url(playlist), {"visibility": "private"}, format="json").status_code == 403


def test_delete_is_the_owners_and_audited(api, playlist):
    refused = api.bob.delete(url(playlist))
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "forbidden"

    assert api.alice.delete(url(playlist)).status_code == 204
    assert api.alice.get(url(playlist)).status_code == 404
    assert len(audited(AuditAction.PLAYLIST_DELETED, playlist)) == 1


# --- The editing protocol over REST --------------------------------------------------


def test_ops_insert_move_remove_update_and_batch(api, playlist, tracks):
    first = op(api.alice, playlist, {"base_revision": 0, "client_op_id": "c1", "op": insert(0, tracks[0])})
    assert first.status_code == 200, first.content
    result = first.json()
    assert {key: result[key] for key in ("playlist", "revision", "committed", "duplicate")} == {
        "playlist": playlist.pk,
        "revision": 1,
        "committed": True,
        "duplicate": False,
    }
    assert result["ops"][0]["op"] == "insert" and result["ops"][0]["item"]["track_id"] == tracks[0].pk
    assert set(result) == {"playlist", "revision", "committed", "ops", "dropped", "noops", "overridden", "duplicate"}

    batch = {"op": "batch", "ops": [insert(1, tracks[1]), insert(2, tracks[2])]}
    assert op(api.alice, playlist, {"base_revision": 1, "client_op_id": "c2", "op": batch}).json()["revision"] == 2
    assert track_ids(playlist) == [tracks[0].pk, tracks[1].pk, tracks[2].pk]

    moving = item_ids(playlist)[2]
    op(
        api.alice,
        playlist,
        {"base_revision": 2, "client_op_id": "c3", "op": {"op": "move", "item_id": moving, "index": 0}},
    )
    assert track_ids(playlist) == [tracks[2].pk, tracks[0].pk, tracks[1].pk]

    removed = op(
        api.alice, playlist, {"base_revision": 3, "client_op_id": "c4", "op": {"op": "remove", "item_id": moving}}
    )
    assert removed.json()["revision"] == 4
    assert track_ids(playlist) == [tracks[0].pk, tracks[1].pk]

    update = {"op": "update", "title": "Night drive", "description": "slow"}
    assert op(api.alice, playlist, {"base_revision": 4, "client_op_id": "c5", "op": update}).status_code == 200
    detail = api.alice.get(url(playlist)).json()
    assert (detail["revision"], detail["title"], detail["description"]) == (5, "Night drive", "slow")


def test_a_stale_base_is_transformed(api, playlist, tracks):
    op(api.alice, playlist, {"base_revision": 0, "client_op_id": "a", "op": insert(0, tracks[0])})

    # bob wrote his insert against revision 0 too: it goes after alice's.
    stale = op(api.bob, playlist, {"base_revision": 0, "client_op_id": "b", "op": insert(0, tracks[1])})

    assert stale.status_code == 200, stale.content
    assert stale.json()["revision"] == 2
    assert stale.json()["ops"][0]["index"] == 1
    assert track_ids(playlist) == [tracks[0].pk, tracks[1].pk]


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer(api, playlist, tracks):
    body = {"base_revision": 0, "op": insert(0, tracks[0])}

    first = op(api.alice, playlist, body, HTTP_IDEMPOTENCY_KEY="retry-1")
    retry = op(api.alice, playlist, body, HTTP_IDEMPOTENCY_KEY="retry-1")
    # The body's id wins over the header, and without either each call is a new edit.
    other = op(api.alice, playlist, {**body, "client_op_id": "body-id"}, HTTP_IDEMPOTENCY_KEY="retry-1")
    fresh = [op(api.alice, playlist, body).json()["revision"] for _ in range(2)]

    assert first.json()["duplicate"] is False
    assert retry.status_code == 200
    assert retry.json() == {**first.json(), "duplicate": True}
    assert other.json()["duplicate"] is False and other.json()["revision"] == 2
    assert fresh == [3, 4]
    assert len(track_ids(playlist)) == 4


def test_a_base_too_far_behind_is_409_resync_required_with_the_snapshot(api, people, playlist, tracks, settings):
    settings.PLAYLIST_TRANSFORM_WINDOW = 1
    fill(people.alice, playlist, [tracks[0]])
    fill(people.alice, playlist, [tracks[1]])

    response = op(api.alice, playlist, {"base_revision": 0, "client_op_id": "late", "op": insert(0, tracks[2])})

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "resync_required"
    snapshot = error["details"]["snapshot"]
    assert snapshot["revision"] == 2
    assert [item["track_id"] for item in snapshot["items"]] == [tracks[0].pk, tracks[1].pk]
    assert track_ids(playlist) == [tracks[0].pk, tracks[1].pk]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"client_op_id": "x", "op": {"op": "remove", "item_id": "0b5f6ad8-2bde-4d57-9d2e-64ce6f4c3c11"}},
            "base_revision",
        ),
        ({"base_revision": "soon", "client_op_id": "x", "op": {"op": "update", "title": "t"}}, "base_revision"),
        ({"base_revision": 0, "client_op_id": "x"}, "op"),
        ({"base_revision": 0, "client_op_id": "x", "op": {"op": "insert", "index": "first", "track": 1}}, "op.index"),
        ({"base_revision": 0, "client_op_id": "x", "op": {"op": "shuffle"}}, "op.op"),
        ({"base_revision": 0, "client_op_id": "x", "op": {"op": "remove", "item_id": "nope"}}, "op.item_id"),
        (
            {
                "base_revision": 0,
                "client_op_id": "x",
                "op": {"op": "batch", "ops": [{"op": "update", "title": "t"}, {"op": "move", "index": 0}]},
            },
            "op.ops[1].item_id",
        ),
        ({"base_revision": 0, "client_op_id": "x" * 65, "op": {"op": "update", "title": "t"}}, "client_op_id"),
        ({"base_revision": 5, "client_op_id": "x", "op": {"op": "update", "title": "t"}}, "base_revision"),
    ],
)
def test_invalid_edits_are_400_naming_the_field(api, playlist, body, field):
    response = op(api.alice, playlist, body)

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    assert field in error["details"]["fields"], error


def test_an_index_out_of_range_or_another_tenants_track_is_400(api, playlist, tracks, foreign_tracks):
    out_of_range = op(api.alice, playlist, {"base_revision": 0, "client_op_id": "r", "op": insert(3, tracks[0])})
    foreign = op(api.alice, playlist, {"base_revision": 0, "client_op_id": "f", "op": insert(0, foreign_tracks[0])})

    assert out_of_range.status_code == foreign.status_code == 400
    assert error_of(foreign)["code"] == "invalid"
    assert track_ids(playlist) == []


# --- Item conveniences ------------------------------------------------------------------


def test_item_endpoints_add_list_move_and_remove(api, playlist, tracks):
    items = url(playlist, "items/")

    appended = [api.alice.post(items, {"track": track.pk}, format="json") for track in tracks[:3]]
    assert [response.status_code for response in appended] == [200, 200, 200]
    assert [response.json()["revision"] for response in appended] == [1, 2, 3]
    at_start = api.alice.post(items, {"track": tracks[3].pk, "index": 0}, format="json").json()
    assert at_start["ops"][0]["index"] == 0

    listed = api.alice.get(items).json()
    assert set(listed) == {"playlist", "revision", "items"}
    assert listed["revision"] == 4
    assert [item["track_id"] for item in listed["items"]] == [tracks[n].pk for n in (3, 0, 1, 2)]
    assert listed["items"][0]["track"]["title"] == tracks[3].title

    first = listed["items"][0]["item_id"]
    moved = api.alice.post(url(playlist, f"items/{first}/move/"), {"index": 3}, format="json")
    assert moved.status_code == 200, moved.content
    assert track_ids(playlist) == [tracks[n].pk for n in (0, 1, 2, 3)]

    removed = api.alice.delete(url(playlist, f"items/{first}/"))
    assert removed.status_code == 200
    assert removed.json()["committed"] is True
    assert track_ids(playlist) == [tracks[n].pk for n in (0, 1, 2)]
    # Removing an item already gone changes nothing.
    again = api.alice.delete(url(playlist, f"items/{first}/")).json()
    assert (again["committed"], again["revision"], len(again["noops"])) == (False, 6, 1)


def test_item_endpoints_follow_the_protocol(api, playlist, tracks):
    items = url(playlist, "items/")
    for track in tracks[:2]:
        api.alice.post(items, {"track": track.pk}, format="json")
    stale_item = item_ids(playlist)[0]
    # bob removes the first item (revision 3) ...
    api.bob.delete(url(playlist, f"items/{stale_item}/"))

    # ... while alice appends as of revision 2: "the end" is the end of the list she saw.
    appended = api.alice.post(items, {"track": tracks[5].pk, "base_revision": 2}, format="json")
    assert appended.status_code == 200, appended.content
    assert appended.json()["ops"][0]["index"] == 1
    assert track_ids(playlist) == [tracks[1].pk, tracks[5].pk]

    # A move of an item someone removed is dropped, not an error.
    dropped = api.alice.post(
        url(playlist, f"items/{stale_item}/move/"), {"index": 0, "base_revision": 2}, format="json"
    )
    assert dropped.status_code == 200
    assert (dropped.json()["committed"], len(dropped.json()["dropped"])) == (False, 1)

    # The body's client_op_id, else the Idempotency-Key header, makes a retry safe.
    body = {"track": tracks[6].pk, "client_op_id": "add-6"}
    assert api.alice.post(items, body, format="json").json()["duplicate"] is False
    assert api.alice.post(items, body, format="json").json()["duplicate"] is True
    first = api.alice.post(items, {"track": tracks[7].pk}, format="json", HTTP_IDEMPOTENCY_KEY="add-7")
    retry = api.alice.post(items, {"track": tracks[7].pk}, format="json", HTTP_IDEMPOTENCY_KEY="add-7")
    assert retry.json() == {**first.json(), "duplicate": True}
    assert track_ids(playlist) == [tracks[1].pk, tracks[5].pk, tracks[6].pk, tracks[7].pk]


def test_item_endpoints_refuse_a_base_ahead_an_unknown_track_and_bad_ids(api, playlist, tracks):
    items = url(playlist, "items/")

    ahead = api.alice.post(items, {"track": tracks[0].pk, "base_revision": 9}, format="json")
    unknown = api.alice.post(items, {"track": 999_999}, format="json")
    missing = api.alice.post(items, {}, format="json")

    assert "base_revision" in error_of(ahead)["details"]["fields"]
    assert unknown.status_code == 400
    assert "track" in error_of(missing)["details"]["fields"]
    assert api.alice.delete(url(playlist, "items/not-a-uuid/")).status_code == 404
    assert track_ids(playlist) == []


# --- Who may do what -----------------------------------------------------------------


def test_roles_on_a_private_playlist(api, people, playlist, tracks, carol):
    body = {"base_revision": 0, "op": insert(0, tracks[0])}

    # An outsider, of this tenant or another, cannot learn the playlist exists.
    for client in (api.carol, api.dave):
        for response in (client.get(url(playlist)), op(client, playlist, body), client.get(url(playlist, "items/"))):
            assert response.status_code == 404
            assert error_of(response)["code"] == "not_found"

    # A viewer reads but may not edit.
    collaborator_set(actor=people.alice, playlist_id=playlist.pk, user_id=carol.pk, role=CollaboratorRole.VIEWER)
    assert api.carol.get(url(playlist)).json()["role"] == "viewer"
    for response in (
        op(api.carol, playlist, body),
        api.carol.post(url(playlist, "items/"), {"track": tracks[0].pk}, format="json"),
        api.carol.post(url(playlist, "revert/"), {"revision": 0}, format="json"),
    ):
        assert response.status_code == 403
        assert error_of(response)["code"] == "forbidden"

    # The editor and the owner edit.
    assert op(api.bob, playlist, body).status_code == 200
    assert op(api.alice, playlist, {**body, "base_revision": 1}).status_code == 200
    assert len(track_ids(playlist)) == 2


def test_visibility_decides_what_the_rest_of_the_tenant_may_do(api, people, tracks):
    public = playlist_create(actor=people.alice, title="Public", visibility=Visibility.PUBLIC)
    shared = playlist_create(actor=people.alice, title="Shared", visibility=Visibility.COLLABORATIVE)
    body = {"base_revision": 0, "op": insert(0, tracks[0])}

    assert api.carol.get(url(public)).json()["role"] == "viewer"
    assert op(api.carol, public, body).status_code == 403
    assert api.carol.get(url(shared)).json()["role"] == "editor"
    assert op(api.carol, shared, body).status_code == 200
    # Another tenant sees neither.
    assert api.dave.get(url(public)).status_code == api.dave.get(url(shared)).status_code == 404
    assert api.dave.get(PLAYLISTS).json()["results"] == []


def test_api_clients_with_playlists_read_read_and_never_write(tenant, people, playlist, tracks):
    fill(people.alice, playlist, [tracks[0]])
    reader = key_client(tenant, ApiScope.PLAYLISTS_READ)

    assert [row["id"] for row in reader.get(PLAYLISTS).json()["results"]] == [playlist.pk]
    detail = reader.get(url(playlist))
    assert detail.status_code == 200 and detail.json()["role"] == "viewer"
    for tail in ("items/", "revisions/", "revisions/1/", "collaborators/", "suggestions/"):
        assert reader.get(url(playlist, tail)).status_code == 200, tail

    for response in (
        reader.post(PLAYLISTS, {"title": "Bot"}, format="json"),
        op(reader, playlist, {"base_revision": 1, "client_op_id": "k", "op": insert(0, tracks[1])}),
        reader.post(url(playlist, "items/"), {"track": tracks[1].pk}, format="json"),
        reader.patch(url(playlist), {"visibility": "public"}, format="json"),
        reader.delete(url(playlist)),
        reader.get(url(playlist, "share-links/")),
        reader.post(REDEEM, {"token": "x"}, format="json"),
    ):
        assert response.status_code == 403
        assert error_of(response)["code"] == "forbidden"

    assert key_client(tenant, ApiScope.TRACKS_READ).get(url(playlist)).status_code == 403
    assert track_ids(playlist) == [tracks[0].pk]


# --- History ---------------------------------------------------------------------------


def test_revisions_list_as_of_and_revert(api, playlist, tracks, user, bob):
    items = url(playlist, "items/")
    api.alice.post(items, {"track": tracks[0].pk}, format="json")
    api.bob.post(items, {"track": tracks[1].pk}, format="json")
    op(
        api.alice,
        playlist,
        {"base_revision": 2, "client_op_id": "ren", "op": {"op": "update", "title": "Renamed", "description": "d"}},
    )

    listed = api.alice.get(url(playlist, "revisions/")).json()
    rows = listed["results"]
    assert [row["revision"] for row in rows] == [3, 2, 1]
    assert [row["summary"] for row in rows] == ["title changed, description changed", "1 added", "1 added"]
    assert rows[1]["actor"] == {"id": bob.pk, "username": "bob"}
    assert rows[0]["client_op_id"] == "ren" and rows[0]["kind"] == "edit"
    assert set(rows[0]) == {"revision", "kind", "actor", "client_op_id", "created_at", "ops", "summary"}
    assert rows[2]["ops"][0]["item"]["track_id"] == tracks[0].pk

    as_of = api.alice.get(url(playlist, "revisions/1/"))
    assert as_of.status_code == 200
    assert {key: as_of.json()[key] for key in ("playlist", "revision", "title")} == {
        "playlist": playlist.pk,
        "revision": 1,
        "title": "Road trip",
    }
    assert [item["track"]["id"] for item in as_of.json()["items"]] == [tracks[0].pk]
    future = api.alice.get(url(playlist, "revisions/4/"))
    assert future.status_code == 404 and error_of(future)["code"] == "not_found"

    reverted = api.alice.post(url(playlist, "revert/"), {"revision": 1, "client_op_id": "undo"}, format="json")
    assert reverted.status_code == 200, reverted.content
    assert reverted.json()["revision"] == 4
    detail = api.alice.get(url(playlist)).json()
    assert (detail["title"], [item["track_id"] for item in detail["items"]]) == ("Road trip", [tracks[0].pk])
    newest = api.alice.get(url(playlist, "revisions/")).json()["results"][0]
    assert (newest["kind"], newest["summary"]) == ("revert", "revert: 1 removed, title changed, description changed")
    # The revert is idempotent on its client op id, as edits are.
    again = api.alice.post(url(playlist, "revert/"), {"revision": 1, "client_op_id": "undo"}, format="json")
    assert again.json()["duplicate"] is True


def test_pruned_revisions_are_404(api, people, playlist, tracks):
    for track in tracks[:3]:
        fill(people.alice, playlist, [track])
    Playlist.objects.filter(pk=playlist.pk).update(history_floor=2)

    assert api.alice.get(url(playlist, "revisions/1/")).status_code == 404
    assert api.alice.get(url(playlist, "revisions/2/")).status_code == 200
    assert api.alice.post(url(playlist, "revert/"), {"revision": 1}, format="json").status_code == 404


def test_revisions_are_cursor_paginated_newest_first(api, people, playlist, tracks):
    for track in tracks[:5]:
        fill(people.alice, playlist, [track])

    first = api.alice.get(url(playlist, "revisions/"), {"page_size": 2}).json()
    second = api.alice.get(first["next"]).json()

    assert [row["revision"] for row in first["results"]] == [5, 4]
    assert [row["revision"] for row in second["results"]] == [3, 2]


# --- Collaborators ---------------------------------------------------------------------


def test_collaborators_list_add_change_and_remove(api, playlist, user, bob, carol):
    listed = api.alice.get(url(playlist, "collaborators/")).json()["results"]
    assert [(row["user"], row["username"], row["role"]) for row in listed] == [
        (user.pk, "alice", "owner"),
        (bob.pk, "bob", "editor"),
    ]
    assert set(listed[1]) == {"user", "username", "role", "added_by", "created_at"}
    assert listed[1]["added_by"] == user.pk

    added = api.alice.post(url(playlist, "collaborators/"), {"user": carol.pk, "role": "viewer"}, format="json")
    assert added.status_code == 201, added.content
    assert (added.json()["username"], added.json()["role"]) == ("carol", "viewer")
    assert api.carol.get(url(playlist)).json()["role"] == "viewer"

    changed = api.alice.put(url(playlist, f"collaborators/{carol.pk}/"), {"role": "editor"}, format="json")
    assert changed.status_code == 200 and changed.json()["role"] == "editor"

    # Only the owner shares; anyone may leave; the owner stays.
    assert (
        api.bob.post(url(playlist, "collaborators/"), {"user": carol.pk, "role": "viewer"}, format="json").status_code
        == 403
    )
    assert api.carol.delete(url(playlist, f"collaborators/{bob.pk}/")).status_code == 403
    owner = api.alice.delete(url(playlist, f"collaborators/{user.pk}/"))
    assert owner.status_code == 409 and error_of(owner)["code"] == "conflict"
    assert api.carol.delete(url(playlist, f"collaborators/{carol.pk}/")).status_code == 204
    assert api.alice.delete(url(playlist, f"collaborators/{bob.pk}/")).status_code == 204
    assert api.bob.get(url(playlist)).status_code == 404
    assert list(PlaylistCollaborator.objects.filter(playlist=playlist).values_list("user_id", flat=True)) == [user.pk]

    assert len(audited(AuditAction.PLAYLIST_COLLABORATOR_ADDED, playlist)) == 2  # bob (fixture), carol
    assert len(audited(AuditAction.PLAYLIST_COLLABORATOR_CHANGED, playlist)) == 1
    assert len(audited(AuditAction.PLAYLIST_COLLABORATOR_REMOVED, playlist)) == 2


def test_collaborator_input_errors(api, playlist, other_user, carol):
    owner_role = api.alice.post(url(playlist, "collaborators/"), {"user": carol.pk, "role": "owner"}, format="json")
    foreign = api.alice.post(url(playlist, "collaborators/"), {"user": other_user.pk, "role": "viewer"}, format="json")
    no_user = api.alice.post(url(playlist, "collaborators/"), {"role": "viewer"}, format="json")

    assert owner_role.status_code == 400 and "role" in error_of(owner_role)["details"]["fields"]
    assert foreign.status_code == 404
    assert "user" in error_of(no_user)["details"]["fields"]


# --- Share links -----------------------------------------------------------------------


def test_share_link_create_redeem_list_and_revoke(api, playlist, carol, tenant):
    created = api.alice.post(url(playlist, "share-links/"), {"role": "editor"}, format="json")

    assert created.status_code == 201, created.content
    link = created.json()
    token = link["token"]
    assert link["token_prefix"] == token[:8] and link["role"] == "editor"
    assert "url" not in link and "token_hash" not in link
    expires = datetime.fromisoformat(link["expires_at"])
    assert timedelta(days=29) < expires - timezone.now() <= timedelta(days=30)

    # Redeeming makes carol a collaborator with the link's role.
    redeemed = api.carol.post(REDEEM, {"token": token}, format="json")
    assert redeemed.status_code == 200, redeemed.content
    assert redeemed.json() == {"playlist": playlist.pk, "role": "editor"}
    assert api.carol.get(url(playlist)).json()["role"] == "editor"

    listed = api.alice.get(url(playlist, "share-links/")).json()["results"]
    assert [row["id"] for row in listed] == [link["id"]]
    assert "token" not in listed[0] and "token_hash" not in listed[0]
    assert listed[0]["use_count"] == 1 and listed[0]["last_used_at"] is not None
    assert token not in str(listed)

    # Links are the owner's.
    assert api.bob.get(url(playlist, "share-links/")).status_code == 403
    assert api.bob.post(url(playlist, "share-links/"), {"role": "viewer"}, format="json").status_code == 403
    assert api.carol.delete(url(playlist, f"share-links/{link['id']}/")).status_code == 403

    revoked = api.alice.delete(url(playlist, f"share-links/{link['id']}/"))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None and "token" not in revoked.json()
    # A revoked link lets nobody else in; carol keeps her role.
    late = api.bob.post(REDEEM, {"token": token}, format="json")
    assert late.status_code == 404 and error_of(late)["code"] == "not_found"
    assert api.carol.get(url(playlist)).json()["role"] == "editor"

    assert len(audited(AuditAction.PLAYLIST_SHARE_LINK_CREATED, playlist)) == 1
    assert len(audited(AuditAction.PLAYLIST_SHARE_LINK_USED, playlist)) == 1
    assert len(audited(AuditAction.PLAYLIST_SHARE_LINK_REVOKED, playlist)) == 1


def test_expired_unknown_and_foreign_tokens_are_404(api, playlist):
    token = api.alice.post(url(playlist, "share-links/"), {"role": "viewer"}, format="json").json()["token"]

    # Another tenant's user cannot use it, whatever the token.
    assert api.dave.post(REDEEM, {"token": token}, format="json").status_code == 404
    assert api.carol.post(REDEEM, {"token": "not-a-token"}, format="json").status_code == 404
    PlaylistShareLink.objects.filter(playlist=playlist).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = api.carol.post(REDEEM, {"token": token}, format="json")
    assert expired.status_code == 404 and error_of(expired)["code"] == "not_found"
    assert api.carol.get(url(playlist)).status_code == 404


def test_share_link_expiry_beyond_the_limit_is_invalid(api, playlist):
    too_late = (timezone.now() + timedelta(days=31)).isoformat()
    chosen = (timezone.now() + timedelta(days=2)).isoformat()

    refused = api.alice.post(url(playlist, "share-links/"), {"role": "viewer", "expires_at": too_late}, format="json")
    accepted = api.alice.post(url(playlist, "share-links/"), {"role": "viewer", "expires_at": chosen}, format="json")

    assert refused.status_code == 400 and "expires_at" in error_of(refused)["details"]["fields"]
    assert accepted.status_code == 201


# --- Suggestions -----------------------------------------------------------------------


def test_suggestions_answer_a_list(api, people, playlist, tracks, tenant):
    empty = api.alice.get(url(playlist, "suggestions/"))
    assert empty.status_code == 200, empty.content
    assert empty.json()["playlist"] == playlist.pk
    assert isinstance(empty.json()["suggestions"], list)

    # Two playlists holding tracks 0 and 1 together: track 1 is suggested next to track 0.
    other = playlist_create(actor=people.alice, title="Other")
    fill(people.alice, other, [tracks[0], tracks[1]])
    fill(people.alice, playlist, [tracks[0]])
    suggestions_rebuild(tenant_id=tenant.pk)

    body = api.alice.get(url(playlist, "suggestions/"), {"limit": 5}).json()
    assert body["suggestions"], body
    first = body["suggestions"][0]
    assert set(first) == {"track", "score", "reason", "because_track", "kind"}
    assert first["track"]["id"] == tracks[1].pk and first["because_track"] == tracks[0].pk
    bad = api.alice.get(url(playlist, "suggestions/"), {"limit": "many"})
    assert bad.status_code == 400 and "limit" in error_of(bad)["details"]["fields"]


# --- Queries ---------------------------------------------------------------------------


def test_reading_a_50_item_playlist_takes_a_fixed_number_of_queries(
    api, people, playlist, tenant, django_assert_max_num_queries
):
    catalog = make_tracks(tenant, 50, prefix="q")
    for start in range(0, 50, 10):
        fill(people.alice, playlist, catalog[start : start + 10])
    api.alice.get(url(playlist))  # warm up what is cached per process

    # The caller, the playlist, the caller's role on it, the items, the revision
    # again (the items belong to it), their tracks.
    with django_assert_max_num_queries(6):
        response = api.alice.get(url(playlist))
    with django_assert_max_num_queries(6):
        items = api.alice.get(url(playlist, "items/"))
    # A page of history: the caller, the playlist, the role, the entries with their authors.
    with django_assert_max_num_queries(4):
        history = api.alice.get(url(playlist, "revisions/"))

    assert len(response.json()["items"]) == len(items.json()["items"]) == 50
    assert all(item["track"] is not None for item in response.json()["items"])
    assert [row["revision"] for row in history.json()["results"]] == [5, 4, 3, 2, 1]
