"""A session's life and its members: create, join, leave (with host hand-off), end,
roles and the host's moderation (mute, remove; audited)."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from chat.constants import RoomKind
from chat.services.rooms import room_create, room_join
from playlists.constants import PlaylistKind, Visibility
from playlists.models import PlaylistCollaborator
from playlists.services.playlists import playlist_create
from realtime.events import event_send_on_commit
from realtime.groups import user_group
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound

from ..constants import (
    SESSION_TITLE_MAX_LENGTH,
    MemberRole,
    SessionMode,
    SessionStatus,
)
from ..events import (
    SessionEndedEvent,
    SessionHostChangedEvent,
    SessionModeratedEvent,
    session_event_send,
)
from ..models import ListeningSession, SessionMember
from .common import (
    audience_count,
    member_event_send,
    member_present,
    now_ms,
    queue_grant,
    require_live,
    session_locked,
    user_of,
)
from .playback import plays_record

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
    user_id = user_of(actor)
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
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    member = SessionMember.objects.filter(session=session, user_id=user_id).first()
    if member is not None and member.removed_at is not None:
        raise Forbidden("The host removed you from this session.")
    if member is not None and member.left_at is None:
        return member
    if audience_count(session) >= session.audience_limit:
        raise Conflict("The session is full.", details={"audience_limit": session.audience_limit})
    if member is None:
        member = SessionMember.objects.create(
            tenant_id=session.tenant_id, session=session, user_id=user_id, joined_at=timezone.now()
        )
    else:
        member.left_at, member.joined_at, member.role = None, timezone.now(), MemberRole.LISTENER
        member.save(update_fields=["left_at", "joined_at", "role"])
    queue_grant(session, member)
    room_join(actor=actor, room_id=session.room_id)
    member_event_send(session, member, change="joined", username=actor.username or "")
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
        plays_record(session, at_ms=now_ms())
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
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    member = member_present(session, user_id)
    member.left_at = timezone.now()
    member.save(update_fields=["left_at"])
    if session.queue.owner_id != user_id:
        PlaylistCollaborator.objects.filter(playlist_id=session.queue_id, user_id=user_id).delete()
    member_event_send(session, member, change="left", username=actor.username or "")
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
    queue_grant(session, successor)
    session_event_send(
        session=session,
        event=SessionHostChangedEvent(
            session=session.pk, host=successor.user_id, username=successor.user.get_username(), reason="host_left"
        ),
    )


@transaction.atomic
def session_end(*, actor: Principal, session_id: int) -> ListeningSession:
    """The host ends the session: playback stops, members are let go, history stays."""
    session = session_locked(actor=actor, session_id=session_id)
    if session.host_id != user_of(actor):
        raise Forbidden("Only the host ends the session.")
    require_live(session)
    _end(session, reason="ended_by_host")
    return session


@transaction.atomic
def member_role_set(*, actor: Principal, session_id: int, user_id: Any, role: Any) -> SessionMember:
    """The host makes a present member a co-DJ or a listener again."""
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    if session.host_id != user_of(actor):
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
    queue_grant(session, member)
    member_event_send(session, member, change="role", username=member.user.get_username())
    return member


def _moderated(*, actor: Principal, session_id: int, user_id: Any) -> tuple[ListeningSession, SessionMember]:
    """The session (locked) and a present member other than the host, if the caller hosts it."""
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    if session.host_id != user_of(actor):
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
    member_event_send(session, member, change="removed", username=member.user.get_username())
    _tell_member(session, member.user_id, "removed")
    return member
