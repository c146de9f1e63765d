"""Listening sessions: their life, their members, and playback.

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
import secrets
import threading
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from chat.constants import RoomKind
from chat.services.rooms import room_create, room_join
from playlists.constants import CollaboratorRole, PlaylistKind, Visibility
from playlists.models import PlaylistCollaborator, Track, TrackPlay
from playlists.services.editing import queue_append_do, queue_pop_do
from playlists.services.playlists import playlist_create
from playlists.suggestions import suggestions_for_tracks
from realtime.events import event_send_on_commit
from realtime.groups import user_group
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound

from .constants import (
    PLAYBACK_LEAD_MS,
    RADIO_BATCH,
    RADIO_SEEDS,
    SESSION_TITLE_MAX_LENGTH,
    VOLUME_MAX,
    MemberRole,
    PlaybackAction,
    SessionMode,
    SessionStatus,
)
from .events import (
    SessionEndedEvent,
    SessionHostChangedEvent,
    SessionMemberEvent,
    SessionModeratedEvent,
    SessionVotesEvent,
    playback_state_event,
    session_event_send,
)
from .metrics import drift_record
from .models import ListeningSession, SessionMember, SkipVote
from .sync import correction

# A track-end check scheduled this much after the computed end: clocks and the
# broker are not exact, and an early check would have to reschedule itself.
_ADVANCE_SLACK_MS = 200
# Celery refuses countdowns past the broker's visibility timeout
# (spotify_agent.celery); a longer track is checked again before then.
_ADVANCE_MAX_COUNTDOWN = 3000


def now_ms() -> int:
    """The server clock playback uses: Unix time in milliseconds."""
    return int(time.time() * 1000)


def _user(actor: Principal) -> int:
    if actor.user_id is None:
        raise Forbidden("Only users take part in listening sessions.")
    return actor.user_id


def _locked(*, actor: Principal, session_id: int) -> ListeningSession:
    session = (
        ListeningSession.objects.select_for_update(of=("self",))
        .select_related("track")
        .filter(pk=session_id, tenant_id=actor.tenant_id)
        .first()
    )
    if session is None:
        raise NotFound("No such listening session.")
    return session


def _live(session: ListeningSession) -> None:
    if session.status != SessionStatus.LIVE:
        raise Conflict("The session has ended.")


def _member(session: ListeningSession, user_id: int) -> SessionMember:
    member = SessionMember.objects.filter(session=session, user_id=user_id, left_at__isnull=True).first()
    if member is None:
        raise Forbidden("Join the session first.")
    return member


def _audience(session: ListeningSession) -> int:
    return SessionMember.objects.filter(session=session, left_at__isnull=True).count()


def _queue_role(session: ListeningSession, member_role: str) -> str:
    """The member's role on the queue: editors where they control playback."""
    if session.mode == SessionMode.GROUP or member_role in (MemberRole.HOST, MemberRole.CO_DJ):
        return CollaboratorRole.EDITOR
    return CollaboratorRole.VIEWER


def _grant_queue(session: ListeningSession, member: SessionMember) -> None:
    # The queue's owner row (the creating host) stays as it is.
    if session.queue.owner_id == member.user_id:
        return
    PlaylistCollaborator.objects.update_or_create(
        playlist_id=session.queue_id,
        user_id=member.user_id,
        defaults={"tenant_id": session.tenant_id, "role": _queue_role(session, member.role)},
    )


def _member_event(session: ListeningSession, member: SessionMember, *, change: str, username: str) -> None:
    session_event_send(
        session=session,
        event=SessionMemberEvent(
            session=session.pk,
            user=member.user_id,
            username=username,
            role=member.role,
            change=change,
            audience=_audience(session),
        ),
    )


# --- Sessions ------------------------------------------------------------------------------


def _clean_title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > SESSION_TITLE_MAX_LENGTH:
        raise Invalid(f"title must be 1-{SESSION_TITLE_MAX_LENGTH} characters.", field="title")
    return value.strip()


@transaction.atomic
def session_create(
    *, actor: Principal, title: Any, mode: Any = SessionMode.GROUP, vote_skip_threshold: Any = 0.5
) -> ListeningSession:
    """A live session hosted by the caller, with its queue (an empty playlist of
    kind ``queue``) and its chat room (public in the tenant, the host its owner).
    ``vote_skip_threshold``: the share of present members whose votes skip a track."""
    user_id = _user(actor)
    title = _clean_title(title)
    if mode not in SessionMode.values:
        raise Invalid(f"mode must be one of {', '.join(SessionMode.values)}.", field="mode")
    if isinstance(vote_skip_threshold, bool) or not isinstance(vote_skip_threshold, int | float):
        raise Invalid("vote_skip_threshold must be a number.", field="vote_skip_threshold")
    if not 0 < vote_skip_threshold <= 1:
        raise Invalid("vote_skip_threshold must be above 0 and at most 1.", field="vote_skip_threshold")
    queue = playlist_create(actor=actor, title=title[:150] + " (queue)", visibility=Visibility.PRIVATE)
    queue.kind = PlaylistKind.QUEUE
    queue.save(update_fields=["kind"])
    room = room_create(actor=actor, name=f"Listening: {title[:60]} {secrets.token_hex(3)}", kind=RoomKind.PUBLIC)
    session = ListeningSession.objects.create(
        tenant_id=actor.tenant_id,
        host_id=user_id,
        title=title,
        mode=mode,
        queue=queue,
        room=room,
        audience_limit=settings.LISTENING_AUDIENCE_LIMIT,
        vote_skip_threshold=vote_skip_threshold,
        anchor_ms=now_ms(),
    )
    SessionMember.objects.create(
        tenant_id=actor.tenant_id, session=session, user_id=user_id, role=MemberRole.HOST, joined_at=timezone.now()
    )
    return session


@transaction.atomic
def session_join(*, actor: Principal, session_id: int) -> SessionMember:
    """Join a live session of the tenant (and its chat room). Idempotent for a
    present member. Refused (``Conflict``) past the audience limit or once ended.
    Emits ``session.member`` (joined)."""
    user_id = _user(actor)
    session = _locked(actor=actor, session_id=session_id)
    _live(session)
    member = SessionMember.objects.filter(session=session, user_id=user_id).first()
    if member is not None and member.removed_at is not None:
        raise Forbidden("The host removed you from this session.")
    if member is not None and member.left_at is None:
        return member
    if _audience(session) >= session.audience_limit:
        raise Conflict("The session is full.", details={"audience_limit": session.audience_limit})
    if member is None:
        member = SessionMember.objects.create(
            tenant_id=session.tenant_id, session=session, user_id=user_id, joined_at=timezone.now()
        )
    else:
        member.left_at, member.joined_at, member.role = None, timezone.now(), MemberRole.LISTENER
        member.save(update_fields=["left_at", "joined_at", "role"])
    _grant_queue(session, member)
    room_join(actor=actor, room_id=session.room_id)
    _member_event(session, member, change="joined", username=actor.username or "")
    return member


def _next_host(session: ListeningSession) -> SessionMember | None:
    """A co-DJ first, else the member present longest."""
    present = SessionMember.objects.filter(session=session, left_at__isnull=True).exclude(user_id=session.host_id)
    return (
        present.filter(role=MemberRole.CO_DJ).order_by("joined_at", "pk").first()
        or present.order_by("joined_at", "pk").first()
    )


def _end(session: ListeningSession, *, reason: str) -> None:
    if session.playing:
        _record_plays(session, at_ms=now_ms())
    session.status, session.ended_at = SessionStatus.ENDED, timezone.now()
    if session.playing:
        session.position_ms, session.anchor_ms, session.playing = session.position_at(now_ms()), now_ms(), False
        session.playback_revision += 1
    session.save()
    SessionMember.objects.filter(session=session, left_at__isnull=True).update(left_at=session.ended_at)
    session_event_send(session=session, event=SessionEndedEvent(session=session.pk, reason=reason))


@transaction.atomic
def session_leave(*, actor: Principal, session_id: int) -> None:
    """Leave the session. A leaving host hands off to a co-DJ, else to the member
    present longest (``session.host_changed``); with nobody left, the session ends."""
    user_id = _user(actor)
    session = _locked(actor=actor, session_id=session_id)
    member = _member(session, user_id)
    member.left_at = timezone.now()
    member.save(update_fields=["left_at"])
    if session.queue.owner_id != user_id:
        PlaylistCollaborator.objects.filter(playlist_id=session.queue_id, user_id=user_id).delete()
    _member_event(session, member, change="left", username=actor.username or "")
    if session.status != SessionStatus.LIVE or session.host_id != user_id:
        return
    successor = _next_host(session)
    if successor is None:
        _end(session, reason="everyone_left")
        return
    successor.role = MemberRole.HOST
    successor.save(update_fields=["role"])
    session.host_id = successor.user_id
    session.save(update_fields=["host"])
    _grant_queue(session, successor)
    session_event_send(
        session=session,
        event=SessionHostChangedEvent(
            session=session.pk, host=successor.user_id, username=successor.user.get_username(), reason="host_left"
        ),
    )


@transaction.atomic
def session_end(*, actor: Principal, session_id: int) -> ListeningSession:
    """The host ends the session: playback stops, members are let go, history stays."""
    session = _locked(actor=actor, session_id=session_id)
    if session.host_id != _user(actor):
        raise Forbidden("Only the host ends the session.")
    _live(session)
    _end(session, reason="ended_by_host")
    return session


@transaction.atomic
def member_role_set(*, actor: Principal, session_id: int, user_id: Any, role: Any) -> SessionMember:
    """The host makes a present member a co-DJ or a listener again."""
    session = _locked(actor=actor, session_id=session_id)
    _live(session)
    if session.host_id != _user(actor):
        raise Forbidden("Only the host assigns co-DJs.")
    if role not in (MemberRole.CO_DJ, MemberRole.LISTENER):
        raise Invalid("role must be co_dj or listener.", field="role")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id == session.host_id:
        raise Invalid("user must be a present member other than the host.", field="user")
    member = (
        SessionMember.objects.select_related("user")
        .filter(session=session, user_id=user_id, left_at__isnull=True)
        .first()
    )
    if member is None:
        raise NotFound("That user is not in the session.")
    member.role = role
    member.save(update_fields=["role"])
    _grant_queue(session, member)
    _member_event(session, member, change="role", username=member.user.get_username())
    return member


def _moderated(*, actor: Principal, session_id: int, user_id: Any) -> tuple[ListeningSession, SessionMember]:
    """The session (locked) and a present member other than the host, if the caller hosts it."""
    session = _locked(actor=actor, session_id=session_id)
    _live(session)
    if session.host_id != _user(actor):
        raise Forbidden("Only the host mutes or removes members.")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id == session.host_id:
        raise Invalid("user must be a present member other than the host.", field="user")
    member = (
        SessionMember.objects.select_related("user")
        .filter(session=session, user_id=user_id, left_at__isnull=True)
        .first()
    )
    if member is None:
        raise NotFound("That user is not in the session.")
    return session, member


def _audit(*, action: str, actor: Principal, session: ListeningSession, user_id: int, context: RequestContext) -> None:
    audit_record(
        action=action,
        actor=Actor.from_principal(actor),
        tenant_id=session.tenant_id,
        target_type="listening_session",
        target_id=session.pk,
        context=context,
        details={"user": user_id},
    )


def _tell_member(session: ListeningSession, user_id: int, action: str) -> None:
    event_send_on_commit(
        group=user_group(tenant_id=session.tenant_id, user_id=user_id),
        event=SessionModeratedEvent(session=session.pk, action=action),
    )


@transaction.atomic
def member_mute(
    *, actor: Principal, session_id: int, user_id: Any, muted: Any = True, context: RequestContext = NO_CONTEXT
) -> SessionMember:
    """The host mutes a member (no reactions, no playback commands) or lifts it.
    Audited; the member's sockets are told (``session.moderated``). Idempotent."""
    if not isinstance(muted, bool):
        raise Invalid("muted must be true or false.", field="muted")
    session, member = _moderated(actor=actor, session_id=session_id, user_id=user_id)
    if (member.muted_at is not None) == muted:
        return member
    member.muted_at = timezone.now() if muted else None
    member.save(update_fields=["muted_at"])
    action = AuditAction.LISTENING_MEMBER_MUTED if muted else AuditAction.LISTENING_MEMBER_UNMUTED
    _audit(action=action, actor=actor, session=session, user_id=member.user_id, context=context)
    _tell_member(session, member.user_id, "muted" if muted else "unmuted")
    return member


@transaction.atomic
def member_remove(
    *, actor: Principal, session_id: int, user_id: Any, context: RequestContext = NO_CONTEXT
) -> SessionMember:
    """The host removes a member, who may not join again. Audited; the member's
    sockets stop following the session; the others see them leave."""
    session, member = _moderated(actor=actor, session_id=session_id, user_id=user_id)
    member.left_at = member.removed_at = timezone.now()
    member.save(update_fields=["left_at", "removed_at"])
    if session.queue.owner_id != member.user_id:
        PlaylistCollaborator.objects.filter(playlist_id=session.queue_id, user_id=member.user_id).delete()
    removed = AuditAction.LISTENING_MEMBER_REMOVED
    _audit(action=removed, actor=actor, session=session, user_id=member.user_id, context=context)
    _member_event(session, member, change="removed", username=member.user.get_username())
    _tell_member(session, member.user_id, "removed")
    return member


@transaction.atomic
def session_radio_set(*, actor: Principal, session_id: int, on: Any) -> dict[str, Any]:
    """Turn radio mode on or off; whoever controls playback may. A new playback
    revision (``playback.state`` with action ``radio``). Idempotent."""
    if not isinstance(on, bool):
        raise Invalid("on must be true or false.", field="on")
    user_id = _user(actor)
    session = _locked(actor=actor, session_id=session_id)
    _live(session)
    if not _controls(session, _member(session, user_id)):
        raise Forbidden("Only those who control playback switch the radio.")
    if session.radio != on:
        session.radio = on
        _commit(session, action="radio", by=user_id)
    return state_payload(session, action="radio", by=user_id)


# --- Playback ------------------------------------------------------------------------------


def state_payload(session: ListeningSession, *, action: str = "state", by: int | None = None) -> dict[str, Any]:
    return asdict(playback_state_event(session, action=action, by=by))


def _controls(session: ListeningSession, member: SessionMember) -> bool:
    if member.muted_at is not None:
        return False
    return session.mode == SessionMode.GROUP or member.role in (MemberRole.HOST, MemberRole.CO_DJ)


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


def _record_plays(session: ListeningSession, *, at_ms: int) -> None:
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
    _record_plays(session, at_ms=at_ms)
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
    from .tasks import playback_advance as playback_advance_task

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
    user_id = _user(actor)
    session = _locked(actor=actor, session_id=session_id)
    _live(session)
    if not _controls(session, _member(session, user_id)):
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
    user_id = _user(actor)
    session = _locked(actor=actor, session_id=session_id)
    _live(session)
    member = _member(session, user_id)
    if member.muted_at is not None:
        raise Forbidden("The host muted you in this session.")
    if session.track is None:
        raise Conflict("Nothing is playing.")
    SkipVote.objects.get_or_create(
        session=session, user_id=user_id, track_serial=session.track_serial, defaults={"tenant_id": session.tenant_id}
    )
    present = SessionMember.objects.filter(session=session, left_at__isnull=True).values("user_id")
    votes = SkipVote.objects.filter(session=session, track_serial=session.track_serial, user_id__in=present).count()
    needed = max(1, math.ceil(session.vote_skip_threshold * _audience(session)))
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
    user_id = _user(actor)
    revision = _integer(revision, "revision")
    position_ms = _integer(position_ms, "position_ms")
    at_ms = _integer(at_ms, "at_ms")
    if abs(at_ms - now_ms()) > _REPORT_WINDOW_MS:
        raise Invalid("at_ms is not near the server's time: synchronise the clock (time.sync).", field="at_ms")
    session = ListeningSession.objects.select_related("track").filter(pk=session_id, tenant_id=actor.tenant_id).first()
    if session is None:
        raise NotFound("No such listening session.")
    _live(session)
    _member(session, user_id)
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
