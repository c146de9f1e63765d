"""Listening sessions: who listens together, and what plays.

A session owns a queue (a ``playlists.Playlist`` of kind ``queue``, edited
with the playlist engine: same transformation, same rules) and a chat room
(``chat.Room``). Its playback state lives on the session row itself, so one
row lock orders every command, and is server-authoritative: a track at
``position_ms`` as of ``anchor_ms`` (server clock, Unix milliseconds),
playing or paused, at ``rate``. ``playback_revision`` counts commands;
a command based on an older revision loses. docs/protocol.md, "Listening
sessions", describes the model.
"""

from django.conf import settings
from django.db import models

from accounts.models import TenantOwned

from .constants import SESSION_TITLE_MAX_LENGTH, MemberRole, SessionMode, SessionStatus


class ListeningSession(TenantOwned):
    """A group listening together, or a DJ playing to an audience."""

    host = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    title = models.CharField(max_length=SESSION_TITLE_MAX_LENGTH)
    mode = models.CharField(max_length=10, choices=SessionMode.choices, default=SessionMode.GROUP)
    status = models.CharField(max_length=10, choices=SessionStatus.choices, default=SessionStatus.LIVE)
    queue = models.OneToOneField("playlists.Playlist", on_delete=models.PROTECT, related_name="listening_session")
    room = models.OneToOneField("chat.Room", on_delete=models.PROTECT, related_name="listening_session")
    audience_limit = models.PositiveIntegerField()
    # Radio mode: when the queue runs dry, the server tops it up with suggestions
    # from what the session played (playlists.suggestions).
    radio = models.BooleanField(default=False)
    # The share of present members whose votes skip the current track (0..1].
    vote_skip_threshold = models.FloatField(default=0.5)
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    # Playback (server-authoritative).
    track = models.ForeignKey("playlists.Track", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    position_ms = models.PositiveBigIntegerField(default=0)
    anchor_ms = models.BigIntegerField(default=0)
    playing = models.BooleanField(default=False)
    rate = models.FloatField(default=1.0)
    volume = models.PositiveSmallIntegerField(default=100)
    playback_revision = models.PositiveBigIntegerField(default=0)
    # Bumped each time another track comes on: skip votes count per track, so a
    # pause or a volume change does not reset them.
    track_serial = models.PositiveBigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["tenant", "status"])]

    def __str__(self) -> str:
        return self.title

    def position_at(self, now_ms: int) -> int:
        """Where the track is at ``now_ms`` (server clock)."""
        if not self.playing or now_ms <= self.anchor_ms:
            return self.position_ms
        return self.position_ms + int((now_ms - self.anchor_ms) * self.rate)


class SessionMember(TenantOwned):
    """A user in a session. Rows stay after leaving (``left_at``), so an ended
    session keeps who was there, and "longest present" can be told."""

    session = models.ForeignKey(ListeningSession, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=10, choices=MemberRole.choices, default=MemberRole.LISTENER)
    joined_at = models.DateTimeField()
    left_at = models.DateTimeField(null=True, blank=True)
    # Set by the host: a muted member neither reacts nor controls playback; a
    # removed one has left and may not join again.
    muted_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "user"], name="listening_member_unique")]
        indexes = [models.Index(fields=["session", "left_at"])]

    def __str__(self) -> str:
        return f"{self.user_id} {self.role} in {self.session_id}"


class SkipVote(TenantOwned):
    """A member's vote to skip the track that was on as ``track_serial``."""

    session = models.ForeignKey(ListeningSession, on_delete=models.CASCADE, related_name="skip_votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    track_serial = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "track_serial", "user"], name="listening_skip_vote_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} skips {self.session_id}#{self.track_serial}"
