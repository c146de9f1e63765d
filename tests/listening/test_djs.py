"""DJ rotation at the service level: the wait list's rules, the deck and its
rights over playback and the queue, turns that rotate after N tracks (by skips
and by the server's advance), the deck yielding when its DJ goes, group mode
refused, tenants kept apart, and the ``session.djs`` frames on the session's
fan-out topic (real Redis pub/sub)."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

import pytest
import redis
from django.conf import settings

from accounts.services.tokens import principal_for_user
from listening.constants import MemberRole, SessionMode
from listening.events import SessionDjsEvent
from listening.models import DjWaitlistEntry, ListeningSession
from listening.selectors import waitlist_state
from listening.services import common, djs
from listening.services.djs import (
    waitlist_join,
    waitlist_leave,
    waitlist_remove,
    waitlist_turn_set,
)
from listening.services.playback import playback_advance, playback_vote_skip
from listening.services.sessions import (
    member_mute,
    member_remove,
    member_role_set,
    session_create,
    session_end,
    session_join,
    session_leave,
)
from playlists.constants import CollaboratorRole
from playlists.models import PlaylistCollaborator
from realtime.fanout import unpack
from realtime.groups import session_topic
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound
from tests.factories import UserFactory
from tests.listening.support import command, enqueue

pytestmark = pytest.mark.django_db


class SessionFrames:
    """The frames published to a session's fan-out topic, read from Redis pub/sub
    as every server process reads them."""

    def __init__(self, session: ListeningSession) -> None:
        self.client = redis.Redis.from_url(settings.REDIS_URL)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        topic = session_topic(tenant_id=session.tenant_id, session_id=session.pk)
        self.pubsub.subscribe(f"{settings.FANOUT_CHANNEL_PREFIX}.{topic}")
        self.pubsub.get_message(timeout=1.0)  # the subscription's confirmation

    def drain(self, kind: str, *, timeout: float = 0.3) -> list[dict]:
        """The contents of the ``kind`` frames published so far, in order."""
        contents = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message is None:
                continue
            frame = json.loads(unpack(message["data"].decode())[0])
            if frame["type"] == kind:
                contents.append(frame["content"])
        return contents

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def frames(settings):
    # A prefix of this test's own: pub/sub channels are shared by every Redis
    # database, and another test run may publish to a session with the same ids.
    settings.FANOUT_CHANNEL_PREFIX = f"test-fanout-{uuid.uuid4().hex}"
    opened: list[SessionFrames] = []

    def open_for(session: ListeningSession) -> SessionFrames:
        opened.append(SessionFrames(session))
        return opened[-1]

    yield open_for
    for listener in opened:
        listener.close()


@pytest.fixture
def dan(tenant):
    """A fourth member of alice's tenant."""
    return principal_for_user(UserFactory(username="dan", tenant=tenant))


@pytest.fixture
def club(people, tracks):
    """A DJ session hosted by alice with bob and carol in the audience and the
    five tracks queued."""
    session = session_create(actor=people.alice, title="Club", mode=SessionMode.DJ)
    for actor in (people.bob, people.carol):
        session_join(actor=actor, session_id=session.pk)
    enqueue(people.alice, session, *tracks)
    return session


def deck(session) -> tuple[int | None, list[int], int]:
    """(the DJ on deck, who waits in order, tracks of the turn so far)."""
    session.refresh_from_db()
    waiting = list(
        DjWaitlistEntry.objects.filter(session=session)
        .exclude(user_id=session.dj_id)
        .order_by("joined_at", "pk")
        .values_list("user_id", flat=True)
    )
    return session.dj_id, waiting, session.dj_turn_played


def queue_role_of(session, user_id) -> str | None:
    row = PlaylistCollaborator.objects.filter(playlist_id=session.queue_id, user_id=user_id).first()
    return row.role if row is not None else None


# --- The wait list -----------------------------------------------------------------------


def test_the_first_to_join_goes_on_deck_and_the_next_wait_in_order(people, club):
    joined = waitlist_join(actor=people.bob, session_id=club.pk)
    assert joined == {
        "session": club.pk,
        "dj": {"id": people.bob.user_id, "username": "bob"},
        "waitlist": [],
        "turn_tracks": 3,
        "turn_played": 0,
    }
    assert waitlist_join(actor=people.bob, session_id=club.pk) == joined  # idempotent
    waiting = waitlist_join(actor=people.carol, session_id=club.pk)
    assert waiting["dj"]["id"] == people.bob.user_id
    assert waiting["waitlist"] == [{"user": people.carol.user_id, "username": "carol"}]
    assert waitlist_state(actor=people.alice, session_id=club.pk) == waiting
    assert deck(club) == (people.bob.user_id, [people.carol.user_id], 0)


def test_who_may_join_the_wait_list(people, club, dan):
    with pytest.raises(Forbidden):
        waitlist_join(actor=people.alice, session_id=club.pk)  # the host has the decks anyway
    with pytest.raises(Forbidden):
        waitlist_join(actor=dan, session_id=club.pk)  # not in the session
    member_mute(actor=people.alice, session_id=club.pk, user_id=people.carol.user_id)
    with pytest.raises(Forbidden):
        waitlist_join(actor=people.carol, session_id=club.pk)
    with pytest.raises(NotFound):
        waitlist_join(actor=people.dave, session_id=club.pk)  # another tenant's session
    with pytest.raises(NotFound):
        waitlist_state(actor=people.dave, session_id=club.pk)
    with pytest.raises(Forbidden):
        waitlist_state(actor=dan, session_id=club.pk)  # reading takes being there
    session_end(actor=people.alice, session_id=club.pk)
    with pytest.raises(Conflict):
        waitlist_join(actor=people.bob, session_id=club.pk)


def test_group_sessions_have_no_wait_list(people):
    group = session_create(actor=people.alice, title="Together")
    session_join(actor=people.bob, session_id=group.pk)
    for call in (
        lambda: waitlist_join(actor=people.bob, session_id=group.pk),
        lambda: waitlist_leave(actor=people.bob, session_id=group.pk),
        lambda: waitlist_turn_set(actor=people.alice, session_id=group.pk, tracks=2),
        lambda: waitlist_remove(actor=people.alice, session_id=group.pk, user_id=people.bob.user_id),
        lambda: waitlist_state(actor=people.bob, session_id=group.pk),
    ):
        with pytest.raises(Conflict) as caught:
            call()
        assert caught.value.message == "Only DJ sessions have a wait list."
    # Leaving, muting, skipping in group mode never touch a deck.
    member_mute(actor=people.alice, session_id=group.pk, user_id=people.bob.user_id)
    assert ListeningSession.objects.get(pk=group.pk).dj_id is None


def test_the_wait_list_is_bounded(people, club, dan, monkeypatch):
    monkeypatch.setattr(djs, "DJ_WAITLIST_MAX", 2)
    session_join(actor=dan, session_id=club.pk)
    waitlist_join(actor=people.bob, session_id=club.pk)
    waitlist_join(actor=people.carol, session_id=club.pk)
    with pytest.raises(Conflict) as caught:
        waitlist_join(actor=dan, session_id=club.pk)
    assert caught.value.details == {"max_waitlist": 2}
    waitlist_leave(actor=people.carol, session_id=club.pk)
    assert waitlist_join(actor=dan, session_id=club.pk)["waitlist"][0]["username"] == "dan"


def test_the_turn_length_is_the_hosts_and_bounded(people, club):
    for bad in (0, 21, "3", True, None, 2.5):
        with pytest.raises(Invalid) as caught:
            waitlist_turn_set(actor=people.alice, session_id=club.pk, tracks=bad)
        assert "tracks" in caught.value.details["fields"]
    with pytest.raises(Forbidden):
        waitlist_turn_set(actor=people.bob, session_id=club.pk, tracks=2)
    with pytest.raises(NotFound):
        waitlist_turn_set(actor=people.dave, session_id=club.pk, tracks=2)
    assert waitlist_turn_set(actor=people.alice, session_id=club.pk, tracks=20)["turn_tracks"] == 20
    assert waitlist_turn_set(actor=people.alice, session_id=club.pk, tracks=1)["turn_tracks"] == 1


# --- The deck's rights ---------------------------------------------------------------------


def test_the_dj_on_deck_controls_playback_and_edits_the_queue_while_there(people, club, tracks):
    assert queue_role_of(club, people.bob.user_id) == CollaboratorRole.VIEWER
    with pytest.raises(Forbidden):
        command(people.bob, club, "play")
    waitlist_join(actor=people.bob, session_id=club.pk)
    waitlist_join(actor=people.carol, session_id=club.pk)
    assert queue_role_of(club, people.bob.user_id) == CollaboratorRole.EDITOR
    assert command(people.bob, club, "play")["playing"]
    enqueue(people.bob, club, tracks[0])  # edits the queue like a co-DJ
    with pytest.raises(Forbidden):
        command(people.carol, club, "pause")  # waiting is not playing
    with pytest.raises(Forbidden):
        enqueue(people.carol, club, tracks[1])

    waitlist_leave(actor=people.bob, session_id=club.pk)
    assert deck(club) == (people.carol.user_id, [], 0)
    assert queue_role_of(club, people.bob.user_id) == CollaboratorRole.VIEWER
    assert queue_role_of(club, people.carol.user_id) == CollaboratorRole.EDITOR
    with pytest.raises(Forbidden):
        command(people.bob, club, "pause")
    with pytest.raises(Forbidden):
        enqueue(people.bob, club, tracks[1])
    assert not command(people.carol, club, "pause")["playing"]


def test_a_co_dj_on_deck_keeps_the_role_after_the_turn(people, club):
    member_role_set(actor=people.alice, session_id=club.pk, user_id=people.bob.user_id, role=MemberRole.CO_DJ)
    waitlist_join(actor=people.bob, session_id=club.pk)
    waitlist_leave(actor=people.bob, session_id=club.pk)
    assert queue_role_of(club, people.bob.user_id) == CollaboratorRole.EDITOR
    assert command(people.bob, club, "play")["playing"]


# --- Rotation -------------------------------------------------------------------------------


def test_turns_rotate_after_n_tracks_skipped(people, club, tracks):
    waitlist_turn_set(actor=people.alice, session_id=club.pk, tracks=2)
    waitlist_join(actor=people.bob, session_id=club.pk)
    assert deck(club) == (people.bob.user_id, [], 0)
    command(people.bob, club, "play")  # the first track of bob's turn
    assert deck(club) == (people.bob.user_id, [], 1)
    waitlist_join(actor=people.carol, session_id=club.pk)
    command(people.bob, club, "skip")  # the second: the turn is full
    assert deck(club) == (people.bob.user_id, [people.carol.user_id], 2)
    command(people.bob, club, "skip")  # the third comes on: carol's first
    club.refresh_from_db()
    assert club.track_id == tracks[2].pk
    assert deck(club) == (people.carol.user_id, [people.bob.user_id], 1)
    with pytest.raises(Forbidden):
        command(people.bob, club, "skip")
    command(people.carol, club, "skip")
    command(people.carol, club, "skip")  # carol's turn is over: bob again
    assert deck(club) == (people.bob.user_id, [people.carol.user_id], 1)


def test_a_dj_nobody_waits_for_plays_on_and_a_vote_skip_counts_too(people, club):
    waitlist_turn_set(actor=people.alice, session_id=club.pk, tracks=1)
    waitlist_join(actor=people.bob, session_id=club.pk)
    command(people.bob, club, "play")
    command(people.bob, club, "skip")
    command(people.bob, club, "skip")
    assert deck(club) == (people.bob.user_id, [], 1)  # nobody waits: bob plays on, counted to the full turn
    waitlist_join(actor=people.carol, session_id=club.pk)
    # Three present, so two votes skip; the track change rotates as a skip would.
    playback_vote_skip(actor=people.carol, session_id=club.pk)
    playback_vote_skip(actor=people.alice, session_id=club.pk)
    assert deck(club) == (people.carol.user_id, [people.bob.user_id], 1)


def test_turns_rotate_at_the_servers_track_end(people, club, tracks):
    waitlist_turn_set(actor=people.alice, session_id=club.pk, tracks=1)
    waitlist_join(actor=people.bob, session_id=club.pk)
    waitlist_join(actor=people.carol, session_id=club.pk)
    command(people.bob, club, "play")
    assert deck(club) == (people.bob.user_id, [people.carol.user_id], 1)
    club.refresh_from_db()
    ListeningSession.objects.filter(pk=club.pk).update(anchor_ms=common.now_ms() - tracks[0].duration_ms - 50)
    assert playback_advance(session_id=club.pk, revision=club.playback_revision)
    club.refresh_from_db()
    assert club.track_id == tracks[1].pk
    assert deck(club) == (people.carol.user_id, [people.bob.user_id], 1)
    assert queue_role_of(club, people.carol.user_id) == CollaboratorRole.EDITOR
    assert queue_role_of(club, people.bob.user_id) == CollaboratorRole.VIEWER


def test_a_stop_on_an_empty_queue_is_no_track_of_the_turn(people, tracks):
    session = session_create(actor=people.alice, title="Short set", mode=SessionMode.DJ)
    session_join(actor=people.bob, session_id=session.pk)
    enqueue(people.alice, session, tracks[0])
    waitlist_join(actor=people.bob, session_id=session.pk)
    command(people.bob, session, "play")
    command(people.bob, session, "skip")  # the queue ran out: playback stops
    session.refresh_from_db()
    assert session.track is None
    assert deck(session) == (people.bob.user_id, [], 1)


# --- The deck yields --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["leave_list", "leave_session", "muted", "removed", "taken_off"])
def test_the_deck_yields_at_once_when_its_dj_goes(people, club, dan, how):
    session_join(actor=dan, session_id=club.pk)
    for actor in (people.bob, people.carol, dan):
        waitlist_join(actor=actor, session_id=club.pk)
    command(people.bob, club, "play")
    assert deck(club) == (people.bob.user_id, [people.carol.user_id, dan.user_id], 1)
    if how == "leave_list":
        waitlist_leave(actor=people.bob, session_id=club.pk)
    elif how == "leave_session":
        session_leave(actor=people.bob, session_id=club.pk)
    elif how == "muted":
        member_mute(actor=people.alice, session_id=club.pk, user_id=people.bob.user_id)
    elif how == "removed":
        member_remove(actor=people.alice, session_id=club.pk, user_id=people.bob.user_id)
    else:
        waitlist_remove(actor=people.alice, session_id=club.pk, user_id=people.bob.user_id)
    # The next waiting goes on deck with a fresh turn; the one gone is off the list.
    assert deck(club) == (people.carol.user_id, [dan.user_id], 0)
    assert queue_role_of(club, people.carol.user_id) == CollaboratorRole.EDITOR
    assert queue_role_of(club, people.bob.user_id) in (None, CollaboratorRole.VIEWER)
    with pytest.raises(Forbidden):
        command(people.bob, club, "pause")


def test_waiting_members_who_go_leave_the_list_and_the_last_deck_empties(people, club):
    waitlist_join(actor=people.bob, session_id=club.pk)
    waitlist_join(actor=people.carol, session_id=club.pk)
    session_leave(actor=people.carol, session_id=club.pk)
    assert deck(club) == (people.bob.user_id, [], 0)
    assert waitlist_leave(actor=people.carol, session_id=club.pk)["waitlist"] == []  # idempotent
    waitlist_leave(actor=people.bob, session_id=club.pk)
    assert deck(club) == (None, [], 0)
    # Back in the session, carol joins the list afresh and is on deck at once.
    session_join(actor=people.carol, session_id=club.pk)
    assert waitlist_join(actor=people.carol, session_id=club.pk)["dj"]["id"] == people.carol.user_id


def test_the_host_takes_members_off_the_list(people, club):
    waitlist_join(actor=people.bob, session_id=club.pk)
    waitlist_join(actor=people.carol, session_id=club.pk)
    with pytest.raises(Forbidden):
        waitlist_remove(actor=people.bob, session_id=club.pk, user_id=people.carol.user_id)
    for bad in ("carol", True, None):
        with pytest.raises(Invalid) as caught:
            waitlist_remove(actor=people.alice, session_id=club.pk, user_id=bad)
        assert "user" in caught.value.details["fields"]
    with pytest.raises(NotFound):
        waitlist_remove(actor=people.alice, session_id=club.pk, user_id=people.dave.user_id)  # another tenant's
    with pytest.raises(NotFound):
        waitlist_remove(actor=people.dave, session_id=club.pk, user_id=people.carol.user_id)
    assert waitlist_remove(actor=people.alice, session_id=club.pk, user_id=people.carol.user_id)["waitlist"] == []
    assert deck(club) == (people.bob.user_id, [], 0)


def test_a_dj_on_deck_who_becomes_host_leaves_the_rotation(people, club):
    waitlist_join(actor=people.bob, session_id=club.pk)
    waitlist_join(actor=people.carol, session_id=club.pk)
    session_leave(actor=people.alice, session_id=club.pk)  # bob, present longest, hosts now
    club.refresh_from_db()
    assert club.host_id == people.bob.user_id
    assert deck(club) == (people.carol.user_id, [], 0)


# --- Events -------------------------------------------------------------------------------------


@pytest.mark.redis
def test_each_change_is_broadcast_as_session_djs(people, club, frames, django_capture_on_commit_callbacks):
    heard = frames(club)
    with django_capture_on_commit_callbacks(execute=True):
        waitlist_turn_set(actor=people.alice, session_id=club.pk, tracks=1)
    with django_capture_on_commit_callbacks(execute=True):
        waitlist_join(actor=people.bob, session_id=club.pk)
    with django_capture_on_commit_callbacks(execute=True):
        waitlist_join(actor=people.bob, session_id=club.pk)  # no change, no frame
        waitlist_join(actor=people.carol, session_id=club.pk)
    with django_capture_on_commit_callbacks(execute=True):
        command(people.bob, club, "play")
    with django_capture_on_commit_callbacks(execute=True):
        command(people.bob, club, "skip")
    with django_capture_on_commit_callbacks(execute=True):
        session_leave(actor=people.carol, session_id=club.pk)
    contents = heard.drain("session.djs")
    assert all(set(content) == {field.name for field in dataclasses.fields(SessionDjsEvent)} for content in contents)
    bob = {"id": people.bob.user_id, "username": "bob"}
    carol = {"id": people.carol.user_id, "username": "carol"}
    assert [
        (c["dj"], [w["username"] for w in c["waitlist"]], c["turn_tracks"], c["turn_played"]) for c in contents
    ] == [
        (None, [], 1, 0),  # the turn's length
        (bob, [], 1, 0),  # bob on deck
        (bob, ["carol"], 1, 0),  # carol waits
        (bob, ["carol"], 1, 1),  # bob's first track
        (carol, ["bob"], 1, 1),  # rotated: carol's first track
        (bob, [], 1, 0),  # carol left: bob's turn again
    ]
    assert all(content["session"] == club.pk for content in contents)


@pytest.mark.redis
def test_a_rolled_back_command_broadcasts_nothing(people, tracks, frames, django_capture_on_commit_callbacks):
    session = session_create(actor=people.alice, title="Empty", mode=SessionMode.DJ)
    session_join(actor=people.bob, session_id=session.pk)
    waitlist_join(actor=people.bob, session_id=session.pk)
    heard = frames(session)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Conflict):
        command(people.bob, session, "play")  # an empty queue
    assert heard.drain("session.djs") == []
    assert deck(session) == (people.bob.user_id, [], 0)
