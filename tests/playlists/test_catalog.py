"""The track catalog: ``track_import`` and the reads at the service level, then
once through the REST endpoints with real JWTs and API keys."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from accounts.constants import ApiScope, Role
from accounts.services.api_clients import api_client_authenticate, api_client_create
from accounts.services.tokens import principal_for_user, token_pair_issue
from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from playlists.models import Track
from playlists.services.catalog import ImportedTrack, track_get, track_import, tracks_for_tenant
from spotify_agent.errors import Forbidden, Invalid, NotFound
from tests.accounts.conftest import error_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

TRACKS = "/api/v1/tracks/"
IMPORT = "/api/v1/tracks/import/"


def row(n: int, **fields) -> dict:
    """A valid import row for ``test:track:<n>``; ``fields`` override or add."""
    base = {
        "uri": f"test:track:{n:04d}",
        "title": f"Song {n}",
        "artist": f"Artist {n % 7}",
        "album": f"Album {n % 3}",
        "duration_ms": 180_000 + n,
        "tempo": 120.0,
        "energy": 0.5,
        "danceability": 0.6,
        "valence": 0.7,
    }
    return {**base, **fields}


def imported_events():
    return AuditEvent.objects.filter(action=AuditAction.TRACKS_IMPORTED)


@pytest.fixture
def admin(tenant):
    return UserFactory(username="ada", tenant=tenant, role=Role.ADMIN)


@pytest.fixture
def admin_p(admin):
    return principal_for_user(admin)


@pytest.fixture
def other_admin_p(other_tenant):
    return principal_for_user(UserFactory(username="otto", tenant=other_tenant, role=Role.ADMIN))


def api_key(tenant, *scopes: str, name: str = "partner") -> str:
    return api_client_create(tenant=tenant, name=name, scopes=list(scopes), actor=Actor.system()).key


def key_principal(key: str):
    return api_client_authenticate(raw_key=key)[1]


def bearer(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user).access}")
    return client


def key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


# --- Import: idempotence and updates ------------------------------------------------


def test_import_creates_tracks_and_a_second_import_changes_nothing(admin_p, tenant):
    rows = [row(1), row(2), row(3, album=None, tempo=None)]

    first = track_import(actor=admin_p, tracks=rows)

    assert (first.created, first.updated, first.unchanged) == (3, 0, 0)
    stored = {track.uri: track for track in Track.objects.for_tenant(tenant)}
    assert first.tracks == [ImportedTrack(uri=r["uri"], id=stored[r["uri"]].pk) for r in rows]
    assert (stored["test:track:0003"].album, stored["test:track:0003"].tempo) == ("", None)
    stamps = {uri: track.updated_at for uri, track in stored.items()}

    again = track_import(actor=admin_p, tracks=rows)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert again.tracks == first.tracks
    assert {t.uri: t.updated_at for t in Track.objects.for_tenant(tenant)} == stamps


def test_import_updates_only_the_rows_that_differ(admin_p, tenant):
    track_import(actor=admin_p, tracks=[row(1), row(2), row(3)])
    before = {t.uri: t.updated_at for t in Track.objects.for_tenant(tenant)}
    # An int where a float was stored is the same value, not a change.
    changed = [row(1, title="Song One"), row(2, energy=None), row(3, tempo=120)]

    result = track_import(actor=admin_p, tracks=changed)

    assert (result.created, result.updated, result.unchanged) == (0, 2, 1)
    stored = {t.uri: t for t in Track.objects.for_tenant(tenant)}
    assert stored["test:track:0001"].title == "Song One"
    assert stored["test:track:0002"].energy is None
    assert stored["test:track:0001"].updated_at > before["test:track:0001"]
    assert stored["test:track:0003"].updated_at == before["test:track:0003"]


def test_import_mixes_new_and_known_uris_and_answers_in_request_order(admin_p):
    track_import(actor=admin_p, tracks=[row(2)])

    result = track_import(actor=admin_p, tracks=[row(3), row(2, title="Changed"), row(1)])

    assert (result.created, result.updated, result.unchanged) == (2, 1, 0)
    assert [t.uri for t in result.tracks] == ["test:track:0003", "test:track:0002", "test:track:0001"]
    assert all(isinstance(t.id, int) for t in result.tracks)


def test_text_is_trimmed_so_surrounding_spaces_are_not_a_change(admin_p, tenant):
    track_import(actor=admin_p, tracks=[row(1, title="  Song 1  ")])

    result = track_import(actor=admin_p, tracks=[row(1)])

    assert Track.objects.for_tenant(tenant).get().title == "Song 1"
    assert result.unchanged == 1


def test_each_import_is_audited_once_with_its_counts(admin_p, admin, tenant):
    track_import(actor=admin_p, tracks=[row(1), row(2)])
    track_import(actor=admin_p, tracks=[row(1), row(2, title="x"), row(3)])

    events = list(imported_events().order_by("seq"))
    assert [e.details for e in events] == [
        {"created": 2, "updated": 0, "unchanged": 0},
        {"created": 1, "updated": 1, "unchanged": 1},
    ]
    assert {(e.tenant_id, e.actor_type, e.actor_id) for e in events} == {(tenant.pk, "user", admin.pk)}


# --- Import: validation ----------------------------------------------------------------


def test_invalid_rows_are_named_by_index_and_field_and_nothing_is_written(admin_p, tenant):
    rows = [
        row(0),
        row(1, duration_ms=0),
        row(2, energy=1.5, tempo=301),
        row(3, title="   "),
        {k: v for k, v in row(4).items() if k != "artist"},
        row(5, uri="x" * 201),
        row(6, duration_ms=True, valence="high"),
        row(7, isrc="GB-XXX"),
        "not an object",
        row(9, duration_ms=12.5, danceability=-0.1),
    ]

    with pytest.raises(Invalid) as caught:
        track_import(actor=admin_p, tracks=rows)

    fields = caught.value.details["fields"]
    assert set(fields) == {
        "tracks[1].duration_ms",
        "tracks[2].energy",
        "tracks[2].tempo",
        "tracks[3].title",
        "tracks[4].artist",
        "tracks[5].uri",
        "tracks[6].duration_ms",
        "tracks[6].valence",
        "tracks[7].isrc",
        "tracks[8]",
        "tracks[9].duration_ms",
        "tracks[9].danceability",
    }
    assert fields["tracks[4].artist"] == ["This field is required."]
    assert caught.value.code == "invalid"
    assert caught.value.message == (
        f"tracks[1].duration_ms: {fields['tracks[1].duration_ms'][0]} 11 more problems in details.fields."
    )
    assert not Track.objects.for_tenant(tenant).exists()
    assert not imported_events().exists()


def test_a_bad_row_leaves_known_tracks_untouched(admin_p, tenant):
    track_import(actor=admin_p, tracks=[row(1)])

    with pytest.raises(Invalid):
        track_import(actor=admin_p, tracks=[row(1, title="Changed"), row(2, duration_ms=-5)])

    assert list(Track.objects.for_tenant(tenant).values_list("uri", "title")) == [("test:track:0001", "Song 1")]


def test_feature_bounds_are_inclusive(admin_p):
    rows = [row(1, tempo=0, energy=0, danceability=1, valence=1), row(2, tempo=300)]

    assert track_import(actor=admin_p, tracks=rows).created == 2


def test_a_uri_given_twice_is_invalid(admin_p, tenant):
    with pytest.raises(Invalid) as caught:
        track_import(actor=admin_p, tracks=[row(1), row(2), row(1, title="again")])

    assert caught.value.details["fields"] == {"tracks[2].uri": ["Duplicate of tracks[0].uri: each URI at most once."]}
    assert not Track.objects.exists()


def test_more_rows_than_the_limit_are_refused_whole(admin_p, settings):
    settings.TRACK_IMPORT_MAX_TRACKS = 3

    with pytest.raises(Invalid) as caught:
        track_import(actor=admin_p, tracks=[row(n) for n in range(4)])

    assert set(caught.value.details["fields"]) == {"tracks"}
    assert not Track.objects.exists()
    assert track_import(actor=admin_p, tracks=[row(n) for n in range(3)]).created == 3


def test_an_empty_import_is_invalid(admin_p):
    with pytest.raises(Invalid) as caught:
        track_import(actor=admin_p, tracks=[])

    assert set(caught.value.details["fields"]) == {"tracks"}


# --- Import: who may ----------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.MEMBER, Role.MODERATOR])
def test_members_and_moderators_may_not_import(tenant, role):
    actor = principal_for_user(UserFactory(tenant=tenant, role=role))

    with pytest.raises(Forbidden) as caught:
        track_import(actor=actor, tracks=[row(1)])

    assert caught.value.code == "forbidden"
    assert not Track.objects.exists()


def test_api_clients_import_with_tracks_write_only(tenant):
    writer = key_principal(api_key(tenant, ApiScope.TRACKS_WRITE, name="writer"))
    reader = key_principal(api_key(tenant, ApiScope.TRACKS_READ, ApiScope.TENANT_READ, name="reader"))

    with pytest.raises(Forbidden):
        track_import(actor=reader, tracks=[row(1)])
    result = track_import(actor=writer, tracks=[row(1)])

    assert result.created == 1
    event = imported_events().get()
    assert (event.actor_type, event.actor_id) == ("api_client", writer.api_client_id)


# --- Tenancy and reads ----------------------------------------------------------------------


def test_the_same_uri_in_two_tenants_is_two_tracks(admin_p, other_admin_p, tenant, other_tenant):
    mine = track_import(actor=admin_p, tracks=[row(1)])
    theirs = track_import(actor=other_admin_p, tracks=[row(1, title="Their song")])

    assert (mine.created, theirs.created) == (1, 1)
    assert mine.tracks[0].id != theirs.tracks[0].id
    assert Track.objects.for_tenant(tenant).get().title == "Song 1"
    assert Track.objects.for_tenant(other_tenant).get().title == "Their song"
    assert imported_events().filter(tenant_id=other_tenant.pk).count() == 1


def test_another_tenants_track_is_not_found(admin_p, other_admin_p, tenant):
    theirs = track_import(actor=other_admin_p, tracks=[row(1)]).tracks[0].id
    mine = track_import(actor=admin_p, tracks=[row(2)]).tracks[0].id

    assert track_get(tenant_id=tenant.pk, track_id=mine).uri == "test:track:0002"
    with pytest.raises(NotFound):
        track_get(tenant_id=tenant.pk, track_id=theirs)


def test_search_matches_every_word_in_title_artist_or_album(admin_p, tenant):
    track_import(
        actor=admin_p,
        tracks=[
            row(1, title="Neon Harbour", artist="The Paper Comets", album="Low Tide"),
            row(2, title="Quiet Engines", artist="The Paper Comets", album="High Tide"),
            row(3, title="Harbour Lights", artist="Velvet Static", album="Orchard"),
        ],
    )

    def titles(search):
        return sorted(tracks_for_tenant(tenant_id=tenant.pk, search=search).values_list("title", flat=True))

    assert titles("harbour") == ["Harbour Lights", "Neon Harbour"]
    assert titles("paper TIDE") == ["Neon Harbour", "Quiet Engines"]
    assert titles("harbour comets") == ["Neon Harbour"]
    assert titles("  ") == titles(None) == ["Harbour Lights", "Neon Harbour", "Quiet Engines"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_of_the_same_new_uri_both_succeed(admin_p, tenant):
    """The second insert waits for the first to commit, then updates its row
    (last writer wins) instead of failing on the unique URI."""
    first_done, let_first_commit = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def run(name: str, title: str, before=None, after=None) -> None:
        try:
            if before:
                before.wait(5)
            with transaction.atomic():
                outcomes[name] = track_import(actor=admin_p, tracks=[row(1, title=title)])
                if after:
                    after[0].set()
                    after[1].wait(5)
        except Exception as exc:  # the assertion below reports it
            outcomes[name] = exc
        finally:
            connection.close()

    first = threading.Thread(target=run, args=("first", "First"), kwargs={"after": (first_done, let_first_commit)})
    second = threading.Thread(target=run, args=("second", "Second"), kwargs={"before": first_done})
    first.start()
    second.start()
    first_done.wait(5)
    second.join(0.5)  # blocked on the first one's uncommitted insert
    let_first_commit.set()
    first.join(5)
    second.join(5)

    assert outcomes["first"].created == 1 and outcomes["second"].created == 1, outcomes
    assert outcomes["first"].tracks == outcomes["second"].tracks
    assert Track.objects.for_tenant(tenant).get().title == "Second"


# --- Cost -----------------------------------------------------------------------------------------


def test_importing_200_tracks_takes_a_handful_of_queries(admin_p, tenant, django_assert_max_num_queries):
    rows = [row(n) for n in range(200)]
    # One read, one insert or update per batch, the audit event (its chain head
    # created, locked, appended, moved on) and savepoints: not one per track.
    with django_assert_max_num_queries(15):
        assert track_import(actor=admin_p, tracks=rows).created == 200
    with django_assert_max_num_queries(15):
        assert track_import(actor=admin_p, tracks=[row(n, title=f"v2 {n}") for n in range(200)]).updated == 200
    with django_assert_max_num_queries(15):
        assert track_import(actor=admin_p, tracks=rows).updated == 200


# --- REST -------------------------------------------------------------------------------------------


def test_rest_import_by_an_admin_then_list_and_retrieve_as_a_member(admin, user, tenant):
    response = bearer(admin).post(IMPORT, {"tracks": [row(1), row(2)]}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in ("created", "updated", "unchanged")} == {"created": 2, "updated": 0, "unchanged": 0}
    assert [t["uri"] for t in body["tracks"]] == ["test:track:0001", "test:track:0002"]

    member = bearer(user)
    listed = member.get(TRACKS)
    assert listed.status_code == 200
    assert [t["uri"] for t in listed.json()["results"]] == ["test:track:0002", "test:track:0001"]
    searched = member.get(TRACKS, {"search": "song 1"}).json()["results"]
    assert [t["uri"] for t in searched] == ["test:track:0001"]

    track_id = body["tracks"][0]["id"]
    detail = member.get(f"{TRACKS}{track_id}/")
    assert detail.status_code == 200
    assert detail.json() == {
        "id": track_id,
        **row(1),
        "created_at": detail.json()["created_at"],
        "updated_at": detail.json()["updated_at"],
    }


def test_rest_import_answers_the_same_counts_on_a_retry(admin):
    client = bearer(admin)
    client.post(IMPORT, {"tracks": [row(1)]}, format="json")

    retry = client.post(IMPORT, {"tracks": [row(1)]}, format="json").json()

    assert (retry["created"], retry["updated"], retry["unchanged"]) == (0, 0, 1)


def test_rest_import_by_a_member_is_403(user):
    response = bearer(user).post(IMPORT, {"tracks": [row(1)]}, format="json")

    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
    assert not Track.objects.exists()


def test_rest_invalid_rows_are_400_with_indexed_fields(admin):
    response = bearer(admin).post(IMPORT, {"tracks": [row(1), row(2, duration_ms=0), row(1)]}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert set(error["details"]["fields"]) == {"tracks[1].duration_ms", "tracks[2].uri"}
    assert not Track.objects.exists()


@pytest.mark.parametrize("body", [{}, {"tracks": "nope"}, {"tracks": {"uri": "x"}}])
def test_rest_import_without_a_list_of_tracks_is_400(admin, body):
    response = bearer(admin).post(IMPORT, body, format="json")

    assert response.status_code == 400
    assert set(error_of(response)["details"]["fields"]) == {"tracks"}


def test_rest_api_clients_need_tracks_read_to_list_and_tracks_write_to_import(tenant):
    reader = key_client(api_key(tenant, ApiScope.TRACKS_READ, name="reader"))
    writer = key_client(api_key(tenant, ApiScope.TRACKS_WRITE, name="writer"))
    neither = key_client(api_key(tenant, ApiScope.TENANT_READ, name="neither"))

    imported = writer.post(IMPORT, {"tracks": [row(1)]}, format="json")
    assert imported.status_code == 200, imported.content
    assert reader.post(IMPORT, {"tracks": [row(2)]}, format="json").status_code == 403
    assert neither.post(IMPORT, {"tracks": [row(2)]}, format="json").status_code == 403

    track_id = imported.json()["tracks"][0]["id"]
    assert reader.get(TRACKS).status_code == 200
    assert reader.get(f"{TRACKS}{track_id}/").status_code == 200
    for client, url in ((writer, TRACKS), (neither, TRACKS), (neither, f"{TRACKS}{track_id}/")):
        response = client.get(url)
        assert response.status_code == 403
        assert error_of(response)["code"] == "forbidden"


def test_rest_reads_are_tenant_scoped(admin, other_user, other_tenant):
    mine = bearer(admin).post(IMPORT, {"tracks": [row(1)]}, format="json").json()["tracks"][0]["id"]
    outsider = bearer(other_user)

    assert outsider.get(TRACKS).json()["results"] == []
    hidden = outsider.get(f"{TRACKS}{mine}/")
    assert hidden.status_code == 404
    assert error_of(hidden)["code"] == "not_found"
    reader = key_client(api_key(other_tenant, ApiScope.TRACKS_READ))
    assert reader.get(f"{TRACKS}{mine}/").status_code == 404


def test_rest_tracks_need_credentials():
    client = APIClient()

    assert client.get(TRACKS).status_code == 401
    assert client.post(IMPORT, {"tracks": [row(1)]}, format="json").status_code == 401


def test_rest_list_is_cursor_paginated(admin, user):
    bearer(admin).post(IMPORT, {"tracks": [row(n) for n in range(5)]}, format="json")
    member = bearer(user)

    first = member.get(TRACKS, {"page_size": 3}).json()
    second = member.get(first["next"]).json()

    assert [len(first["results"]), len(second["results"])] == [3, 2]
    assert second["next"] is None


def test_schema_documents_the_track_endpoints():
    schema = APIClient().get("/api/schema/").content.decode()

    for path in ("/api/v1/tracks/:", "/api/v1/tracks/{track_id}/:", "/api/v1/tracks/import/:"):
        assert path in schema
    assert "TrackImportRow" in schema
