"""Serializers of the notifications REST API: they parse shapes and render rows.

Input serializers check types only; the services (``notifications.services``)
check values, bounds and tenancy and name the field in their ``invalid``
errors, so REST, WebSocket and admin callers get the same answers.
"""

from __future__ import annotations

from rest_framework import serializers

from ..constants import Channel, DeliveryStatus, MobilePlatform, Priority


def _loose_text(**kwargs) -> serializers.CharField:
    # The service trims and bounds; the serializer only keeps it a string.
    return serializers.CharField(required=False, allow_blank=True, allow_null=True, trim_whitespace=False, **kwargs)


class NotificationSendInputSerializer(serializers.Serializer):
    title = _loose_text(help_text="With `content`, instead of `template_key`.")
    content = _loose_text()
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    category = serializers.CharField(trim_whitespace=False, help_text="A slug: lowercase letters, digits, `-`, `_`.")
    data = serializers.JSONField(required=False, allow_null=True, help_text="A JSON object, at most 2 KB.")
    recipients = serializers.JSONField(
        help_text='Exactly one of `{"users": [ids]}` (1-1000), `{"room": id}`, `{"tenant": true}`.'
    )
    idempotency_key = _loose_text(help_text="A repeat with the same key returns the first notification (200).")
    template_key = _loose_text(help_text="With `context`, instead of `title` and `content`.")
    context = serializers.JSONField(required=False, allow_null=True, help_text="A JSON object, at most 8 KB.")


class NotificationOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    priority = serializers.ChoiceField(choices=Priority.choices)
    category = serializers.CharField()
    title = serializers.CharField(help_text="Empty when sent from a template: each recipient's is rendered.")
    content = serializers.CharField()
    data = serializers.JSONField()
    template_key = serializers.CharField()
    context = serializers.JSONField()
    recipients = serializers.JSONField(source="audience", help_text="The audience as asked.")
    recipient_count = serializers.IntegerField()
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()


class NotificationDeliveryOutputSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    last_error = serializers.CharField()
    digest = serializers.IntegerField(source="digest_id", allow_null=True)
    fallback_of = serializers.IntegerField(source="fallback_of_id", allow_null=True)
    created_at = serializers.DateTimeField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    failed_at = serializers.DateTimeField(allow_null=True)


class RecipientStatusOutputSerializer(serializers.Serializer):
    user = serializers.IntegerField(source="user_id")
    username = serializers.CharField(source="user.username")
    read_at = serializers.DateTimeField(allow_null=True)
    deliveries = NotificationDeliveryOutputSerializer(many=True)


class NotificationStatusOutputSerializer(NotificationOutputSerializer):
    deliveries_by_status = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="Channel -> status -> count, over every recipient.",
    )
    recipients_status = RecipientStatusOutputSerializer(
        many=True, help_text="Per recipient (the first 1000 by user id) and channel."
    )
    recipients_truncated = serializers.BooleanField()


class LatencyOutputSerializer(serializers.Serializer):
    p50 = serializers.FloatField()
    p90 = serializers.FloatField()
    p99 = serializers.FloatField()


class AnalyticsRowOutputSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    priority = serializers.ChoiceField(choices=Priority.choices)
    total = serializers.IntegerField(help_text="Deliveries created in the range.")
    sent = serializers.IntegerField(help_text="Taken by the provider (sent_at set), whatever happened after.")
    delivered = serializers.IntegerField(help_text="Confirmed arrived (WebSocket acks, providers that tell).")
    read = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Dead-lettered.")
    sent_rate = serializers.FloatField(help_text="sent / total, 0..1; the other rates likewise.")
    delivered_rate = serializers.FloatField()
    read_rate = serializers.FloatField()
    failed_rate = serializers.FloatField()
    latency_ms = LatencyOutputSerializer(
        allow_null=True, help_text="Creation to sent, in ms, over the sent ones; null when none was sent."
    )


class AnalyticsOutputSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    rows = AnalyticsRowOutputSerializer(many=True, help_text="Per channel and priority, those with deliveries.")


class InboxItemOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="notification_id")
    title = serializers.CharField()
    content = serializers.CharField()
    priority = serializers.CharField(source="notification.priority")
    category = serializers.CharField(source="notification.category")
    data = serializers.JSONField(source="notification.data")
    created_at = serializers.DateTimeField(source="notification.created_at")
    read_at = serializers.DateTimeField(allow_null=True)


class InboxQueryInputSerializer(serializers.Serializer):
    unread = serializers.BooleanField(required=False, default=False)


class NotificationUnreadCountOutputSerializer(serializers.Serializer):
    unread = serializers.IntegerField()


class NotificationReadOutputSerializer(serializers.Serializer):
    notification = serializers.UUIDField()
    unread = serializers.IntegerField()


class NotificationReadAllOutputSerializer(serializers.Serializer):
    read = serializers.IntegerField(help_text="How many were marked read by this call.")
    unread = serializers.IntegerField()


class NotificationPreferenceSerializer(serializers.Serializer):
    category = serializers.CharField(help_text='A category slug, or "*" for every category without its own row.')
    channel = serializers.ChoiceField(choices=Channel.choices)
    enabled = serializers.BooleanField()


class NotificationPreferencesInputSerializer(serializers.Serializer):
    preferences = serializers.ListField(child=serializers.JSONField(), help_text="The whole set; see the output.")


class NotificationPreferencesOutputSerializer(serializers.Serializer):
    preferences = NotificationPreferenceSerializer(many=True)
    defaults = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Channel -> the priorities it is on for when no row says otherwise.",
    )


class NotificationSettingsSerializer(serializers.Serializer):
    quiet_start = serializers.TimeField(required=False, allow_null=True, default=None, format="%H:%M")
    quiet_end = serializers.TimeField(required=False, allow_null=True, default=None, format="%H:%M")
    phone = serializers.CharField(required=False, allow_blank=True, default="", help_text="E.164, for SMS.")
    digest_minutes = serializers.IntegerField(required=False, default=60)


class NotificationSettingsOutputSerializer(NotificationSettingsSerializer):
    timezone = serializers.CharField(help_text="The user's time zone (quiet hours are in it).")
    locale = serializers.CharField()


class PushKeysSerializer(serializers.Serializer):
    p256dh = serializers.CharField(trim_whitespace=False)
    auth = serializers.CharField(trim_whitespace=False)


class PushSubscriptionInputSerializer(serializers.Serializer):
    """``PushSubscription.toJSON()`` as the browser gives it."""

    endpoint = serializers.CharField(trim_whitespace=False)
    keys = PushKeysSerializer()


class PushUnsubscribeInputSerializer(serializers.Serializer):
    endpoint = serializers.CharField(trim_whitespace=False)


class PushSubscriptionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    endpoint = serializers.CharField()
    created_at = serializers.DateTimeField()


class MobileTokenInputSerializer(serializers.Serializer):
    platform = serializers.ChoiceField(choices=MobilePlatform.choices)
    token = serializers.CharField(trim_whitespace=False)


class MobileTokenOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    platform = serializers.CharField()
    created_at = serializers.DateTimeField()
