"""Nobody stalls the room, at the service level: a start waits for members whose
player is buffering, at most LISTENING_START_WAIT_MS, then goes on without the
late ones, who place themselves from the state; what ends, prolongs or ignores
a wait; floods of reports that write nothing; and when the jobs are scheduled."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from prometheus_client import REGISTRY

from listening.constants import BUFFERING_FLIP_MIN_MS, PLAYBACK_LEAD_MS, WAITING_MEMBERS_LISTED, SessionMode
from listening.models import ListeningSession, SessionMember
from listening.services import common
from listening.services.playback import (
    playback_advance,
    playback_buffering,
    playback_command,
    playback_vote_skip,
    playback_wait_end,
)
from listening.services.sessions import (
    member_mute,
    member_remove,
    session_create,
    session_end,
    session_join,
    session_leave,
)
from realtime.client.playback import position_at
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited
from tests.listening.support import command, enqueue

pytestmark = pytest.mark.django_db

WAIT_MS = 5000


@pytest.fixture(autouse=True)
def _wait(settings):
    settings.LISTENING_START_WAIT_MS = WAIT_MS


@pytest.fixture
def timers(settings):
    """The embedded default's scheduling (a timer thread per job), so a test sees
    what was scheduled for when; every such timer is cancelled after the test."""
    settings.CELERY_TASK_ALWAYS_EAGER = True

    def scheduled(session, kind: str) -> dict[int, float]:
        prefix = f"playback-{kind}-{session.pk}-"
        return {
            int(thread.name.removeprefix(prefix)): thread.interval
            for thread in threading.enumerate()
            if thread.name.startswith(prefix)
        }

    yield scheduled
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and thread.name.startswith("playback-"):
            thread.cancel()


def report(actor, session, buffering, **extra):
    return playback_buffering(actor=actor, session_id=session.pk, buffering=buffering, **extra)


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
def room(people, tracks):
    """A group session: alice hosts, bob and carol listen; three tracks queued."""
    session = session_create(actor=people.alice, title="Room", mode=SessionMode.GROUP)
    for actor in (people.bob, people.carol):
        session_join(actor=actor, session_id=session.pk)
    enqueue(people.alice, session, *tracks[:3])
    return session


def test_with_nobody_buffering_a_start_is_immediate(people, room):
    before = common.now_ms()
    state = command(people.alice, room, "play")
    assert state["playing"] and state["waiting"] is None and state["action"] == "play"
    assert before + PLAYBACK_LEAD_MS <= state["anchor_ms"] <= common.now_ms() + PLAYBACK_LEAD_MS


def test_a_buffering_member_holds_a_start_and_ready_releases_it_a_lead_ahead(
    people, room, tracks, django_capture_on_commit_callbacks, timers
):
    assert report(people.bob, room, True, revision=0) == {"buffering": True, "revision": 0}
    waits, timeouts = sample("listening_start_waits_total"), sample("listening_start_timeouts_total")
    before = common.now_ms()
    held = command(people.alice, room, "play")
    assert (held["playing"], held["action"], held["revision"], held["track"]["id"]) == (False, "play", 1, tracks[0].pk)
    waiting = held["waiting"]
    assert waiting["members"] == [people.bob.user_id] and waiting["count"] == 1
    assert before + WAIT_MS <= waiting["until_ms"] <= common.now_ms() + WAIT_MS
    # A late joiner sees the same wait in the join's answer.
    assert common.state_payload(ListeningSession.objects.get(pk=room.pk))["waiting"] == waiting

    with django_capture_on_commit_callbacks(execute=True):
        answer = report(people.bob, room, False, revision=1)
    assert answer == {"buffering": False, "revision": 2}
    room.refresh_from_db()
    state = common.state_payload(room)
    assert state["playing"] and state["waiting"] is None and state["position_ms"] == 0
    assert common.now_ms() < room.anchor_ms <= common.now_ms() + PLAYBACK_LEAD_MS
    assert sample("listening_start_waits_total") == waits + 1
    assert sample("listening_start_timeouts_total") == timeouts  # nobody was left behind


@pytest.mark.parametrize("start", ["play_from_stop", "play_from_pause", "skip", "vote_skip", "advance"])
def test_every_kind_of_start_waits(people, room, tracks, start):
    if start != "play_from_stop":
        command(people.alice, room, "play")
    if start == "play_from_pause":
        command(people.alice, room, "pause")
    report(people.carol, room, True)
    room.refresh_from_db()
    if start in ("play_from_stop", "play_from_pause"):
        command(people.alice, room, "play")
    elif start == "skip":
        command(people.alice, room, "skip")
    elif start == "vote_skip":
        for actor in (people.alice, people.bob):
            playback_vote_skip(actor=actor, session_id=room.pk)
    else:
        ListeningSession.objects.filter(pk=room.pk).update(anchor_ms=common.now_ms() - tracks[0].duration_ms - 100)
        assert playback_advance(session_id=room.pk, revision=room.playback_revision)
    room.refresh_from_db()
    assert not room.playing and room.waiting_until_ms is not None
    assert common.state_payload(room)["waiting"]["members"] == [people.carol.user_id]
    expected = tracks[0] if start.startswith("play") else tracks[1]
    assert room.track_id == expected.pk


def test_at_the_deadline_the_start_goes_on_without_the_late_one_who_catches_up(
    people, room, django_capture_on_commit_callbacks, timers
):
    report(people.bob, room, True)
    held = command(people.alice, room, "play")
    timeouts = sample("listening_start_timeouts_total")
    with django_capture_on_commit_callbacks(execute=True):
        assert not playback_wait_end(session_id=room.pk, revision=held["revision"])  # early: checks again later
    assert 4.5 < timers(room, "wait-end")[held["revision"]] <= WAIT_MS / 1000

    # The deadline passed; bob has been buffering all along (since before the wait
    # began, so his report is older than the wait by now: he is late all the same).
    ListeningSession.objects.filter(pk=room.pk).update(waiting_until_ms=common.now_ms() - 1)
    SessionMember.objects.filter(session=room, user_id=people.bob.user_id).update(
        buffering_since=timezone.now() - timedelta(milliseconds=WAIT_MS + 500)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert playback_wait_end(session_id=room.pk, revision=held["revision"])
    assert not playback_wait_end(session_id=room.pk, revision=held["revision"])  # repeated: nothing
    room.refresh_from_db()
    started = common.state_payload(room)
    assert started["playing"] and started["waiting"] is None and started["revision"] == held["revision"] + 1
    assert sample("listening_start_timeouts_total") == timeouts + 1

    # The late one's player is ready: nothing changes for the room...
    assert report(people.bob, room, False) == {"buffering": False, "revision": started["revision"]}
    room.refresh_from_db()
    assert room.playback_revision == started["revision"] and room.playing
    # ...and the state it holds places it where everyone else is.
    for later_ms in (0, 1_250, 30_000):
        moment = started["anchor_ms"] + later_ms
        assert position_at(started, moment) == room.position_at(moment) == later_ms


def test_a_stale_deadline_job_after_a_release_changes_nothing(people, room):
    report(people.bob, room, True)
    held = command(people.alice, room, "play")
    report(people.bob, room, False)
    ListeningSession.objects.filter(pk=room.pk).update(waiting_until_ms=common.now_ms() - 1)  # even so
    assert not playback_wait_end(session_id=room.pk, revision=held["revision"])
    room.refresh_from_db()
    assert room.playback_revision == held["revision"] + 1 and room.playing


def test_commands_during_a_wait(people, room, tracks):
    report(people.bob, room, True)
    held = command(people.alice, room, "play")
    # A command on an older revision loses as usual, and learns of the wait.
    with pytest.raises(Conflict) as caught:
        playback_command(actor=people.carol, session_id=room.pk, action="pause", base_revision=0)
    assert caught.value.details["state"]["waiting"] == held["waiting"]
    # Seek and volume apply; the start still waits, with the same deadline.
    sought = command(people.carol, room, "seek", position_ms=42_000)
    assert (sought["playing"], sought["position_ms"], sought["waiting"]) == (False, 42_000, held["waiting"])
    assert command(people.alice, room, "volume", volume=20)["waiting"] == held["waiting"]
    # Pressing play again does not prolong it.
    assert command(people.alice, room, "play")["waiting"]["until_ms"] == held["waiting"]["until_ms"]
    # Another skip moves on, to a wait of its own.
    skipped = command(people.alice, room, "skip")
    assert skipped["track"]["id"] == tracks[1].pk and not skipped["playing"]
    assert skipped["waiting"]["until_ms"] >= held["waiting"]["until_ms"]
    # A pause calls it off: the deadline job and a ready report then start nothing.
    paused = command(people.carol, room, "pause")
    assert not paused["playing"] and paused["waiting"] is None
    assert not playback_wait_end(session_id=room.pk, revision=skipped["revision"])
    assert report(people.bob, room, False)["revision"] == paused["revision"]
    room.refresh_from_db()
    assert not room.playing
    assert command(people.alice, room, "play")["playing"]  # nobody buffering now


def test_members_who_leave_or_are_removed_hold_nothing(people, room, django_capture_on_commit_callbacks, timers):
    for actor in (people.bob, people.carol):
        report(actor, room, True)
    held = command(people.alice, room, "play")
    assert held["waiting"]["count"] == 2
    session_leave(actor=people.bob, session_id=room.pk)
    # carol still holds it: it keeps waiting, for her alone.
    assert common.state_payload(ListeningSession.objects.get(pk=room.pk))["waiting"]["members"] == [
        people.carol.user_id
    ]
    report(people.carol, room, False)  # the last one present is ready
    room.refresh_from_db()
    assert room.playing and room.waiting_until_ms is None

    # A removed member holds nothing either: the start that waited only for them
    # begins at once, a lead ahead, without counting as one that left someone behind.
    command(people.alice, room, "pause")
    time.sleep(BUFFERING_FLIP_MIN_MS / 1000)  # carol's player went ready just now
    report(people.carol, room, True)
    waiting = command(people.alice, room, "play")
    assert waiting["waiting"]["members"] == [people.carol.user_id]
    waits, timeouts = sample("listening_start_waits_total"), sample("listening_start_timeouts_total")
    with django_capture_on_commit_callbacks(execute=True):
        member_remove(actor=people.alice, session_id=room.pk, user_id=people.carol.user_id)
    room.refresh_from_db()
    assert room.playing and room.waiting_until_ms is None and room.playback_revision == waiting["revision"] + 1
    assert not playback_wait_end(session_id=room.pk, revision=waiting["revision"])  # the deadline job: stale
    assert sample("listening_start_waits_total") == waits + 1
    assert sample("listening_start_timeouts_total") == timeouts
    with pytest.raises(Forbidden):
        report(people.carol, room, False)


def test_a_report_older_than_the_wait_holds_no_start(people, room, settings):
    report(people.bob, room, True)
    stale = timezone.now() - timedelta(milliseconds=WAIT_MS + 100)
    SessionMember.objects.filter(session=room, user_id=people.bob.user_id).update(buffering_since=stale)
    assert command(people.alice, room, "play")["playing"]  # a crashed player stalls nobody
    command(people.alice, room, "pause")
    settings.LISTENING_START_WAIT_MS = 60_000  # the timeout is the setting's
    assert not command(people.alice, room, "play")["playing"]


def test_a_buffering_report_on_a_revision_the_room_has_left_is_not_recorded(people, room):
    command(people.alice, room, "play")
    assert report(people.bob, room, True, revision=0) == {"buffering": False, "revision": 1}
    assert report(people.bob, room, True, revision=1) == {"buffering": True, "revision": 1}
    # Ready on an older revision is taken: it can only let the room go.
    command(people.alice, room, "volume", volume=10)
    assert report(people.bob, room, False, revision=1) == {"buffering": False, "revision": 2}


def test_floods_of_the_same_report_write_nothing(people, room, django_assert_num_queries):
    report(people.bob, room, True)
    for _ in range(20):
        with django_assert_num_queries(1):  # the member's row, read: no lock, no write
            assert report(people.bob, room, True)["buffering"]
    report(people.bob, room, False)
    for _ in range(20):
        with django_assert_num_queries(1):
            assert not report(people.bob, room, False)["buffering"]


def test_a_player_may_not_flip_back_to_buffering_at_once(people, room):
    report(people.bob, room, True)
    report(people.bob, room, False)  # going ready is never refused
    with pytest.raises(RateLimited) as caught:
        report(people.bob, room, True)
    assert caught.value.code == "rate_limited"
    assert 0 < caught.value.details["retry_after"] <= BUFFERING_FLIP_MIN_MS / 1000
    assert SessionMember.objects.get(session=room, user_id=people.bob.user_id).buffering_since is None
    time.sleep(caught.value.details["retry_after"] + 0.02)
    assert report(people.bob, room, True)["buffering"]
    # The limit is per member: carol flips on her own.
    report(people.carol, room, True)
    assert not report(people.carol, room, False)["buffering"]


def test_the_track_end_advance_is_scheduled_only_when_playback_really_starts(
    people, room, tracks, django_capture_on_commit_callbacks, timers
):
    report(people.bob, room, True)
    with django_capture_on_commit_callbacks(execute=True):
        held = command(people.alice, room, "play")
    assert timers(room, "advance") == {}
    assert WAIT_MS / 1000 - 0.5 < timers(room, "wait-end")[held["revision"]] <= WAIT_MS / 1000
    with django_capture_on_commit_callbacks(execute=True):
        started = report(people.bob, room, False)["revision"]
    # The first track (a minute) from now plus the lead, plus the check's slack.
    assert 60.2 <= timers(room, "advance")[started] <= 60.2 + PLAYBACK_LEAD_MS / 1000

    # The track-end advance is a start too: it waits, and schedules no advance until it starts.
    report(people.carol, room, True)
    ListeningSession.objects.filter(pk=room.pk).update(anchor_ms=common.now_ms() - tracks[0].duration_ms - 100)
    with django_capture_on_commit_callbacks(execute=True):
        assert playback_advance(session_id=room.pk, revision=started)
    room.refresh_from_db()
    assert (room.track_id, room.playing) == (tracks[1].pk, False)
    assert set(timers(room, "advance")) == {started}
    assert room.playback_revision in timers(room, "wait-end")


def test_anyone_present_reports_and_bad_reports_are_refused(people, room):
    member_mute(actor=people.alice, session_id=room.pk, user_id=people.bob.user_id)
    assert report(people.bob, room, True)["buffering"]  # not a control: the muted report too
    dj = session_create(actor=people.alice, title="DJ", mode=SessionMode.DJ)
    session_join(actor=people.carol, session_id=dj.pk)
    assert report(people.carol, dj, True)["buffering"]  # a DJ session's listener too

    for value, extra, field in [
        ("yes", {}, "buffering"),
        (None, {}, "buffering"),
        (True, {"revision": -1}, "revision"),
    ]:
        with pytest.raises(Invalid) as caught:
            report(people.bob, room, value, **extra)
        assert field in caught.value.details["fields"]
    with pytest.raises(Invalid) as caught:
        report(people.bob, room, False, revision=99)  # a revision the session never had
    assert "revision" in caught.value.details["fields"]
    outsider = session_create(actor=people.bob, title="Elsewhere")
    with pytest.raises(Forbidden):
        report(people.alice, outsider, True)  # not joined
    with pytest.raises(NotFound):
        report(people.dave, room, True)  # another tenant's session
    with pytest.raises(NotFound):
        playback_buffering(actor=people.alice, session_id=10**9, buffering=True)
    session_end(actor=people.alice, session_id=room.pk)
    with pytest.raises(Conflict):
        report(people.alice, room, True)


def test_a_crowd_of_buffering_members_is_counted_and_its_first_listed(people, room, tenant):
    # Rows written directly (hashing two dozen passwords would be the test's whole
    # cost); the longest buffering come first.
    crowd = get_user_model().objects.bulk_create(
        get_user_model()(username=f"crowd{n}") for n in range(WAITING_MEMBERS_LISTED + 2)
    )
    now = timezone.now()
    SessionMember.objects.bulk_create(
        SessionMember(
            tenant=tenant,
            session=room,
            user=user,
            joined_at=now,
            buffering_since=now - timedelta(milliseconds=len(crowd) - n),
        )
        for n, user in enumerate(crowd)
    )
    waiting = command(people.alice, room, "play")["waiting"]
    assert waiting["count"] == len(crowd)
    assert waiting["members"] == [user.pk for user in crowd[:WAITING_MEMBERS_LISTED]]
