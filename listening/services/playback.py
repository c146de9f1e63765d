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
from django.db import connection, transaction
from django.utils import timezone

from accounts.principals import Principal
from playlists.models import Track, TrackPlay
from playlists.services.editing import queue_append_do, queue_pop_do
from playlists.suggestions import suggestions_for_tracks
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound

from ..constants import (
    PLAYBACK_LEAD_MS,
    RADIO_BATCH,
    RADIO_SEEDS,
    VOLUME_MAX,
    PlaybackAction,
    SessionStatus,
)
from ..events import (
    SessionVotesEvent,
    playback_state_event,
    session_event_send,
)
from ..metrics import drift_record
from ..models import ListeningSession, SessionMember, SkipVote
from ..sync import correction
from .common import (
    audience_count,
    controls_playback,
    member_present,
    now_ms,
    require_live,
    session_locked,
    state_payload,
    user_of,
)

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
    """Radio mode on an empty queue: append suggestions from what the session
    played lately (the playlists' item-item model), none it played already."""
    recent = list(
        TrackPlay.objects.filter(session=session).order_by("-played_at").values_list("track_id", flat=True)[:50]
    )
    played = set(recent)
    seeds = list(dict.fromkeys(recent))[:RADIO_SEEDS]
    picks = suggestions_for_tracks(tenant_id=session.tenant_id, track_ids=seeds, limit=RADIO_BATCH + len(played))
    fresh = [pick.track.pk for pick in picks if pick.track.pk not in played][:RADIO_BATCH]
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


def _apply(session: ListeningSession, action: str, *, position_ms: Any, volume: Any, at_ms: int) -> None:
    current = session.position_at(at_ms)
    if action == PlaybackAction.PLAY:
        if session.track is None:
            _load_next(session, at_ms=at_ms)
            if session.track is None:
                raise Conflict("The queue is empty.")
            return
        session.position_ms = current if position_ms is None else _clean_position(position_ms, session)
        session.playing = True
    elif action == PlaybackAction.PAUSE:
        session.position_ms, session.playing = current, False
    elif action == PlaybackAction.SEEK:
        session.position_ms = _clean_position(position_ms, session)
    elif action == PlaybackAction.SKIP:
        _load_next(session, at_ms=at_ms)
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
        remaining = (session.track.duration_ms - session.position_ms) / session.rate
        due_ms = session.anchor_ms + int(remaining) + _ADVANCE_SLACK_MS
        _advance_later(session.pk, session.playback_revision, seconds=(due_ms - now_ms()) / 1000)


def _advance_later(session_id: int, revision: int, *, seconds: float) -> None:
    """Schedule ``playback_advance`` once the transaction commits, ``seconds`` from
    now (capped below the broker's visibility timeout; it re-checks then)."""
    from ..tasks import playback_advance as playback_advance_task

    countdown = min(max(0.0, seconds), _ADVANCE_MAX_COUNTDOWN)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # The embedded default runs tasks inline, and inline ignores a countdown:
        # the task would run at once, find the track unfinished and schedule
        # itself again, forever. There, a timer thread of this one process waits.
        transaction.on_commit(lambda: _timer(countdown, playback_advance_task, session_id, revision))
        return
    playback_advance_task.apply_async_on_commit((session_id, revision), countdown=countdown)


def _timer(countdown: float, task, session_id: int, revision: int) -> threading.Timer:
    def run() -> None:
        try:
            task.delay(session_id, revision)
        finally:
            connection.close()  # this thread's own connection

    timer = threading.Timer(countdown, run)
    timer.name = f"playback-advance-{session_id}-{revision}"
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
    now; emits ``playback.state``; schedules the track-end advance. Returns the
    new state."""
    if action not in PlaybackAction.values:
        raise Invalid(f"action must be one of {', '.join(PlaybackAction.values)}.", field="action")
    if isinstance(base_revision, bool) or not isinstance(base_revision, int) or base_revision < 0:
        raise Invalid("base_revision must be a non-negative integer.", field="base_revision")
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    if not controls_playback(session, member_present(session, user_id)):
        raise Forbidden("Only the host and co-DJs control playback in a DJ session, and nobody muted.")
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
    _load_next(session, at_ms=now_ms() + PLAYBACK_LEAD_MS)
    _commit(session, action="vote_skip", by=None)
    return {"votes": votes, "needed": needed, "skipped": True}


@transaction.atomic
def playback_advance(*, session_id: int, revision: int) -> bool:
    """The end of a track, checked by the server: if nothing changed playback since
    ``revision`` and the track has ended by the server's clock, the next queue
    item starts (or playback stops on an empty queue). Early (a track longer than
    a countdown allows), it checks again later. Idempotent: a stale or repeated
    call changes nothing. Returns whether it advanced."""
    session = (
        ListeningSession.objects.select_for_update(of=("self",)).select_related("track").filter(pk=session_id).first()
    )
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
    _load_next(session, at_ms=ended_at if now - ended_at <= PLAYBACK_LEAD_MS else now + PLAYBACK_LEAD_MS)
    _commit(session, action="advance", by=None)
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
