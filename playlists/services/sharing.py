"""Sharing a playlist: collaborators and share links.

The owner adds users of the tenant as editors or viewers, changes their role
or removes them; a collaborator may remove themselves. A share link carries a
random token (shown once, stored as a SHA-256), a role (editor or viewer), an
expiry (at most ``PLAYLIST_SHARE_LINK_MAX_DAYS``) and can be revoked; a user of
the same tenant who redeems it becomes a collaborator with its role (never
lowering a role they already have). Every change and every redemption is
audited. A collaborator who loses access stops streaming the playlist at once
(``playlist.access_changed`` to their sockets).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from spotify_agent.errors import Conflict, Forbidden, Invalid, NotFound

from ..constants import COLLABORATOR_RANK, SHARE_TOKEN_PREFIX_LENGTH, CollaboratorRole
from ..events import PlaylistAccessChangedEvent, playlist_event_send
from ..models import Playlist, PlaylistCollaborator, PlaylistShareLink
from ..selectors import playlist_access

_GRANTABLE = (CollaboratorRole.EDITOR, CollaboratorRole.VIEWER)


def _clean_role(value: Any) -> str:
    if value not in _GRANTABLE:
        raise Invalid("role must be editor or viewer.", field="role")
    return value


def _audit(*, action: str, actor: Principal, playlist: Playlist, context: RequestContext, **details: Any) -> None:
    audit_record(
        action=action,
        actor=Actor.from_principal(actor),
        tenant_id=playlist.tenant_id,
        target_type="playlist",
        target_id=playlist.pk,
        context=context,
        details=details,
    )


def _tenant_user(*, tenant_id: int, user_id: Any):
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise Invalid("user must be a user id.", field="user")
    user = get_user_model().objects.filter(pk=user_id, membership__tenant_id=tenant_id, is_active=True).first()
    if user is None:
        raise NotFound("No such user in this tenant.")
    return user


# --- Collaborators -------------------------------------------------------------------


@transaction.atomic
def collaborator_set(
    *, actor: Principal, playlist_id: int, user_id: Any, role: Any, context: RequestContext = NO_CONTEXT
) -> PlaylistCollaborator:
    """Owner only: make a user of the tenant an editor or viewer (or change their
    role). The owner's own role cannot change. Audited."""
    playlist = playlist_access(actor=actor, playlist_id=playlist_id, minimum=CollaboratorRole.OWNER, lock=True).playlist
    role = _clean_role(role)
    user = _tenant_user(tenant_id=playlist.tenant_id, user_id=user_id)
    if user.pk == playlist.owner_id:
        raise Conflict("The owner's role cannot change.")
    collaborator, created = PlaylistCollaborator.objects.get_or_create(
        playlist=playlist,
        user=user,
        defaults={"tenant_id": playlist.tenant_id, "role": role, "added_by_id": actor.user_id},
    )
    if not created and collaborator.role != role:
        previous, collaborator.role = collaborator.role, role
        collaborator.save(update_fields=["role"])
        _audit(
            action=AuditAction.PLAYLIST_COLLABORATOR_CHANGED,
            actor=actor,
            playlist=playlist,
            context=context,
            user=user.pk,
            role=role,
            previous=previous,
        )
    elif created:
        _audit(
            action=AuditAction.PLAYLIST_COLLABORATOR_ADDED,
            actor=actor,
            playlist=playlist,
            context=context,
            user=user.pk,
            role=role,
        )
    return collaborator


@transaction.atomic
def collaborator_remove(
    *, actor: Principal, playlist_id: int, user_id: Any, context: RequestContext = NO_CONTEXT
) -> None:
    """The owner removes a collaborator, or a collaborator leaves. The removed
    user's sockets re-check their access (a public playlist stays readable)."""
    access = playlist_access(actor=actor, playlist_id=playlist_id, lock=True)
    playlist = access.playlist
    if user_id != actor.user_id and access.role != CollaboratorRole.OWNER:
        raise Forbidden("Only the playlist's owner may remove someone else.")
    if user_id == playlist.owner_id:
        raise Conflict("The owner cannot be removed; delete the playlist instead.")
    deleted, _ = PlaylistCollaborator.objects.filter(playlist=playlist, user_id=user_id).delete()
    if not deleted:
        raise NotFound("That user is not a collaborator.")
    _audit(
        action=AuditAction.PLAYLIST_COLLABORATOR_REMOVED, actor=actor, playlist=playlist, context=context, user=user_id
    )
    playlist_event_send(
        tenant_id=playlist.tenant_id,
        playlist_id=playlist.pk,
        to_user_id=user_id,
        event=PlaylistAccessChangedEvent(playlist=playlist.pk, reason="collaborator_removed"),
    )


# --- Share links -----------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedShareLink:
    """A new link and its token, which is shown this once."""

    link: PlaylistShareLink
    token: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _clean_expiry(value: Any, *, now: datetime) -> datetime:
    latest = now + timedelta(days=settings.PLAYLIST_SHARE_LINK_MAX_DAYS)
    if value is None:
        return latest
    if not isinstance(value, datetime) or timezone.is_naive(value):
        raise Invalid("expires_at must be a date and time with a time zone.", field="expires_at")
    if not now < value <= latest:
        raise Invalid(
            f"expires_at must be in the next {settings.PLAYLIST_SHARE_LINK_MAX_DAYS} days.", field="expires_at"
        )
    return value


@transaction.atomic
def share_link_create(
    *,
    actor: Principal,
    playlist_id: int,
    role: Any,
    expires_at: datetime | None = None,
    context: RequestContext = NO_CONTEXT,
) -> CreatedShareLink:
    """Owner only: a link granting ``role`` until ``expires_at`` (default and
    maximum: ``PLAYLIST_SHARE_LINK_MAX_DAYS`` from now). Audited."""
    playlist = playlist_access(actor=actor, playlist_id=playlist_id, minimum=CollaboratorRole.OWNER, lock=True).playlist
    role = _clean_role(role)
    now = timezone.now()
    token = secrets.token_urlsafe(32)
    link = PlaylistShareLink.objects.create(
        tenant_id=playlist.tenant_id,
        playlist=playlist,
        token_hash=_token_hash(token),
        token_prefix=token[:SHARE_TOKEN_PREFIX_LENGTH],
        role=role,
        created_by_id=actor.user_id,
        expires_at=_clean_expiry(expires_at, now=now),
    )
    _audit(
        action=AuditAction.PLAYLIST_SHARE_LINK_CREATED,
        actor=actor,
        playlist=playlist,
        context=context,
        link=link.pk,
        role=role,
        expires_at=link.expires_at.isoformat(),
    )
    return CreatedShareLink(link=link, token=token)


@transaction.atomic
def share_link_revoke(
    *, actor: Principal, playlist_id: int, link_id: int, context: RequestContext = NO_CONTEXT
) -> PlaylistShareLink:
    """Owner only; revoking a revoked link changes nothing. Collaborators the link
    already made keep their role (remove them to undo that). Audited."""
    playlist = playlist_access(actor=actor, playlist_id=playlist_id, minimum=CollaboratorRole.OWNER, lock=True).playlist
    link = PlaylistShareLink.objects.filter(pk=link_id, playlist=playlist).first()
    if link is None:
        raise NotFound("No such share link.")
    share_link_revoke_do(link=link, actor=Actor.from_principal(actor), context=context)
    return link


def share_link_revoke_do(*, link: PlaylistShareLink, actor: Actor, context: RequestContext = NO_CONTEXT) -> bool:
    """Trusted path of ``share_link_revoke`` (also the admin's, whose staff have
    no tenant): revoke ``link`` now, whoever ``actor`` is. Returns False, and
    audits nothing, when it was already revoked (``link`` then keeps its first
    ``revoked_at``). Audited (``playlist.share_link.revoked``, on the playlist).
    Emits nothing: collaborators the link made keep their role."""
    with transaction.atomic():
        now = timezone.now()
        # Conditional on the row, not on the instance: two staff revoking the
        # same link at once record one revocation.
        if not PlaylistShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=now):
            if link.revoked_at is None:
                link.refresh_from_db(fields=["revoked_at"])
            return False
        link.revoked_at = now
        audit_record(
            action=AuditAction.PLAYLIST_SHARE_LINK_REVOKED,
            actor=actor,
            tenant_id=link.tenant_id,
            target_type="playlist",
            target_id=link.playlist_id,
            context=context,
            details={"link": link.pk},
        )
    return True


@transaction.atomic
def share_link_redeem(*, actor: Principal, token: Any, context: RequestContext = NO_CONTEXT) -> PlaylistCollaborator:
    """The caller (a user) joins the link's playlist with the link's role, or keeps a
    higher role they already have. An unknown, revoked or expired token, or one of
    another tenant, is ``NotFound`` (a token reveals nothing). Every use is audited
    and counted on the link."""
    if actor.user_id is None:
        raise Forbidden("Only users join playlists.")
    if not isinstance(token, str) or not 0 < len(token) <= 128:
        raise NotFound("No such share link.")
    link = (
        PlaylistShareLink.objects.select_for_update()
        .select_related("playlist")
        .filter(token_hash=_token_hash(token), tenant_id=actor.tenant_id)
        .first()
    )
    now = timezone.now()
    if link is None or link.revoked_at is not None or link.expires_at <= now:
        raise NotFound("No such share link, or it has expired or been revoked.")
    collaborator, created = PlaylistCollaborator.objects.get_or_create(
        playlist=link.playlist,
        user_id=actor.user_id,
        defaults={"tenant_id": link.tenant_id, "role": link.role, "added_by_id": link.created_by_id},
    )
    if not created and COLLABORATOR_RANK[link.role] > COLLABORATOR_RANK[collaborator.role]:
        collaborator.role = link.role
        collaborator.save(update_fields=["role"])
    PlaylistShareLink.objects.filter(pk=link.pk).update(use_count=F("use_count") + 1, last_used_at=now)
    _audit(
        action=AuditAction.PLAYLIST_SHARE_LINK_USED,
        actor=actor,
        playlist=link.playlist,
        context=context,
        link=link.pk,
        role=collaborator.role,
    )
    return collaborator
