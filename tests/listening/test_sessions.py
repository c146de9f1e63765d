"""Listening sessions at the service level: life, members, roles, the shared
queue on the playlist engine, playback commands, conflicts by revision and
the server's own track advance."""

from __future__ import annotations

import pytest

from listening.constants import PLAYBACK_LEAD_MS, MemberRole, SessionMode, SessionStatus
from listening.models import ListeningSession, SessionMember
from listening.services import common, playback
from listening.services.playback import playback_advance, playback_command
from listening.services.sessions import (
    member_mute,
    member_remove,
    member_role_set,
    session_create,
    session_end,
    session_join,
    session_leave,
)
from playlists.constants import CollaboratorRole, PlaylistKind
from playlists.models import PlaylistItem
from playlists.selectors import playlists_for_user
from playlists.services.sharing import share_link_create
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound
from tests.listening.support import command, enqueue

pytestmark = pytest.mark.django_db


def queued(session) -> list[int]:
    return list(
        PlaylistItem.objects.filter(playlist_id=session.queue_id)
        .order_by("position")
        .values_list("track_id", flat=True)
    )


def test_a_session_has_a_queue_on_the_playlist_engine_and_a_chat_room(people):
    session = session_create(actor=people.alice, title="Friday night", mode=SessionMode.DJ)
    assert session.queue.kind == PlaylistKind.QUEUE
    assert session.room.members.filter(user_id=people.alice.user_id).exists()
    assert SessionMember.objects.get(session=session).role == MemberRole.HOST
    # A queue is reached through its session: never listed, shared or deleted on its own.
    assert session.queue not in playlists_for_user(actor=people.alice)
    with pytest.raises(Conflict):
        share_link_create(actor=people.alice, playlist_id=session.queue_id, role=CollaboratorRole.VIEWER)


def test_joining_leaving_and_tenants(people, settings):
    session = session_create(actor=people.alice, title="Group")
    assert session_join(actor=people.bob, session_id=session.pk).role == MemberRole.LISTENER
    assert session_join(actor=people.bob, session_id=session.pk).role == MemberRole.LISTENER  # idempotent
    with pytest.raises(NotFound):
        session_join(actor=people.dave, session_id=session.pk)
    ListeningSession.objects.filter(pk=session.pk).update(audience_limit=2)
    with pytest.raises(Conflict) as caught:
        session_join(actor=people.carol, session_id=session.pk)
    assert caught.value.details == {"audience_limit": 2}
    session_leave(actor=people.bob, session_id=session.pk)
    session_join(actor=people.carol, session_id=session.pk)
    with pytest.raises(Forbidden):
        session_leave(actor=people.bob, session_id=session.pk)


def test_who_edits_the_queue_follows_the_mode_and_roles(people, tracks):
    dj = session_create(actor=people.alice, title="DJ set", mode=SessionMode.DJ)
    session_join(actor=people.bob, session_id=dj.pk)
    with pytest.raises(Forbidden):
        enqueue(people.bob, dj, tracks[0])
    member_role_set(actor=people.alice, session_id=dj.pk, user_id=people.bob.user_id, role=MemberRole.CO_DJ)
    enqueue(people.bob, dj, tracks[0])
    group = session_create(actor=people.alice, title="Together")
    session_join(actor=people.carol, session_id=group.pk)
    enqueue(people.carol, group, tracks[1])
    session_leave(actor=people.carol, session_id=group.pk)
    with pytest.raises(NotFound):
        enqueue(people.carol, group, tracks[2])


def test_playback_plays_the_queue_in_order_with_a_lead_and_revisions(people, tracks):
    session = session_create(actor=people.alice, title="Group")
    session_join(actor=people.bob, session_id=session.pk)
    with pytest.raises(Conflict):
        command(people.alice, session, "play")  # nothing queued
    enqueue(people.alice, session, *tracks[:3])
    before = common.now_ms()
    state = command(people.bob, session, "play")
    assert state["track"]["id"] == tracks[0].pk and state["playing"] and state["revision"] == 1
    assert before + PLAYBACK_LEAD_MS <= state["anchor_ms"] <= common.now_ms() + PLAYBACK_LEAD_MS
    assert queued(session) == [tracks[1].pk, tracks[2].pk]
    paused = command(people.alice, session, "pause")
    assert not paused["playing"] and paused["revision"] == 2
    sought = command(people.alice, session, "seek", position_ms=90_000)
    assert sought["position_ms"] == 60_000  # clamped to the track's length
    assert command(people.bob, session, "volume", volume=40)["volume"] == 40
    skipped = command(people.bob, session, "skip")
    assert skipped["track"]["id"] == tracks[1].pk and skipped["position_ms"] == 0 and skipped["playing"]
    assert queued(session) == [tracks[2].pk]


def test_a_command_based_on_an_older_revision_loses_and_gets_the_state(people, tracks):
    session = session_create(actor=people.alice, title="Group")
    session_join(actor=people.bob, session_id=session.pk)
    enqueue(people.alice, session, *tracks[:2])
    command(people.alice, session, "play")
    # bob saw revision 1 too, but alice's pause committed first.
    command(people.alice, session, "pause")
    with pytest.raises(Conflict) as caught:
        playback_command(actor=people.bob, session_id=session.pk, action="skip", base_revision=1)
    assert caught.value.details["state"]["revision"] == 2
    assert caught.value.details["state"]["playing"] is False


def test_dj_mode_leaves_playback_to_the_host_and_co_djs(people, tracks):
    session = session_create(actor=people.alice, title="DJ", mode=SessionMode.DJ)
    session_join(actor=people.bob, session_id=session.pk)
    enqueue(people.alice, session, *tracks[:2])
    with pytest.raises(Forbidden):
        command(people.bob, session, "play")
    with pytest.raises(Forbidden):
        command(people.carol, session, "play")  # not a member
    member_role_set(actor=people.alice, session_id=session.pk, user_id=people.bob.user_id, role=MemberRole.CO_DJ)
    assert command(people.bob, session, "play")["playing"]


@pytest.mark.parametrize(
    ("action", "extra", "field"),
    [("dance", {}, "action"), ("volume", {"volume": 101}, "volume"), ("seek", {"position_ms": -1}, "position_ms")],
)
def test_bad_commands_are_invalid(people, tracks, action, extra, field):
    session = session_create(actor=people.alice, title="Group")
    enqueue(people.alice, session, tracks[0])
    command(people.alice, session, "play")
    with pytest.raises(Invalid) as caught:
        command(people.alice, session, action, **extra)
    assert field in caught.value.details["fields"]


def test_the_server_advances_at_the_track_end_once(people, tracks):
    session = session_create(actor=people.alice, title="Group")
    enqueue(people.alice, session, *tracks[:2])
    command(people.alice, session, "play")
    session.refresh_from_db()
    assert not playback_advance(session_id=session.pk, revision=1)  # not over yet
    # The first track (one minute) started a minute and a half ago.
    ListeningSession.objects.filter(pk=session.pk).update(anchor_ms=common.now_ms() - 90_000)
    assert playback_advance(session_id=session.pk, revision=1)
    session.refresh_from_db()
    assert (session.track_id, session.playback_revision, session.playing) == (tracks[1].pk, 2, True)
    # The check came 30 s late: the next track starts afresh, a lead ahead.
    assert common.now_ms() <= session.anchor_ms <= common.now_ms() + PLAYBACK_LEAD_MS
    assert not playback_advance(session_id=session.pk, revision=1)  # stale or repeated: nothing
    enqueue(people.alice, session, tracks[3])
    # On time (the track ended 100 ms ago): the next one starts exactly at its end.
    ListeningSession.objects.filter(pk=session.pk).update(
        anchor_ms=common.now_ms() - tracks[1].duration_ms - 100, position_ms=0
    )
    assert playback_advance(session_id=session.pk, revision=2)
    session.refresh_from_db()
    assert session.track_id == tracks[3].pk
    assert common.now_ms() - 1_000 <= session.anchor_ms <= common.now_ms() - 100
    revision = session.playback_revision
    ListeningSession.objects.filter(pk=session.pk).update(anchor_ms=common.now_ms() - 500_000)
    assert playback_advance(session_id=session.pk, revision=revision)
    session.refresh_from_db()
    assert session.track is None and not session.playing  # the queue ran out


def test_a_leaving_host_hands_off_and_the_last_one_out_ends_it(people):
    session = session_create(actor=people.alice, title="DJ", mode=SessionMode.DJ)
    session_join(actor=people.bob, session_id=session.pk)
    session_join(actor=people.carol, session_id=session.pk)
    member_role_set(actor=people.alice, session_id=session.pk, user_id=people.carol.user_id, role=MemberRole.CO_DJ)
    session_leave(actor=people.alice, session_id=session.pk)
    session.refresh_from_db()
    assert session.host_id == people.carol.user_id  # the co-DJ, though bob came first
    session_leave(actor=people.carol, session_id=session.pk)
    session.refresh_from_db()
    assert session.host_id == people.bob.user_id
    session_leave(actor=people.bob, session_id=session.pk)
    session.refresh_from_db()
    assert session.status == SessionStatus.ENDED and session.ended_at is not None


def test_only_the_host_ends_a_session_and_an_ended_one_refuses_commands(people, tracks):
    session = session_create(actor=people.alice, title="Group")
    session_join(actor=people.bob, session_id=session.pk)
    with pytest.raises(Forbidden):
        session_end(actor=people.bob, session_id=session.pk)
    session_end(actor=people.alice, session_id=session.pk)
    with pytest.raises(Conflict):
        command(people.alice, session, "play")
    with pytest.raises(Conflict):
        session_join(actor=people.carol, session_id=session.pk)


def test_the_host_mutes_and_removes_members_audited(people, tracks):
    from audit.models import AuditEvent

    session = session_create(actor=people.alice, title="Group")
    session_join(actor=people.bob, session_id=session.pk)
    session_join(actor=people.carol, session_id=session.pk)
    enqueue(people.alice, session, tracks[0])
    with pytest.raises(Forbidden):
        member_mute(actor=people.bob, session_id=session.pk, user_id=people.carol.user_id)
    member_mute(actor=people.alice, session_id=session.pk, user_id=people.bob.user_id)
    with pytest.raises(Forbidden):
        command(people.bob, session, "play")  # muted: no playback, even in group mode
    member_mute(actor=people.alice, session_id=session.pk, user_id=people.bob.user_id, muted=False)
    assert command(people.bob, session, "play")["playing"]
    member_remove(actor=people.alice, session_id=session.pk, user_id=people.carol.user_id)
    with pytest.raises(Forbidden):
        session_join(actor=people.carol, session_id=session.pk)
    with pytest.raises(NotFound):
        enqueue(people.carol, session, tracks[1])  # no longer on the queue
    with pytest.raises(Invalid):
        member_remove(actor=people.alice, session_id=session.pk, user_id=people.alice.user_id)
    actions = list(
        AuditEvent.objects.filter(target_type="listening_session", target_id=str(session.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == ["listening.member.muted", "listening.member.unmuted", "listening.member.removed"]


def test_each_track_leaving_records_a_play_for_those_present(people, tracks):
    from playlists.models import TrackPlay

    session = session_create(actor=people.alice, title="Group")
    session_join(actor=people.bob, session_id=session.pk)
    enqueue(people.alice, session, *tracks[:2])
    command(people.alice, session, "play")
    ListeningSession.objects.filter(pk=session.pk).update(anchor_ms=common.now_ms() - 30_000)
    command(people.bob, session, "skip")
    plays = list(TrackPlay.objects.filter(session=session).order_by("user_id"))
    assert [(play.user_id, play.track_id) for play in plays] == [
        (people.alice.user_id, tracks[0].pk),
        (people.bob.user_id, tracks[0].pk),
    ]
    assert all(29_000 <= play.listened_ms <= 31_500 for play in plays)


def test_radio_mode_tops_up_an_empty_queue_with_suggestions(people, tracks):
    from playlists.constants import SimilarityKind
    from playlists.models import TrackSimilarity

    for similar, score in ((tracks[3], 0.9), (tracks[4], 0.5)):
        TrackSimilarity.objects.create(
            tenant_id=people.alice.tenant_id,
            track=tracks[0],
            similar=similar,
            kind=SimilarityKind.CO_OCCURRENCE,
            score=score,
            together=3,
        )
    session = session_create(actor=people.alice, title="DJ", mode=SessionMode.DJ)
    session_join(actor=people.bob, session_id=session.pk)
    with pytest.raises(Forbidden):
        playback.session_radio_set(actor=people.bob, session_id=session.pk, on=True)
    with pytest.raises(Invalid):
        playback.session_radio_set(actor=people.alice, session_id=session.pk, on="yes")
    enqueue(people.alice, session, tracks[0])
    command(people.alice, session, "play")
    assert playback.session_radio_set(actor=people.alice, session_id=session.pk, on=True)["radio"] is True
    skipped = command(people.alice, session, "skip")
    # The queue ran dry: the radio added what goes with what was played.
    assert skipped["track"]["id"] == tracks[3].pk and skipped["playing"]
    assert queued(session) == [tracks[4].pk]
    playback.session_radio_set(actor=people.alice, session_id=session.pk, on=False)
    command(people.alice, session, "skip")
    stopped = command(people.alice, session, "skip")
    assert stopped["track"] is None and not stopped["playing"]


def test_the_embedded_default_waits_for_the_track_end_on_a_timer(
    people, tracks, settings, django_capture_on_commit_callbacks
):
    """Inline tasks ignore countdowns: the advance must wait on a timer, not run
    at once and reschedule itself forever."""
    import threading

    settings.CELERY_TASK_ALWAYS_EAGER = True
    session = session_create(actor=people.alice, title="Embedded")
    enqueue(people.alice, session, tracks[0])
    with django_capture_on_commit_callbacks(execute=True):
        command(people.alice, session, "play")
    timers = [thread for thread in threading.enumerate() if thread.name.startswith(f"playback-advance-{session.pk}-")]
    try:
        assert len(timers) == 1
        assert 60 <= timers[0].interval <= 61  # the one-minute track's end, plus the lead
    finally:
        for timer in timers:
            timer.cancel()


def test_votes_skip_a_track_once_they_reach_the_threshold(people, tracks):
    with pytest.raises(Invalid):
        session_create(actor=people.alice, title="Bad", vote_skip_threshold=0)
    session = session_create(actor=people.alice, title="DJ", mode=SessionMode.DJ, vote_skip_threshold=0.5)
    for actor in (people.bob, people.carol):
        session_join(actor=actor, session_id=session.pk)
    with pytest.raises(Conflict):
        playback.playback_vote_skip(actor=people.bob, session_id=session.pk)  # nothing playing
    enqueue(people.alice, session, *tracks[:3])
    command(people.alice, session, "play")
    # Three present: two votes skip. A listener votes even in a DJ session.
    assert playback.playback_vote_skip(actor=people.bob, session_id=session.pk) == {
        "votes": 1,
        "needed": 2,
        "skipped": False,
    }
    assert playback.playback_vote_skip(actor=people.bob, session_id=session.pk)["votes"] == 1  # once per track
    command(people.alice, session, "volume", volume=50)  # votes survive other commands
    assert playback.playback_vote_skip(actor=people.carol, session_id=session.pk)["skipped"]
    session.refresh_from_db()
    assert session.track_id == tracks[1].pk
    # A new track starts the count again; a muted member has no vote.
    assert playback.playback_vote_skip(actor=people.bob, session_id=session.pk)["votes"] == 1
    member_mute(actor=people.alice, session_id=session.pk, user_id=people.carol.user_id)
    with pytest.raises(Forbidden):
        playback.playback_vote_skip(actor=people.carol, session_id=session.pk)
