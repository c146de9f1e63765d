"""The listening sessions REST API once through each endpoint, with real JWTs and
API keys: shapes, who may call what (users, API clients with and without
``listening:read``), tenants, validation, a lost playback race and pagination.
The rules themselves are tested at the service level (test_sessions.py,
test_invites.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rest_framework.test import APIClient

from accounts.constants import ApiScope
from accounts.services.api_clients import api_client_create
from accounts.services.tokens import token_pair_issue
from audit.services import Actor
from listening.constants import SessionMode
from listening.models import ListeningSession, SessionInvite
from listening.services.sessions import session_create, session_join
from playlists.constants import SimilarityKind
from playlists.models import TrackSimilarity
from tests.accounts.conftest import error_of
from tests.listening.test_sessions import command, enqueue

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/sessions/"


def url(session, tail: str = "") -> str:
    session_id = session if isinstance(session, int) else session.pk
    return f"{SESSIONS}{session_id}/{tail}"


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user).access}")
    return client


def key_client(tenant, *scopes: str) -> APIClient:
    key = api_client_create(tenant=tenant, name="+".join(scopes), scopes=list(scopes), actor=Actor.system()).key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def fields_of(response) -> set[str]:
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    return set(error["details"]["fields"])


@pytest.fixture
def api(user, bob, carol, other_user):
    """Logged-in clients: alice, bob and carol of one tenant, dave of another."""
    return SimpleNamespace(
        alice=client_for(user), bob=client_for(bob), carol=client_for(carol), dave=client_for(other_user)
    )


@pytest.fixture
def live(people):
    """A public group session alice hosts and bob is in."""
    session = session_create(actor=people.alice, title="Friday")
    session_join(actor=people.bob, session_id=session.pk)
    return session


# --- Sessions --------------------------------------------------------------------------------


def test_create_retrieve_and_list(api, user):
    created = api.alice.post(SESSIONS, {"title": "  Late  ", "mode": "dj", "visibility": "invite"}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    session = ListeningSession.objects.get(pk=body["session"])
    assert set(body) == {
        "session",
        "title",
        "mode",
        "visibility",
        "vote_skip_threshold",
        "status",
        "host",
        "queue",
        "room",
        "role",
        "muted",
        "audience",
        "members",
        "playback",
        "server_time_ms",
    }
    assert (body["title"], body["mode"], body["visibility"], body["role"], body["audience"]) == (
        "Late",
        "dj",
        "invite",
        "host",
        1,
    )
    assert body["host"] == {"id": user.pk, "username": "alice"}
    assert body["queue"] == session.queue_id and body["playback"]["revision"] == 0
    assert body["members"] == [{"user": user.pk, "username": "alice", "role": "host"}]

    detail = api.alice.get(url(session))
    assert detail.status_code == 200 and detail.json()["session"] == session.pk
    # Invite-only: listed to its host only; the rest of the tenant may not look in.
    assert [row["id"] for row in api.alice.get(SESSIONS).json()["results"]] == [session.pk]
    assert api.bob.get(SESSIONS).json()["results"] == []
    refused = api.bob.get(url(session))
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    row = api.alice.get(SESSIONS).json()["results"][0]
    assert set(row) == {"id", "title", "mode", "visibility", "host", "audience", "track", "playing", "created_at"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": " "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "mode": "rave"}, "mode"),
        ({"title": "ok", "visibility": "secret"}, "visibility"),
        ({"title": "ok", "vote_skip_threshold": 0}, "vote_skip_threshold"),
        ({"title": "ok", "vote_skip_threshold": "half"}, "vote_skip_threshold"),
    ],
)
def test_create_names_the_invalid_field(api, body, field):
    assert fields_of(api.alice.post(SESSIONS, body, format="json")) == {field}
    assert not ListeningSession.objects.exists()


def test_join_leave_and_end(api, live, carol, user):
    joined = api.carol.post(url(live, "join/"))
    assert joined.status_code == 200, joined.content
    assert joined.json()["role"] == "listener" and joined.json()["audience"] == 3
    assert api.carol.post(url(live, "join/")).json()["audience"] == 3  # idempotent

    assert api.carol.post(url(live, "leave/")).status_code == 204
    again = api.carol.post(url(live, "leave/"))
    assert again.status_code == 403 and error_of(again)["code"] == "forbidden"

    assert api.bob.post(url(live, "end/")).status_code == 403
    ended = api.alice.post(url(live, "end/"))
    assert ended.status_code == 200 and ended.json()["status"] == "ended" and ended.json()["audience"] == 0
    for response in (api.carol.post(url(live, "join/")), api.alice.post(url(live, "end/"))):
        assert response.status_code == 409 and error_of(response)["code"] == "conflict"


def test_invites_let_users_into_an_invite_only_session(api, people, carol, other_user, user):
    session = session_create(actor=people.alice, title="Closed", visibility="invite")
    assert api.carol.post(url(session, "join/")).status_code == 403
    assert api.bob.post(url(session, "invites/"), {"user": carol.pk}, format="json").status_code == 403

    created = api.alice.post(url(session, "invites/"), {"user": carol.pk}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body == {
        "session": session.pk,
        "user": carol.pk,
        "invited_by": user.pk,
        "created_at": body["created_at"],
        "accepted_at": None,
    }
    again = api.alice.post(url(session, "invites/"), {"user": carol.pk}, format="json")
    assert again.status_code == 200 and again.json()["created_at"] == body["created_at"]

    assert [row["id"] for row in api.carol.get(SESSIONS).json()["results"]] == [session.pk]
    assert api.carol.post(url(session, "join/")).status_code == 200
    assert SessionInvite.objects.get(session=session, user=carol).accepted_at is not None

    for payload, field in (({}, "user"), ({"user": "carol"}, "user"), ({"user": user.pk}, "user")):
        assert fields_of(api.alice.post(url(session, "invites/"), payload, format="json")) == {field}
    for user_id in (other_user.pk, other_user.pk + 1000):
        missing = api.alice.post(url(session, "invites/"), {"user": user_id}, format="json")
        assert missing.status_code == 404 and error_of(missing)["message"] == "No such user in this tenant."


def test_patch_changes_visibility_and_radio(api, live):
    hidden = api.alice.patch(url(live), {"visibility": "invite"}, format="json")
    assert hidden.status_code == 200, hidden.content
    assert hidden.json()["visibility"] == "invite"
    radio = api.bob.patch(url(live), {"radio": True}, format="json")  # group mode: any member
    assert radio.status_code == 200 and radio.json()["playback"]["radio"] is True
    assert radio.json()["playback"]["action"] == "state"
    both = api.alice.patch(url(live), {"visibility": "public", "radio": False}, format="json").json()
    assert (both["visibility"], both["playback"]["radio"]) == ("public", False)

    # bob may switch the radio but not the visibility: both or nothing.
    refused = api.bob.patch(url(live), {"radio": True, "visibility": "invite"}, format="json")
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    live.refresh_from_db()
    assert (live.visibility, live.radio) == ("public", False)
    assert fields_of(api.alice.patch(url(live), {}, format="json")) == {"visibility"}
    assert fields_of(api.alice.patch(url(live), {"title": "New"}, format="json")) == {"title"}
    assert fields_of(api.alice.patch(url(live), {"visibility": "secret"}, format="json")) == {"visibility"}
    assert fields_of(api.alice.patch(url(live), {"radio": "loud"}, format="json")) == {"radio"}


def test_playback_commands_and_a_lost_race(api, people, live, tracks):
    enqueue(people.alice, live, *tracks[:3])
    played = api.bob.post(url(live, "playback/"), {"action": "play", "base_revision": 0}, format="json")
    assert played.status_code == 200, played.content
    state = played.json()
    assert (state["revision"], state["track"]["id"], state["playing"], state["action"]) == (
        1,
        tracks[0].pk,
        True,
        "play",
    )

    # alice acted on revision 0 too, but bob's command committed first.
    lost = api.alice.post(url(live, "playback/"), {"action": "pause", "base_revision": 0}, format="json")
    assert lost.status_code == 409
    error = error_of(lost)
    assert error["code"] == "conflict" and error["details"]["state"]["revision"] == 1
    volume = api.alice.post(
        url(live, "playback/"), {"action": "volume", "base_revision": 1, "volume": 30}, format="json"
    )
    assert volume.status_code == 200 and volume.json()["volume"] == 30

    for payload, field in (
        ({"action": "dance", "base_revision": 2}, "action"),
        ({"action": "play"}, "base_revision"),
        ({"action": "play", "base_revision": "latest"}, "base_revision"),
        ({"action": "volume", "base_revision": 2, "volume": 101}, "volume"),
        ({"action": "seek", "base_revision": 2, "position_ms": -1}, "position_ms"),
    ):
        assert fields_of(api.alice.post(url(live, "playback/"), payload, format="json")) == {field}, payload
    outsider = api.carol.post(url(live, "playback/"), {"action": "pause", "base_revision": 2}, format="json")
    assert outsider.status_code == 403  # not in the session

    dj = session_create(actor=people.alice, title="DJ", mode=SessionMode.DJ)
    session_join(actor=people.bob, session_id=dj.pk)
    enqueue(people.alice, dj, tracks[0])
    assert api.bob.post(url(dj, "playback/"), {"action": "play", "base_revision": 0}, format="json").status_code == 403


def test_queue_plays_and_recommendations(api, people, live, tracks, tenant):
    enqueue(people.alice, live, *tracks[:3])
    command(people.alice, live, "play")
    queue = api.bob.get(url(live, "queue/"))
    assert queue.status_code == 200, queue.content
    body = queue.json()
    assert (body["session"], body["queue"]) == (live.pk, live.queue_id)
    assert [item["track"]["id"] for item in body["items"]] == [tracks[1].pk, tracks[2].pk]
    assert set(body["items"][0]) == {"item_id", "track_id", "added_by", "added_at", "track"}

    assert api.bob.get(url(live, "plays/")).json()["results"] == []
    command(people.alice, live, "skip")
    command(people.alice, live, "skip")
    first = api.bob.get(url(live, "plays/"), {"page_size": 2}).json()
    second = api.bob.get(first["next"]).json()
    rows = first["results"] + second["results"]
    # Newest first: the second track (heard by alice and bob), then the first.
    assert [row["track"]["id"] for row in rows] == [tracks[1].pk] * 2 + [tracks[0].pk] * 2
    assert {row["user"]["username"] for row in rows} == {"alice", "bob"}
    assert set(rows[0]) == {"id", "user", "track", "played_at", "listened_ms"}
    assert second["next"] is None

    TrackSimilarity.objects.create(
        tenant=tenant, track=tracks[2], similar=tracks[4], kind=SimilarityKind.CO_OCCURRENCE, score=0.5, together=2
    )
    TrackSimilarity.objects.create(
        tenant=tenant, track=tracks[2], similar=tracks[0], kind=SimilarityKind.CO_OCCURRENCE, score=0.9, together=2
    )
    recommended = api.bob.get(url(live, "recommendations/"), {"limit": 5})
    assert recommended.status_code == 200, recommended.content
    assert recommended.json()["session"] == live.pk
    # tracks[0] goes with what plays, but the session played it already.
    assert [pick["track"]["id"] for pick in recommended.json()["suggestions"]] == [tracks[4].pk]
    bad = api.bob.get(url(live, "recommendations/"), {"limit": "many"})
    assert bad.status_code == 400 and "limit" in error_of(bad)["details"]["fields"]
    assert api.carol.get(url(live, "recommendations/")).status_code == 403  # not present


def test_the_listing_is_cursor_paginated_the_largest_audience_first(api, people):
    sessions = [session_create(actor=people.alice, title=f"S{n}") for n in range(3)]
    session_join(actor=people.bob, session_id=sessions[0].pk)
    session_join(actor=people.carol, session_id=sessions[0].pk)
    session_join(actor=people.carol, session_id=sessions[1].pk)

    first = api.carol.get(SESSIONS, {"page_size": 2}).json()
    second = api.carol.get(first["next"]).json()
    assert [row["id"] for row in first["results"]] == [sessions[0].pk, sessions[1].pk]
    assert [row["audience"] for row in first["results"]] == [3, 2]
    assert [row["id"] for row in second["results"]] == [sessions[2].pk]
    assert second["next"] is None


# --- Who may call ----------------------------------------------------------------------------


def test_no_credentials_is_401(live):
    for response in (APIClient().get(SESSIONS), APIClient().post(url(live, "join/"))):
        assert response.status_code == 401
        assert error_of(response)["code"] == "unauthenticated"


def test_api_clients_with_listening_read_read_and_never_write(tenant, people, live, tracks, carol):
    enqueue(people.alice, live, tracks[0])
    command(people.alice, live, "play")
    reader = key_client(tenant, ApiScope.LISTENING_READ)
    hidden = session_create(actor=people.carol, title="Closed", visibility="invite")

    assert [row["id"] for row in reader.get(SESSIONS).json()["results"]] == [live.pk, hidden.pk]
    detail = reader.get(url(live))
    assert detail.status_code == 200 and detail.json()["role"] is None and detail.json()["audience"] == 2
    assert reader.get(url(hidden)).status_code == 200
    for tail in ("queue/", "plays/", "recommendations/"):
        assert reader.get(url(live, tail)).status_code == 200, tail

    for response in (
        reader.post(SESSIONS, {"title": "Bot"}, format="json"),
        reader.patch(url(live), {"radio": True}, format="json"),
        reader.post(url(live, "join/")),
        reader.post(url(live, "leave/")),
        reader.post(url(live, "end/")),
        reader.post(url(live, "invites/"), {"user": carol.pk}, format="json"),
        reader.post(url(live, "playback/"), {"action": "pause", "base_revision": 1}, format="json"),
    ):
        assert response.status_code == 403, response.content
        assert error_of(response)["code"] == "forbidden"

    unscoped = key_client(tenant, ApiScope.PLAYLISTS_READ)
    for path in (SESSIONS, url(live), url(live, "queue/"), url(live, "plays/"), url(live, "recommendations/")):
        assert unscoped.get(path).status_code == 403, path


def test_another_tenants_session_is_404_everywhere(api, live, other_tenant, carol):
    foreign_reader = key_client(other_tenant, ApiScope.LISTENING_READ)
    missing = live.pk + 1000
    for session_id in (live.pk, missing):
        for response in (
            api.dave.get(url(session_id)),
            api.dave.patch(url(session_id), {"visibility": "invite"}, format="json"),
            api.dave.post(url(session_id, "join/")),
            api.dave.post(url(session_id, "leave/")),
            api.dave.post(url(session_id, "end/")),
            api.dave.post(url(session_id, "invites/"), {"user": carol.pk}, format="json"),
            api.dave.post(url(session_id, "playback/"), {"action": "play", "base_revision": 0}, format="json"),
            api.dave.get(url(session_id, "queue/")),
            api.dave.get(url(session_id, "plays/")),
            api.dave.get(url(session_id, "recommendations/")),
            foreign_reader.get(url(session_id)),
            foreign_reader.get(url(session_id, "plays/")),
        ):
            assert response.status_code == 404, response.content
            assert error_of(response) == {
                "code": "not_found",
                "message": "No such listening session.",
                "details": {},
            }
    assert api.dave.get(SESSIONS).json()["results"] == []
