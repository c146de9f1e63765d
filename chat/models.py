"""Chat rooms, their members, bans and invitations, and the messages posted in them.

Every row here belongs to one tenant: rooms, memberships, bans, invitations,
messages and attachments carry it (``TenantOwned``); edits, reactions and
search tokens reach it through their message. In encrypted rooms, bodies and
attachment files are stored encrypted (``chat.crypto``): read them through
``Message.text``, ``MessageEdit.previous_text`` and
``chat.services.attachments.attachment_open``, never the raw fields.
Messages are numbered per room by ``Room.last_seq`` (gap-free, see
``chat.services.messages``); read state is one ``last_read_seq`` per member,
not a row per message. Writes happen only in ``chat.services``.
"""

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from accounts.models import TenantOwned

from .constants import (
    ATTACHMENT_NAME_MAX_LENGTH,
    BAN_REASON_MAX_LENGTH,
    BLOCKED_WORD_MAX_LENGTH,
    CLIENT_ID_MAX_LENGTH,
    EMOJI_MAX_LENGTH,
    MODERATION_REASON_MAX_LENGTH,
    ROOM_NAME_MAX_LENGTH,
    BlockedWordAction,
    ModerationStatus,
    RoomKind,
    RoomRole,
)
from .crypto import KEY_ID_MAX_LENGTH, SEARCH_TOKEN_LENGTH, text_open


class Room(TenantOwned):
    """A conversation: public (any tenant member may join), private (invited) or direct (two users)."""

    name = models.CharField(max_length=ROOM_NAME_MAX_LENGTH)
    kind = models.CharField(max_length=10, choices=RoomKind.choices, default=RoomKind.PUBLIC)
    topic = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # The seq of the newest message: the per-room counter, advanced under a row
    # lock by message_send. Also the unread baseline (last_seq - last_read_seq).
    last_seq = models.BigIntegerField(default=0, editable=False)
    # Bodies, edit history and attachment files of new messages are stored
    # encrypted (chat.crypto); clients see no difference. Set at creation.
    encrypted = models.BooleanField(default=False)
    # "<lower user id>:<higher user id>" for direct rooms, so each pair has one.
    # NULL (not "") for other rooms: NULLs never collide in the unique constraint.
    direct_key = models.CharField(max_length=41, null=True, blank=True, editable=False)  # noqa: DJ001

    class Meta:
        indexes = [models.Index(fields=["tenant", "kind"])]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=~models.Q(kind=RoomKind.DIRECT),
                name="chat_room_tenant_name_unique",
            ),
            models.UniqueConstraint(fields=["tenant", "direct_key"], name="chat_room_tenant_direct_key_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class RoomMember(TenantOwned):
    """A user's membership of a room, with a room role and how far they have read."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships")
    role = models.CharField(max_length=10, choices=RoomRole.choices, default=RoomRole.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)
    # "Read up to": only ever moves forward (chat.services.reads.read_mark).
    last_read_seq = models.BigIntegerField(default=0)
    # When set, the member's read marker is not broadcast to the room.
    receipts_private = models.BooleanField(default=False)
    muted_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="chat_roommember_room_user")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id}"


class RoomBan(TenantOwned):
    """A user barred from a room until ``until`` (or for good when it is null)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bans")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_bans")
    until = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=BAN_REASON_MAX_LENGTH, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="chat_roomban_room_user")]

    def __str__(self) -> str:
        return f"{self.user_id} banned from {self.room_id}"


class RoomInvitation(TenantOwned):
    """An invitation to a private room; ``accepted_at`` is set when the invitee joins."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invitations")
    invitee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_invitations")
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "invitee"], name="chat_roominvitation_room_invitee")]

    def __str__(self) -> str:
        return f"{self.invitee_id} invited to {self.room_id}"


class Message(TenantOwned):
    """One message, numbered ``seq`` within its room.

    A delete is a tombstone: the body is cleared and ``deleted_at`` set, but the
    row and its seq stay, so a client resuming from a seq sees no gap.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    client_id = models.CharField(max_length=CLIENT_ID_MAX_LENGTH)
    # Stored exactly as sent: HTML here is text, escaped by whoever renders it.
    # In an encrypted room this is the ciphertext and body_key_id names its key;
    # read ``text`` for the clear body.
    body = models.TextField(blank=True)
    body_key_id = models.CharField(max_length=KEY_ID_MAX_LENGTH, blank=True, default="", editable=False)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set once by the moderation pipeline when the message is stored
    # (chat.moderation); a moderator's review clears the flag and keeps the reason.
    moderation_status = models.CharField(
        max_length=10, choices=ModerationStatus.choices, default=ModerationStatus.OK, editable=False
    )
    moderation_reason = models.CharField(max_length=MODERATION_REASON_MAX_LENGTH, blank=True, editable=False)

    class Meta:
        indexes = [
            # The review queue: flagged messages per tenant, newest first. Partial,
            # so it stays as small as the queue rather than the table.
            models.Index(
                fields=["tenant", "-created_at"],
                condition=models.Q(moderation_status=ModerationStatus.FLAGGED),
                name="chat_message_flagged",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="chat_message_room_seq"),
            # A resent message (same client_id) finds the first one instead of duplicating it.
            models.UniqueConstraint(fields=["room", "sender", "client_id"], name="chat_message_room_sender_client"),
        ]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def text(self) -> str:
        """The body in clear, decrypted when it was stored under a key."""
        return text_open(self.body, self.body_key_id)


class MessageEdit(models.Model):
    """The body a message had before one edit: the history moderators can review."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    # Encrypted like the message's body was (key_id empty: in clear); read previous_text.
    previous_body = models.TextField()
    key_id = models.CharField(max_length=KEY_ID_MAX_LENGTH, blank=True, default="", editable=False)
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    edited_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["edited_at", "id"]

    def __str__(self) -> str:
        return f"edit of {self.message_id} at {self.edited_at:%Y-%m-%d %H:%M}"

    @property
    def previous_text(self) -> str:
        return text_open(self.previous_body, self.key_id)


class MessageSearchToken(models.Model):
    """One word of an encrypted message, as a keyed hash (``chat.crypto.search_token``):
    how search finds whole words in bodies the database only holds encrypted.
    Plain rooms need none (PostgreSQL's full-text index reads their bodies)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="search_tokens")
    token = models.CharField(max_length=SEARCH_TOKEN_LENGTH)

    class Meta:
        indexes = [models.Index(fields=["token", "message"], name="chat_searchtoken_token")]
        constraints = [
            models.UniqueConstraint(fields=["message", "token"], name="chat_searchtoken_message_token"),
        ]

    def __str__(self) -> str:
        return f"{self.token} in {self.message_id}"


class Attachment(TenantOwned):
    """A file uploaded to a room, then carried by one message of its uploader.

    Stored through Django's storage API under a random name (``storage_name``);
    the client's filename is kept as ``name`` (sanitised metadata, never a path).
    ``content_type`` is what the first bytes say, not what the client declared.
    ``size`` and ``sha256`` describe the file as uploaded; in an encrypted room
    the stored bytes are its ciphertext under ``key_id``. Until ``message`` is
    set only the uploader sees it, and it is purged after a day.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="attachments")
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    name = models.CharField(max_length=ATTACHMENT_NAME_MAX_LENGTH)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    storage_name = models.CharField(max_length=255, unique=True, editable=False)
    key_id = models.CharField(max_length=KEY_ID_MAX_LENGTH, blank=True, default="", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The purge's scan: unclaimed uploads by age. Partial, so it stays as
            # small as the uploads in flight.
            models.Index(
                fields=["created_at"], condition=models.Q(message__isnull=True), name="chat_attachment_unattached"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Reaction(models.Model):
    """One user's emoji on one message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    emoji = models.CharField(max_length=EMOJI_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "emoji"], name="chat_reaction_message_user_emoji")
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on {self.message_id}"


class BlockedWord(TenantOwned):
    """A word or phrase a tenant does not want in its chat, matched whole-word and
    case-insensitively by ``chat.moderation.BlockedWordsModerator``."""

    phrase = models.CharField(max_length=BLOCKED_WORD_MAX_LENGTH)
    action = models.CharField(max_length=10, choices=BlockedWordAction.choices, default=BlockedWordAction.FLAG)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["phrase"]
        constraints = [
            # Matching ignores case, so "Spam" and "spam" would be one rule twice.
            models.UniqueConstraint("tenant", Lower("phrase"), name="chat_blockedword_tenant_phrase_ci"),
        ]

    def __str__(self) -> str:
        return self.phrase
