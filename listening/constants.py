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
# How long a start waits for members whose player is buffering is the setting
# LISTENING_START_WAIT_MS (spotify_agent/settings.py). A start's `waiting`
# lists this many of them (and counts all): enough for a room of friends, bounded
# for a concert.
WAITING_MEMBERS_LISTED = 20
# A member's player may go from ready to buffering at most once per this long:
# a real stall lasts longer, and it bounds what a flapping player (or a script)
# costs to about 8 writes a second. Going ready is never refused: refusing it
# could only hold the room.
BUFFERING_FLIP_MIN_MS = 250
VOLUME_MAX = 100
# Radio mode adds this many suggestions when the queue runs dry: enough for a
# quarter of an hour, few enough that the queue stays the listeners' to shape.
RADIO_BATCH = 5
# Suggestions are drawn from the session's latest distinct tracks, this many.
RADIO_SEEDS = 10
# DJ rotation (dj mode). At three tracks a turn of some three and a half
# minutes, fifty waiting is about nine hours of rotation: a longer list only
# holds people who will never get on deck before the night ends.
DJ_WAITLIST_MAX = 50
# A turn lasts this many tracks by default (the table's default) and at most
# DJ_TURN_TRACKS_MAX: past an hour or so a "turn" is a residency.
DJ_TURN_TRACKS_MAX = 20
# Audience requests (dj mode). Each listener keeps at most this many pending:
# enough to propose a few, few enough that one fan cannot flood the DJ's list.
REQUESTS_PENDING_PER_USER = 3
# A session holds at most this many pending: more than a DJ reads in a night,
# and it bounds the list every member loads.
REQUESTS_PENDING_PER_SESSION = 200
# The pending list answers this many by default, at most REQUESTS_LISTED_MAX.
REQUESTS_LISTED = 50
REQUESTS_LISTED_MAX = 200
