"""Chat routes, mounted under /api/v1/ by spotify_agent/urls.py."""

from django.urls import path

from . import views

urlpatterns = [
    path("rooms/", views.RoomListCreateView.as_view(), name="rooms"),
    path("rooms/direct/", views.DirectRoomOpenView.as_view(), name="rooms-direct"),
    path("rooms/<int:room_id>/", views.RoomDetailView.as_view(), name="room"),
    path("rooms/<int:room_id>/join/", views.RoomJoinView.as_view(), name="room-join"),
    path("rooms/<int:room_id>/leave/", views.RoomLeaveView.as_view(), name="room-leave"),
    path("rooms/<int:room_id>/invite/", views.RoomInviteView.as_view(), name="room-invite"),
    path("rooms/<int:room_id>/members/", views.RoomMembersView.as_view(), name="room-members"),
    path(
        "rooms/<int:room_id>/members/<int:user_id>/kick/",
        views.RoomMemberKickView.as_view(),
        name="room-member-kick",
    ),
    path("rooms/<int:room_id>/members/<int:user_id>/ban/", views.RoomMemberBanView.as_view(), name="room-member-ban"),
    path(
        "rooms/<int:room_id>/members/<int:user_id>/unban/",
        views.RoomMemberUnbanView.as_view(),
        name="room-member-unban",
    ),
    path(
        "rooms/<int:room_id>/members/<int:user_id>/mute/",
        views.RoomMemberMuteView.as_view(),
        name="room-member-mute",
    ),
    path(
        "rooms/<int:room_id>/members/<int:user_id>/unmute/",
        views.RoomMemberUnmuteView.as_view(),
        name="room-member-unmute",
    ),
    path("rooms/<int:room_id>/messages/", views.MessageListSendView.as_view(), name="room-messages"),
    path("rooms/<int:room_id>/messages/<int:seq>/", views.MessageDetailView.as_view(), name="room-message"),
    path(
        "rooms/<int:room_id>/messages/<int:seq>/reactions/",
        views.MessageReactionAddView.as_view(),
        name="room-message-reactions",
    ),
    path(
        "rooms/<int:room_id>/messages/<int:seq>/reactions/<str:emoji>/",
        views.MessageReactionRemoveView.as_view(),
        name="room-message-reaction",
    ),
    path(
        "rooms/<int:room_id>/messages/<int:seq>/clear-flag/",
        views.MessageFlagClearView.as_view(),
        name="room-message-clear-flag",
    ),
    path("rooms/<int:room_id>/read/", views.RoomReadView.as_view(), name="room-read"),
    path("rooms/<int:room_id>/attachments/", views.AttachmentUploadView.as_view(), name="room-attachments"),
    path("attachments/<int:attachment_id>/", views.AttachmentDownloadView.as_view(), name="attachment"),
    path("messages/search/", views.MessageSearchView.as_view(), name="messages-search"),
    path("messages/flagged/", views.FlaggedMessageListView.as_view(), name="messages-flagged"),
]
