"""The track catalog, playlists, their collaborators, share links, edit history
and the suggestion model.

The catalog is tenant-scoped: each tenant imports the tracks it is licensed
for, and a track's URI is unique within its tenant. Nothing here refers across
tenants: every row carries its tenant and services check it.

A playlist's order lives in ``PlaylistItem.position`` (0..n-1, unique per
playlist). Only ``playlists.services.editing`` writes items, under a row lock
on the playlist, and every committed change is one ``PlaylistOp`` with the next
revision. docs/protocol.md, "Playlists", describes the editing model.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import TenantOwned

from .constants import (
    CLIENT_OP_ID_MAX_LENGTH,
    PLAYLIST_TITLE_MAX_LENGTH,
    SHARE_TOKEN_PREFIX_LENGTH,
    TRACK_TEXT_MAX_LENGTH,
    TRACK_URI_MAX_LENGTH,
    CollaboratorRole,
    OpKind,
    PlaylistKind,
    SimilarityKind,
    Visibility,
)


class Track(TenantOwned):
    """A track of the tenant's catalog, with optional audio features (each 0..1, tempo in BPM)."""

    uri = models.CharField(max_length=TRACK_URI_MAX_LENGTH)
    title = models.CharField(max_length=TRACK_TEXT_MAX_LENGTH)
    artist = models.CharField(max_length=TRACK_TEXT_MAX_LENGTH)
    album = models.CharField(max_length=TRACK_TEXT_MAX_LENGTH, blank=True)
    duration_ms = models.PositiveIntegerField()
    tempo = models.FloatField(null=True, blank=True)
    energy = models.FloatField(null=True, blank=True)
    danceability = models.FloatField(null=True, blank=True)
    valence = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "uri"], name="playlists_track_tenant_uri")]
        indexes = [models.Index(fields=["tenant", "artist"])]

    def __str__(self) -> str:
        return f"{self.artist} - {self.title}"


class Playlist(TenantOwned):
    """An ordered list of tracks owned by one user; ``revision`` counts committed edits.

    ``history_floor``: the op log holds every revision after it (older entries
    were pruned), and a snapshot exists at it. An op based on an older revision
    cannot be transformed and gets ``resync_required``.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="playlists")
    title = models.CharField(max_length=PLAYLIST_TITLE_MAX_LENGTH)
    description = models.TextField(blank=True)
    visibility = models.CharField(max_length=20, choices=Visibility.choices, default=Visibility.PRIVATE)
    kind = models.CharField(max_length=10, choices=PlaylistKind.choices, default=PlaylistKind.PLAYLIST)
    revision = models.PositiveBigIntegerField(default=0)
    history_floor = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "visibility"])]

    def __str__(self) -> str:
        return self.title


class PlaylistItem(TenantOwned):
    """One entry of a playlist. ``item_id`` is stable, so edits name the entry, not its index."""

    playlist = models.ForeignKey(Playlist, on_delete=models.CASCADE, related_name="items")
    item_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    track = models.ForeignKey(Track, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField()
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["playlist", "position"]
        constraints = [
            models.UniqueConstraint(fields=["playlist", "position"], name="playlists_item_playlist_position")
        ]

    def __str__(self) -> str:
        return f"{self.playlist_id}[{self.position}]"


class PlaylistCollaborator(TenantOwned):
    """A user's role on a playlist. The owner has a row too, so one query answers "who may edit"."""

    playlist = models.ForeignKey(Playlist, on_delete=models.CASCADE, related_name="collaborators")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=10, choices=CollaboratorRole.choices)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["playlist", "user"], name="playlists_collaborator_unique")]
        indexes = [models.Index(fields=["user", "playlist"])]

    def __str__(self) -> str:
        return f"{self.user_id} {self.role} of {self.playlist_id}"


class PlaylistShareLink(TenantOwned):
    """A link that makes whoever opens it (a user of the same tenant) a collaborator
    with ``role``. Only a SHA-256 of the token is stored: the token is shown once."""

    playlist = models.ForeignKey(Playlist, on_delete=models.CASCADE, related_name="share_links")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=SHARE_TOKEN_PREFIX_LENGTH, editable=False)
    role = models.CharField(max_length=10, choices=CollaboratorRole.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(role=CollaboratorRole.OWNER), name="playlists_share_link_not_owner")
        ]

    def __str__(self) -> str:
        return f"{self.token_prefix}… ({self.role})"


class PlaylistOp(TenantOwned):
    """One edit request and its outcome: the op log.

    ``revision`` is set when the edit changed the playlist (the op log proper, one
    row per revision, gap-free); an edit that changed nothing (a remove of an
    already removed item, a dropped move) keeps ``revision`` null but is stored
    all the same, so a retry with the same ``client_op_id`` gets the first answer.
    ``ops`` are the operations as applied, in the form clients replay
    (docs/protocol.md); ``outcome`` is the author's ack content.
    """

    playlist = models.ForeignKey(Playlist, on_delete=models.CASCADE, related_name="ops")
    revision = models.PositiveBigIntegerField(null=True, blank=True)
    base_revision = models.PositiveBigIntegerField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    client_op_id = models.CharField(max_length=CLIENT_OP_ID_MAX_LENGTH, blank=True)
    kind = models.CharField(max_length=10, choices=OpKind.choices, default=OpKind.EDIT)
    ops = models.JSONField(default=list)
    outcome = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["playlist", "revision"], condition=Q(revision__isnull=False), name="playlists_op_revision"
            ),
            models.UniqueConstraint(
                fields=["playlist", "actor", "client_op_id"],
                condition=~Q(client_op_id=""),
                name="playlists_op_client_op_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.playlist_id}@{self.revision}"


class PlaylistSnapshot(TenantOwned):
    """The whole playlist as of one revision, so "as of N" replays at most
    ``PLAYLIST_SNAPSHOT_EVERY`` ops. ``items``: ``[{"item_id", "track_id",
    "added_by", "added_at"}, ...]`` in order."""

    playlist = models.ForeignKey(Playlist, on_delete=models.CASCADE, related_name="snapshots")
    revision = models.PositiveBigIntegerField()
    title = models.CharField(max_length=PLAYLIST_TITLE_MAX_LENGTH)
    description = models.TextField(blank=True)
    items = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["playlist", "revision"], name="playlists_snapshot_revision")]

    def __str__(self) -> str:
        return f"{self.playlist_id}@{self.revision} (snapshot)"


class TrackPlay(TenantOwned):
    """One play of a track by a user (a "play event"): the listening history
    suggestions learn from. ``played_at`` is when it started; a play heard in a
    listening session names it, with how long the user listened."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="+")
    played_at = models.DateTimeField()
    session = models.ForeignKey(
        "listening.ListeningSession", null=True, blank=True, on_delete=models.SET_NULL, related_name="plays"
    )
    listened_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "user", "played_at"])]

    def __str__(self) -> str:
        return f"{self.user_id} played {self.track_id}"


class TrackSimilarity(TenantOwned):
    """One neighbour of a track in the suggestion model, rebuilt by
    ``playlists.tasks.suggestions_rebuild``: ``score`` ranks neighbours (cosine
    similarity), ``together`` counts the playlists and listening sessions holding both."""

    track = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="+")
    similar = models.ForeignKey(Track, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=SimilarityKind.choices)
    score = models.FloatField()
    together = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["track", "similar", "kind"], name="playlists_similarity_unique")]
        indexes = [models.Index(fields=["track", "kind", "-score"])]

    def __str__(self) -> str:
        return f"{self.track_id} ~ {self.similar_id} ({self.kind} {self.score:.3f})"
