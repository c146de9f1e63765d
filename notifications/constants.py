"""Choices and limits of notifications.

Each limit says why it has its value; docs/api.md ("Notifications") and
docs/operations.md quote them.
"""

from django.db import models


class Priority(models.TextChoices):
    """How urgent a notification is; routing (``RoutingRule``) decides what each means."""

    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Channel(models.TextChoices):
    """Where a delivery goes. ``mobile`` is FCM or APNs, by the token's platform."""

    WEBSOCKET = "websocket", "WebSocket"
    WEBPUSH = "webpush", "Web push"
    MOBILE = "mobile", "Mobile push"
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


# When every push target of a delivery failed, the notification goes to the
# next of these the user allows (docs/api.md, "Routing").
FALLBACK_ORDER = (Channel.WEBPUSH, Channel.MOBILE, Channel.EMAIL, Channel.SMS)


class DeliveryStatus(models.TextChoices):
    """A delivery's life: queued (waiting for a worker, or for its next attempt),
    sending (a worker has it), sent (the provider took it), delivered (the
    provider says it arrived, where it can tell), read (the user read it),
    failed (dead-lettered: out of attempts or refused for good; staff may retry
    it from the admin)."""

    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"


# Deliveries that still count against the tenant's backlog (NOTIFICATION_QUEUE_SIZE).
PENDING_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)


class MobilePlatform(models.TextChoices):
    FCM = "fcm", "Firebase Cloud Messaging"
    APNS = "apns", "Apple Push Notification service"


TITLE_MAX_LENGTH = 200
# Long enough for an email's worth of text; an SMS or a push is cut by its provider class.
CONTENT_MAX_LENGTH = 4000
CATEGORY_MAX_LENGTH = 64
IDEMPOTENCY_KEY_MAX_LENGTH = 200
TEMPLATE_KEY_MAX_LENGTH = 100
# A category's preference row that applies to every category.
ANY_CATEGORY = "*"
