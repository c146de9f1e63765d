"""Reads of listening sessions shared by the WebSocket handlers (and, later, REST
and the admin): what a member sees of a session when they join."""

from __future__ import annotations

from typing import Any

from accounts.principals import Principal
from spotify_agent.errors import NotFound

from .models import ListeningSession, SessionMember
from .services.common import now_ms, state_payload

# Members listed in a join's answer; a concert-sized audience is counted, not listed.
MEMBERS_LISTED = 100


def session_state(*, actor: Principal, session_id: int) -> dict[str, Any]:
    """The session, the caller's role, who is there and the playback state (with
    the server's time now, so a client can place itself at once)."""
    session = (
        ListeningSession.objects.select_related("host", "track")
        .filter(pk=session_id, tenant_id=actor.tenant_id)
        .first()
    )
    if session is None:
        raise NotFound("No such listening session.")
    present = SessionMember.objects.filter(session=session, left_at__isnull=True).select_related("user")
    mine, muted_at = present.filter(user_id=actor.user_id).values_list("role", "muted_at").first() or (None, None)
    return {
        "session": session.pk,
        "title": session.title,
        "mode": session.mode,
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
