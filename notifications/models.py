"""Notifications: what was sent to whom, and what became of it on each channel.

A ``Notification`` is one send (by a partner's API client, a user, staff or
the app itself); ``NotificationRecipient`` is its row in one user's inbox
(read or not); a ``Delivery`` is its journey to one user on one channel,
created in the same transaction as the notification (the outbox) and handed
to Celery after the commit. ``RoutingRule`` says what a priority means;
``NotificationPreference`` and ``NotificationSettings`` what a user wants;
``WebPushSubscription`` and ``MobileToken`` where their devices are;
``NotificationTemplate`` how a notification reads in each language;
``Digest`` gathers a user's low-priority notifications into one message per
window. docs/api.md, "Notifications", is the reference.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import ApiClient, Tenant, TenantOwned

from .constants import (
    CATEGORY_MAX_LENGTH,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    TEMPLATE_KEY_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    Channel,
    DeliveryStatus,
    MobilePlatform,
    Priority,
)


class Notification(TenantOwned):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    category = models.SlugField(max_length=CATEGORY_MAX_LENGTH)
    # Rendered per recipient from the template when ``template_key`` is set.
    title = models.CharField(max_length=TITLE_MAX_LENGTH, blank=True)
    content = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    template_key = models.CharField(max_length=TEMPLATE_KEY_MAX_LENGTH, blank=True)
    context = models.JSONField(default=dict, blank=True)
    # A repeat send with the same key (per tenant) creates nothing new.
    idempotency_key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX_LENGTH, blank=True)
    # The recipients as asked: {"users": [...]}, {"room": id} or {"tenant": true}.
    audience = models.JSONField(default=dict)
    recipient_count = models.PositiveIntegerField(default=0)
    sent_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sent_by_client = models.ForeignKey(ApiClient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="notifications_idempotency_key_unique",
            )
        ]
        indexes = [models.Index(fields=["tenant", "-created_at"])]

    def __str__(self) -> str:
        return self.title or self.template_key or str(self.pk)


class NotificationRecipient(TenantOwned):
    """The notification in one user's inbox, with its title and content rendered
    for them (their language), read or not."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="recipients")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    content = models.TextField(blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["notification", "user"], name="notifications_recipient_unique")]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            models.Index(fields=["user"], condition=Q(read_at__isnull=True), name="notifications_unread"),
        ]

    def __str__(self) -> str:
        return f"{self.notification_id} to {self.user_id}"


class Digest(TenantOwned):
    """A user's low-priority notifications of one window on one channel, sent as
    one message when the window closes."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "channel", "window_start"], name="notifications_digest_unique")
        ]
        indexes = [models.Index(fields=["window_end"], condition=Q(sent_at__isnull=True), name="notifications_due")]

    def __str__(self) -> str:
        return f"{self.channel} digest of {self.user_id} from {self.window_start:%Y-%m-%d %H:%M}"


class Delivery(TenantOwned):
    """One notification's journey to one user on one channel."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    # Set for a low-priority delivery gathered into a digest: it goes with it.
    digest = models.ForeignKey(Digest, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    # Set when this delivery replaces one on a channel that failed (fallback).
    fallback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="fallbacks")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # What the provider was given (an address, a subscription or token id) and what it answered.
    target = models.CharField(max_length=500, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["notification", "user", "channel"], name="notifications_delivery_unique")
        ]
        indexes = [
            models.Index(fields=["tenant", "status"]),
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["channel", "status", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.user_id}: {self.status}"


class RoutingRule(models.Model):
    """What a priority means (one row per priority, editable by staff): the
    channels it goes to, whether the user's preferences and quiet hours apply,
    whether it waits for a digest, and its Celery queue."""

    priority = models.CharField(max_length=10, choices=Priority.choices, unique=True)
    channels = models.JSONField(help_text=f"Channels, in order; of: {', '.join(Channel.values)}")
    # False: every listed channel the user can be reached on, preferences aside (CRITICAL).
    follow_preferences = models.BooleanField(default=True)
    respect_quiet_hours = models.BooleanField(default=True)
    digest = models.BooleanField(default=False)
    queue = models.CharField(max_length=50, default="notifications")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.priority}: {', '.join(self.channels)}"


class NotificationPreference(TenantOwned):
    """A user's opt-in or out of one channel for one category (``*``: every
    category without a row of its own)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=CATEGORY_MAX_LENGTH)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    enabled = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "category", "channel"], name="notifications_preference_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.category} {self.channel}: {'on' if self.enabled else 'off'}"


class NotificationSettings(TenantOwned):
    """A user's quiet hours (in their time zone, ``User.timezone``), SMS number and
    digest window. Their language is ``User.locale``."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164, for SMS")
    digest_minutes = models.PositiveIntegerField(default=60)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"settings of {self.user_id}"


class WebPushSubscription(TenantOwned):
    """A browser's Web Push subscription (the PushSubscription the page got)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    endpoint = models.URLField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"web push of {self.user_id}"


class MobileToken(TenantOwned):
    """An app install's push token (FCM registration token or APNs device token)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    platform = models.CharField(max_length=10, choices=MobilePlatform.choices)
    token = models.CharField(max_length=400)
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["platform", "token"], name="notifications_token_unique")]

    def __str__(self) -> str:
        return f"{self.platform} token of {self.user_id}"


class NotificationTemplate(models.Model):
    """How a notification reads on a channel (blank: any) in a language, in
    Django's template syntax. A tenant's row overrides the platform's (no tenant)."""

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=TEMPLATE_KEY_MAX_LENGTH)
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True)
    locale = models.CharField(max_length=16)
    subject = models.CharField(max_length=TITLE_MAX_LENGTH)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key", "channel", "locale"],
                condition=Q(tenant__isnull=True),
                name="notifications_template_platform_unique",
            ),
            models.UniqueConstraint(
                fields=["tenant", "key", "channel", "locale"],
                condition=Q(tenant__isnull=False),
                name="notifications_template_tenant_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} [{self.channel or 'any'}] {self.locale}"
