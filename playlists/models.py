"""The track catalog and playlists.

The catalog is tenant-scoped: each tenant imports the tracks it is licensed
for, and a track's URI is unique within its tenant.
"""

import uuid

from django.conf import settings
from django.db import models

from accounts.models import TenantOwned

from .constants import PLAYLIST_TITLE_MAX_LENGTH, TRACK_URI_MAX_LENGTH, Visibility


class Track(TenantOwned):
    """A track of the tenant's catalog, with optional audio features."""

    uri = models.CharField(max_length=TRACK_URI_MAX_LENGTH)
    title = models.CharField(max_length=300)
    artist = models.CharField(max_length=300)
    album = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField()
    tempo = models.FloatField(null=True, blank=True)
    energy = models.FloatField(null=True, blank=True)
    danceability = models.FloatField(null=True, blank=True)
    valence = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "uri"], name="playlists_track_tenant_uri")]
        indexes = [models.Index(fields=["tenant", "artist"])]

    def __str__(self) -> str:
        return f"{self.artist} - {self.title}"


class Playlist(TenantOwned):
    """An ordered list of tracks owned by one user; ``revision`` counts committed edits."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="playlists")
    title = models.CharField(max_length=PLAYLIST_TITLE_MAX_LENGTH)
    description = models.TextField(blank=True)
    visibility = models.CharField(max_length=20, choices=Visibility.choices, default=Visibility.PRIVATE)
    revision = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

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
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["playlist", "position"]
        constraints = [
            models.UniqueConstraint(fields=["playlist", "position"], name="playlists_item_playlist_position")
        ]

    def __str__(self) -> str:
        return f"{self.playlist_id}[{self.position}]"
