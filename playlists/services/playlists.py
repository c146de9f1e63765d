"""A playlist's life outside its content: creating, changing who may see it, deleting.

Title and description are content: they change through ``playlist_apply_op``
(``update`` ops), so every change is a revision with an author. Visibility is
access, not content: it changes here, and a playlist made private ends the
streams of users who only saw it because it was public.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from spotify_agent.errors import Forbidden, Invalid

from ..constants import PLAYLIST_DESCRIPTION_MAX_LENGTH, PLAYLIST_TITLE_MAX_LENGTH, CollaboratorRole, Visibility
from ..events import PlaylistAccessChangedEvent, playlist_event_send
from ..models import Playlist, PlaylistCollaborator, PlaylistSnapshot
from ..selectors import playlist_access


def _clean_title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("title must be a non-empty string.", field="title")
    if len(value.strip()) > PLAYLIST_TITLE_MAX_LENGTH:
        raise Invalid(f"title is longer than {PLAYLIST_TITLE_MAX_LENGTH} characters.", field="title")
    return value.strip()


def _clean_description(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("description must be a string.", field="description")
    if len(value) > PLAYLIST_DESCRIPTION_MAX_LENGTH:
        raise Invalid(f"description is longer than {PLAYLIST_DESCRIPTION_MAX_LENGTH} characters.", field="description")
    return value.strip()


def _clean_visibility(value: Any) -> str:
    if value not in Visibility.values:
        raise Invalid(f"visibility must be one of {', '.join(Visibility.values)}.", field="visibility")
    return value


@transaction.atomic
def playlist_create(
    *, actor: Principal, title: Any, description: Any = "", visibility: Any = Visibility.PRIVATE
) -> Playlist:
    """A new empty playlist at revision 0, owned by the caller (a user), with the
    owner's collaborator row and the revision-0 snapshot that opens its history."""
    if actor.user_id is None:
        raise Forbidden("Only users own playlists.")
    playlist = Playlist.objects.create(
        tenant_id=actor.tenant_id,
        owner_id=actor.user_id,
        title=_clean_title(title),
        description=_clean_description(description),
        visibility=_clean_visibility(visibility),
    )
    PlaylistCollaborator.objects.create(
        tenant_id=actor.tenant_id,
        playlist=playlist,
        user_id=actor.user_id,
        role=CollaboratorRole.OWNER,
        added_by_id=actor.user_id,
    )
    PlaylistSnapshot.objects.create(
        tenant_id=actor.tenant_id,
        playlist=playlist,
        revision=0,
        title=playlist.title,
        description=playlist.description,
        items=[],
    )
    return playlist


def _owned(*, actor: Principal, playlist_id: int) -> Playlist:
    """The playlist, row-locked, if the caller owns it."""
    return playlist_access(actor=actor, playlist_id=playlist_id, minimum=CollaboratorRole.OWNER, lock=True).playlist


def _access_changed(*, playlist: Playlist, reason: str) -> None:
    """Sockets of the tenant streaming the playlist check their access again."""
    playlist_event_send(
        tenant_id=playlist.tenant_id,
        playlist_id=playlist.pk,
        to_tenant=True,
        event=PlaylistAccessChangedEvent(playlist=playlist.pk, reason=reason),
    )


@transaction.atomic
def playlist_visibility_set(
    *, actor: Principal, playlist_id: int, visibility: Any, context: RequestContext = NO_CONTEXT
) -> Playlist:
    """Owner only. Making a playlist private ends the streams of those who saw it
    only because it was public or collaborative (``playlist.access_changed``)."""
    playlist = _owned(actor=actor, playlist_id=playlist_id)
    visibility = _clean_visibility(visibility)
    if visibility == playlist.visibility:
        return playlist
    previous, playlist.visibility = playlist.visibility, visibility
    playlist.save(update_fields=["visibility", "updated_at"])
    audit_record(
        action=AuditAction.PLAYLIST_VISIBILITY_CHANGED,
        actor=Actor.from_principal(actor),
        tenant_id=playlist.tenant_id,
        target_type="playlist",
        target_id=playlist.pk,
        context=context,
        details={"from": previous, "to": visibility},
    )
    if visibility == Visibility.PRIVATE:
        _access_changed(playlist=playlist, reason="visibility_changed")
    return playlist


@transaction.atomic
def playlist_delete(*, actor: Principal, playlist_id: int, context: RequestContext = NO_CONTEXT) -> None:
    """Owner only: the playlist, its items, history, collaborators and links go.
    Every subscriber's stream ends (``playlist.access_changed``)."""
    playlist = _owned(actor=actor, playlist_id=playlist_id)
    audit_record(
        action=AuditAction.PLAYLIST_DELETED,
        actor=Actor.from_principal(actor),
        tenant_id=playlist.tenant_id,
        target_type="playlist",
        target_id=playlist.pk,
        context=context,
        details={"title": playlist.title, "revision": playlist.revision},
    )
    _access_changed(playlist=playlist, reason="deleted")
    playlist.delete()
