"""Choices and limits of the identity layer."""

from django.db import models


class TenantTier(models.TextChoices):
    FREE = "free", "Free"
    PRO = "pro", "Pro"
    ENTERPRISE = "enterprise", "Enterprise"


class TenantStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"


class Role(models.TextChoices):
    """A member's role in their tenant; each role includes the ones before it."""

    MEMBER = "member", "Member"
    MODERATOR = "moderator", "Moderator"
    ADMIN = "admin", "Admin"


ROLE_RANK = {Role.MEMBER: 0, Role.MODERATOR: 1, Role.ADMIN: 2}


def role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK.get(role, -1) >= ROLE_RANK[minimum]


class ApiScope(models.TextChoices):
    """Permissions an API client can be granted. Later features add theirs here."""

    TENANT_READ = "tenant:read", "Read tenant, users and rooms"
    NOTIFICATIONS_SEND = "notifications:send", "Send notifications"
    NOTIFICATIONS_READ = "notifications:read", "Read notification status"
    TRACKS_READ = "tracks:read", "Read the track catalog"
    TRACKS_WRITE = "tracks:write", "Import tracks"
    PLAYLISTS_READ = "playlists:read", "Read playlists, their history and suggestions"
    LISTENING_READ = "listening:read", "Read listening sessions, their queues, plays and recommendations"
    ALERTS_READ = "alerts:read", "Read alerts"


API_KEY_PREFIX = "sa"
# Refresh the API client's last_used_at at most this often (seconds): it is
# informational, and a write per request would be a hot row.
API_CLIENT_LAST_USED_RESOLUTION = 60
