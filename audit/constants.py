"""Audit actor kinds and the catalogue of recorded actions.

Actions are dotted ``<area>.<object>.<verb>`` strings. Every action the project
records is listed here, so the catalogue in docs/audit.md can be checked
against it and a typo fails loudly (``audit_record`` refuses unknown actions).
"""

from django.db import models


class ActorType(models.TextChoices):
    USER = "user", "User"
    API_CLIENT = "api_client", "API client"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class AuditAction(models.TextChoices):
    LOGIN_SUCCEEDED = "auth.login.succeeded", "Login succeeded"
    LOGIN_FAILED = "auth.login.failed", "Login failed"
    LOGIN_LOCKED_OUT = "auth.login.locked_out", "Login locked out"
    TOKEN_REFRESHED = "auth.token.refreshed", "Token refreshed"
    TOKEN_REUSE_DETECTED = "auth.token.reuse_detected", "Rotated refresh token reused"
    WS_TICKET_ISSUED = "auth.ws_ticket.issued", "WebSocket ticket issued"
    WS_CONNECTED = "ws.connected", "WebSocket connected"
    WS_DISCONNECTED = "ws.disconnected", "WebSocket disconnected"
    WS_REJECTED = "ws.rejected", "WebSocket authentication rejected"
    USER_DEACTIVATED = "user.deactivated", "User deactivated"
    USER_REACTIVATED = "user.reactivated", "User reactivated"
    API_CLIENT_CREATED = "api_client.created", "API client created"
    API_CLIENT_REVOKED = "api_client.revoked", "API client revoked"
    ADMIN_ADDED = "admin.object.added", "Admin added an object"
    ADMIN_CHANGED = "admin.object.changed", "Admin changed an object"
    ADMIN_DELETED = "admin.object.deleted", "Admin deleted an object"
    ROOM_MEMBER_KICKED = "room.member.kicked", "Room member kicked"
    ROOM_MEMBER_BANNED = "room.member.banned", "Room member banned"
    ROOM_MEMBER_UNBANNED = "room.member.unbanned", "Room member unbanned"
    ROOM_MEMBER_MUTED = "room.member.muted", "Room member muted"
    ROOM_MEMBER_UNMUTED = "room.member.unmuted", "Room member unmuted"
    CHAT_MESSAGE_DELETED_BY_MODERATOR = "chat.message.deleted_by_moderator", "Message deleted by a moderator"
    CHAT_MESSAGE_FLAG_CLEARED = "chat.message.flag_cleared", "Message flag cleared by a moderator"
    TRACKS_IMPORTED = "tracks.imported", "Tracks imported"
    PLAYLIST_VISIBILITY_CHANGED = "playlist.visibility_changed", "Playlist visibility changed"
    PLAYLIST_DELETED = "playlist.deleted", "Playlist deleted"
    PLAYLIST_COLLABORATOR_ADDED = "playlist.collaborator.added", "Playlist collaborator added"
    PLAYLIST_COLLABORATOR_CHANGED = "playlist.collaborator.changed", "Playlist collaborator's role changed"
    PLAYLIST_COLLABORATOR_REMOVED = "playlist.collaborator.removed", "Playlist collaborator removed"
    PLAYLIST_SHARE_LINK_CREATED = "playlist.share_link.created", "Playlist share link created"
    PLAYLIST_SHARE_LINK_REVOKED = "playlist.share_link.revoked", "Playlist share link revoked"
    PLAYLIST_SHARE_LINK_USED = "playlist.share_link.used", "Playlist share link used"
    LISTENING_MEMBER_MUTED = "listening.member.muted", "Listening session member muted"
    LISTENING_MEMBER_UNMUTED = "listening.member.unmuted", "Listening session member unmuted"
    LISTENING_MEMBER_REMOVED = "listening.member.removed", "Listening session member removed"
    LISTENING_SESSION_ENDED = "listening.session.ended", "Listening session ended by staff"
    SYSTEM_MAINTENANCE_BROADCAST = "system.maintenance.broadcast", "Maintenance notice broadcast"
    NOTIFICATION_SENT = "notification.sent", "Notification sent"
    NOTIFICATION_DELIVERY_RETRIED = "notification.delivery.retried", "Dead-lettered notification delivery retried"
    NOTIFICATION_DEVICE_DISABLED = "notification.device.disabled", "Push subscription or token disabled by staff"


# The GENESIS hash every chain starts from.
GENESIS_HASH = "0" * 64
