"""Events listening sessions broadcast, their payloads, and the one helper that sends them.

Everything goes to the session's fan-out topic (``realtime.groups.session_topic``),
outside any sequence: ``playback.state`` carries the whole state with its
``revision``, so a client keeps the highest revision it has seen and a lost
frame costs nothing once the next one arrives (``session.join`` answers with
the current state). Only ``listening.services`` send these. docs/protocol.md,
"Listening sessions", is the reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from realtime.events import Event
from realtime.fanout import get_fanout, publish_on_commit
from realtime.groups import session_topic
from realtime.protocol import encode, envelope

from .constants import WAITING_MEMBERS_LISTED, SessionStatus
from .models import ListeningSession, SessionMember


@dataclass(frozen=True)
class PlaybackStateEvent(Event):
    """The playback state from ``anchor_ms`` (server clock, Unix ms) on: the track
    is at ``position_ms`` then, and advances at ``rate`` while ``playing``.
    ``anchor_ms`` of a command is slightly in the future, so every client starts together.
    ``waiting`` (null unless a start waits for members whose player is buffering):
    ``{until_ms, members, count}``, playback begins when they are ready or at
    ``until_ms`` (server clock), whichever comes first; ``playing`` is false meanwhile."""

    type: ClassVar[str] = "playback.state"
    session: int
    revision: int
    track: dict[str, Any] | None
    position_ms: int
    anchor_ms: int
    playing: bool
    rate: float
    volume: int
    radio: bool
    action: str
    by: int | None
    waiting: dict[str, Any] | None


@dataclass(frozen=True)
class SessionMemberEvent(Event):
    """Someone joined or left (``type``), with the audience size after it."""

    type: ClassVar[str] = "session.member"
    session: int
    user: int
    username: str
    role: str
    change: str  # joined, left, role
    audience: int


@dataclass(frozen=True)
class SessionHostChangedEvent(Event):
    type: ClassVar[str] = "session.host_changed"
    session: int
    host: int
    username: str
    reason: str


@dataclass(frozen=True)
class SessionReactionsEvent(Event):
    """The audience's reactions of the last window, counted per emoji."""

    type: ClassVar[str] = "session.reactions"
    session: int
    counts: dict[str, int]
    window_ms: int


@dataclass(frozen=True)
class SessionModeratedEvent(Event):
    """Sent to a member's own sockets (channel layer, user group): the host muted,
    unmuted or removed them. Removed sockets stop following the session."""

    type: ClassVar[str] = "session.moderated"
    session: int
    action: str  # muted, unmuted, removed


@dataclass(frozen=True)
class SessionVotesEvent(Event):
    """Votes to skip the current track so far, and how many skip it."""

    type: ClassVar[str] = "session.votes"
    session: int
    votes: int
    needed: int


@dataclass(frozen=True)
class SessionEndedEvent(Event):
    type: ClassVar[str] = "session.ended"
    session: int
    reason: str


@dataclass(frozen=True)
class DeviceActiveEvent(Event):
    """Sent to the user's own sockets (channel layer, user group): ``device_id`` is
    now the device that plays, ``previous`` the one that stops (null if none).
    ``playback`` is the state of the live session the user is in (null if none),
    as of ``server_time_ms``, so the new device resumes at the right position."""

    type: ClassVar[str] = "device.active"
    device_id: str
    name: str
    kind: str
    previous: str | None
    session: int | None
    playback: dict[str, Any] | None
    server_time_ms: int


@dataclass(frozen=True)
class DeviceForgottenEvent(Event):
    """Sent to the user's own sockets: ``device_id`` was forgotten; if it was the
    active one (``was_active``), no device of the user plays any more."""

    type: ClassVar[str] = "device.forgotten"
    device_id: str
    was_active: bool


@dataclass(frozen=True)
class SessionDjsEvent(Event):
    """The DJ rotation (dj mode): who is on deck (``dj`` {id, username}, null when
    nobody), who waits in order (``waitlist`` [{user, username}], the deck not
    included), and the turn: ``turn_played`` of ``turn_tracks`` tracks so far."""

    type: ClassVar[str] = "session.djs"
    session: int
    dj: dict[str, Any] | None
    waitlist: list[dict[str, Any]]
    turn_tracks: int
    turn_played: int


@dataclass(frozen=True)
class SessionRequestsEvent(Event):
    """One audience request changed (created, voted, withdrawn, accepted, rejected):
    ``request`` {id, track {…}, requested_by {id, username}, status, votes}."""

    type: ClassVar[str] = "session.requests"
    session: int
    request: dict[str, Any]


@dataclass(frozen=True)
class SessionInvitedEvent(Event):
    """Sent to the invitee's own sockets (channel layer, user group): they may join
    the session now, even one by invitation only. ``host`` and ``invited_by`` are
    ``{id, username}``."""

    type: ClassVar[str] = "session.invited"
    session: int
    title: str
    mode: str
    host: dict[str, Any]
    invited_by: dict[str, Any]


def track_payload(track) -> dict[str, Any] | None:
    if track is None:
        return None
    return {
        "id": track.pk,
        "uri": track.uri,
        "title": track.title,
        "artist": track.artist,
        "album": track.album,
        "duration_ms": track.duration_ms,
    }


def playback_state_event(session: ListeningSession, *, action: str, by: int | None) -> PlaybackStateEvent:
    return PlaybackStateEvent(
        session=session.pk,
        revision=session.playback_revision,
        track=track_payload(session.track),
        position_ms=session.position_ms,
        anchor_ms=session.anchor_ms,
        playing=session.playing,
        rate=session.rate,
        volume=session.volume,
        radio=session.radio,
        action=action,
        by=by,
        waiting=waiting_payload(session),
    )


def members_holding_start(session: ListeningSession, *, reported_after: datetime | None = None) -> QuerySet:
    """Present members whose player reports it is buffering, reported after
    ``reported_after`` (by default: within ``LISTENING_START_WAIT_MS`` of now).
    A start waits for them; an older report lapses, so a crashed player that
    never said it was ready holds nobody."""
    if reported_after is None:
        reported_after = timezone.now() - timedelta(milliseconds=settings.LISTENING_START_WAIT_MS)
    return SessionMember.objects.filter(session=session, left_at__isnull=True, buffering_since__gte=reported_after)


def waiting_payload(session: ListeningSession) -> dict[str, Any] | None:
    """``{until_ms, members, count}`` of a waiting start (the first
    ``WAITING_MEMBERS_LISTED`` user ids, longest buffering first), else null
    (an ended session waits for nothing)."""
    if session.waiting_until_ms is None or session.status != SessionStatus.LIVE:
        return None
    holding = members_holding_start(session).order_by("buffering_since", "pk")
    members = list(holding.values_list("user_id", flat=True)[:WAITING_MEMBERS_LISTED])
    count = len(members) if len(members) < WAITING_MEMBERS_LISTED else holding.count()
    return {"until_ms": session.waiting_until_ms, "members": members, "count": count}


def session_event_send(*, session: ListeningSession, event: Event) -> None:
    """Publish ``event`` to the session's subscribers once the transaction commits."""
    publish_on_commit(
        topic=session_topic(tenant_id=session.tenant_id, session_id=session.pk),
        frame=envelope(event.type, asdict(event)),
    )


async def session_reactions_publish(*, tenant_id: int, session_id: int, counts: dict[str, int], window_ms: int) -> None:
    """Broadcast one window of reactions (ephemeral, nothing stored: published at once)."""
    event = SessionReactionsEvent(session=session_id, counts=counts, window_ms=window_ms)
    await get_fanout().publish(
        session_topic(tenant_id=tenant_id, session_id=session_id), encode(envelope(event.type, asdict(event)))
    )
