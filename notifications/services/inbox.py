"""A user's inbox: reading and acknowledging notifications.

Reading (``notification_read``, ``notifications_read_all``) marks the inbox
row read and the user's deliveries of that notification that reached them
(``sent`` or ``delivered``) ``read``. Acknowledging (``notification_ack``, the
WebSocket client's ``notification.ack``) says the frame arrived: the
WebSocket delivery becomes ``delivered``; the notification stays unread.
All are idempotent and take the user from the actor: another user's or
another tenant's notification is ``NotFound``. Reads (the list, the count)
are in ``notifications.selectors``. docs/api.md, "Inbox".
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.principals import Principal

from ..constants import Channel, DeliveryStatus
from ..models import Delivery, NotificationRecipient
from ..selectors import inbox_row_get, inbox_user_id, unread_count

# Deliveries that reached the user; reading marks these ``read``. A queued or
# failed one did not arrive, so reading in the app says nothing about it.
_ARRIVED = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
# An ack may overtake the worker's own "sent" (the frame is out before the row
# is updated), so any not-yet-arrived status may become ``delivered``.
_ACKABLE = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.SENT)


@dataclass(frozen=True)
class ReadResult:
    """How many inbox rows this call marked read, and the user's unread count after it."""

    marked: int
    unread: int


@transaction.atomic
def notification_read(*, actor: Principal, notification_id) -> ReadResult:
    """Mark one notification of the user's inbox read. Idempotent."""
    row = inbox_row_get(actor=actor, notification_id=notification_id)
    now = timezone.now()
    marked = NotificationRecipient.objects.filter(pk=row.pk, read_at__isnull=True).update(read_at=now)
    Delivery.objects.filter(
        tenant_id=actor.tenant_id, notification_id=row.notification_id, user_id=row.user_id, status__in=_ARRIVED
    ).update(status=DeliveryStatus.READ, read_at=now)
    return ReadResult(marked=marked, unread=unread_count(actor=actor))


@transaction.atomic
def notifications_read_all(*, actor: Principal) -> ReadResult:
    """Mark every unread notification of the user's inbox read, in two statements. Idempotent."""
    user_id = inbox_user_id(actor)
    now = timezone.now()
    unread = NotificationRecipient.objects.filter(tenant_id=actor.tenant_id, user_id=user_id, read_at__isnull=True)
    notification_ids = list(unread.values_list("notification_id", flat=True))
    marked = NotificationRecipient.objects.filter(
        tenant_id=actor.tenant_id, user_id=user_id, notification_id__in=notification_ids, read_at__isnull=True
    ).update(read_at=now)
    if notification_ids:
        Delivery.objects.filter(
            tenant_id=actor.tenant_id, user_id=user_id, notification_id__in=notification_ids, status__in=_ARRIVED
        ).update(status=DeliveryStatus.READ, read_at=now)
    return ReadResult(marked=marked, unread=unread_count(actor=actor))


@dataclass(frozen=True)
class AckResult:
    notification_id: str
    status: str


@transaction.atomic
def notification_ack(*, actor: Principal, notification_id) -> AckResult:
    """The WebSocket client got the notification: its WebSocket delivery becomes
    ``delivered`` (``delivered_at`` now) unless already further along. Idempotent;
    does not read it."""
    row = inbox_row_get(actor=actor, notification_id=notification_id)
    deliveries = Delivery.objects.filter(
        tenant_id=actor.tenant_id, notification_id=row.notification_id, user_id=row.user_id, channel=Channel.WEBSOCKET
    )
    deliveries.filter(status__in=_ACKABLE).update(
        status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), next_attempt_at=None
    )
    status = deliveries.values_list("status", flat=True).first() or DeliveryStatus.DELIVERED
    return AckResult(notification_id=str(row.notification_id), status=status)
