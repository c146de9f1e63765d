"""What every listening service needs: the clock, the caller, the locked session,
membership, the queue's roles and the state payload."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from accounts.principals import Principal
from playlists.constants import CollaboratorRole
from playlists.models import PlaylistCollaborator
from spotify_agent.errors import Conflict, Forbidden, NotFound

from ..constants import (
    MemberRole,
    SessionMode,
    SessionStatus,
)
from ..events import (
    SessionMemberEvent,
    playback_state_event,
    session_event_send,
)
from ..models import ListeningSession, SessionMember


def now_ms() -> int:
    """The server clock playback uses: Unix time in milliseconds."""
    return int(time.time() * 1000)


def user_of(actor: Principal) -> int:
    if actor.user_id is None:
        raise Forbidden("Only users take part in listening sessions.")
    return actor.user_id


def session_locked(*, actor: Principal, session_id: int) -> ListeningSession:
    session = _lockable().filter(pk=session_id, tenant_id=actor.tenant_id).first()
    if session is None:
        raise NotFound("No such listening session.")
    return session


def _lockable():
    return ListeningSession.objects.select_for_update(of=("self",)).select_related("track")


def session_locked_by_id(session_id: int) -> ListeningSession | None:
    """The session, locked, whatever its tenant: for the server's own jobs and staff
    (trusted callers that got the id from the server itself); None if gone."""
    return _lockable().filter(pk=session_id).first()


def require_live(session: ListeningSession) -> None:
    if session.status != SessionStatus.LIVE:
        raise Conflict("The session has ended.")


def member_present(session: ListeningSession, user_id: int) -> SessionMember:
    member = SessionMember.objects.filter(session=session, user_id=user_id, left_at__isnull=True).first()
    if member is None:
        raise Forbidden("Join the session first.")
    return member


def audience_count(session: ListeningSession) -> int:
    return SessionMember.objects.filter(session=session, left_at__isnull=True).count()


def queue_role(session: ListeningSession, member_role: str, user_id: int | None = None) -> str:
    """The member's role on the queue: editors where they control playback (in dj
    mode the host, co-DJs and ``user_id`` when it is the DJ on deck)."""
    if session.mode == SessionMode.GROUP or member_role in (MemberRole.HOST, MemberRole.CO_DJ):
        return CollaboratorRole.EDITOR
    if user_id is not None and user_id == session.dj_id:
        return CollaboratorRole.EDITOR
    return CollaboratorRole.VIEWER


def queue_grant(session: ListeningSession, member: SessionMember) -> None:
    # The queue's owner row (the creating host) stays as it is.
    if session.queue.owner_id == member.user_id:
        return
    PlaylistCollaborator.objects.update_or_create(
        playlist_id=session.queue_id,
        user_id=member.user_id,
        defaults={"tenant_id": session.tenant_id, "role": queue_role(session, member.role, member.user_id)},
    )


def member_event_send(session: ListeningSession, member: SessionMember, *, change: str, username: str) -> None:
    session_event_send(
        session=session,
        event=SessionMemberEvent(
            session=session.pk,
            user=member.user_id,
            username=username,
            role=member.role,
            change=change,
            audience=audience_count(session),
        ),
    )


def state_payload(session: ListeningSession, *, action: str = "state", by: int | None = None) -> dict[str, Any]:
    return asdict(playback_state_event(session, action=action, by=by))


def controls_playback(session: ListeningSession, member: SessionMember) -> bool:
    """Anyone unmuted in group mode; in dj mode the host, co-DJs and the DJ on deck
    (``session.dj``, from the wait list: ``listening.services.djs``)."""
    if member.muted_at is not None:
        return False
    if session.mode == SessionMode.GROUP or member.role in (MemberRole.HOST, MemberRole.CO_DJ):
        return True
    return session.dj_id is not None and member.user_id == session.dj_id
