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
from typing import Any, ClassVar

from realtime.events import Event
from realtime.fanout import get_fanout, publish_on_commit
from realtime.groups import session_topic
from realtime.protocol import encode, envelope

from .models import ListeningSession


@dataclass(frozen=True)
class PlaybackStateEvent(Event):
    """The playback state from ``anchor_ms`` (server clock, Unix ms) on: the track
    is at ``position_ms`` then, and advances at ``rate`` while ``playing``.
    ``anchor_ms`` of a command is slightly in the future, so every client starts together."""

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
    )


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
