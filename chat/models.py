"""Chat rooms and their membership. Both are tenant-owned."""

from django.conf import settings
from django.db import models

from accounts.models import TenantOwned

from .constants import ROOM_NAME_MAX_LENGTH, RoomKind, RoomRole


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

    class Meta:
        indexes = [models.Index(fields=["tenant", "kind"])]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=~models.Q(kind=RoomKind.DIRECT),
                name="chat_room_tenant_name_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name


class RoomMember(TenantOwned):
    """A user's membership of a room, with a room role."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships")
    role = models.CharField(max_length=10, choices=RoomRole.choices, default=RoomRole.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="chat_roommember_room_user")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.room_id}"
