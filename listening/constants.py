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


class SessionStatus(models.TextChoices):
    LIVE = "live", "Live"
    ENDED = "ended", "Ended"


class MemberRole(models.TextChoices):
    HOST = "host", "Host"
    CO_DJ = "co_dj", "Co-DJ"
    LISTENER = "listener", "Listener"


class PlaybackAction(models.TextChoices):
    """The playback commands (``playback.<action>`` frames)."""

    PLAY = "play", "Play"
    PAUSE = "pause", "Pause"
    SEEK = "seek", "Seek"
    SKIP = "skip", "Skip"
    VOLUME = "volume", "Volume"


SESSION_TITLE_MAX_LENGTH = 200
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
