"""Playback of a listening session: commands, the track-end advance, skip votes,
radio mode and position reports.

Every write takes a row lock on the session (``SELECT … FOR UPDATE``), so the
commands of one session apply one at a time whatever the number of server
processes, and bumps ``playback_revision`` when playback changes. A command
carries the revision its author saw; if another command was applied since,
it loses (``Conflict``, with the current state in ``details.state``): "the
same moment" is decided by the database, and the loser is told.

Commands take effect ``PLAYBACK_LEAD_MS`` after the server applies them, so
every client can start together. The end of a track is the server's business:
``playback_advance`` (a Celery task scheduled for the track's end, idempotent
on the playback revision) takes the next item off the queue, so a session keeps
playing when its host's phone sleeps.

Nobody stalls the room: members report when their player is buffering
(``playback_buffering``). A start (play from a pause or a stop, skip, vote
skip, the track-end advance, radio's top-up: anything that begins playing or
puts another track on) made while someone present is buffering waits: the
state says ``playing: false`` with ``waiting_until_ms``, and playback begins
when the last of them is ready, a lead ahead, or at that deadline without them
(``playback_wait_end``, scheduled like the advance). The late ones place
themselves from the state as anyone joining late does. docs/protocol.md,
"Buffering".

The queue is a ``playlists.Playlist`` of kind ``queue`` edited with the playlist
engine. Who may edit it follows the session: its collaborator rows are kept
here (``_queue_role``), trusted writes beside the session's own.
"""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from accounts.principals import Principal
from playlists.models import Track, TrackPlay
from playlists.services.editing import queue_append_do, queue_pop_do
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited

from ..constants import (
    BUFFERING_FLIP_MIN_MS,
    PLAYBACK_LEAD_MS,
    RADIO_BATCH,
    VOLUME_MAX,
    PlaybackAction,
    SessionStatus,
)
from ..events import (
    SessionVotesEvent,
    members_holding_start,
    playback_state_event,
    session_event_send,
)
from ..metrics import drift_record, start_wait_record
from ..models import ListeningSession, SessionMember, SkipVote
from ..selectors import session_next_tracks
from ..sync import correction
from .common import (
    audience_count,
    controls_playback,
    member_present,
    now_ms,
    require_live,
    session_locked,
    session_locked_by_id,
    state_payload,
    user_of,
)
from .djs import dj_rotation_on_track

# A track-end check scheduled this much after the computed end: clocks and the
# broker are not exact, and an early check would have to reschedule itself.
_ADVANCE_SLACK_MS = 200
# Celery refuses countdowns past the broker's visibility timeout
# (spotify_agent.celery); a longer track is checked again before then.
_ADVANCE_MAX_COUNTDOWN = 3000


@transaction.atomic
def session_radio_set(*, actor: Principal, session_id: int, on: Any) -> dict[str, Any]:
    """Turn radio mode on or off; whoever controls playback may. A new playback
    revision (``playback.state`` with action ``radio``). Idempotent."""
    if not isinstance(on, bool):
        raise Invalid("on must be true or false.", field="on")
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    if not controls_playback(session, member_present(session, user_id)):
        raise Forbidden("Only those who control playback switch the radio.")
    if session.radio != on:
        session.radio = on
        _commit(session, action="radio", by=user_id)
    return state_payload(session, action="radio", by=user_id)


# --- Playback ------------------------------------------------------------------------------


def _clean_position(value: Any, session: ListeningSession) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid("position_ms must be a non-negative integer.", field="position_ms")
    if session.track is None:
        raise Conflict("Nothing is playing.")
    return min(value, session.track.duration_ms)


def _clean_volume(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= VOLUME_MAX:
        raise Invalid(f"volume must be an integer from 0 to {VOLUME_MAX}.", field="volume")
    return value


def plays_record(session: ListeningSession, *, at_ms: int) -> None:
    """The current track is leaving: one play for each member present, with how
    far the session got into it (the listening history suggestions learn from)."""
    if session.track is None:
        return
    listened = min(session.position_at(at_ms), session.track.duration_ms)
    started = timezone.now() - timedelta(milliseconds=listened)
    members = SessionMember.objects.filter(session=session, left_at__isnull=True).values_list("user_id", flat=True)
    TrackPlay.objects.bulk_create(
        [
            TrackPlay(
                tenant_id=session.tenant_id,
                user_id=user_id,
                track_id=session.track_id,
                played_at=started,
                session=session,
                listened_ms=listened,
            )
            for user_id in members.iterator()
        ],
        batch_size=1000,
    )


def _radio_top_up(session: ListeningSession) -> None:
    """Radio mode on an empty queue: append the session's next-track suggestions
    (``listening.selectors.session_next_tracks``, which members also read: the
    playlists' item-item model on what the session played), none it played already."""
    fresh = [pick.track.pk for pick in session_next_tracks(session, limit=RADIO_BATCH)]
    queue_append_do(
        playlist_id=session.queue_id, track_ids=fresh, client_op_id=f"radio-{session.pk}-{session.playback_revision}"
    )


def _load_next(session: ListeningSession, *, at_ms: int) -> None:
    """Put the queue's first item on, from its start at ``at_ms``: in radio mode an
    empty queue is topped up first; otherwise an empty queue stops playback."""
    plays_record(session, at_ms=at_ms)
    pop_id = f"advance-{session.pk}-{session.playback_revision}"
    item = queue_pop_do(playlist_id=session.queue_id, client_op_id=pop_id)
    if item is None and session.radio:
        _radio_top_up(session)
        item = queue_pop_do(playlist_id=session.queue_id, client_op_id=f"{pop_id}-radio")
    session.track = Track.objects.filter(pk=item["track_id"]).first() if item is not None else None
    session.track_serial += 1
    session.position_ms, session.anchor_ms = 0, at_ms
    session.playing = session.track is not None
    dj_rotation_on_track(session)


def _start_or_wait(session: ListeningSession, *, keep_deadline: bool = False) -> None:
    """Playback was just set to start (from a pause or a stop, or another track came
    on). If a present member's player is buffering, it waits for them instead:
    ``playing`` false until they are ready or ``LISTENING_START_WAIT_MS`` from now.
    With ``keep_deadline``, a wait already on keeps its deadline (pressing play
    again does not prolong it); another track begins a wait of its own."""
    if not session.playing or not members_holding_start(session).exists():
        session.waiting_until_ms = None
        return
    session.playing = False
    if not keep_deadline or session.waiting_until_ms is None:
        session.waiting_until_ms = now_ms() + settings.LISTENING_START_WAIT_MS


def _put_next(session: ListeningSession, *, at_ms: int) -> None:
    """Another track comes on at ``at_ms`` (or playback stops): a start."""
    _load_next(session, at_ms=at_ms)
    _start_or_wait(session)


def _release(session: ListeningSession, *, timed_out: bool) -> None:
    """A waiting start begins now, a lead ahead, from where it was held (action
    ``start``, by the server); ``timed_out``: someone was still buffering."""
    session.playing, session.anchor_ms, session.waiting_until_ms = True, now_ms() + PLAYBACK_LEAD_MS, None
    _commit(session, action="start", by=None)
    transaction.on_commit(lambda: start_wait_record(timed_out=timed_out))


def _apply(session: ListeningSession, action: str, *, position_ms: Any, volume: Any, at_ms: int) -> None:
    current = session.position_at(at_ms)
    if action == PlaybackAction.PLAY:
        if session.track is None:
            _put_next(session, at_ms=at_ms)
            if session.track is None:
                raise Conflict("The queue is empty.")
            return
        started = not session.playing
        session.position_ms = current if position_ms is None else _clean_position(position_ms, session)
        session.playing, session.anchor_ms = True, at_ms
        if started:
            _start_or_wait(session, keep_deadline=True)
        return
    elif action == PlaybackAction.PAUSE:
        # A pause also calls off a waiting start.
        session.position_ms, session.playing, session.waiting_until_ms = current, False, None
    elif action == PlaybackAction.SEEK:
        # During a wait the start stays waiting, from the new position.
        session.position_ms = _clean_position(position_ms, session)
    elif action == PlaybackAction.SKIP:
        _put_next(session, at_ms=at_ms)
        return
    else:
        session.volume = _clean_volume(volume)
        return
    session.anchor_ms = at_ms


def _commit(session: ListeningSession, *, action: str, by: int | None) -> None:
    session.playback_revision += 1
    session.save()
    session_event_send(session=session, event=playback_state_event(session, action=action, by=by))
    if session.playing and session.track is not None:
        # The track-end advance is scheduled when playback really starts: a
        # waiting start schedules it when the wait ends (``_release``).
        remaining = (session.track.duration_ms - session.position_ms) / session.rate
        due_ms = session.anchor_ms + int(remaining) + _ADVANCE_SLACK_MS
        _advance_later(session.pk, session.playback_revision, seconds=(due_ms - now_ms()) / 1000)
    elif session.waiting_until_ms is not None:
        _wait_end_later(session.pk, session.playback_revision, seconds=(session.waiting_until_ms - now_ms()) / 1000)


def _advance_later(session_id: int, revision: int, *, seconds: float) -> None:
    """Schedule ``playback_advance`` (``_later``)."""
    from ..tasks import playback_advance as playback_advance_task

    _later(playback_advance_task, session_id, revision, seconds=seconds)


def _wait_end_later(session_id: int, revision: int, *, seconds: float) -> None:
    """Schedule ``playback_wait_end`` at a waiting start's deadline (``_later``)."""
    from ..tasks import playback_wait_end as playback_wait_end_task

    _later(playback_wait_end_task, session_id, revision, seconds=seconds)


def _later(task, session_id: int, revision: int, *, seconds: float) -> None:
    """Run ``task(session_id, revision)`` once the transaction commits, ``seconds``
    from now (capped below the broker's visibility timeout; the task re-checks
    then and schedules itself again if early)."""
    countdown = min(max(0.0, seconds), _ADVANCE_MAX_COUNTDOWN)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # The embedded default runs tasks inline, and inline ignores a countdown:
        # the task would run at once, find it too early and schedule itself
        # again, forever. There, a timer thread of this one process waits.
        transaction.on_commit(lambda: _timer(countdown, task, session_id, revision))
        return
    task.apply_async_on_commit((session_id, revision), countdown=countdown)


def _timer(countdown: float, task, session_id: int, revision: int) -> threading.Timer:
    def run() -> None:
        try:
            task.delay(session_id, revision)
        finally:
            connection.close()  # this thread's own connection

    timer = threading.Timer(countdown, run)
    # playback-advance-<session>-<revision>, playback-wait-end-<session>-<revision>
    timer.name = f"{task.name.rsplit('.', 1)[-1].replace('_', '-')}-{session_id}-{revision}"
    timer.daemon = True
    timer.start()
    return timer


@transaction.atomic
def playback_command(
    *,
    actor: Principal,
    session_id: int,
    action: Any,
    base_revision: Any,
    position_ms: Any = None,
    volume: Any = None,
) -> dict[str, Any]:
    """Apply one playback command (``PlaybackAction``) written against
    ``base_revision``. The caller must be a present member who controls playback
    (host or co-DJ in dj mode, anyone in group mode; else ``Forbidden``). If
    another command was applied since ``base_revision``, this one loses:
    ``Conflict`` with ``details.state``. Takes effect ``PLAYBACK_LEAD_MS`` from
    now; emits ``playback.state``; schedules the track-end advance. A start
    while a member is buffering waits for them (``_start_or_wait``); a pause
    calls a waiting start off. Returns the new state."""
    if action not in PlaybackAction.values:
        raise Invalid(f"action must be one of {', '.join(PlaybackAction.values)}.", field="action")
    if isinstance(base_revision, bool) or not isinstance(base_revision, int) or base_revision < 0:
        raise Invalid("base_revision must be a non-negative integer.", field="base_revision")
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    if not controls_playback(session, member_present(session, user_id)):
        raise Forbidden("Only the host, co-DJs and the DJ on deck control playback in a DJ session, and nobody muted.")
    if base_revision != session.playback_revision:
        raise Conflict(
            "Another command was applied first; here is the state now.", details={"state": state_payload(session)}
        )
    _apply(session, action, position_ms=position_ms, volume=volume, at_ms=now_ms() + PLAYBACK_LEAD_MS)
    _commit(session, action=action, by=user_id)
    return state_payload(session, action=action, by=user_id)


@transaction.atomic
def playback_vote_skip(*, actor: Principal, session_id: int) -> dict[str, Any]:
    """A present, unmuted member votes to skip the current track (any mode: in a DJ
    session this is the audience's voice). Once the votes reach
    ``vote_skip_threshold`` of the members present, the next track starts
    (``playback.state``, action ``vote_skip``); until then ``session.votes`` tells
    everyone the count. Idempotent per member and track."""
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    member = member_present(session, user_id)
    if member.muted_at is not None:
        raise Forbidden("The host muted you in this session.")
    if session.track is None:
        raise Conflict("Nothing is playing.")
    SkipVote.objects.get_or_create(
        session=session, user_id=user_id, track_serial=session.track_serial, defaults={"tenant_id": session.tenant_id}
    )
    present = SessionMember.objects.filter(session=session, left_at__isnull=True).values("user_id")
    votes = SkipVote.objects.filter(session=session, track_serial=session.track_serial, user_id__in=present).count()
    needed = max(1, math.ceil(session.vote_skip_threshold * audience_count(session)))
    if votes < needed:
        session_event_send(session=session, event=SessionVotesEvent(session=session.pk, votes=votes, needed=needed))
        return {"votes": votes, "needed": needed, "skipped": False}
    _put_next(session, at_ms=now_ms() + PLAYBACK_LEAD_MS)
    _commit(session, action="vote_skip", by=None)
    return {"votes": votes, "needed": needed, "skipped": True}


@transaction.atomic
def playback_advance(*, session_id: int, revision: int) -> bool:
    """The end of a track, checked by the server: if nothing changed playback since
    ``revision`` and the track has ended by the server's clock, the next queue
    item starts (or playback stops on an empty queue). Early (a track longer than
    a countdown allows), it checks again later. Idempotent: a stale or repeated
    call changes nothing. Returns whether it advanced."""
    session = session_locked_by_id(session_id)
    if (
        session is None
        or session.status != SessionStatus.LIVE
        or session.playback_revision != revision
        or not session.playing
        or session.track is None
    ):
        return False
    now = now_ms()
    if session.position_at(now) < session.track.duration_ms:
        remaining = (session.track.duration_ms - session.position_at(now)) / session.rate
        _advance_later(session.pk, revision, seconds=(remaining + _ADVANCE_SLACK_MS) / 1000)
        return False
    # On time, the next track starts where the last one ended (gapless for clients
    # that moved on by themselves); a late check starts it afresh, a lead ahead,
    # so nobody misses its opening.
    ended_at = session.anchor_ms + int((session.track.duration_ms - session.position_ms) / session.rate)
    _put_next(session, at_ms=ended_at if now - ended_at <= PLAYBACK_LEAD_MS else now + PLAYBACK_LEAD_MS)
    _commit(session, action="advance", by=None)
    return True


# --- Buffering -----------------------------------------------------------------------------


def _ready_key(session_id: int, user_id: int) -> str:
    """When the member's player last went ready (server ms), for the flip limit."""
    return f"listening:ready:{session_id}:{user_id}"


def playback_buffering(*, actor: Principal, session_id: int, buffering: Any, revision: Any = None) -> dict[str, Any]:
    """A present member's player is buffering (``buffering`` true) or no longer is.
    Any present member reports, muted or not, in either mode: it controls nothing,
    it only lets a start wait for them (at most ``LISTENING_START_WAIT_MS``).
    ``revision``: the playback revision the player is on, if the client says; a
    buffering report on an older one is about a state the room has left and is
    not recorded. A report repeating what is recorded costs one read and writes
    nothing. Going buffering sooner than ``BUFFERING_FLIP_MIN_MS`` after going
    ready is refused (``rate_limited``); going ready never is. The last holder
    going ready starts a waiting start (``playback.state``, action ``start``).
    Answers ``{buffering, revision}``: what is recorded for the caller, and the
    session's playback revision after the report."""
    if not isinstance(buffering, bool):
        raise Invalid("buffering must be true or false.", field="buffering")
    if revision is not None:
        revision = _integer(revision, "revision")
    user_id = user_of(actor)
    member = (
        SessionMember.objects.select_related("session")
        .filter(session_id=session_id, tenant_id=actor.tenant_id, user_id=user_id, left_at__isnull=True)
        .first()
    )
    if member is None:
        session = ListeningSession.objects.filter(pk=session_id, tenant_id=actor.tenant_id).first()
        if session is None:
            raise NotFound("No such listening session.")
        require_live(session)
        raise Forbidden("Join the session first.")
    session = member.session
    require_live(session)
    if revision is not None and revision > session.playback_revision:
        raise Invalid("revision is newer than the session's playback revision.", field="revision")
    recorded = member.buffering_since is not None
    if recorded == buffering or (buffering and revision is not None and revision < session.playback_revision):
        return {"buffering": recorded, "revision": session.playback_revision}
    return _buffering_set(actor=actor, session_id=session_id, user_id=user_id, buffering=buffering, revision=revision)


@transaction.atomic
def _buffering_set(
    *, actor: Principal, session_id: int, user_id: int, buffering: bool, revision: int | None
) -> dict[str, Any]:
    """The change itself, under the session's lock: a start being decided sees the
    report or not at all, and a ready report sees a wait that began before it."""
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    member = member_present(session, user_id)
    recorded = member.buffering_since is not None
    if recorded == buffering or (buffering and revision is not None and revision < session.playback_revision):
        return {"buffering": recorded, "revision": session.playback_revision}
    now = now_ms()
    key = _ready_key(session.pk, user_id)
    if buffering:
        ready_at = cache.get(key)
        if ready_at is not None and now - ready_at < BUFFERING_FLIP_MIN_MS:
            retry_after = (BUFFERING_FLIP_MIN_MS - (now - ready_at)) / 1000
            raise RateLimited(
                "Your player went buffering again too soon; report it again shortly.",
                retry_after=round(retry_after, 3),
            )
    else:
        cache.set(key, now, timeout=math.ceil(BUFFERING_FLIP_MIN_MS / 1000))
    member.buffering_since = timezone.now() if buffering else None
    SessionMember.objects.filter(pk=member.pk).update(buffering_since=member.buffering_since)
    if not buffering and session.waiting_until_ms is not None and not members_holding_start(session).exists():
        _release(session, timed_out=False)
    return {"buffering": buffering, "revision": session.playback_revision}


def playback_wait_recheck(session: ListeningSession) -> None:
    """Someone went away (left, removed): a waiting start nobody holds any more
    begins now rather than at its deadline. The caller holds the session's lock."""
    if (
        session.status == SessionStatus.LIVE
        and session.waiting_until_ms is not None
        and not members_holding_start(session).exists()
    ):
        _release(session, timed_out=False)


@transaction.atomic
def playback_wait_end(*, session_id: int, revision: int) -> bool:
    """The deadline of a start that waits for buffering members: if playback is
    still at ``revision`` and still waiting, it starts now, a lead ahead, without
    whoever is still buffering (``playback.state``, action ``start``; counted in
    ``listening_start_timeouts_total`` if someone was). Early, it checks again
    later. Idempotent: a stale or repeated call (the wait ended, was called off,
    or another command came) changes nothing. Returns whether it started."""
    session = session_locked_by_id(session_id)
    if (
        session is None
        or session.status != SessionStatus.LIVE
        or session.playback_revision != revision
        or session.waiting_until_ms is None
    ):
        return False
    now = now_ms()
    if now < session.waiting_until_ms:
        _wait_end_later(session.pk, revision, seconds=(session.waiting_until_ms - now) / 1000)
        return False
    # Late: those whose report could hold the start when the wait began and who
    # have not said they are ready since.
    wait_ms = settings.LISTENING_START_WAIT_MS
    began = session.waiting_until_ms - wait_ms
    reported_after = timezone.now() - timedelta(milliseconds=now - began + wait_ms)
    late = members_holding_start(session, reported_after=reported_after).exists()
    _release(session, timed_out=late)
    return True


# A reported moment further than this from the server's now means the client's
# clock is not synchronised (or the report sat in a queue): it says nothing.
_REPORT_WINDOW_MS = 30_000


def _integer(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(f"{field} must be a non-negative integer.", field=field)
    return value


def playback_position_report(
    *, actor: Principal, session_id: int, revision: Any, position_ms: Any, at_ms: Any
) -> dict[str, Any]:
    """A member's player was at ``position_ms`` at ``at_ms`` (server clock, as the
    client reckons it) while on playback ``revision``. Answers how far it drifted
    from the authoritative position and the correction to make
    (``listening.sync``); records the drift (``listening.metrics``). Reads only.
    A report on an older revision is answered ``stale`` with the state now."""
    user_id = user_of(actor)
    revision = _integer(revision, "revision")
    position_ms = _integer(position_ms, "position_ms")
    at_ms = _integer(at_ms, "at_ms")
    if abs(at_ms - now_ms()) > _REPORT_WINDOW_MS:
        raise Invalid("at_ms is not near the server's time: synchronise the clock (time.sync).", field="at_ms")
    session = ListeningSession.objects.select_related("track").filter(pk=session_id, tenant_id=actor.tenant_id).first()
    if session is None:
        raise NotFound("No such listening session.")
    require_live(session)
    member_present(session, user_id)
    if revision != session.playback_revision or session.track is None:
        return {"action": "stale", "state": state_payload(session)}
    expected = session.position_at(at_ms)
    drift = position_ms - expected
    fix = correction(drift_ms=drift, session_rate=session.rate)
    drift_record(session_id=session.pk, drift_ms=drift)
    return {
        "action": str(fix.action),
        "drift_ms": round(drift, 1),
        "rate": fix.rate,
        "duration_ms": fix.duration_ms,
        "position_ms": expected,
        "at_ms": at_ms,
        "revision": session.playback_revision,
    }
