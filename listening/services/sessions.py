"""A session's life and its members: create, join, leave (with host hand-off), end,
visibility and invitations, roles and the host's moderation (mute, remove; audited).

Who may see and join a session is one rule, ``listening.selectors.session_open_to``
(public sessions are the tenant's; invite-only ones their host's, invitees' and
past members'; never a removed member's), which ``session_join`` applies too.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
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
    SessionVisibility,
)
from ..events import (
    SessionEndedEvent,
    SessionHostChangedEvent,
    SessionInvitedEvent,
    SessionModeratedEvent,
    session_event_send,
)
from ..models import ListeningSession, SessionInvite, SessionMember
from ..selectors import session_open_check
from .common import (
    audience_count,
    member_event_send,
    member_present,
    now_ms,
    queue_grant,
    require_live,
    session_locked,
    session_locked_by_id,
    user_of,
)
from .djs import waitlist_drop
from .playback import playback_wait_recheck, plays_record

# Invitations one session may send. A few hundred covers a wedding or an office
# party; each one pushes a frame to the invitee's sockets, so the cap also keeps
# one host from notifying a whole tenant (public sessions are for that).
SESSION_INVITES_MAX = 300

# --- Sessions ------------------------------------------------------------------------------


def _clean_title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > SESSION_TITLE_MAX_LENGTH:
        raise Invalid(f"title must be 1-{SESSION_TITLE_MAX_LENGTH} characters.", field="title")
    return value.strip()


def _clean_visibility(value: Any) -> str:
    if value not in SessionVisibility.values:
        raise Invalid(f"visibility must be one of {', '.join(SessionVisibility.values)}.", field="visibility")
    return value


@transaction.atomic
def session_create(
    *,
    actor: Principal,
    title: Any,
    mode: Any = SessionMode.GROUP,
    visibility: Any = SessionVisibility.PUBLIC,
    vote_skip_threshold: Any = 0.5,
) -> ListeningSession:
    """A live session hosted by the caller, with its queue (an empty playlist of
    kind ``queue``) and its chat room (public in the tenant, the host its owner).
    ``visibility``: ``public`` (listed, the tenant joins) or ``invite``;
    ``vote_skip_threshold``: the share of present members whose votes skip a track."""
    user_id = user_of(actor)
    title = _clean_title(title)
    if mode not in SessionMode.values:
        raise Invalid(f"mode must be one of {', '.join(SessionMode.values)}.", field="mode")
    visibility = _clean_visibility(visibility)
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
        visibility=visibility,
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
    present member. A session by invitation only admits its host, invited users
    and past members (``session_open_to``; others: ``Forbidden``); a removed
    member never comes back. Joining marks the caller's invitation accepted.
    Refused (``Conflict``) past the audience limit or once ended. Emits
    ``session.member`` (joined)."""
    user_id = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    member = SessionMember.objects.filter(session=session, user_id=user_id).first()
    if member is not None and member.removed_at is not None:
        raise Forbidden("The host removed you from this session.")
    if member is not None and member.left_at is None:
        return member
    session_open_check(session, user_id)
    if audience_count(session) >= session.audience_limit:
        raise Conflict("The session is full.", details={"audience_limit": session.audience_limit})
    if member is None:
        member = SessionMember.objects.create(
            tenant_id=session.tenant_id, session=session, user_id=user_id, joined_at=timezone.now()
        )
    else:
        member.left_at, member.joined_at, member.role = None, timezone.now(), MemberRole.LISTENER
        member.save(update_fields=["left_at", "joined_at", "role"])
    SessionInvite.objects.filter(session=session, user_id=user_id, accepted_at__isnull=True).update(
        accepted_at=timezone.now()
    )
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
    waitlist_drop(session, user_id)
    playback_wait_recheck(session)
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
    waitlist_drop(session, successor.user_id)  # the host is never on the wait list
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
def session_visibility_set(*, actor: Principal, session_id: int, visibility: Any) -> ListeningSession:
    """The host makes the session public or by invitation only. Members present
    stay; from then on joining follows the new visibility. Idempotent."""
    visibility = _clean_visibility(visibility)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    if session.host_id != user_of(actor):
        raise Forbidden("Only the host changes the visibility.")
    if session.visibility != visibility:
        session.visibility = visibility
        session.save(update_fields=["visibility"])
    return session


@dataclass(frozen=True)
class InviteResult:
    invite: SessionInvite
    created: bool


@transaction.atomic
def session_invite(*, actor: Principal, session_id: int, user_id: Any) -> InviteResult:
    """Invite an active user of the tenant to a live session (else ``NotFound``,
    whether the id is another tenant's or nobody's). The host and co-DJs invite;
    in group mode any present member does; never a muted one. Idempotent: a
    second invitation of the same user changes nothing and tells nobody. At most
    ``SESSION_INVITES_MAX`` per session (``Conflict``). The invitee's sockets are
    told (``session.invited``) once the transaction commits."""
    inviter = user_of(actor)
    session = session_locked(actor=actor, session_id=session_id)
    require_live(session)
    member = member_present(session, inviter)
    if member.muted_at is not None:
        raise Forbidden("The host muted you in this session.")
    if session.mode == SessionMode.DJ and member.role not in (MemberRole.HOST, MemberRole.CO_DJ):
        raise Forbidden("Only the host and co-DJs invite to a DJ session.")
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise Invalid("user must be a user id.", field="user")
    if user_id == inviter:
        raise Invalid("user must be someone other than you.", field="user")
    users = get_user_model().objects.filter(membership__tenant_id=session.tenant_id, is_active=True)
    if not users.filter(pk=user_id).exists():
        raise NotFound("No such user in this tenant.")
    if SessionMember.objects.filter(session=session, user_id=user_id, removed_at__isnull=False).exists():
        raise Conflict("The host removed that user from this session.")
    invite = SessionInvite.objects.filter(session=session, user_id=user_id).first()
    if invite is not None:
        return InviteResult(invite=invite, created=False)
    if SessionInvite.objects.filter(session=session).count() >= SESSION_INVITES_MAX:
        raise Conflict("The session has sent all the invitations it may.", details={"max_invites": SESSION_INVITES_MAX})
    # The session's row lock orders invitations: no second row for the same user.
    invite = SessionInvite.objects.create(
        tenant_id=session.tenant_id, session=session, user_id=user_id, invited_by_id=inviter
    )
    event_send_on_commit(
        group=user_group(tenant_id=session.tenant_id, user_id=user_id),
        event=SessionInvitedEvent(
            session=session.pk,
            title=session.title,
            mode=session.mode,
            host={"id": session.host_id, "username": session.host.get_username()},
            invited_by={"id": inviter, "username": actor.username or ""},
        ),
    )
    return InviteResult(invite=invite, created=True)


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


def _audit(*, action: str, actor: Actor, session: ListeningSession, context: RequestContext, **details: Any) -> None:
    audit_record(
        action=action,
        actor=actor,
        tenant_id=session.tenant_id,
        target_type="listening_session",
        target_id=session.pk,
        context=context,
        details=details,
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
    member_mute_do(session=session, member=member, muted=muted, actor=Actor.from_principal(actor), context=context)
    return member


def member_mute_do(
    *, session: ListeningSession, member: SessionMember, muted: bool, actor: Actor, context: RequestContext
) -> bool:
    """Trusted: mute ``member`` or lift it (the host's ``member_mute``, and staff in
    the admin). The caller holds the session's lock. Returns whether it changed."""
    if (member.muted_at is not None) == muted:
        return False
    member.muted_at = timezone.now() if muted else None
    member.save(update_fields=["muted_at"])
    if muted:
        waitlist_drop(session, member.user_id)
    action = AuditAction.LISTENING_MEMBER_MUTED if muted else AuditAction.LISTENING_MEMBER_UNMUTED
    _audit(action=action, actor=actor, session=session, context=context, user=member.user_id)
    _tell_member(session, member.user_id, "muted" if muted else "unmuted")
    return True


@transaction.atomic
def member_remove(
    *, actor: Principal, session_id: int, user_id: Any, context: RequestContext = NO_CONTEXT
) -> SessionMember:
    """The host removes a member, who may not join again. Audited; the member's
    sockets stop following the session; the others see them leave."""
    session, member = _moderated(actor=actor, session_id=session_id, user_id=user_id)
    member_remove_do(session=session, member=member, actor=Actor.from_principal(actor), context=context)
    return member


def member_remove_do(
    *, session: ListeningSession, member: SessionMember, actor: Actor, context: RequestContext
) -> None:
    """Trusted: remove a present member other than the host (the host's
    ``member_remove``, and staff in the admin). The caller holds the session's lock."""
    member.left_at = member.removed_at = timezone.now()
    member.save(update_fields=["left_at", "removed_at"])
    waitlist_drop(session, member.user_id)
    playback_wait_recheck(session)
    if session.queue.owner_id != member.user_id:
        PlaylistCollaborator.objects.filter(playlist_id=session.queue_id, user_id=member.user_id).delete()
    removed = AuditAction.LISTENING_MEMBER_REMOVED
    _audit(action=removed, actor=actor, session=session, context=context, user=member.user_id)
    member_event_send(session, member, change="removed", username=member.user.get_username())
    _tell_member(session, member.user_id, "removed")


# --- Staff (the admin) ---------------------------------------------------------------------


@transaction.atomic
def session_end_do(*, session_id: int, actor: Actor, context: RequestContext) -> bool:
    """Trusted: staff end a live session (the admin). As the host's end: playback
    stops, members are let go (``session.ended``, reason ``ended_by_staff``),
    history stays. Audited. Returns whether it was live."""
    session = session_locked_by_id(session_id)
    if session is None or session.status != SessionStatus.LIVE:
        return False
    _end(session, reason="ended_by_staff")
    _audit(action=AuditAction.LISTENING_SESSION_ENDED, actor=actor, session=session, context=context)
    return True


@transaction.atomic
def member_moderate_do(*, member_id: int, action: str, actor: Actor, context: RequestContext) -> bool:
    """Trusted: staff mute, unmute or remove a present member other than the host
    (the admin), with the host's effects and audit. Returns whether it changed."""
    member = SessionMember.objects.select_related("user").filter(pk=member_id).first()
    if member is None:
        return False
    session = session_locked_by_id(member.session_id)
    member = SessionMember.objects.select_related("user").get(pk=member_id)  # as of the lock
    if session.status != SessionStatus.LIVE or member.left_at is not None or member.user_id == session.host_id:
        return False
    if action == "remove":
        member_remove_do(session=session, member=member, actor=actor, context=context)
        return True
    return member_mute_do(session=session, member=member, muted=action == "mute", actor=actor, context=context)
