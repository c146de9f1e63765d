"""DJ rotation (dj mode): the wait list, the DJ on deck and their turns.

Members of the audience join a wait list (``DjWaitlistEntry``, first come first
served). The first of it goes on deck (``ListeningSession.dj``) and, while
there, controls playback and edits the queue like a co-DJ
(``common.controls_playback`` and ``common.queue_role`` read ``session.dj``;
the queue's collaborator rows are set here, through ``common.queue_grant``,
whenever the deck changes). The DJ on deck keeps their place in the list: the
list is the rotation, the deck one of its entries.

A turn lasts ``dj_turn_tracks`` tracks: ``dj_turn_played`` counts the tracks
that came on during it (``dj_rotation_on_track``, called by the playback's
track change, whatever caused it: a skip, a vote, the server's advance). When
another track comes on after a full turn and someone waits, the DJ on deck goes
to the back of the list and the first waiting goes on deck, with that track as
the first of their turn. With nobody waiting, the DJ plays on.

A DJ on deck who leaves the session, is muted or removed (``waitlist_drop``,
called by ``listening.services.sessions``), leaves the list or is taken off it
by the host yields the deck at once to the next waiting, with a fresh turn.

Every change is broadcast as ``session.djs`` (the whole deck and list, bounded
by ``DJ_WAITLIST_MAX``). Callers hold the session's row lock, so changes of one
session apply one at a time. docs/protocol.md, "DJ rotation".
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.principals import Principal
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound

from ..constants import DJ_TURN_TRACKS_MAX, DJ_WAITLIST_MAX, SessionMode
from ..events import SessionDjsEvent, session_event_send
from ..models import DjWaitlistEntry, ListeningSession, SessionMember
from .common import member_present, queue_grant, require_live, session_locked, user_of

# --- The deck's state --------------------------------------------------------------------


def require_dj_mode(session: ListeningSession) -> None:
    if session.mode != SessionMode.DJ:
        raise Conflict("Only DJ sessions have a wait list.")


def deck_event(session: ListeningSession) -> SessionDjsEvent:
    """The deck and the wait list as ``session.djs`` carries them (the list in
    order, the DJ on deck left out of it)."""
    waiting = (
        DjWaitlistEntry.objects.filter(session=session)
        .exclude(user_id=session.dj_id)
        .select_related("user")
        .order_by("joined_at", "pk")[:DJ_WAITLIST_MAX]
    )
    dj = None
    if session.dj_id is not None:
        username = get_user_model().objects.filter(pk=session.dj_id).values_list("username", flat=True).first()
        dj = {"id": session.dj_id, "username": username or ""}
    return SessionDjsEvent(
        session=session.pk,
        dj=dj,
        waitlist=[{"user": entry.user_id, "username": entry.user.get_username()} for entry in waiting],
        turn_tracks=session.dj_turn_tracks,
        turn_played=session.dj_turn_played,
    )


def deck_payload(session: ListeningSession) -> dict[str, Any]:
    return asdict(deck_event(session))


def _send(session: ListeningSession) -> dict[str, Any]:
    event = deck_event(session)
    session_event_send(session=session, event=event)
    return asdict(event)


def _first_waiting(session: ListeningSession) -> DjWaitlistEntry | None:
    return (
        DjWaitlistEntry.objects.filter(session=session)
        .exclude(user_id=session.dj_id)
        .order_by("joined_at", "pk")
        .first()
    )


def _deck_set(session: ListeningSession, user_id: int | None, *, played: int = 0) -> None:
    """Put ``user_id`` on deck (None: nobody) with ``played`` tracks of the turn,
    and give the queue's editor role to the newcomer and take it from the one
    leaving (present members only: one who left has no collaborator row)."""
    previous = session.dj_id
    session.dj_id, session.dj_turn_played = user_id, played
    session.save(update_fields=["dj", "dj_turn_played"])
    changed = {previous, user_id} - {None}
    for member in SessionMember.objects.filter(session=session, user_id__in=changed, left_at__isnull=True):
        queue_grant(session, member)


def _drop(session: ListeningSession, user_id: int) -> bool:
    """Take ``user_id`` off the wait list; on deck, the next waiting takes it.
    Returns whether anything changed."""
    deleted, _ = DjWaitlistEntry.objects.filter(session=session, user_id=user_id).delete()
    if session.dj_id != user_id:
        return bool(deleted)
    successor = _first_waiting(session)
    _deck_set(session, successor.user_id if successor is not None else None)
    return True


# --- Use cases ---------------------------------------------------------------------------


@transaction.atomic
def waitlist_join(*, actor: Principal, session_id: int) -> dict[str, Any]:
    """Join the wait list of a live dj session: a present, unmuted member other than
    the host (who controls the decks anyway). With nobody on deck, the caller goes
    on deck at once. At most ``DJ_WAITLIST_MAX`` (``conflict``). Idempotent.
    Emits ``session.djs``; returns the deck and list."""
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    require_dj_mode(session)
    member = member_present(session, user_id)
    if member.muted_at is not None:
        raise Forbidden("The host muted you in this session.")
    if user_id == session.host_id:
        raise Forbidden("The host controls the decks already; the wait list is for the audience.")
    if DjWaitlistEntry.objects.filter(session=session, user_id=user_id).exists():
        return deck_payload(session)
    if DjWaitlistEntry.objects.filter(session=session).count() >= DJ_WAITLIST_MAX:
        raise Conflict("The wait list is full.", details={"max_waitlist": DJ_WAITLIST_MAX})
    DjWaitlistEntry.objects.create(
        tenant_id=session.tenant_id, session=session, user_id=user_id, joined_at=timezone.now()
    )
    if session.dj_id is None:
        _deck_set(session, user_id)
    return _send(session)


@transaction.atomic
def waitlist_leave(*, actor: Principal, session_id: int) -> dict[str, Any]:
    """Leave the wait list; the DJ on deck leaving yields the deck to the next
    waiting. Idempotent (no event when the caller was not on it)."""
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    require_dj_mode(session)
    if not _drop(session, user_id):
        return deck_payload(session)
    return _send(session)


def _clean_user(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("user must be a user id.", field="user")
    return value


@transaction.atomic
def waitlist_remove(*, actor: Principal, session_id: int, user_id: Any) -> dict[str, Any]:
    """The host takes a member off the wait list; taking the DJ on deck off skips
    to the next waiting. ``not_found`` when the user is not on the list."""
    user_id = _clean_user(user_id)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    require_dj_mode(session)
    if session.host_id != user_of(actor):
        raise Forbidden("Only the host takes members off the wait list.")
    if not _drop(session, user_id):
        raise NotFound("That user is not on the wait list.")
    return _send(session)


@transaction.atomic
def waitlist_turn_set(*, actor: Principal, session_id: int, tracks: Any) -> dict[str, Any]:
    """The host sets how many tracks a turn lasts (1..``DJ_TURN_TRACKS_MAX``). A
    turn already past the new length ends when the next track comes on.
    Idempotent; emits ``session.djs`` on a change."""
    if isinstance(tracks, bool) or not isinstance(tracks, int) or not 1 <= tracks <= DJ_TURN_TRACKS_MAX:
        raise Invalid(f"tracks must be an integer from 1 to {DJ_TURN_TRACKS_MAX}.", field="tracks")
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    require_dj_mode(session)
    if session.host_id != user_of(actor):
        raise Forbidden("Only the host sets the length of a turn.")
    if session.dj_turn_tracks == tracks:
        return deck_payload(session)
    session.dj_turn_tracks = tracks
    session.save(update_fields=["dj_turn_tracks"])
    return _send(session)


# --- Hooks of the session's other services (the session row locked) ---------------------


def waitlist_drop(session: ListeningSession, user_id: int) -> None:
    """``user_id`` left the session, was muted or removed, or became its host: off
    the wait list, and off the deck for the next waiting. Emits ``session.djs``
    when anything changed."""
    if session.mode != SessionMode.DJ:
        return
    if _drop(session, user_id):
        _send(session)


def dj_rotation_on_track(session: ListeningSession) -> None:
    """Another track came on (``playback._load_next``). After a full turn, with
    someone waiting, the DJ on deck goes to the back of the list and the first
    waiting goes on deck, this track the first of their turn; otherwise the turn
    counts it. Saves what it changes; emits ``session.djs`` on a change."""
    if session.mode != SessionMode.DJ or session.dj_id is None or session.track is None:
        return
    if session.dj_turn_played >= session.dj_turn_tracks:
        successor = _first_waiting(session)
        if successor is not None:
            DjWaitlistEntry.objects.filter(session=session, user_id=session.dj_id).update(joined_at=timezone.now())
            _deck_set(session, successor.user_id, played=1)
            _send(session)
        return
    session.dj_turn_played += 1
    session.save(update_fields=["dj_turn_played"])
    _send(session)
