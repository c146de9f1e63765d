"""Reads of playlists shared by the WebSocket handlers, the REST views and the admin:
who may do what on a playlist, its current content, its content as of a
revision, its history, and op-log frames for catch-up.

Access (docs/protocol.md, "Playlists"): a collaborator has the role of their
row (owner, editor, viewer); any other user of the tenant is an editor of a
``collaborative`` playlist, a viewer of a ``public`` one, and does not see a
``private`` one at all (``NotFound``, as for another tenant's playlist). API
clients read with the ``playlists:read`` scope and never edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from accounts.constants import ApiScope
from accounts.principals import Principal
from spotify_agent.errors import Conflict, Forbidden, NotFound

from .constants import COLLABORATOR_RANK, CollaboratorRole, PlaylistKind, Visibility
from .models import Playlist, PlaylistCollaborator, PlaylistItem, PlaylistOp, PlaylistShareLink, PlaylistSnapshot, Track
from .ot import Committed, PlaylistState, apply_all

_TRACK_FIELDS = ("id", "uri", "title", "artist", "album", "duration_ms")
_IMPLIED_ROLE = {Visibility.COLLABORATIVE: CollaboratorRole.EDITOR, Visibility.PUBLIC: CollaboratorRole.VIEWER}


@dataclass(frozen=True)
class Access:
    """A playlist and the caller's role on it."""

    playlist: Playlist
    role: str

    def at_least(self, minimum: str) -> bool:
        return COLLABORATOR_RANK[self.role] >= COLLABORATOR_RANK[minimum]


def playlist_role(*, actor: Principal, playlist: Playlist) -> str | None:
    """The caller's role on ``playlist`` (same tenant assumed), or None if they may not see it."""
    if actor.user_id is None:
        return CollaboratorRole.VIEWER if actor.has_scope(ApiScope.PLAYLISTS_READ) else None
    role = (
        PlaylistCollaborator.objects.filter(playlist=playlist, user_id=actor.user_id)
        .values_list("role", flat=True)
        .first()
    )
    implied = _IMPLIED_ROLE.get(playlist.visibility)
    if role is None or (implied is not None and COLLABORATOR_RANK[implied] > COLLABORATOR_RANK[role]):
        return implied
    return role


def playlist_access(
    *, actor: Principal, playlist_id: int, minimum: str = CollaboratorRole.VIEWER, lock: bool = False
) -> Access:
    """The playlist with the caller's role, if it is at least ``minimum``. Another
    tenant's playlist, or a private one the caller is not on, is ``NotFound``.
    With ``lock``, the row stays locked until the transaction ends (writes)."""
    if minimum != CollaboratorRole.VIEWER and actor.user_id is None:
        raise Forbidden("Only users change playlists.")
    playlists = Playlist.objects.select_for_update() if lock else Playlist.objects
    playlist = playlists.filter(pk=playlist_id, tenant_id=actor.tenant_id).first()
    role = playlist_role(actor=actor, playlist=playlist) if playlist is not None else None
    if role is None:
        raise NotFound("No such playlist.")
    access = Access(playlist=playlist, role=role)
    if minimum == CollaboratorRole.OWNER and playlist.kind == PlaylistKind.QUEUE:
        # Sharing, visibility and deletion of a queue follow its session's members.
        raise Conflict("A listening session's queue is managed through its session.")
    if not access.at_least(minimum):
        raise Forbidden(f"This takes the {minimum} role on the playlist; you are a {role}.")
    return access


def playlists_for_user(*, actor: Principal):
    """Playlists the caller may see, newest first: theirs, shared with them, and the
    tenant's public and collaborative ones. Session queues are not playlists to
    browse: they are reached through their session."""
    playlists = (
        Playlist.objects.filter(tenant_id=actor.tenant_id, kind=PlaylistKind.PLAYLIST)
        .select_related("owner")
        .order_by("-id")
    )
    if actor.user_id is None:
        return playlists if actor.has_scope(ApiScope.PLAYLISTS_READ) else playlists.none()
    visible = Q(visibility__in=[Visibility.PUBLIC, Visibility.COLLABORATIVE]) | Q(collaborators__user_id=actor.user_id)
    return playlists.filter(visible).distinct()


# --- Content ----------------------------------------------------------------------------


def _item_row(item: PlaylistItem) -> dict:
    return {
        "item_id": str(item.item_id),
        "track_id": item.track_id,
        "added_by": item.added_by_id,
        "added_at": item.added_at.isoformat().replace("+00:00", "Z"),
    }


def playlist_state(*, playlist: Playlist) -> PlaylistState:
    """The playlist's current content at ``playlist.revision`` (read it under the
    row lock to edit; a plain read is consistent with the revision it carries
    only if both come from one transaction)."""
    items = PlaylistItem.objects.filter(playlist=playlist).order_by("position")
    return PlaylistState(
        title=playlist.title,
        description=playlist.description,
        items=[_item_row(item) for item in items],
        revision=playlist.revision,
    )


def tracks_by_id(*, tenant_id: int, track_ids) -> dict[int, dict[str, Any]]:
    """What clients show of each track, by id (one query)."""
    rows = Track.objects.filter(tenant_id=tenant_id, pk__in=set(track_ids)).values(*_TRACK_FIELDS)
    return {row["id"]: row for row in rows}


def state_payload(*, playlist: Playlist, state: PlaylistState) -> dict[str, Any]:
    """A state as clients receive it: items in order, each with its track."""
    tracks = tracks_by_id(tenant_id=playlist.tenant_id, track_ids=[item["track_id"] for item in state.items])
    return {
        "playlist": playlist.pk,
        "revision": state.revision,
        "title": state.title,
        "description": state.description,
        "items": [{**item, "track": tracks.get(item["track_id"])} for item in state.items],
    }


# Attempts at a lock-free consistent read before taking the row lock.
_SNAPSHOT_ATTEMPTS = 5


def playlist_state_now(*, playlist: Playlist) -> PlaylistState:
    """The playlist's items and revision as of one moment, also outside a transaction.

    Under READ COMMITTED each statement sees its own moment, so the revision is
    read before and after the items: edits commit the items and the revision
    together, so an unchanged revision proves no edit committed in between. A
    playlist edited without pause is read under its row lock instead. ``playlist``
    (as the caller read it: the first "before") is refreshed to that moment."""
    for attempt in range(_SNAPSHOT_ATTEMPTS):
        if attempt:
            playlist.refresh_from_db(fields=["title", "description", "revision", "visibility", "history_floor"])
        state = playlist_state(playlist=playlist)
        if Playlist.objects.filter(pk=playlist.pk, revision=playlist.revision).exists():
            return state
    with transaction.atomic():
        locked = Playlist.objects.select_for_update().get(pk=playlist.pk)
        playlist.title, playlist.description, playlist.revision = locked.title, locked.description, locked.revision
        return playlist_state(playlist=playlist)


def playlist_snapshot(*, playlist: Playlist) -> dict[str, Any]:
    """The playlist now, consistent with its revision, as ``playlist.subscribe``
    answers (and ``resync_required`` carries)."""
    state = playlist_state_now(playlist=playlist)
    payload = state_payload(playlist=playlist, state=state)
    return {**payload, "visibility": playlist.visibility, "owner": playlist.owner_id}


def playlist_ops_between(
    *, playlist: Playlist, after: int, upto: int | None = None, limit: int | None = None
) -> list[PlaylistOp]:
    """Op-log entries with ``after < revision <= upto`` in order, the first ``limit`` of them."""
    entries = PlaylistOp.objects.filter(playlist=playlist, revision__gt=after)
    if upto is not None:
        entries = entries.filter(revision__lte=upto)
    entries = entries.select_related("actor").order_by("revision")
    return list(entries[:limit] if limit is not None else entries)


def committed_since(entries: Sequence[PlaylistOp]) -> list[Committed]:
    return [Committed(entry.revision, entry.actor_id, entry.ops) for entry in entries]


class RevisionGone(Exception):
    """The revision is older than the retained history (``Playlist.history_floor``)."""


def playlist_state_at(*, playlist: Playlist, revision: int) -> PlaylistState:
    """The playlist as of ``revision``: the newest snapshot at or before it, plus
    the ops after the snapshot (fewer than ``PLAYLIST_SNAPSHOT_EVERY`` once the
    snapshot task has run). Raises ``RevisionGone`` below the history floor."""
    if revision < playlist.history_floor or revision > playlist.revision:
        raise RevisionGone(revision)
    snapshot = PlaylistSnapshot.objects.filter(playlist=playlist, revision__lte=revision).order_by("-revision").first()
    if snapshot is None:
        raise RevisionGone(revision)
    state = PlaylistState(
        title=snapshot.title,
        description=snapshot.description,
        items=[dict(item) for item in snapshot.items],
        revision=snapshot.revision,
    )
    for entry in playlist_ops_between(playlist=playlist, after=snapshot.revision, upto=revision):
        apply_all(state, entry.ops)
        state.revision = entry.revision
    return state


def playlist_revisions(*, playlist: Playlist):
    """The op log (committed revisions only), newest first, for history pages."""
    return PlaylistOp.objects.filter(playlist=playlist, revision__isnull=False).select_related("actor")


def playlist_suggestions(*, actor: Principal, playlist_id: int, limit: int | None = None) -> list[dict[str, Any]]:
    """Tracks to add to the playlist, best first, each with why (``playlists.suggestions``);
    readable by anyone who may see the playlist."""
    from .suggestions import suggestions_for_tracks

    playlist = playlist_access(actor=actor, playlist_id=playlist_id).playlist
    track_ids = list(PlaylistItem.objects.filter(playlist=playlist).values_list("track_id", flat=True))
    limit = settings.SUGGESTION_MAX_RESULTS if limit is None else max(1, min(limit, settings.SUGGESTION_MAX_RESULTS))
    return [
        {
            "track": {field: getattr(suggestion.track, field) for field in _TRACK_FIELDS},
            "score": round(suggestion.score, 6),
            "reason": suggestion.reason,
            "because_track": suggestion.because_track_id,
            "kind": suggestion.kind,
        }
        for suggestion in suggestions_for_tracks(tenant_id=playlist.tenant_id, track_ids=track_ids, limit=limit)
    ]


# --- Sharing ----------------------------------------------------------------------------


def playlist_collaborators(*, actor: Principal, playlist_id: int):
    """Who is on the playlist (the owner's row first, then by when each was added),
    with their user loaded; readable by anyone who may see the playlist."""
    playlist = playlist_access(actor=actor, playlist_id=playlist_id).playlist
    return PlaylistCollaborator.objects.filter(playlist=playlist).select_related("user").order_by("id")


def playlist_share_links(*, actor: Principal, playlist_id: int):
    """The playlist's share links, newest first, revoked and expired ones included,
    for its owner only. ``token_hash`` is never read: a link is shown by its
    ``token_prefix``, the token itself only once, when it is created."""
    playlist = playlist_access(actor=actor, playlist_id=playlist_id, minimum=CollaboratorRole.OWNER).playlist
    return PlaylistShareLink.objects.filter(playlist=playlist).defer("token_hash").order_by("-id")
