"""Choices and limits of listening sessions and playback.

Each limit says why it has its value; docs/protocol.md ("Listening sessions")
quotes them to clients.
"""

from django.db import models


class SessionMode(models.TextChoices):
    """``dj``: only the host and co-DJs control playback and the queue; ``group``:
    every member does."""

    DJ = "dj", "DJ"
    GROUP = "group", "Group"


class SessionVisibility(models.TextChoices):
    """``public``: listed to the tenant, anyone in it joins; ``invite``: unlisted,
    only invited users (and past members) join."""

    PUBLIC = "public", "Public"
    INVITE = "invite", "By invitation"


class SessionStatus(models.TextChoices):
    LIVE = "live", "Live"
    ENDED = "ended", "Ended"


class MemberRole(models.TextChoices):
    HOST = "host", "Host"
    CO_DJ = "co_dj", "Co-DJ"
    LISTENER = "listener", "Listener"


class DeviceKind(models.TextChoices):
    PHONE = "phone", "Phone"
    TABLET = "tablet", "Tablet"
    DESKTOP = "desktop", "Desktop"
    WEB = "web", "Web player"
    SPEAKER = "speaker", "Speaker"
    TV = "tv", "TV"
    CAR = "car", "Car"
    OTHER = "other", "Other"


class RequestStatus(models.TextChoices):
    """An audience request's life: pending until a DJ accepts it (it joins the
    queue) or rejects it, or its author withdraws it."""

    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"


class PlaybackAction(models.TextChoices):
    """The playback commands (``playback.<action>`` frames)."""

    PLAY = "play", "Play"
    PAUSE = "pause", "Pause"
    SEEK = "seek", "Seek"
    SKIP = "skip", "Skip"
    VOLUME = "volume", "Volume"


SESSION_TITLE_MAX_LENGTH = 200
DEVICE_ID_MAX_LENGTH = 64
DEVICE_NAME_MAX_LENGTH = 100
# A command takes effect this long after the server applies it, so every
# client (with its clock synchronised, realtime.client.clock) can start at the
# same moment: above a typical mobile round trip, below what feels sluggish.
PLAYBACK_LEAD_MS = 300
VOLUME_MAX = 100
# Radio mode adds this many suggestions when the queue runs dry: enough for a
# quarter of an hour, few enough that the queue stays the listeners' to shape.
RADIO_BATCH = 5
# Suggestions are drawn from the session's latest distinct tracks, this many.
RADIO_SEEDS = 10
