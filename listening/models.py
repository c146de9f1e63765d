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
from django.db.models import Q

from accounts.models import TenantOwned

from .constants import (
    DEVICE_ID_MAX_LENGTH,
    DEVICE_NAME_MAX_LENGTH,
    SESSION_TITLE_MAX_LENGTH,
    DeviceKind,
    MemberRole,
    RequestStatus,
    SessionMode,
    SessionStatus,
    SessionVisibility,
)


class ListeningSession(TenantOwned):
    """A group listening together, or a DJ playing to an audience."""

    host = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    title = models.CharField(max_length=SESSION_TITLE_MAX_LENGTH)
    mode = models.CharField(max_length=10, choices=SessionMode.choices, default=SessionMode.GROUP)
    status = models.CharField(max_length=10, choices=SessionStatus.choices, default=SessionStatus.LIVE)
    visibility = models.CharField(max_length=10, choices=SessionVisibility.choices, default=SessionVisibility.PUBLIC)
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
    # A start waiting for members who reported buffering: playback begins when
    # they are ready or at this moment (server clock, Unix ms), whichever comes
    # first. Null when no start is waiting.
    waiting_until_ms = models.BigIntegerField(null=True, blank=True)

    # DJ rotation (dj mode): the member on deck from the wait list, and how many
    # tracks a turn lasts and has lasted.
    dj = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    dj_turn_tracks = models.PositiveSmallIntegerField(default=3)
    dj_turn_played = models.PositiveSmallIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["tenant", "status", "visibility"])]

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
    # Set while the member's player reports it is buffering: a start waits for
    # them (at most until the session's ``waiting_until_ms``).
    buffering_since = models.DateTimeField(null=True, blank=True)

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


class SessionInvite(TenantOwned):
    """An invitation to a session: the invitee may join even when the session is
    by invitation only."""

    session = models.ForeignKey(ListeningSession, on_delete=models.CASCADE, related_name="invites")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "user"], name="listening_invite_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} invited to {self.session_id}"


class Device(TenantOwned):
    """One of a user's players (``device_id`` is the client's own stable id). At
    most one per user is active: it plays; the others stay silent."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    device_id = models.CharField(max_length=DEVICE_ID_MAX_LENGTH)
    name = models.CharField(max_length=DEVICE_NAME_MAX_LENGTH)
    kind = models.CharField(max_length=10, choices=DeviceKind.choices, default=DeviceKind.OTHER)
    active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "device_id"], name="listening_device_unique"),
            models.UniqueConstraint(fields=["user"], condition=Q(active=True), name="listening_device_one_active"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class DjWaitlistEntry(TenantOwned):
    """A member waiting for a turn at the decks (dj mode), first come first served."""

    session = models.ForeignKey(ListeningSession, on_delete=models.CASCADE, related_name="waitlist")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    joined_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["session", "user"], name="listening_waitlist_unique")]
        indexes = [models.Index(fields=["session", "joined_at"])]
        verbose_name_plural = "DJ wait list entries"

    def __str__(self) -> str:
        return f"{self.user_id} waits in {self.session_id}"


class TrackRequest(TenantOwned):
    """A listener's request for a track (dj mode), voted on by the audience and
    accepted into the queue or rejected by a DJ. ``votes`` counts ``RequestVote``
    rows, kept on the row so the list orders by it."""

    session = models.ForeignKey(ListeningSession, on_delete=models.CASCADE, related_name="requests")
    track = models.ForeignKey("playlists.Track", on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=RequestStatus.choices, default=RequestStatus.PENDING)
    votes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            # A second request for a pending track is a vote on the first.
            models.UniqueConstraint(
                fields=["session", "track"],
                condition=Q(status=RequestStatus.PENDING),
                name="listening_request_pending_unique",
            )
        ]
        indexes = [models.Index(fields=["session", "status", "-votes", "created_at"])]

    def __str__(self) -> str:
        return f"{self.track_id} requested in {self.session_id}"


class RequestVote(TenantOwned):
    request = models.ForeignKey(TrackRequest, on_delete=models.CASCADE, related_name="vote_rows")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "user"], name="listening_request_vote_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} votes for {self.request_id}"
