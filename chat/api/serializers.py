"""Input and output shapes of the chat REST API.

Inputs check types only; the rules (body length, who may do what) are the
services'. ``MessageOutputSerializer`` renders through ``chat.events.message_payload``,
so a message reads the same over REST as in a ``chat.message`` event.
"""

from __future__ import annotations

from dataclasses import asdict

from rest_framework import serializers

from ..constants import (
    BAN_REASON_MAX_LENGTH,
    CLIENT_ID_MAX_LENGTH,
    EMOJI_MAX_LENGTH,
    MESSAGE_ATTACHMENTS_MAX,
    ROOM_NAME_MAX_LENGTH,
    ModerationStatus,
    RoomKind,
    RoomRole,
)
from ..events import message_payload

# --- Rooms ----------------------------------------------------------------------


class RoomOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=RoomKind.choices)
    topic = serializers.CharField()
    encrypted = serializers.BooleanField()
    last_seq = serializers.IntegerField(help_text="The seq of the room's newest message (0: none yet).")
    created_at = serializers.DateTimeField()
    archived_at = serializers.DateTimeField(allow_null=True)


class MyRoomOutputSerializer(serializers.Serializer):
    """One of the caller's rooms, from their membership."""

    room = RoomOutputSerializer()
    role = serializers.ChoiceField(choices=RoomRole.choices)
    last_read_seq = serializers.IntegerField()
    unread = serializers.IntegerField(help_text="Messages after the caller's read marker.")
    muted_until = serializers.DateTimeField(allow_null=True)
    receipts_private = serializers.BooleanField()


class RoomDetailOutputSerializer(serializers.Serializer):
    room = RoomOutputSerializer()
    membership = MyRoomOutputSerializer(allow_null=True, help_text="Null when the caller has not joined.")


class RoomCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=ROOM_NAME_MAX_LENGTH)
    kind = serializers.ChoiceField(choices=[RoomKind.PUBLIC, RoomKind.PRIVATE], default=RoomKind.PUBLIC)
    topic = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    encrypted = serializers.BooleanField(
        required=False, default=False, help_text="Store bodies and files encrypted at rest (needs server keys)."
    )


class DirectRoomOutputSerializer(serializers.Serializer):
    room = RoomOutputSerializer()
    created = serializers.BooleanField()


class UserIdInputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1)


class RoomBanInputSerializer(serializers.Serializer):
    until = serializers.DateTimeField(required=False, allow_null=True, default=None, help_text="Null: for good.")
    reason = serializers.CharField(max_length=BAN_REASON_MAX_LENGTH, required=False, allow_blank=True, default="")


class MemberUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField()


class MemberOutputSerializer(serializers.Serializer):
    user = MemberUserSerializer()
    role = serializers.ChoiceField(choices=RoomRole.choices)
    joined_at = serializers.DateTimeField()


class InvitationOutputSerializer(serializers.Serializer):
    room_id = serializers.IntegerField()
    invitee_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class BanOutputSerializer(serializers.Serializer):
    room_id = serializers.IntegerField()
    user_id = serializers.IntegerField()
    until = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField()


# --- Messages -------------------------------------------------------------------


class SenderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class AttachmentRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    content_type = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes.")


class MessageOutputSerializer(serializers.Serializer):
    """A message; a deleted one is a tombstone (``deleted`` true, empty body) that keeps its seq."""

    id = serializers.IntegerField()
    seq = serializers.IntegerField()
    sender = SenderSerializer(allow_null=True)
    body = serializers.CharField(help_text="Plain text exactly as sent: escape it before display.")
    reply_to_seq = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    edited_at = serializers.DateTimeField(allow_null=True)
    deleted = serializers.BooleanField()
    attachments = AttachmentRefSerializer(many=True, help_text="Download each from /api/v1/attachments/{id}/.")

    def to_representation(self, instance):
        return asdict(message_payload(instance))


class MessageSendInputSerializer(serializers.Serializer):
    client_id = serializers.CharField(
        max_length=CLIENT_ID_MAX_LENGTH, help_text="Chosen by the client; a resend with the same value is idempotent."
    )
    # Whitespace and emptiness are the service's to judge: the body is stored as given.
    body = serializers.CharField(trim_whitespace=False, allow_blank=True)
    reply_to_seq = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    attachments = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        default=list,
        help_text=f"Ids of the caller's own uploads to this room (at most {MESSAGE_ATTACHMENTS_MAX}).",
    )


class AttachmentUploadInputSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=False, use_url=False)


class AttachmentOutputSerializer(serializers.Serializer):
    """An upload; ``message_id`` stays null until a message carries it."""

    id = serializers.IntegerField()
    room_id = serializers.IntegerField()
    message_id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField(help_text="The original filename, cleaned: metadata only.")
    content_type = serializers.CharField(help_text="Detected from the file's content.")
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()


class MessageEditInputSerializer(serializers.Serializer):
    body = serializers.CharField(trim_whitespace=False, allow_blank=True)


class ReadInputSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=0)


class ReadOutputSerializer(serializers.Serializer):
    last_read_seq = serializers.IntegerField()


class SearchQueryInputSerializer(serializers.Serializer):
    q = serializers.CharField(max_length=200)
    room_id = serializers.IntegerField(required=False, min_value=1)


class SearchHitOutputSerializer(serializers.Serializer):
    room_id = serializers.IntegerField(source="message.room_id")
    message = MessageOutputSerializer()
    rank = serializers.FloatField(allow_null=True, help_text="Relevance (PostgreSQL); null on the embedded database.")
    headline = serializers.CharField(help_text="The body with matches wrapped in [[ and ]].")


class ReactionInputSerializer(serializers.Serializer):
    emoji = serializers.CharField(max_length=EMOJI_MAX_LENGTH, trim_whitespace=False)


# --- Moderation -----------------------------------------------------------------


class MuteInputSerializer(serializers.Serializer):
    until = serializers.DateTimeField(help_text="When the mute ends; at most 30 days ahead.")
    reason = serializers.CharField(max_length=BAN_REASON_MAX_LENGTH, required=False, allow_blank=True, default="")


class MuteOutputSerializer(serializers.Serializer):
    room_id = serializers.IntegerField()
    user_id = serializers.IntegerField()
    muted_until = serializers.DateTimeField(allow_null=True, help_text="Null: not muted.")


class FlaggedQueryInputSerializer(serializers.Serializer):
    room_id = serializers.IntegerField(required=False, min_value=1)


class ModeratedMessageOutputSerializer(serializers.Serializer):
    """A message with what moderation decided about it (moderators only)."""

    room_id = serializers.IntegerField()
    message = MessageOutputSerializer(source="*")
    moderation_status = serializers.ChoiceField(choices=ModerationStatus.choices)
    moderation_reason = serializers.CharField(help_text="Why it was flagged; kept after the flag is cleared.")
