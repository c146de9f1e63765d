"""Reads of listening sessions shared by the WebSocket handlers, the REST API
(``listening.api``) and the admin: what a member sees of a session when they
join, who may see a session at all (``session_open_to``, the one rule of
invitations), the tenant's listing, the queue, the play history, next-track
suggestions (``session_next_tracks``, which radio mode uses too) and a user's
devices. docs/protocol.md, "Listening sessions"; docs/api.md, "Listening sessions"."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet

from accounts.principals import Principal
from playlists.models import PlaylistItem, TrackPlay
from playlists.selectors import playlist_state_now
from playlists.selectors import state_payload as playlist_state_payload
from playlists.suggestions import Suggestion, suggestions_for_tracks
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound

from .constants import (
    RADIO_SEEDS,
    REQUESTS_LISTED,
    REQUESTS_LISTED_MAX,
    RequestStatus,
    SessionMode,
    SessionStatus,
    SessionVisibility,
)
from .events import track_payload
from .models import Device, ListeningSession, RequestVote, SessionInvite, SessionMember, TrackRequest
from .services.common import member_present, now_ms, state_payload, user_of
from .services.djs import deck_payload
from .services.requests import request_payload

# Members listed in a join's answer; a concert-sized audience is counted, not listed.
MEMBERS_LISTED = 100
# The listing's page over the WebSocket (``session.list``), by default and at
# most: a screenful of sessions to pick from; REST pages with its cursor.
SESSIONS_LISTED = 50
SESSIONS_LISTED_MAX = 100
# Next-track suggestions answered by default: what a "play next" list shows.
# At most ``SUGGESTION_MAX_RESULTS``, as for playlists.
SESSION_SUGGESTIONS = 10
# Tracks a session played that suggestions leave out: the latest this many, a
# long night's worth (some seven hours of music) and a bound on the read.
SESSION_PLAYED_EXCLUDED = 120


# --- Who may see a session ---------------------------------------------------------


def session_open_to(user_id: int) -> Q:
    """Sessions a user may see and join (a filter on ``ListeningSession``): public
    ones, and those by invitation only that they host, were invited to or were in;
    never one whose host removed them. The one rule of invitations: the listing,
    the reads and ``session_join`` all apply it."""
    mine = {"session": OuterRef("pk"), "user_id": user_id}
    removed = SessionMember.objects.filter(**mine, removed_at__isnull=False)
    admitted = (
        Q(visibility=SessionVisibility.PUBLIC)
        | Q(host_id=user_id)
        | Exists(SessionMember.objects.filter(**mine))
        | Exists(SessionInvite.objects.filter(**mine))
    )
    return ~Exists(removed) & admitted


def session_open_check(session: ListeningSession, user_id: int) -> None:
    """``Forbidden`` unless the session is open to the user (``session_open_to``)."""
    if ListeningSession.objects.filter(pk=session.pk).filter(session_open_to(user_id)).exists():
        return
    if SessionMember.objects.filter(session=session, user_id=user_id, removed_at__isnull=False).exists():
        raise Forbidden("The host removed you from this session.")
    raise Forbidden("This session is by invitation only.")


def _session_readable(*, actor: Principal, session_id: int, related: tuple[str, ...] = ()) -> ListeningSession:
    """A session of the caller's tenant (else ``NotFound``) open to the caller; API
    clients (reading with ``listening:read``) see every session of their tenant."""
    session = ListeningSession.objects.select_related(*related).filter(pk=session_id, tenant_id=actor.tenant_id).first()
    if session is None:
        raise NotFound("No such listening session.")
    if actor.user_id is not None:
        session_open_check(session, actor.user_id)
    return session


def _limit(value: Any, *, default: int, maximum: int) -> int:
    """A count as sent (``None``: the default), clamped to 1..``maximum``."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("limit must be an integer.", field="limit")
    return max(1, min(value, maximum))


# --- A session --------------------------------------------------------------------


def session_state(*, actor: Principal, session_id: int) -> dict[str, Any]:
    """The session, the caller's role, who is there and the playback state (with
    the server's time now, so a client can place itself at once). A user reads a
    session open to them (``session_open_to``, else ``Forbidden``); an API client
    reads any of its tenant's, with ``role`` null."""
    session = _session_readable(actor=actor, session_id=session_id, related=("host", "track"))
    present = SessionMember.objects.filter(session=session, left_at__isnull=True).select_related("user")
    mine, muted_at = present.filter(user_id=actor.user_id).values_list("role", "muted_at").first() or (None, None)
    return {
        "session": session.pk,
        "title": session.title,
        "mode": session.mode,
        "visibility": session.visibility,
        "vote_skip_threshold": session.vote_skip_threshold,
        "status": session.status,
        "host": {"id": session.host_id, "username": session.host.get_username()},
        "queue": session.queue_id,
        "room": str(session.room_id),
        "role": mine,
        "muted": muted_at is not None,
        "audience": present.count(),
        "members": [
            {"user": member.user_id, "username": member.user.get_username(), "role": member.role}
            for member in present.order_by("joined_at", "pk")[:MEMBERS_LISTED]
        ],
        "playback": state_payload(session),
        "server_time_ms": now_ms(),
    }


def session_queue(*, actor: Principal, session_id: int) -> dict[str, Any]:
    """The session's queue now: its items in order, each with its track, and the
    queue playlist's revision they are at (edits go through the playlist engine
    on ``queue``). Readable as ``session_state`` is."""
    session = _session_readable(actor=actor, session_id=session_id, related=("queue",))
    state = playlist_state_now(playlist=session.queue)
    payload = playlist_state_payload(playlist=session.queue, state=state)
    return {
        "session": session.pk,
        "queue": session.queue_id,
        "revision": payload["revision"],
        "items": payload["items"],
    }


def session_plays(*, actor: Principal, session_id: int) -> QuerySet[TrackPlay]:
    """The session's play history (``playlists.TrackPlay``, one row per member
    present when a track left), newest first, with user and track loaded.
    Readable as ``session_state`` is."""
    session = _session_readable(actor=actor, session_id=session_id)
    return TrackPlay.objects.filter(session=session).select_related("user", "track").order_by("-id")


# --- The listing -----------------------------------------------------------------


def sessions_listed(*, actor: Principal) -> QuerySet[ListeningSession]:
    """The live sessions of the caller's tenant a user may see (``session_open_to``:
    public ones, and invite-only ones they were invited to or were in), every live
    one for an API client; each annotated with ``audience`` (members present,
    counted in the same query), host and track loaded. The most listened first,
    then the newest."""
    sessions = ListeningSession.objects.filter(tenant_id=actor.tenant_id, status=SessionStatus.LIVE)
    if actor.user_id is not None:
        sessions = sessions.filter(session_open_to(actor.user_id))
    return (
        sessions.select_related("host", "track")
        .annotate(audience=Count("members", filter=Q(members__left_at__isnull=True)))
        .order_by("-audience", "-created_at", "-id")
    )


def session_listed_payload(session: ListeningSession) -> dict[str, Any]:
    """One row of the listing (a session from ``sessions_listed``)."""
    return {
        "id": session.pk,
        "title": session.title,
        "mode": session.mode,
        "visibility": session.visibility,
        "host": {"id": session.host_id, "username": session.host.get_username()},
        "audience": session.audience,
        "track": track_payload(session.track),
        "playing": session.playing,
        "created_at": session.created_at.isoformat().replace("+00:00", "Z"),
    }


def sessions_listed_page(*, actor: Principal, limit: Any = None) -> list[dict[str, Any]]:
    """The listing's first ``limit`` rows (``SESSIONS_LISTED`` by default, at most
    ``SESSIONS_LISTED_MAX``), as ``session.list`` answers them."""
    limit = _limit(limit, default=SESSIONS_LISTED, maximum=SESSIONS_LISTED_MAX)
    return [session_listed_payload(session) for session in sessions_listed(actor=actor)[:limit]]


# --- Next tracks -----------------------------------------------------------------


def session_next_tracks(session: ListeningSession, *, limit: int) -> list[Suggestion]:
    """Up to ``limit`` tracks to play next in the session, best first, from the
    item-item model of playlist suggestions (``playlists.suggestions``), seeded by
    the current track, the latest tracks played and the queue (``RADIO_SEEDS`` of
    them, in that order); never one queued, playing or among the latest
    ``SESSION_PLAYED_EXCLUDED`` played. Radio mode tops up an empty queue with these."""
    played = list(
        TrackPlay.objects.filter(session=session)
        .values("track_id")
        .annotate(last=Max("played_at"))
        .order_by("-last", "track_id")
        .values_list("track_id", flat=True)[:SESSION_PLAYED_EXCLUDED]
    )
    queued = list(
        PlaylistItem.objects.filter(playlist_id=session.queue_id)
        .order_by("position")
        .values_list("track_id", flat=True)
    )
    current = [session.track_id] if session.track_id is not None else []
    seeds = list(dict.fromkeys([*current, *played, *queued]))[:RADIO_SEEDS]
    excluded = {*current, *played, *queued}
    # The model leaves out the seeds only: ask for enough to make up for the rest.
    picks = suggestions_for_tracks(tenant_id=session.tenant_id, track_ids=seeds, limit=limit + len(excluded))
    return [pick for pick in picks if pick.track.pk not in excluded][:limit]


def session_recommendations(*, actor: Principal, session_id: int, limit: Any = None) -> list[dict[str, Any]]:
    """Next-track suggestions for a live session (``session_next_tracks``), each
    with why, in the shape of playlist suggestions. For its present members, and
    API clients of the tenant. ``limit``: ``SESSION_SUGGESTIONS`` by default,
    clamped to 1..``SUGGESTION_MAX_RESULTS``."""
    limit = _limit(limit, default=SESSION_SUGGESTIONS, maximum=settings.SUGGESTION_MAX_RESULTS)
    session = ListeningSession.objects.filter(pk=session_id, tenant_id=actor.tenant_id).first()
    if session is None:
        raise NotFound("No such listening session.")
    if session.status != SessionStatus.LIVE:
        raise Conflict("The session has ended.")
    if actor.user_id is not None:
        member_present(session, actor.user_id)
    return [
        {
            "track": track_payload(pick.track),
            "score": round(pick.score, 6),
            "reason": pick.reason,
            "because_track": pick.because_track_id,
            "kind": pick.kind,
        }
        for pick in session_next_tracks(session, limit=limit)
    ]


def devices_for_user(*, actor: Principal) -> list[Device]:
    """The caller's devices, the active one first, then the most recently seen
    (at most ``listening.services.devices.DEVICES_PER_USER``: not paginated).
    Users only (API clients: ``forbidden``)."""
    user_id = user_of(actor)
    return list(
        Device.objects.filter(tenant_id=actor.tenant_id, user_id=user_id).order_by("-active", "-last_seen_at", "pk")
    )


# --- The audience of a DJ session: the wait list and requests --------------------------


def _audience_session(*, actor: Principal, session_id: int, message: str) -> ListeningSession:
    """A dj session of the caller's tenant (else ``NotFound``; another mode is
    ``Conflict`` with ``message``) that a user reads while present (else
    ``Forbidden``); API clients (``listening:read``) read any of their tenant's."""
    session = ListeningSession.objects.filter(pk=session_id, tenant_id=actor.tenant_id).first()
    if session is None:
        raise NotFound("No such listening session.")
    if session.mode != SessionMode.DJ:
        raise Conflict(message)
    if actor.user_id is not None:
        member_present(session, actor.user_id)
    return session


def waitlist_state(*, actor: Principal, session_id: int) -> dict[str, Any]:
    """Who is on deck, who waits in order and the turn, as ``session.djs`` carries
    them (``listening.services.djs``)."""
    session = _audience_session(actor=actor, session_id=session_id, message="Only DJ sessions have a wait list.")
    return deck_payload(session)


def requests_pending(*, actor: Principal, session_id: int, limit: Any = None) -> dict[str, Any]:
    """The session's pending requests, the most voted first, then the oldest, at
    most ``limit`` (``REQUESTS_LISTED`` by default, clamped to 1..
    ``REQUESTS_LISTED_MAX``), each with ``voted``: whether the caller voted for
    it (always false for an API client)."""
    limit = _limit(limit, default=REQUESTS_LISTED, maximum=REQUESTS_LISTED_MAX)
    session = _audience_session(actor=actor, session_id=session_id, message="Only DJ sessions take requests.")
    pending = (
        TrackRequest.objects.filter(session=session, status=RequestStatus.PENDING)
        .select_related("track", "requested_by")
        .annotate(voted=Exists(RequestVote.objects.filter(request=OuterRef("pk"), user_id=actor.user_id)))
        .order_by("-votes", "created_at", "pk")[:limit]
    )
    return {
        "session": session.pk,
        "requests": [{**request_payload(request), "voted": request.voted} for request in pending],
    }
