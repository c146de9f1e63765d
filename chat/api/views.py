"""REST adapters of chat: parse, call one service or selector, render.

Authorization, validation and broadcasting are the services'; the API's
exception handler renders their domain errors (``spotify_agent.errors``,
``chat.errors``) in the API error shape with the matching status (404, 403,
400, 409, 413, 415, 422). Chat is for users: API
clients are refused (no ``required_scope``). docs/api.md, "Chat", lists the
endpoints.
"""

from __future__ import annotations

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.constants import Role
from audit.services import RequestContext
from spotify_agent.api.pagination import DefaultCursorPagination
from spotify_agent.api.schema import ErrorResponseSerializer, error_responses
from spotify_agent.api.views import TenantScopedMixin

from .. import selectors
from ..errors import TooLarge
from ..models import Message, RoomMember
from ..services.attachments import attachment_open, attachment_upload
from ..services.messages import message_delete, message_edit, message_send, reaction_add, reaction_remove
from ..services.moderation import message_flag_clear, room_member_mute, room_member_unmute
from ..services.reads import read_mark
from ..services.rooms import (
    direct_room_open,
    room_ban,
    room_create,
    room_invite,
    room_join,
    room_kick,
    room_leave,
    room_unban,
)
from .serializers import (
    AttachmentOutputSerializer,
    AttachmentUploadInputSerializer,
    BanOutputSerializer,
    DirectRoomOutputSerializer,
    FlaggedQueryInputSerializer,
    InvitationOutputSerializer,
    MemberOutputSerializer,
    MessageEditInputSerializer,
    MessageOutputSerializer,
    MessageSendInputSerializer,
    ModeratedMessageOutputSerializer,
    MuteInputSerializer,
    MuteOutputSerializer,
    MyRoomOutputSerializer,
    ReactionInputSerializer,
    ReadInputSerializer,
    ReadOutputSerializer,
    RoomBanInputSerializer,
    RoomCreateInputSerializer,
    RoomDetailOutputSerializer,
    RoomOutputSerializer,
    SearchHitOutputSerializer,
    SearchQueryInputSerializer,
    UserIdInputSerializer,
)

TAGS = ["chat"]
_CONFLICT = {
    409: OpenApiResponse(ErrorResponseSerializer, description="Conflicts with the current state (`conflict`)."),
}


_MODERATED = {
    422: OpenApiResponse(
        ErrorResponseSerializer,
        description="Rejected by moderation (`moderated`, details.reason: flood, repeat, blocked_word).",
    ),
}


_UPLOAD = {
    413: OpenApiResponse(
        ErrorResponseSerializer, description="The file exceeds the size limit (`too_large`, details.max_bytes)."
    ),
    415: OpenApiResponse(
        ErrorResponseSerializer,
        description=(
            "The file's content is not an accepted type (`type_not_allowed`, details.allowed), or disagrees "
            "with its declared type (`type_mismatch`); a body that is not multipart is `unsupported_media_type`."
        ),
    ),
}
_LOCAL = {**_CONFLICT, **_MODERATED, **_UPLOAD}


def _errors(*statuses: int) -> dict:
    responses = error_responses(*(code for code in statuses if code not in _LOCAL))
    responses.update({code: _LOCAL[code] for code in statuses if code in _LOCAL})
    return responses


class ChatView(TenantScopedMixin, APIView):
    """Base of chat views: users of any role, tenant from the credential (domain
    errors are rendered by the API's exception handler)."""

    required_role = Role.MEMBER
    required_scope = None

    def context(self) -> RequestContext:
        return RequestContext.from_request(self.request)


class MyRoomsPagination(DefaultCursorPagination):
    ordering = "-id"


class MessagePagination(DefaultCursorPagination):
    """Newest first by seq: the seq is unique within a room, so cursors are exact."""

    ordering = "-seq"

    def __init__(self) -> None:
        # A page is one batch at most, read per request so the setting can change.
        self.max_page_size = settings.MESSAGE_BATCH_SIZE
        self.page_size = min(DefaultCursorPagination.page_size, settings.MESSAGE_BATCH_SIZE)


# --- Rooms ----------------------------------------------------------------------


class RoomListCreateView(ChatView, GenericAPIView):
    """The caller's rooms, and room creation."""

    pagination_class = MyRoomsPagination
    serializer_class = MyRoomOutputSerializer
    queryset = RoomMember.objects.none()

    @extend_schema(
        operation_id="rooms_list",
        summary="The caller's rooms, with unread counts",
        responses={200: MyRoomOutputSerializer(many=True), **_errors(401, 403, 429)},
        tags=TAGS,
    )
    def get(self, request):
        page = self.paginate_queryset(selectors.rooms_for_user(actor=self.principal))
        return self.get_paginated_response(MyRoomOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="rooms_create",
        summary="Create a public or private room; the caller becomes its owner",
        request=RoomCreateInputSerializer,
        responses={201: RoomOutputSerializer, **_errors(400, 401, 403, 409, 429)},
        tags=TAGS,
    )
    def post(self, request):
        serializer = RoomCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        room = room_create(actor=self.principal, **serializer.validated_data)
        return Response(RoomOutputSerializer(room).data, status=status.HTTP_201_CREATED)


class RoomDetailView(ChatView):
    @extend_schema(
        operation_id="rooms_retrieve",
        summary="A room the caller is in, or a public room of their tenant",
        responses={200: RoomDetailOutputSerializer, **_errors(401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request, room_id: int):
        room, membership = selectors.room_get_visible(actor=self.principal, room_id=room_id)
        if membership is not None:
            membership.unread = room.last_seq - membership.last_read_seq
        return Response(RoomDetailOutputSerializer({"room": room, "membership": membership}).data)


class DirectRoomOpenView(ChatView):
    @extend_schema(
        operation_id="rooms_direct_open",
        summary="The direct room with another user of the tenant, created on first use",
        request=UserIdInputSerializer,
        responses={
            200: DirectRoomOutputSerializer,
            201: DirectRoomOutputSerializer,
            **_errors(400, 401, 403, 404, 429),
        },
        tags=TAGS,
    )
    def post(self, request):
        serializer = UserIdInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        room, created = direct_room_open(actor=self.principal, user_id=serializer.validated_data["user_id"])
        body = DirectRoomOutputSerializer({"room": room, "created": created}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RoomJoinView(ChatView):
    @extend_schema(
        operation_id="rooms_join",
        summary="Join a public room, or a private room one was invited to (idempotent)",
        request=None,
        responses={200: MyRoomOutputSerializer, **_errors(401, 403, 404, 409, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int):
        membership = room_join(actor=self.principal, room_id=room_id)
        membership = selectors.rooms_for_user(actor=self.principal).get(pk=membership.pk)
        return Response(MyRoomOutputSerializer(membership).data)


class RoomLeaveView(ChatView):
    @extend_schema(
        operation_id="rooms_leave",
        summary="Leave a room",
        request=None,
        responses={204: None, **_errors(401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int):
        room_leave(actor=self.principal, room_id=room_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomInviteView(ChatView):
    @extend_schema(
        operation_id="rooms_invite",
        summary="Invite a user of the tenant (room owner or moderator)",
        request=UserIdInputSerializer,
        responses={201: InvitationOutputSerializer, **_errors(400, 401, 403, 404, 409, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int):
        serializer = UserIdInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation = room_invite(actor=self.principal, room_id=room_id, user_id=serializer.validated_data["user_id"])
        return Response(InvitationOutputSerializer(invitation).data, status=status.HTTP_201_CREATED)


class RoomMembersView(ChatView, GenericAPIView):
    pagination_class = MyRoomsPagination
    serializer_class = MemberOutputSerializer
    queryset = RoomMember.objects.none()

    @extend_schema(
        operation_id="rooms_members_list",
        summary="The members of a room the caller is in",
        responses={200: MemberOutputSerializer(many=True), **_errors(401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request, room_id: int):
        membership = selectors.room_get_for_member(actor=self.principal, room_id=room_id)
        page = self.paginate_queryset(selectors.room_members(room=membership.room))
        return self.get_paginated_response(MemberOutputSerializer(page, many=True).data)


class RoomMemberKickView(ChatView):
    @extend_schema(
        operation_id="rooms_members_kick",
        summary="Remove a member (room owner or moderator, tenant moderator); audited",
        request=None,
        responses={204: None, **_errors(400, 401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int, user_id: int):
        room_kick(actor=self.principal, room_id=room_id, user_id=user_id, context=self.context())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomMemberBanView(ChatView):
    @extend_schema(
        operation_id="rooms_members_ban",
        summary="Ban a user from the room, for good or until a time; audited",
        request=RoomBanInputSerializer,
        responses={201: BanOutputSerializer, **_errors(400, 401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int, user_id: int):
        serializer = RoomBanInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ban = room_ban(
            actor=self.principal,
            room_id=room_id,
            user_id=user_id,
            context=self.context(),
            **serializer.validated_data,
        )
        return Response(BanOutputSerializer(ban).data, status=status.HTTP_201_CREATED)


# --- Messages -------------------------------------------------------------------


class MessageListSendView(ChatView, GenericAPIView):
    pagination_class = MessagePagination
    serializer_class = MessageOutputSerializer
    queryset = Message.objects.none()

    @extend_schema(
        operation_id="rooms_messages_list",
        summary="A room's messages, newest first (tombstones included)",
        responses={200: MessageOutputSerializer(many=True), **_errors(401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request, room_id: int):
        membership = selectors.room_get_for_member(actor=self.principal, room_id=room_id)
        page = self.paginate_queryset(selectors.messages_queryset(room=membership.room))
        return self.get_paginated_response(MessageOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="rooms_messages_send",
        summary="Send a message: 201 the first time, 200 on a resend, 422 when moderation rejects it",
        request=MessageSendInputSerializer,
        responses={
            201: MessageOutputSerializer,
            200: OpenApiResponse(MessageOutputSerializer, description="A resend: the stored message."),
            **_errors(400, 401, 403, 404, 409, 422, 429),
        },
        tags=TAGS,
    )
    def post(self, request, room_id: int):
        serializer = MessageSendInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message, created = message_send(actor=self.principal, room_id=room_id, **serializer.validated_data)
        return Response(
            MessageOutputSerializer(message).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class MessageDetailView(ChatView):
    @extend_schema(
        operation_id="rooms_messages_edit",
        summary="Edit one's own message (the previous body is kept for moderators); 422 when moderation rejects it",
        request=MessageEditInputSerializer,
        responses={200: MessageOutputSerializer, **_errors(400, 401, 403, 404, 409, 422, 429)},
        tags=TAGS,
    )
    def patch(self, request, room_id: int, seq: int):
        serializer = MessageEditInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = message_edit(actor=self.principal, room_id=room_id, seq=seq, **serializer.validated_data)
        return Response(MessageOutputSerializer(message).data)

    @extend_schema(
        operation_id="rooms_messages_delete",
        summary="Delete a message (sender or moderator): it becomes a tombstone that keeps its seq",
        responses={200: MessageOutputSerializer, **_errors(401, 403, 404, 429)},
        tags=TAGS,
    )
    def delete(self, request, room_id: int, seq: int):
        message = message_delete(actor=self.principal, room_id=room_id, seq=seq, context=self.context())
        return Response(MessageOutputSerializer(message).data)


class RoomReadView(ChatView):
    @extend_schema(
        operation_id="rooms_read_mark",
        summary="Mark the room read up to a seq (never moves back)",
        request=ReadInputSerializer,
        responses={200: ReadOutputSerializer, **_errors(400, 401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int):
        serializer = ReadInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        current = read_mark(actor=self.principal, room_id=room_id, seq=serializer.validated_data["seq"])
        return Response(ReadOutputSerializer({"last_read_seq": current}).data)


class MessageSearchView(ChatView):
    @extend_schema(
        operation_id="messages_search",
        summary="Search messages in the caller's rooms, best match first, matches highlighted",
        parameters=[
            OpenApiParameter("q", str, required=True, description="Words to find."),
            OpenApiParameter("room_id", int, required=False, description="Only this room."),
        ],
        responses={200: SearchHitOutputSerializer(many=True), **_errors(400, 401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request):
        serializer = SearchQueryInputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        hits = selectors.message_search(actor=self.principal, **serializer.validated_data)
        return Response(SearchHitOutputSerializer(hits, many=True).data)


class MessageReactionAddView(ChatView):
    @extend_schema(
        operation_id="rooms_messages_reactions_add",
        summary="React to a message with an emoji (idempotent)",
        request=ReactionInputSerializer,
        responses={204: None, **_errors(400, 401, 403, 404, 409, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int, seq: int):
        serializer = ReactionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reaction_add(actor=self.principal, room_id=room_id, seq=seq, emoji=serializer.validated_data["emoji"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessageReactionRemoveView(ChatView):
    @extend_schema(
        operation_id="rooms_messages_reactions_remove",
        summary="Take one's reaction back (idempotent); the emoji is percent-encoded in the path",
        responses={204: None, **_errors(400, 401, 403, 404, 429)},
        tags=TAGS,
    )
    def delete(self, request, room_id: int, seq: int, emoji: str):
        reaction_remove(actor=self.principal, room_id=room_id, seq=seq, emoji=emoji)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Attachments ----------------------------------------------------------------

# Room for the multipart framing around the file (boundaries, part headers):
# a body longer than the limit plus this cannot hold an acceptable file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class AttachmentUploadView(ChatView):
    parser_classes = (MultiPartParser,)

    @extend_schema(
        operation_id="rooms_attachments_upload",
        summary="Upload a file for one's next message in the room (multipart, field `file`)",
        request={"multipart/form-data": AttachmentUploadInputSerializer},
        responses={201: AttachmentOutputSerializer, **_errors(400, 401, 403, 404, 409, 413, 415, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int):
        # Refused before the body is read when its announced length already tells.
        max_bytes = settings.CHAT_ATTACHMENT_MAX_BYTES
        try:
            announced = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            announced = 0
        if announced > max_bytes + MULTIPART_OVERHEAD_BYTES:
            raise TooLarge(f"A file has at most {max_bytes} bytes.", details={"max_bytes": max_bytes})
        serializer = AttachmentUploadInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        attachment = attachment_upload(
            actor=self.principal, room_id=room_id, upload=upload, declared_content_type=upload.content_type
        )
        return Response(AttachmentOutputSerializer(attachment).data, status=status.HTTP_201_CREATED)


class AttachmentDownloadView(ChatView):
    def perform_content_negotiation(self, request, force=False):
        # The file answers whatever Accept says; errors fall back to JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="attachments_download",
        summary="Download an attachment (members of its room; a pending upload: its uploader only)",
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The file, as `Content-Disposition: attachment`."
            ),
            **_errors(401, 403, 404, 429),
        },
        tags=TAGS,
    )
    def get(self, request, attachment_id: int):
        attachment = selectors.attachment_get_for_member(actor=self.principal, attachment_id=attachment_id)
        response = FileResponse(
            attachment_open(attachment=attachment),
            as_attachment=True,
            filename=attachment.name,
            content_type=attachment.content_type,
        )
        # Never rendered by the browser in our origin: no sniffing, no scripts, no caching by proxies.
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["Cache-Control"] = "private, no-store"
        return response


# --- Moderation -----------------------------------------------------------------


class RoomMemberUnbanView(ChatView):
    @extend_schema(
        operation_id="rooms_members_unban",
        summary="Lift a ban (room owner or moderator, tenant moderator); audited",
        request=None,
        responses={204: None, **_errors(401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int, user_id: int):
        room_unban(actor=self.principal, room_id=room_id, user_id=user_id, context=self.context())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomMemberMuteView(ChatView):
    @extend_schema(
        operation_id="rooms_members_mute",
        summary="Mute a member until a time: they read but cannot post, edit or react; audited",
        request=MuteInputSerializer,
        responses={200: MuteOutputSerializer, **_errors(400, 401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int, user_id: int):
        serializer = MuteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        member = room_member_mute(
            actor=self.principal,
            room_id=room_id,
            user_id=user_id,
            context=self.context(),
            **serializer.validated_data,
        )
        return Response(MuteOutputSerializer(member).data)


class RoomMemberUnmuteView(ChatView):
    @extend_schema(
        operation_id="rooms_members_unmute",
        summary="Lift a mute before it expires (idempotent); audited",
        request=None,
        responses={200: MuteOutputSerializer, **_errors(401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int, user_id: int):
        member = room_member_unmute(actor=self.principal, room_id=room_id, user_id=user_id, context=self.context())
        return Response(MuteOutputSerializer(member).data)


class FlaggedMessagesPagination(DefaultCursorPagination):
    ordering = "-id"


class FlaggedMessageListView(ChatView, GenericAPIView):
    """The review queue of the rooms the caller moderates."""

    pagination_class = FlaggedMessagesPagination
    serializer_class = ModeratedMessageOutputSerializer
    queryset = Message.objects.none()

    @extend_schema(
        operation_id="messages_flagged_list",
        summary="Messages moderation flagged, in the rooms the caller moderates, newest first",
        parameters=[OpenApiParameter("room_id", int, required=False, description="Only this room.")],
        responses={200: ModeratedMessageOutputSerializer(many=True), **_errors(400, 401, 403, 429)},
        tags=TAGS,
    )
    def get(self, request):
        serializer = FlaggedQueryInputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        queryset = selectors.messages_flagged(actor=self.principal, **serializer.validated_data)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ModeratedMessageOutputSerializer(page, many=True).data)


class MessageFlagClearView(ChatView):
    @extend_schema(
        operation_id="rooms_messages_flag_clear",
        summary="Keep a flagged message: clear its flag (room or tenant moderators; idempotent); audited",
        request=None,
        responses={200: ModeratedMessageOutputSerializer, **_errors(401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, room_id: int, seq: int):
        message = message_flag_clear(actor=self.principal, room_id=room_id, seq=seq, context=self.context())
        return Response(ModeratedMessageOutputSerializer(message).data)
