"""Audience requests (dj mode): a listener asks for a track, the audience votes,
a DJ accepts it into the queue or rejects it.

A request (``TrackRequest``) is pending until the host, a co-DJ or the DJ on
deck decides it, or its author withdraws it. One pending request per track and
session (a partial unique constraint): asking for a track someone already asked
for is a vote on theirs. The author's own request counts as their vote.
``votes`` is kept on the row, so the list orders by it; every write holds the
session's row lock, and votes move with ``F()`` updates beside the vote rows,
so the count matches the rows whatever the concurrency. Accepting appends the
track to the queue through the playlist engine's trusted path
(``playlists.services.editing.queue_append_do``, idempotent on
``request-<id>``), as the server, so it lands after whatever is queued.

Anyone present and unmuted may request and vote, DJs included (a co-DJ may put
a track to the DJ on deck and to the room's vote). Each change is broadcast as
``session.requests``, one request per frame. docs/protocol.md, "Requests".
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.principals import Principal
from playlists.models import PlaylistItem, Track
from playlists.services.editing import queue_append_do
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound

from ..constants import (
    REQUESTS_PENDING_PER_SESSION,
    REQUESTS_PENDING_PER_USER,
    RequestStatus,
    SessionMode,
)
from ..events import SessionRequestsEvent, session_event_send, track_payload
from ..models import ListeningSession, RequestVote, SessionMember, TrackRequest
from .common import controls_playback, member_present, require_live, session_locked, user_of


def require_requests(session: ListeningSession) -> None:
    if session.mode != SessionMode.DJ:
        raise Conflict("Only DJ sessions take requests.")


def request_payload(request: TrackRequest) -> dict[str, Any]:
    """A request as ``session.requests`` carries it (its track and author loaded)."""
    return {
        "id": request.pk,
        "track": track_payload(request.track),
        "requested_by": {"id": request.requested_by_id, "username": request.requested_by.get_username()},
        "status": request.status,
        "votes": request.votes,
    }


def _clean_id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Invalid(f"{field} must be a positive integer id.", field=field)
    return value


def _speaker(session: ListeningSession, user_id: int) -> SessionMember:
    """A present, unmuted member: who may request and vote."""
    member = member_present(session, user_id)
    if member.muted_at is not None:
        raise Forbidden("The host muted you in this session.")
    return member


def _locked(*, actor: Principal, session_id: int) -> ListeningSession:
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    require_requests(session)
    return session


def _request_of(session: ListeningSession, request_id: int) -> TrackRequest:
    request = (
        TrackRequest.objects.select_related("track", "requested_by").filter(pk=request_id, session=session).first()
    )
    if request is None:
        raise NotFound("No such request in this session.")
    return request


def _require_pending(request: TrackRequest) -> None:
    if request.status != RequestStatus.PENDING:
        raise Conflict(f"The request is {request.status} already.", details={"status": request.status})


def _changed(session: ListeningSession, request: TrackRequest) -> None:
    session_event_send(
        session=session, event=SessionRequestsEvent(session=session.pk, request=request_payload(request))
    )


def _answer(request: TrackRequest, *, voted: bool, **extra: Any) -> dict[str, Any]:
    return {**request_payload(request), "voted": voted, **extra}


def _vote(request: TrackRequest, user_id: int, *, vote: bool) -> bool:
    """Add or take back ``user_id``'s vote; returns whether the count moved."""
    if vote:
        _, moved = RequestVote.objects.get_or_create(
            request=request, user_id=user_id, defaults={"tenant_id": request.tenant_id}
        )
        delta = 1
    else:
        moved = RequestVote.objects.filter(request=request, user_id=user_id).delete()[0] > 0
        delta = -1
    if moved:
        TrackRequest.objects.filter(pk=request.pk).update(votes=F("votes") + delta)
        request.refresh_from_db(fields=["votes"])
    return moved


@transaction.atomic
def request_create(*, actor: Principal, session_id: int, track_id: Any) -> dict[str, Any]:
    """Request a track of the tenant's catalog in a live dj session (a present,
    unmuted member). A track with a pending request already: a vote on it
    (``created: false``; idempotent). Refused (``conflict``) when the track is
    playing or queued, or past ``REQUESTS_PENDING_PER_USER`` pending requests of
    the caller or ``REQUESTS_PENDING_PER_SESSION`` of the session. Emits
    ``session.requests``; returns the request with ``voted`` and ``created``."""
    track_id = _clean_id(track_id, "track")
    user_id = user_of(actor)
    session = _locked(actor=actor, session_id=session_id)
    _speaker(session, user_id)
    track = Track.objects.filter(pk=track_id, tenant_id=session.tenant_id).first()
    if track is None:
        raise NotFound("No such track.")
    pending = (
        TrackRequest.objects.select_related("track", "requested_by")
        .filter(session=session, track=track, status=RequestStatus.PENDING)
        .first()
    )
    if pending is not None:
        if _vote(pending, user_id, vote=True):
            _changed(session, pending)
        return _answer(pending, voted=True, created=False)
    if session.track_id == track.pk:
        raise Conflict("That track is playing now.")
    if PlaylistItem.objects.filter(playlist_id=session.queue_id, track_id=track.pk).exists():
        raise Conflict("That track is in the queue already.")
    pending_requests = TrackRequest.objects.filter(session=session, status=RequestStatus.PENDING)
    if pending_requests.filter(requested_by_id=user_id).count() >= REQUESTS_PENDING_PER_USER:
        raise Conflict(
            f"You have {REQUESTS_PENDING_PER_USER} pending requests; wait for a decision or withdraw one.",
            details={"max_pending": REQUESTS_PENDING_PER_USER},
        )
    if pending_requests.count() >= REQUESTS_PENDING_PER_SESSION:
        raise Conflict(
            "The session has too many pending requests.", details={"max_pending": REQUESTS_PENDING_PER_SESSION}
        )
    request = TrackRequest.objects.create(
        tenant_id=session.tenant_id, session=session, track=track, requested_by_id=user_id, votes=1
    )
    RequestVote.objects.create(tenant_id=session.tenant_id, request=request, user_id=user_id)
    request = _request_of(session, request.pk)
    _changed(session, request)
    return _answer(request, voted=True, created=True)


@transaction.atomic
def request_vote(*, actor: Principal, session_id: int, request_id: Any, vote: Any = True) -> dict[str, Any]:
    """Vote for a pending request (``vote`` true) or take the vote back (false); a
    present, unmuted member, once per request. Idempotent. Emits
    ``session.requests`` when the count moves; returns the request with ``voted``."""
    if not isinstance(vote, bool):
        raise Invalid("vote must be true or false.", field="vote")
    request_id = _clean_id(request_id, "request")
    user_id = user_of(actor)
    session = _locked(actor=actor, session_id=session_id)
    _speaker(session, user_id)
    request = _request_of(session, request_id)
    _require_pending(request)
    if _vote(request, user_id, vote=vote):
        _changed(session, request)
    return _answer(request, voted=vote)


def _decided(session: ListeningSession, request: TrackRequest, *, status: str, by: int, voted: bool) -> dict:
    request.status, request.decided_at, request.decided_by_id = status, timezone.now(), by
    request.save(update_fields=["status", "decided_at", "decided_by"])
    _changed(session, request)
    return _answer(request, voted=voted)


def _has_voted(request: TrackRequest, user_id: int) -> bool:
    return RequestVote.objects.filter(request=request, user_id=user_id).exists()


@transaction.atomic
def request_withdraw(*, actor: Principal, session_id: int, request_id: Any) -> dict[str, Any]:
    """Its author withdraws a pending request (present or not). Emits ``session.requests``."""
    request_id = _clean_id(request_id, "request")
    user_id = user_of(actor)
    session = _locked(actor=actor, session_id=session_id)
    request = _request_of(session, request_id)
    if request.requested_by_id != user_id:
        raise Forbidden("Only its author withdraws a request.")
    _require_pending(request)
    return _decided(session, request, status=RequestStatus.WITHDRAWN, by=user_id, voted=_has_voted(request, user_id))


def _decide(*, actor: Principal, session_id: Any, request_id: Any, accept: bool) -> dict[str, Any]:
    request_id = _clean_id(request_id, "request")
    user_id = user_of(actor)
    session = _locked(actor=actor, session_id=session_id)
    if not controls_playback(session, member_present(session, user_id)):
        raise Forbidden("Only the host, co-DJs and the DJ on deck decide requests, and nobody muted.")
    request = _request_of(session, request_id)
    _require_pending(request)
    if accept:
        # A full queue raises conflict here and the request stays pending.
        queue_append_do(
            playlist_id=session.queue_id, track_ids=[request.track_id], client_op_id=f"request-{request.pk}"
        )
    status = RequestStatus.ACCEPTED if accept else RequestStatus.REJECTED
    return _decided(session, request, status=status, by=user_id, voted=_has_voted(request, user_id))


@transaction.atomic
def request_accept(*, actor: Principal, session_id: int, request_id: Any) -> dict[str, Any]:
    """The host, a co-DJ or the DJ on deck accepts a pending request: its track is
    appended to the queue (``playlist.changed``) and the request is ``accepted``.
    Deciding a request that is not pending is ``conflict``. Emits ``session.requests``."""
    return _decide(actor=actor, session_id=session_id, request_id=request_id, accept=True)


@transaction.atomic
def request_reject(*, actor: Principal, session_id: int, request_id: Any) -> dict[str, Any]:
    """The host, a co-DJ or the DJ on deck rejects a pending request. Deciding a
    request that is not pending is ``conflict``. Emits ``session.requests``."""
    return _decide(actor=actor, session_id=session_id, request_id=request_id, accept=False)
