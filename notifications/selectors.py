"""Reads shared by REST, the WebSocket handlers and the admin: a user's inbox,
their unread count, and a notification's status per recipient and channel.

Every read is scoped by the caller's tenant and, for the inbox, by the user:
another tenant's or another user's notification is ``NotFound``, like one
that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from accounts.constants import ApiScope, Role
from accounts.principals import Principal
from spotify_agent.errors import Forbidden, Invalid, NotFound

from .constants import DeliveryStatus
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


# --- Analytics -----------------------------------------------------------------------------

# The longest range one analytics read covers: a quarter, so one read scans a
# bounded number of delivery rows (the (channel, status, created_at) index).
ANALYTICS_MAX_DAYS = 92
ANALYTICS_DEFAULT_HOURS = 24
LATENCY_PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class AnalyticsRange:
    since: datetime
    until: datetime


def analytics_range(since: Any = None, until: Any = None, *, now: datetime | None = None) -> AnalyticsRange:
    """The range of an analytics read from ISO 8601 strings (or datetimes): ``until``
    defaults to now, ``since`` to ``ANALYTICS_DEFAULT_HOURS`` before it. ``since``
    must come before ``until``, at most ``ANALYTICS_MAX_DAYS`` apart."""
    now = now or timezone.now()

    def parse(value: Any, field: str) -> datetime | None:
        if value in (None, ""):
            return None
        try:
            moment = value if isinstance(value, datetime) else parse_datetime(str(value))
        except ValueError:  # well formed, but no such moment (a 13th month)
            moment = None
        if moment is None:
            raise Invalid(_("%(field)s must be an ISO 8601 date and time.") % {"field": field}, field=field)
        return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)

    end = parse(until, "until") or now
    start = parse(since, "since") or end - timedelta(hours=ANALYTICS_DEFAULT_HOURS)
    if start >= end:
        raise Invalid(_("since must be before until."), field="since")
    if end - start > timedelta(days=ANALYTICS_MAX_DAYS):
        raise Invalid(_("The range may span at most %(days)d days.") % {"days": ANALYTICS_MAX_DAYS}, field="since")
    return AnalyticsRange(since=start, until=end)


def _percentile(sorted_values: list[float], percent: int) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    position = (len(sorted_values) - 1) * percent / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


class _PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``
    (``fraction`` is one of ours, a float, never a caller's value)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression, *, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction), output_field=DurationField())


def _latency_percentiles(durations: list[float]) -> dict[str, float]:
    ordered = sorted(durations)
    return {f"p{p}": round(_percentile(ordered, p), 1) for p in LATENCY_PERCENTILES}


def _latencies(deliveries: QuerySet) -> dict[tuple[str, str], dict[str, float]]:
    """Creation-to-sent latency percentiles (ms) per (channel, priority) of the sent
    deliveries: by PostgreSQL (percentile_cont, one query), elsewhere (the embedded
    SQLite default) in Python over the rows' two timestamps."""
    sent = deliveries.filter(sent_at__isnull=False)
    waited = ExpressionWrapper(F("sent_at") - F("created_at"), output_field=DurationField())
    if connection.vendor == "postgresql":
        rows = sent.values("channel", "notification__priority").annotate(
            **{f"p{p}": _PercentileCont(waited, fraction=p / 100) for p in LATENCY_PERCENTILES}
        )
        return {
            (row["channel"], row["notification__priority"]): {
                f"p{p}": round(row[f"p{p}"].total_seconds() * 1000, 1) for p in LATENCY_PERCENTILES
            }
            for row in rows.order_by()
        }
    samples: dict[tuple[str, str], list[float]] = {}
    for channel, priority, created, sent_at in sent.values_list(
        "channel", "notification__priority", "created_at", "sent_at"
    ).iterator():
        samples.setdefault((channel, priority), []).append((sent_at - created).total_seconds() * 1000)
    return {key: _latency_percentiles(values) for key, values in samples.items()}


def notifications_analytics(*, actor: Principal, since: Any = None, until: Any = None) -> dict[str, Any]:
    """Per channel and priority, the deliveries created in the range: how many, how
    many were sent, delivered, read and failed (with their rates of the total),
    and the creation-to-sent latency percentiles (ms; null with nothing sent).
    For tenant admins and API clients with ``notifications:read``; the caller's
    tenant only. Two queries."""
    if not (actor.has_role(STATUS_ROLE) or actor.has_scope(STATUS_SCOPE)):
        raise Forbidden(_("Notification analytics take a tenant admin or notifications:read."))
    window = analytics_range(since, until)
    return {
        "since": window.since,
        "until": window.until,
        "rows": analytics_rows(tenant_id=actor.tenant_id, window=window),
    }


def analytics_rows(*, tenant_id: int | None, window: AnalyticsRange) -> list[dict[str, Any]]:
    """The rows of ``notifications_analytics`` for one tenant (None: every tenant,
    for staff in the admin)."""
    deliveries = Delivery.objects.filter(created_at__gte=window.since, created_at__lt=window.until)
    if tenant_id is not None:
        deliveries = deliveries.filter(tenant_id=tenant_id)
    counts = (
        deliveries.values("channel", "notification__priority")
        .annotate(
            total=Count("pk"),
            sent=Count("pk", filter=Q(sent_at__isnull=False)),
            delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
            read=Count("pk", filter=Q(read_at__isnull=False)),
            failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
        )
        .order_by("channel", "notification__priority")
    )
    latencies = _latencies(deliveries)
    rows = []
    for row in counts:
        key = (row["channel"], row["notification__priority"])
        total = row["total"]
        rows.append(
            {
                "channel": row["channel"],
                "priority": row["notification__priority"],
                "total": total,
                **{name: row[name] for name in ("sent", "delivered", "read", "failed")},
                **{f"{name}_rate": round(row[name] / total, 4) for name in ("sent", "delivered", "read", "failed")},
                "latency_ms": latencies.get(key),
            }
        )
    return rows
