"""Reads shared by REST, the WebSocket handlers and the admin: a user's inbox,
their unread count, and a notification's status per recipient and channel.

Every read is scoped by the caller's tenant and, for the inbox, by the user:
another tenant's or another user's notification is ``NotFound``, like one
that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Count, QuerySet
from django.utils.translation import gettext as _

from accounts.constants import ApiScope, Role
from accounts.principals import Principal
from spotify_agent.errors import Forbidden, NotFound

from .models import Delivery, Notification, NotificationRecipient

STATUS_ROLE = Role.ADMIN
STATUS_SCOPE = ApiScope.NOTIFICATIONS_READ


def inbox_user_id(actor: Principal) -> int:
    """The user whose inbox ``actor`` reads; API clients have none (``Forbidden``)."""
    if actor.user_id is None:
        raise Forbidden(_("API clients have no notification inbox."))
    return actor.user_id


def notification_uuid(value) -> uuid.UUID:
    """A notification id from a client; anything that is not a UUID names no notification."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise NotFound(_("No such notification.")) from None


def notifications_for_user(*, actor: Principal, unread_only: bool = False) -> QuerySet[NotificationRecipient]:
    """The user's inbox, newest first (by the row's id, which a cursor needs),
    with each row's notification joined."""
    rows = NotificationRecipient.objects.filter(tenant_id=actor.tenant_id, user_id=inbox_user_id(actor))
    if unread_only:
        rows = rows.filter(read_at__isnull=True)
    return rows.select_related("notification").order_by("-id")


def unread_count(*, actor: Principal) -> int:
    """How many notifications of the user's inbox are unread (the partial index ``notifications_unread``)."""
    return NotificationRecipient.objects.filter(
        tenant_id=actor.tenant_id, user_id=inbox_user_id(actor), read_at__isnull=True
    ).count()


def inbox_row_get(*, actor: Principal, notification_id) -> NotificationRecipient:
    """The user's inbox row of one notification, or ``NotFound``."""
    row = (
        NotificationRecipient.objects.filter(
            tenant_id=actor.tenant_id, user_id=inbox_user_id(actor), notification_id=notification_uuid(notification_id)
        )
        .select_related("notification")
        .first()
    )
    if row is None:
        raise NotFound(_("No such notification."))
    return row


# Recipients listed in a status answer: a tenant-wide send has thousands; the
# counts per channel and status cover them all, the list the first ones.
STATUS_MAX_RECIPIENTS = 1000


@dataclass(frozen=True)
class NotificationStatus:
    notification: Notification
    deliveries_by_status: dict[str, dict[str, int]]
    recipients: list[NotificationRecipient]  # each with ``deliveries`` (a list) set
    truncated: bool


def notification_status(*, actor: Principal, notification_id) -> NotificationStatus:
    """One notification of the caller's tenant, its delivery counts per channel and
    status, and its first ``STATUS_MAX_RECIPIENTS`` recipients with their
    deliveries. For tenant admins and API clients with ``notifications:read``.
    Four queries whatever the audience."""
    if not (actor.has_role(STATUS_ROLE) or actor.has_scope(STATUS_SCOPE)):
        raise Forbidden(_("Reading a notification's status takes a tenant admin or notifications:read."))
    notification = Notification.objects.filter(tenant_id=actor.tenant_id, pk=notification_uuid(notification_id)).first()
    if notification is None:
        raise NotFound(_("No such notification."))
    counts: dict[str, dict[str, int]] = {}
    for row in (
        Delivery.objects.filter(notification=notification)
        .values("channel", "status")
        .annotate(n=Count("pk"))
        .order_by("channel", "status")
    ):
        counts.setdefault(row["channel"], {})[row["status"]] = row["n"]
    recipients = list(
        NotificationRecipient.objects.filter(notification=notification)
        .select_related("user")
        .order_by("user_id")[: STATUS_MAX_RECIPIENTS + 1]
    )
    truncated = len(recipients) > STATUS_MAX_RECIPIENTS
    recipients = recipients[:STATUS_MAX_RECIPIENTS]
    by_user: dict[int, list[Delivery]] = {}
    for delivery in Delivery.objects.filter(
        notification=notification, user_id__in=[row.user_id for row in recipients]
    ).order_by("user_id", "channel"):
        by_user.setdefault(delivery.user_id, []).append(delivery)
    for row in recipients:
        row.deliveries = by_user.get(row.user_id, [])
    return NotificationStatus(notification, counts, recipients, truncated)
