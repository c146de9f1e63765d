"""Admin screens of notifications.

Sends, inboxes and preferences are read-only here: a notification is what was
sent and each user's choices are theirs (REST ``/me/…``). Staff edit what is
data by design: the routing rules (one per priority; channels checked) and
the templates (checked to compile, with a preview). Every change is audited
(``AuditedModelAdmin``). Deliveries and devices have their own section below.
docs/api.md, "Notifications".
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template import TemplateSyntaxError
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from accounts.models import Tenant
from spotify_agent.admin import AuditedModelAdmin
from spotify_agent.errors import Conflict, Invalid, NotFound

from .constants import Channel
from .models import (
    Delivery,
    MobileToken,
    Notification,
    NotificationPreference,
    NotificationSettings,
    NotificationTemplate,
    RoutingRule,
    WebPushSubscription,
)
from .selectors import ANALYTICS_MAX_DAYS, analytics_range, analytics_rows
from .services.delivery import delivery_retry, device_disable
from .templates import compile_check, render_row

# --- Sends, routing, templates, preferences -----------------------------------------------


class ReadOnlyAdmin(AuditedModelAdmin):
    """Lists and detail pages only: nothing is added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "tenant", "priority", "category", "recipient_count", "deliveries_link", "created_at")
    list_filter = ("priority", "tenant", "created_at")
    list_select_related = ("tenant",)
    search_fields = ("id", "title", "category", "template_key", "idempotency_key", "tenant__slug")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "tenant",
        "priority",
        "category",
        "title",
        "content",
        "data",
        "template_key",
        "context",
        "idempotency_key",
        "audience",
        "recipient_count",
        "deliveries_link",
        "sent_by_user",
        "sent_by_client",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="deliveries")
    def deliveries_link(self, obj: Notification) -> str:
        # The deliveries screen (registered below) filtered on this notification.
        try:
            url = reverse("admin:notifications_delivery_changelist")
        except NoReverseMatch:  # the deliveries screen is not registered
            return "-"
        return format_html('<a href="{}?{}">deliveries</a>', url, urlencode({"notification__id__exact": obj.pk}))


class RoutingRuleForm(forms.ModelForm):
    class Meta:
        model = RoutingRule
        fields = ("priority", "channels", "follow_preferences", "respect_quiet_hours", "digest", "queue")

    def clean_channels(self):
        channels = self.cleaned_data["channels"]
        if not isinstance(channels, list) or not channels:
            raise forms.ValidationError("A non-empty list of channels, in order.")
        unknown = [c for c in channels if c not in Channel.values]
        if unknown:
            raise forms.ValidationError(
                f"Unknown channel(s): {', '.join(map(str, unknown))}; use {', '.join(Channel.values)}."
            )
        if len(set(channels)) != len(channels):
            raise forms.ValidationError("A channel is listed twice.")
        return channels


@admin.register(RoutingRule)
class RoutingRuleAdmin(AuditedModelAdmin):
    form = RoutingRuleForm
    list_display = (
        "priority",
        "channels",
        "follow_preferences",
        "respect_quiet_hours",
        "digest",
        "queue",
        "updated_at",
    )
    ordering = ("priority",)


class NotificationTemplateForm(forms.ModelForm):
    class Meta:
        model = NotificationTemplate
        fields = ("tenant", "key", "channel", "locale", "subject", "body_text", "body_html")

    def clean(self):
        cleaned = super().clean()
        for name, html in (("subject", False), ("body_text", False), ("body_html", True)):
            source = cleaned.get(name)
            if source:
                try:
                    compile_check(source, html=html)
                except TemplateSyntaxError as exc:
                    self.add_error(name, f"Does not compile: {exc}")
        return cleaned


# What the preview renders with: the keys the shipped templates use.
PREVIEW_CONTEXT = {"actor": "Alice", "track": "Neon Harbour", "playlist": "Road trip", "count": 3}


@admin.register(NotificationTemplate)
class NotificationTemplateAdmin(AuditedModelAdmin):
    form = NotificationTemplateForm
    list_display = ("key", "channel", "locale", "tenant", "subject", "updated_at")
    list_filter = ("locale", "channel", ("tenant", admin.EmptyFieldListFilter))
    list_select_related = ("tenant",)
    search_fields = ("key", "subject", "tenant__slug")
    readonly_fields = ("preview",)

    @admin.display(description="preview")
    def preview(self, obj: NotificationTemplate) -> str:
        if obj.pk is None:
            return "Saved templates show a preview here."
        try:
            rendered = render_row(obj, PREVIEW_CONTEXT)
        except Exception as exc:  # noqa: BLE001 (a preview shows what is wrong, never fails the page)
            return f"Does not render: {exc}"
        return format_html(
            "<p>With {}:</p><p><strong>{}</strong></p><pre>{}</pre><div>{}</div>",
            json.dumps(PREVIEW_CONTEXT),
            rendered.subject,
            rendered.text,
            # Escaped on purpose: staff see the HTML the mail would carry, not its effect.
            rendered.html,
        )


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(ReadOnlyAdmin):
    list_display = ("user", "tenant", "category", "channel", "enabled", "updated_at")
    list_filter = ("channel", "enabled", "tenant")
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "category", "tenant__slug")


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(ReadOnlyAdmin):
    list_display = ("user", "tenant", "quiet_start", "quiet_end", "phone", "digest_minutes", "updated_at")
    list_filter = ("tenant",)
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "tenant__slug")


# --- Deliveries and devices ---------------------------------------------------------------


class _DeliveryStaffAdmin(AuditedModelAdmin):
    """Read-only rows whose only changes are the services' actions (audited there)."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AnalyticsForm(forms.Form):
    """The analytics page's filters: a tenant (blank: every tenant) and a range."""

    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("slug"), required=False, empty_label="Every tenant"
    )
    since = forms.DateTimeField(required=False, help_text="Default: 24 hours before the end.")
    until = forms.DateTimeField(required=False, help_text=f"Default: now. At most {ANALYTICS_MAX_DAYS} days in all.")


@admin.register(Delivery)
class DeliveryAdmin(_DeliveryStaffAdmin):
    """Every delivery and its fate; the failed ones are the dead letters, which
    staff put back in the queue with "Retry" (``delivery_retry``: attempts reset,
    audited, published again). "Analytics" shows the rates and latencies the REST
    API's ``/notifications/analytics/`` gives a tenant, for one tenant or all."""

    change_list_template = "admin/notifications/delivery/change_list.html"

    def get_urls(self):
        analytics = path(
            "analytics/",
            self.admin_site.admin_view(self.analytics_view),
            name="notifications_delivery_analytics",
        )
        return [analytics, *super().get_urls()]

    def analytics_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        # Unfiltered, the page shows every tenant's last 24 hours.
        form = AnalyticsForm(request.GET)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Delivery analytics",
            "form": form,
            "window": None,
        }
        if form.is_valid():
            try:
                window = analytics_range(form.cleaned_data["since"], form.cleaned_data["until"])
            except Invalid as exc:
                form.add_error(None, exc.message)
            else:
                tenant = form.cleaned_data["tenant"]
                context.update(
                    window=window,
                    tenant=tenant,
                    rows=analytics_rows(tenant_id=tenant.pk if tenant else None, window=window),
                )
        return TemplateResponse(request, "admin/notifications/delivery/analytics.html", context)

    list_display = (
        "id",
        "notification",
        "user",
        "tenant",
        "channel",
        "status",
        "priority",
        "attempts",
        "short_error",
        "created_at",
        "sent_at",
        "failed_at",
    )
    list_filter = ("status", "channel", "notification__priority", "tenant", ("fallback_of", admin.EmptyFieldListFilter))
    list_select_related = ("notification", "user", "tenant")
    search_fields = ("=id", "=notification__id", "user__username", "target", "provider_message_id", "last_error")
    date_hierarchy = "created_at"
    fields = (
        "tenant",
        "notification",
        "user",
        "channel",
        "status",
        "digest",
        "fallback_of",
        "attempts",
        "last_error",
        "target",
        "provider_message_id",
        "created_at",
        "next_attempt_at",
        "sending_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
    )
    readonly_fields = fields
    actions = ("retry_deliveries",)

    @admin.display(description="priority", ordering="notification__priority")
    def priority(self, obj: Delivery) -> str:
        return obj.notification.priority

    @admin.display(description="last error")
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:80] + ("…" if len(obj.last_error) > 80 else "")

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("notifications.change_delivery")

    @admin.action(description="Retry the selected failed deliveries", permissions=["retry"])
    def retry_deliveries(self, request, queryset):
        actor, context = self.audit_actor(request), self.audit_context(request)
        retried = skipped = 0
        for pk in queryset.values_list("pk", flat=True).order_by("pk"):
            try:
                delivery_retry(delivery_id=pk, actor=actor, context=context)
                retried += 1
            except (Conflict, NotFound):
                skipped += 1
        note = f" ({skipped} skipped: not failed)" if skipped else ""
        self.message_user(
            request, f"{retried} deliver{'y' if retried == 1 else 'ies'} queued again{note}.", messages.SUCCESS
        )


class _DeviceAdmin(_DeliveryStaffAdmin):
    channel: str
    actions = ("disable_devices",)

    def has_disable_permission(self, request) -> bool:
        return request.user.has_perm(f"notifications.change_{self.model._meta.model_name}")

    @admin.action(description="Disable the selected devices (no more pushes)", permissions=["disable"])
    def disable_devices(self, request, queryset):
        actor, context = self.audit_actor(request), self.audit_context(request)
        disabled = sum(
            device_disable(channel=self.channel, device_id=pk, actor=actor, context=context)
            for pk in queryset.values_list("pk", flat=True).order_by("pk")
        )
        self.message_user(request, f"{disabled} device(s) disabled.", messages.SUCCESS)


@admin.register(WebPushSubscription)
class WebPushSubscriptionAdmin(_DeviceAdmin):
    """Browsers' push subscriptions; a provider's 404/410 disables one by itself."""

    channel = Channel.WEBPUSH
    list_display = ("id", "user", "tenant", "short_endpoint", "created_at", "disabled_at", "disabled_reason")
    list_filter = (("disabled_at", admin.EmptyFieldListFilter), "tenant")
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "endpoint", "tenant__slug")
    fields = ("tenant", "user", "endpoint", "created_at", "disabled_at", "disabled_reason")
    readonly_fields = fields

    @admin.display(description="endpoint")
    def short_endpoint(self, obj: WebPushSubscription) -> str:
        return obj.endpoint[:60] + ("…" if len(obj.endpoint) > 60 else "")


@admin.register(MobileToken)
class MobileTokenAdmin(_DeviceAdmin):
    """App installs' FCM and APNs tokens; an unregistered token disables itself."""

    channel = Channel.MOBILE
    list_display = ("id", "user", "tenant", "platform", "short_token", "created_at", "disabled_at", "disabled_reason")
    list_filter = ("platform", ("disabled_at", admin.EmptyFieldListFilter), "tenant")
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "token", "tenant__slug")
    fields = ("tenant", "user", "platform", "created_at", "disabled_at", "disabled_reason")
    readonly_fields = fields

    @admin.display(description="token")
    def short_token(self, obj: MobileToken) -> str:
        # Enough to recognise a token, not to use it.
        return obj.token[:12] + "…"
