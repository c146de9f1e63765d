"""The REST endpoints of a DJ session's audience, once through each, with real
JWTs and API keys: the wait list (join, leave, the turn, the host taking
someone off) and requests (list, create, vote, unvote, withdraw, accept,
reject); shapes, roles, API client scopes, tenants and errors. The rules
themselves are tested at the service level (test_djs.py, test_requests.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rest_framework.test import APIClient

from accounts.constants import ApiScope
from accounts.services.api_clients import api_client_create
from accounts.services.tokens import token_pair_issue
from audit.services import Actor
from listening.constants import SessionMode
from listening.services.sessions import session_create, session_join
from playlists.models import PlaylistItem
from tests.accounts.conftest import error_of

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user).access}")
    return client


def key_client(tenant, *scopes: str) -> APIClient:
    key = api_client_create(tenant=tenant, name="+".join(scopes) or "none", scopes=list(scopes), actor=Actor.system())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key.key}")
    return client


def url(session, tail: str = "") -> str:
    session_id = session if isinstance(session, int) else session.pk
    return f"/api/v1/sessions/{session_id}/{tail}"


@pytest.fixture
def api(user, bob, carol, other_user):
    return SimpleNamespace(
        alice=client_for(user), bob=client_for(bob), carol=client_for(carol), dave=client_for(other_user)
    )


@pytest.fixture
def club(people):
    session = session_create(actor=people.alice, title="Club", mode=SessionMode.DJ)
    for actor in (people.bob, people.carol):
        session_join(actor=actor, session_id=session.pk)
    return session


# --- The wait list ---------------------------------------------------------------------------


def test_the_wait_list_over_rest(api, people, club, tenant):
    joined = api.bob.post(url(club, "waitlist/"))
    assert joined.status_code == 200, joined.content
    assert joined.json() == {
        "session": club.pk,
        "dj": {"id": people.bob.user_id, "username": "bob"},
        "waitlist": [],
        "turn_tracks": 3,
        "turn_played": 0,
    }
    api.carol.post(url(club, "waitlist/"))
    listed = api.alice.get(url(club, "waitlist/")).json()
    assert listed["waitlist"] == [{"user": people.carol.user_id, "username": "carol"}]
    assert key_client(tenant, ApiScope.LISTENING_READ).get(url(club, "waitlist/")).json() == listed

    turn = api.alice.put(url(club, "waitlist/turn/"), {"tracks": 5}, format="json")
    assert turn.status_code == 200 and turn.json()["turn_tracks"] == 5
    left = api.bob.delete(url(club, "waitlist/"))
    assert left.status_code == 200 and left.json()["dj"]["username"] == "carol"
    removed = api.alice.delete(url(club, f"waitlist/{people.carol.user_id}/"))
    assert removed.status_code == 200 and removed.json()["dj"] is None


def test_wait_list_errors_over_rest(api, people, club, tenant):
    cases = [
        (api.alice.post(url(club, "waitlist/")), 403, "forbidden"),  # the host
        (api.bob.put(url(club, "waitlist/turn/"), {"tracks": 2}, format="json"), 403, "forbidden"),
        (api.alice.put(url(club, "waitlist/turn/"), {"tracks": 0}, format="json"), 400, "invalid"),
        (api.alice.put(url(club, "waitlist/turn/"), {"tracks": "many"}, format="json"), 400, "invalid"),
        (api.alice.delete(url(club, f"waitlist/{people.bob.user_id}/")), 404, "not_found"),  # not on it
        (api.dave.get(url(club, "waitlist/")), 404, "not_found"),
        (api.dave.post(url(club, "waitlist/")), 404, "not_found"),
        (key_client(tenant, ApiScope.LISTENING_READ).post(url(club, "waitlist/")), 403, "forbidden"),
        (key_client(tenant, ApiScope.PLAYLISTS_READ).get(url(club, "waitlist/")), 403, "forbidden"),
        (APIClient().get(url(club, "waitlist/")), 401, "unauthenticated"),
    ]
    for response, status, code in cases:
        assert (response.status_code, error_of(response)["code"]) == (status, code), response.content
    assert "tracks" in error_of(cases[2][0])["details"]["fields"]
    group = session_create(actor=people.alice, title="Together")
    session_join(actor=people.bob, session_id=group.pk)
    refused = api.bob.post(url(group, "waitlist/"))
    assert refused.status_code == 409 and error_of(refused)["code"] == "conflict"


# --- Requests -------------------------------------------------------------------------------


def test_requests_over_rest(api, people, club, tracks, tenant):
    created = api.bob.post(url(club, "requests/"), {"track": tracks[0].pk}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["track"]["id"] == tracks[0].pk and body["requested_by"]["username"] == "bob"
    assert (body["status"], body["votes"], body["voted"], body["created"]) == ("pending", 1, True, True)
    request = body["id"]
    again = api.carol.post(url(club, "requests/"), {"track": tracks[0].pk}, format="json")
    assert again.status_code == 200 and (again.json()["id"], again.json()["votes"]) == (request, 2)
    other = api.carol.post(url(club, "requests/"), {"track": tracks[1].pk}, format="json").json()["id"]

    unvoted = api.carol.delete(url(club, f"requests/{request}/vote/"))
    assert unvoted.status_code == 200 and (unvoted.json()["votes"], unvoted.json()["voted"]) == (1, False)
    voted = api.alice.post(url(club, f"requests/{other}/vote/"))
    assert voted.status_code == 200 and voted.json()["votes"] == 2

    listed = api.bob.get(url(club, "requests/")).json()
    assert [(row["id"], row["votes"], row["voted"]) for row in listed["requests"]] == [
        (other, 2, False),
        (request, 1, True),
    ]
    by_key = key_client(tenant, ApiScope.LISTENING_READ).get(url(club, "requests/"), {"limit": 1})
    assert by_key.status_code == 200
    assert [(row["id"], row["voted"]) for row in by_key.json()["requests"]] == [(other, False)]

    accepted = api.alice.post(url(club, f"requests/{other}/accept/"))
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert list(PlaylistItem.objects.filter(playlist_id=club.queue_id).values_list("track_id", flat=True)) == [
        tracks[1].pk
    ]
    withdrawn = api.bob.delete(url(club, f"requests/{request}/"))
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    third = api.bob.post(url(club, "requests/"), {"track": tracks[2].pk}, format="json").json()["id"]
    rejected = api.alice.post(url(club, f"requests/{third}/reject/"))
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert api.bob.get(url(club, "requests/")).json()["requests"] == []


def test_request_errors_over_rest(api, people, club, tracks, tenant):
    request = api.bob.post(url(club, "requests/"), {"track": tracks[0].pk}, format="json").json()["id"]
    api.alice.post(url(club, f"requests/{request}/accept/"))
    reader = key_client(tenant, ApiScope.LISTENING_READ)
    cases = [
        (api.bob.post(url(club, "requests/"), {"track": "first"}, format="json"), 400, "invalid"),
        (api.bob.post(url(club, "requests/"), {}, format="json"), 400, "invalid"),
        (api.bob.get(url(club, "requests/"), {"limit": 0}), 400, "invalid"),
        (api.bob.post(url(club, "requests/"), {"track": 10**9}, format="json"), 404, "not_found"),
        (api.bob.post(url(club, "requests/"), {"track": tracks[0].pk}, format="json"), 409, "conflict"),  # queued
        (api.alice.post(url(club, f"requests/{request}/reject/")), 409, "conflict"),  # decided
        (api.carol.post(url(club, f"requests/{request}/vote/")), 409, "conflict"),
        (api.carol.post(url(club, f"requests/{10**9}/accept/")), 403, "forbidden"),  # a listener
        (api.alice.post(url(club, f"requests/{10**9}/accept/")), 404, "not_found"),
        (api.dave.get(url(club, "requests/")), 404, "not_found"),
        (api.dave.post(url(club, "requests/"), {"track": tracks[1].pk}, format="json"), 404, "not_found"),
        (reader.post(url(club, "requests/"), {"track": tracks[1].pk}, format="json"), 403, "forbidden"),
        (reader.post(url(club, f"requests/{request}/accept/")), 403, "forbidden"),
    ]
    for response, status, code in cases:
        assert (response.status_code, error_of(response)["code"]) == (status, code), response.content
    assert "track" in error_of(cases[0][0])["details"]["fields"]
    assert "limit" in error_of(cases[2][0])["details"]["fields"]
    assert error_of(cases[5][0])["details"] == {"status": "accepted"}
