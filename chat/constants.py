"""Choices and limits of chat rooms."""

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
