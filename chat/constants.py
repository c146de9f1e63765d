"""Choices and limits of chat rooms and messages."""

from django.db import models


class RoomKind(models.TextChoices):
    PUBLIC = "public", "Public"  # any member of the tenant may join
    PRIVATE = "private", "Private"  # invitation only
    DIRECT = "direct", "Direct"  # exactly two users


class RoomRole(models.TextChoices):
    MEMBER = "member", "Member"
    MODERATOR = "moderator", "Moderator"
    OWNER = "owner", "Owner"


ROOM_NAME_MAX_LENGTH = 100
# Room roles that may moderate the room: invite, kick, ban, delete others' messages.
ROOM_MODERATOR_ROLES = frozenset({RoomRole.MODERATOR, RoomRole.OWNER})

# A message is chat, not a document: long enough for a pasted lyric, short
# enough that a page of MESSAGE_BATCH_SIZE messages stays well under 1 MB.
MESSAGE_BODY_MAX_LENGTH = 4000
# The client's idempotency token for a send (a UUID fits with room to spare).
CLIENT_ID_MAX_LENGTH = 64
# One emoji can be several code points (skin tones, ZWJ sequences, flags).
EMOJI_MAX_LENGTH = 32
BAN_REASON_MAX_LENGTH = 300

# Full-text search: at most this many hits, and the plain-text markers around
# matched words in a headline. Not HTML: bodies are data, and a client that
# escapes the text and then replaces these markers cannot be tricked into
# rendering markup from a message.
SEARCH_RESULTS_LIMIT = 50
SEARCH_HIGHLIGHT_START = "[["
SEARCH_HIGHLIGHT_STOP = "]]"
# Search in encrypted rooms matches whole words through a keyed-hash index
# (chat.crypto); a query of more words than this is refused rather than
# turned into that many index lookups.
SEARCH_ENCRYPTED_MAX_WORDS = 10
# The text search configuration: no stemming or stop words, so that any
# language matches word for word (and the GIN index in 0002 is built with it).
SEARCH_CONFIG = "simple"


class ReactionAction(models.TextChoices):
    ADDED = "added", "Added"
    REMOVED = "removed", "Removed"


class MemberChange(models.TextChoices):
    """Why a member left a room (``room.member_left``)."""

    LEFT = "left", "Left"
    KICKED = "kicked", "Kicked"
    BANNED = "banned", "Banned"


# --- Moderation (chat.moderation) ------------------------------------------------


class ModerationStatus(models.TextChoices):
    """What the moderation pipeline decided about a stored message (a rejected one is not stored)."""

    OK = "ok", "OK"
    FLAGGED = "flagged", "Flagged for review"


class BlockedWordAction(models.TextChoices):
    """What a blocked word or phrase does to a message that contains it."""

    FLAG = "flag", "Flag for review"
    REJECT = "reject", "Reject"


MODERATION_REASON_MAX_LENGTH = 300
BLOCKED_WORD_MAX_LENGTH = 100
# The longest a moderator may mute a member for; longer is a ban.
MUTE_MAX_SECONDS = 30 * 24 * 3600


# --- Attachments (chat.services.attachments) --------------------------------------

# Files one message may carry: a handful of photos, not an album.
MESSAGE_ATTACHMENTS_MAX = 10
# The longest original filename kept (as metadata; files are stored under random names).
ATTACHMENT_NAME_MAX_LENGTH = 200
# An upload no message has claimed after this long is deleted
# (chat.tasks.attachments_purge_unattached): a client uploads just before sending.
ATTACHMENT_UNATTACHED_MAX_AGE_SECONDS = 24 * 3600
# The purge deletes this many rows per transaction, and at most this many batches
# per run: beat runs it again an hour later.
ATTACHMENT_PURGE_BATCH_SIZE = 200
ATTACHMENT_PURGE_MAX_BATCHES = 50
# Where uploads live in the default storage: <prefix>/<tenant id>/<random hex>.
ATTACHMENT_STORAGE_PREFIX = "chat/attachments"
