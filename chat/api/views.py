"""REST adapters of chat: parse, call one service or selector, render.

Authorization, validation and broadcasting are the services'; ``ChatView``
maps their domain errors (``chat.errors``) to the API error shape with the
matching status (404, 403, 400, 409). Chat is for users: API clients are
refused (no ``required_scope``). docs/api.md, "Chat", lists the endpoints.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.constants import Role
from audit.services import RequestContext
from spotify_agent.api.exceptions import ApiError
from spotify_agent.api.pagination import DefaultCursorPagination
from spotify_agent.api.schema import ErrorResponseSerializer, error_responses
from spotify_agent.api.views import TenantScopedMixin

from .. import selectors
from ..errors import ChatError
from ..models import Message, RoomMember
from ..services.messages import message_delete, message_edit, message_send
from ..services.reads import read_mark
from ..services.rooms import (
    direct_room_open,
    room_ban,
    room_create,
    room_invite,
    room_join,
    room_kick,
    room_leave,
)
from .serializers import (
    BanOutputSerializer,
    DirectRoomOutputSerializer,
    InvitationOutputSerializer,
    MemberOutputSerializer,
    MessageEditInputSerializer,
    MessageOutputSerializer,
    MessageSendInputSerializer,
    MyRoomOutputSerializer,
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


def _errors(*statuses: int) -> dict:
    responses = error_responses(*(code for code in statuses if code != 409))
    if 409 in statuses:
        responses.update(_CONFLICT)
    return responses


class ChatView(TenantScopedMixin, APIView):
    """Base of chat views: users of any role, tenant from the credential,
    chat's domain errors rendered in the API error shape."""

    required_role = Role.MEMBER
    required_scope = None

    def handle_exception(self, exc):
        if isinstance(exc, ChatError):
            exc = ApiError(code=str(exc.code), message=exc.message, status_code=exc.http_status, details=exc.details)
        return super().handle_exception(exc)

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
        summary="Send a message: 201 the first time, 200 with the same message on a resend",
        request=MessageSendInputSerializer,
        responses={
            201: MessageOutputSerializer,
            200: OpenApiResponse(MessageOutputSerializer, description="A resend: the stored message."),
            **_errors(400, 401, 403, 404, 409, 429),
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
        summary="Edit one's own message (the previous body is kept for moderators)",
        request=MessageEditInputSerializer,
        responses={200: MessageOutputSerializer, **_errors(400, 401, 403, 404, 409, 429)},
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
