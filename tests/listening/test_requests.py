"""Audience requests at the service level: create, vote, withdraw, accept and
reject; a second request for a track is a vote; the limits; who decides;
accepted tracks landing in the queue in order; tenants kept apart; votes
counted right under concurrency (two threads, two transactions); and the
``session.requests`` frames on the session's fan-out topic."""

from __future__ import annotations

import dataclasses
import threading
import uuid

import pytest
from django.db import connection

from accounts.services.tokens import principal_for_user
from listening.constants import MemberRole, RequestStatus, SessionMode
from listening.events import SessionRequestsEvent
from listening.models import RequestVote, TrackRequest
from listening.selectors import requests_pending
from listening.services import requests as requests_service
from listening.services.djs import waitlist_join
from listening.services.requests import (
    request_accept,
    request_create,
    request_reject,
    request_vote,
    request_withdraw,
)
from listening.services.sessions import member_mute, member_role_set, session_create, session_end, session_join
from playlists.models import PlaylistItem, Track
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound
from tests.factories import UserFactory
from tests.listening.test_djs import SessionFrames, command, enqueue

pytestmark = pytest.mark.django_db


@pytest.fixture
def club(people):
    """A DJ session hosted by alice with bob and carol in the audience, nothing queued."""
    session = session_create(actor=people.alice, title="Club", mode=SessionMode.DJ)
    for actor in (people.bob, people.carol):
        session_join(actor=actor, session_id=session.pk)
    return session


def queued(session) -> list[int]:
    return list(
        PlaylistItem.objects.filter(playlist_id=session.queue_id)
        .order_by("position")
        .values_list("track_id", flat=True)
    )


def ask(actor, session, track) -> dict:
    return request_create(actor=actor, session_id=session.pk, track_id=track.pk)


# --- Creating and voting -------------------------------------------------------------------


def test_a_request_for_a_pending_track_is_a_vote_on_it(people, club, tracks):
    created = ask(people.bob, club, tracks[0])
    assert created == {
        "id": created["id"],
        "track": {
            "id": tracks[0].pk,
            "uri": tracks[0].uri,
            "title": "Tune 0",
            "artist": "Band",
            "album": "",
            "duration_ms": 60_000,
        },
        "requested_by": {"id": people.bob.user_id, "username": "bob"},
        "status": "pending",
        "votes": 1,  # the author's own
        "voted": True,
        "created": True,
    }
    again = ask(people.carol, club, tracks[0])
    assert (again["id"], again["votes"], again["created"]) == (created["id"], 2, False)
    assert ask(people.carol, club, tracks[0])["votes"] == 2  # idempotent
    assert ask(people.bob, club, tracks[0])["votes"] == 2
    assert TrackRequest.objects.filter(session=club).count() == 1
    assert RequestVote.objects.filter(request_id=created["id"]).count() == 2


def test_votes_come_and_go_once_per_member(people, club, tracks):
    request = ask(people.bob, club, tracks[0])["id"]
    vote = request_vote(actor=people.carol, session_id=club.pk, request_id=request)
    assert (vote["votes"], vote["voted"]) == (2, True)
    assert request_vote(actor=people.carol, session_id=club.pk, request_id=request)["votes"] == 2
    assert request_vote(actor=people.alice, session_id=club.pk, request_id=request)["votes"] == 3
    unvoted = request_vote(actor=people.carol, session_id=club.pk, request_id=request, vote=False)
    assert (unvoted["votes"], unvoted["voted"]) == (2, False)
    assert request_vote(actor=people.carol, session_id=club.pk, request_id=request, vote=False)["votes"] == 2
    # Its author may take back their own vote too.
    assert request_vote(actor=people.bob, session_id=club.pk, request_id=request, vote=False)["votes"] == 1
    assert TrackRequest.objects.get(pk=request).votes == RequestVote.objects.filter(request_id=request).count() == 1


def test_the_pending_list_orders_by_votes_then_age_and_says_what_i_voted(people, club, tracks):
    first = ask(people.bob, club, tracks[0])["id"]
    second = ask(people.carol, club, tracks[1])["id"]
    third = ask(people.bob, club, tracks[2])["id"]
    request_vote(actor=people.alice, session_id=club.pk, request_id=third)
    listed = requests_pending(actor=people.carol, session_id=club.pk)
    assert listed["session"] == club.pk
    assert [(row["id"], row["votes"], row["voted"]) for row in listed["requests"]] == [
        (third, 2, False),
        (first, 1, False),
        (second, 1, True),
    ]
    assert [row["id"] for row in requests_pending(actor=people.bob, session_id=club.pk, limit=1)["requests"]] == [third]
    with pytest.raises(Invalid) as caught:
        requests_pending(actor=people.bob, session_id=club.pk, limit="all")
    assert "limit" in caught.value.details["fields"]
    request_reject(actor=people.alice, session_id=club.pk, request_id=third)
    assert [row["id"] for row in requests_pending(actor=people.bob, session_id=club.pk)["requests"]] == [first, second]


# --- Rules and limits ------------------------------------------------------------------------


def test_what_cannot_be_requested(people, club, tracks, other_tenant):
    foreign = Track.objects.create(tenant=other_tenant, uri="test:x", title="X", artist="Y", duration_ms=1000)
    for bad in ("1", True, None, 0, -3, 1.5):
        with pytest.raises(Invalid) as caught:
            request_create(actor=people.bob, session_id=club.pk, track_id=bad)
        assert "track" in caught.value.details["fields"]
    with pytest.raises(NotFound):
        ask(people.bob, club, foreign)  # another tenant's track: as if it did not exist
    with pytest.raises(NotFound):
        request_create(actor=people.bob, session_id=club.pk, track_id=10**9)
    enqueue(people.alice, club, tracks[0], tracks[1])
    with pytest.raises(Conflict) as caught:
        ask(people.bob, club, tracks[1])
    assert "queue" in caught.value.message
    command(people.alice, club, "play")  # tracks[0] plays, tracks[1] is queued
    with pytest.raises(Conflict) as caught:
        ask(people.bob, club, tracks[0])
    assert "playing" in caught.value.message


def test_who_may_request_and_vote(people, club, tracks, tenant):
    stranger = principal_for_user(UserFactory(username="erin", tenant=tenant))
    with pytest.raises(Forbidden):
        ask(stranger, club, tracks[0])  # not in the session
    with pytest.raises(NotFound):
        ask(people.dave, club, tracks[0])  # another tenant's session
    request = ask(people.bob, club, tracks[0])["id"]
    member_mute(actor=people.alice, session_id=club.pk, user_id=people.carol.user_id)
    with pytest.raises(Forbidden):
        ask(people.carol, club, tracks[1])
    with pytest.raises(Forbidden):
        request_vote(actor=people.carol, session_id=club.pk, request_id=request)
    with pytest.raises(Forbidden):
        request_vote(actor=stranger, session_id=club.pk, request_id=request)
    with pytest.raises(NotFound):
        request_vote(actor=people.dave, session_id=club.pk, request_id=request)
    # The host and DJs may ask too: a co-DJ puts a track to the room's vote.
    assert ask(people.alice, club, tracks[1])["created"]
    with pytest.raises(Invalid) as caught:
        request_vote(actor=people.bob, session_id=club.pk, request_id=request, vote="yes")
    assert "vote" in caught.value.details["fields"]
    with pytest.raises(Invalid) as caught:
        request_vote(actor=people.bob, session_id=club.pk, request_id="first")
    assert "request" in caught.value.details["fields"]
    with pytest.raises(NotFound):
        request_vote(actor=people.bob, session_id=club.pk, request_id=10**9)


def test_requests_are_for_dj_sessions_only(people, tracks):
    group = session_create(actor=people.alice, title="Together")
    session_join(actor=people.bob, session_id=group.pk)
    for call in (
        lambda: ask(people.bob, group, tracks[0]),
        lambda: request_vote(actor=people.bob, session_id=group.pk, request_id=1),
        lambda: request_withdraw(actor=people.bob, session_id=group.pk, request_id=1),
        lambda: request_accept(actor=people.alice, session_id=group.pk, request_id=1),
        lambda: request_reject(actor=people.alice, session_id=group.pk, request_id=1),
        lambda: requests_pending(actor=people.bob, session_id=group.pk),
    ):
        with pytest.raises(Conflict) as caught:
            call()
        assert caught.value.message == "Only DJ sessions take requests."


def test_pending_requests_are_limited_per_member_and_per_session(people, club, tracks, monkeypatch):
    for track in tracks[:3]:
        ask(people.bob, club, track)
    with pytest.raises(Conflict) as caught:
        ask(people.bob, club, tracks[3])
    assert caught.value.details == {"max_pending": 3}
    # A vote is no new request: bob still votes for carol's.
    carol = ask(people.carol, club, tracks[3])
    assert ask(people.bob, club, tracks[3])["votes"] == 2
    # A decided request frees its place.
    request_withdraw(actor=people.carol, session_id=club.pk, request_id=carol["id"])
    mine = requests_pending(actor=people.bob, session_id=club.pk)["requests"]
    request_reject(actor=people.alice, session_id=club.pk, request_id=mine[0]["id"])
    assert ask(people.bob, club, tracks[4])["created"]

    # Pending now: bob's tracks 1, 2 and 4. A session of three is full.
    monkeypatch.setattr(requests_service, "REQUESTS_PENDING_PER_SESSION", 3)
    with pytest.raises(Conflict) as caught:
        ask(people.carol, club, tracks[3])
    assert caught.value.details == {"max_pending": 3}


def test_an_ended_session_takes_no_requests(people, club, tracks):
    request = ask(people.bob, club, tracks[0])["id"]
    session_end(actor=people.alice, session_id=club.pk)
    with pytest.raises(Conflict):
        ask(people.bob, club, tracks[1])
    with pytest.raises(Conflict):
        request_accept(actor=people.alice, session_id=club.pk, request_id=request)


# --- Deciding --------------------------------------------------------------------------------


def test_accepted_requests_join_the_end_of_the_queue_in_order(people, club, tracks):
    enqueue(people.alice, club, tracks[0])
    second = ask(people.bob, club, tracks[1])["id"]
    third = ask(people.carol, club, tracks[2])["id"]
    accepted = request_accept(actor=people.alice, session_id=club.pk, request_id=second)
    assert (accepted["status"], accepted["voted"]) == ("accepted", False)
    request_accept(actor=people.alice, session_id=club.pk, request_id=third)
    assert queued(club) == [tracks[0].pk, tracks[1].pk, tracks[2].pk]
    row = TrackRequest.objects.get(pk=second)
    assert (row.status, row.decided_by_id) == (RequestStatus.ACCEPTED, people.alice.user_id)
    assert row.decided_at is not None
    with pytest.raises(Conflict) as caught:
        request_accept(actor=people.alice, session_id=club.pk, request_id=second)  # decided already
    assert caught.value.details == {"status": "accepted"}
    with pytest.raises(Conflict):
        request_reject(actor=people.alice, session_id=club.pk, request_id=second)
    assert queued(club) == [tracks[0].pk, tracks[1].pk, tracks[2].pk]  # once
    with pytest.raises(Conflict):
        ask(people.bob, club, tracks[1])  # it is queued now


def test_who_decides_the_host_co_djs_and_the_dj_on_deck(people, club, tracks, tenant):
    dan = principal_for_user(UserFactory(username="dan", tenant=tenant))
    session_join(actor=dan, session_id=club.pk)
    first = ask(people.bob, club, tracks[0])["id"]
    second = ask(people.bob, club, tracks[1])["id"]
    third = ask(people.carol, club, tracks[2])["id"]
    with pytest.raises(Forbidden):
        request_accept(actor=people.carol, session_id=club.pk, request_id=first)  # a listener
    with pytest.raises(NotFound):
        request_accept(actor=people.dave, session_id=club.pk, request_id=first)
    waitlist_join(actor=dan, session_id=club.pk)  # on deck
    assert request_accept(actor=dan, session_id=club.pk, request_id=first)["status"] == "accepted"
    member_role_set(actor=people.alice, session_id=club.pk, user_id=people.carol.user_id, role=MemberRole.CO_DJ)
    assert request_reject(actor=people.carol, session_id=club.pk, request_id=second)["status"] == "rejected"
    assert TrackRequest.objects.get(pk=second).decided_by_id == people.carol.user_id
    member_mute(actor=people.alice, session_id=club.pk, user_id=people.carol.user_id)
    with pytest.raises(Forbidden):
        request_reject(actor=people.carol, session_id=club.pk, request_id=third)  # muted
    assert queued(club) == [tracks[0].pk]


def test_only_its_author_withdraws_a_request(people, club, tracks):
    request = ask(people.bob, club, tracks[0])["id"]
    with pytest.raises(Forbidden):
        request_withdraw(actor=people.carol, session_id=club.pk, request_id=request)
    with pytest.raises(Forbidden):
        request_withdraw(actor=people.alice, session_id=club.pk, request_id=request)
    withdrawn = request_withdraw(actor=people.bob, session_id=club.pk, request_id=request)
    assert (withdrawn["status"], withdrawn["voted"]) == ("withdrawn", True)
    with pytest.raises(Conflict):
        request_withdraw(actor=people.bob, session_id=club.pk, request_id=request)
    with pytest.raises(Conflict):
        request_vote(actor=people.carol, session_id=club.pk, request_id=request)
    # The track may be asked for again: a new request.
    again = ask(people.carol, club, tracks[0])
    assert again["created"] and again["id"] != request


def test_a_request_of_another_session_is_not_found(people, club, tracks):
    other = session_create(actor=people.carol, title="Next door", mode=SessionMode.DJ)
    theirs = ask(people.carol, other, tracks[0])["id"]
    with pytest.raises(NotFound):
        request_accept(actor=people.alice, session_id=club.pk, request_id=theirs)
    with pytest.raises(NotFound):
        request_vote(actor=people.bob, session_id=club.pk, request_id=theirs)


# --- Events ---------------------------------------------------------------------------------


@pytest.mark.redis
def test_each_change_is_one_small_session_requests_frame(
    people, club, tracks, settings, django_capture_on_commit_callbacks
):
    # A prefix of this test's own: pub/sub channels are shared by every Redis database.
    settings.FANOUT_CHANNEL_PREFIX = f"test-fanout-{uuid.uuid4().hex}"
    heard = SessionFrames(club)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            request = ask(people.bob, club, tracks[0])["id"]
        with django_capture_on_commit_callbacks(execute=True):
            ask(people.carol, club, tracks[0])  # a vote
            ask(people.carol, club, tracks[0])  # no change, no frame
        with django_capture_on_commit_callbacks(execute=True):
            request_accept(actor=people.alice, session_id=club.pk, request_id=request)
        contents = heard.drain("session.requests")
    finally:
        heard.close()
    assert all(set(c) == {f.name for f in dataclasses.fields(SessionRequestsEvent)} for c in contents)
    assert all(c["session"] == club.pk and c["request"]["id"] == request for c in contents)
    assert [(c["request"]["status"], c["request"]["votes"]) for c in contents] == [
        ("pending", 1),
        ("pending", 2),
        ("accepted", 2),
    ]
    assert set(contents[0]["request"]) == {"id", "track", "requested_by", "status", "votes"}


# --- Concurrency -----------------------------------------------------------------------------


def _together(*calls) -> list[BaseException | None]:
    """Run each call in a thread of its own (its own connection and transaction),
    released at the same moment; the error each raised, if any."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException | None] = [None] * len(calls)

    def run(index: int, call) -> None:
        try:
            barrier.wait()
            call()
        except BaseException as exc:  # reported to the test
            errors[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_votes_and_requests_are_all_counted(tenant):
    alice, *audience = (
        principal_for_user(UserFactory(username=name, tenant=tenant)) for name in ("alice", "b1", "b2", "b3", "b4")
    )
    track, other = (
        Track.objects.create(tenant=tenant, uri=f"test:c:{n}", title=f"C{n}", artist="Z", duration_ms=1000)
        for n in range(2)
    )
    session = session_create(actor=alice, title="Rush", mode=SessionMode.DJ)
    for actor in audience:
        session_join(actor=actor, session_id=session.pk)
    # Four ask for the same track at once: one request, four votes.
    assert _together(*(lambda actor=actor: ask(actor, session, track) for actor in audience)) == [None] * 4
    (request,) = TrackRequest.objects.filter(session=session)
    assert request.votes == RequestVote.objects.filter(request=request).count() == 4
    # Votes and unvotes at once on another request.
    other_request = ask(audience[0], session, other)["id"]
    votes = [
        lambda: request_vote(actor=audience[1], session_id=session.pk, request_id=other_request),
        lambda: request_vote(actor=audience[2], session_id=session.pk, request_id=other_request),
        lambda: request_vote(actor=audience[0], session_id=session.pk, request_id=other_request, vote=False),
        lambda: request_vote(actor=alice, session_id=session.pk, request_id=other_request),
    ]
    assert _together(*votes) == [None] * 4
    counted = TrackRequest.objects.get(pk=other_request)
    assert counted.votes == RequestVote.objects.filter(request=counted).count() == 3
