"""REST adapters of notifications: parse, call one service or selector, render.

Sending takes a tenant admin or an API client with ``notifications:send``;
a notification's status, a tenant admin or ``notifications:read``. The
``/me/`` endpoints are the caller's inbox, preferences, settings and devices:
users of any role, never API clients. Rules live in
``notifications.services`` and ``notifications.selectors``. docs/api.md,
"Notifications", lists the endpoints.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.constants import ApiScope, Role
from audit.services import RequestContext
from spotify_agent.api.pagination import DefaultCursorPagination
from spotify_agent.api.schema import ErrorResponseSerializer, error_responses
from spotify_agent.api.views import TenantScopedMixin

from ..models import NotificationRecipient
from ..selectors import (
    ANALYTICS_MAX_DAYS,
    notification_status,
    notifications_analytics,
    notifications_for_user,
    unread_count,
)
from ..services import inbox, preferences
from ..services.sending import SEND_ROLE, SEND_SCOPE, send_notification
from .serializers import (
    AnalyticsOutputSerializer,
    InboxItemOutputSerializer,
    InboxQueryInputSerializer,
    MobileTokenInputSerializer,
    MobileTokenOutputSerializer,
    NotificationOutputSerializer,
    NotificationPreferencesInputSerializer,
    NotificationPreferencesOutputSerializer,
    NotificationReadAllOutputSerializer,
    NotificationReadOutputSerializer,
    NotificationSendInputSerializer,
    NotificationSettingsOutputSerializer,
    NotificationSettingsSerializer,
    NotificationStatusOutputSerializer,
    NotificationUnreadCountOutputSerializer,
    PushSubscriptionInputSerializer,
    PushSubscriptionOutputSerializer,
    PushUnsubscribeInputSerializer,
    RecipientStatusOutputSerializer,
)

TAGS = ["notifications"]
ME_TAGS = ["me: notifications"]

_BACKLOG = {
    429: OpenApiResponse(
        ErrorResponseSerializer,
        description=(
            "`backlog_full`: the tenant has NOTIFICATION_QUEUE_SIZE deliveries waiting; nothing was created "
            "(details.retry_after, details.pending, details.limit). Or throttled (`rate_limited`)."
        ),
    )
}
_IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description="The send's idempotency key when the body has none.",
)


class NotificationSendView(TenantScopedMixin, APIView):
    required_role = SEND_ROLE
    required_scope = SEND_SCOPE

    @extend_schema(
        operation_id="notifications_send",
        summary="Send a notification (tenant admins; API clients with `notifications:send`)",
        parameters=[_IDEMPOTENCY_KEY],
        request=NotificationSendInputSerializer,
        responses={
            201: NotificationOutputSerializer,
            200: OpenApiResponse(NotificationOutputSerializer, description="An idempotent repeat: the first send."),
            **error_responses(400, 401, 403, 404),
            **_BACKLOG,
        },
        tags=TAGS,
    )
    def post(self, request):
        serializer = NotificationSendInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        outcome = send_notification(
            actor=self.principal,
            tenant_id=self.principal.tenant_id,
            title=values.get("title"),
            content=values.get("content"),
            priority=values["priority"],
            category=values["category"],
            data=values.get("data"),
            recipients=values["recipients"],
            idempotency_key=values.get("idempotency_key") or request.headers.get("Idempotency-Key"),
            template_key=values.get("template_key"),
            context=values.get("context"),
            request_context=RequestContext.from_request(request),
        )
        return Response(
            NotificationOutputSerializer(outcome.notification).data,
            status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK,
        )


class NotificationStatusView(TenantScopedMixin, APIView):
    required_role = Role.ADMIN
    required_scope = ApiScope.NOTIFICATIONS_READ

    @extend_schema(
        operation_id="notifications_retrieve",
        summary="A notification and its deliveries per recipient and channel "
        "(tenant admins; API clients with `notifications:read`)",
        responses={200: NotificationStatusOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=TAGS,
    )
    def get(self, request, notification_id):
        result = notification_status(actor=self.principal, notification_id=notification_id)
        body = NotificationOutputSerializer(result.notification).data
        body["deliveries_by_status"] = result.deliveries_by_status
        body["recipients_status"] = RecipientStatusOutputSerializer(result.recipients, many=True).data
        body["recipients_truncated"] = result.truncated
        return Response(body)


class NotificationAnalyticsView(TenantScopedMixin, APIView):
    required_role = Role.ADMIN
    required_scope = ApiScope.NOTIFICATIONS_READ

    @extend_schema(
        operation_id="notifications_analytics",
        summary="Sent, delivered, read and failed rates and delivery latency per channel and priority "
        "(tenant admins; API clients with `notifications:read`)",
        parameters=[
            OpenApiParameter("since", str, required=False, description="ISO 8601; default: 24 hours before `until`."),
            OpenApiParameter(
                "until", str, required=False, description=f"ISO 8601; default: now. At most {ANALYTICS_MAX_DAYS} days."
            ),
        ],
        responses={200: AnalyticsOutputSerializer, **error_responses(400, 401, 403, 429)},
        tags=TAGS,
    )
    def get(self, request):
        result = notifications_analytics(
            actor=self.principal, since=request.query_params.get("since"), until=request.query_params.get("until")
        )
        return Response(AnalyticsOutputSerializer(result).data)


# --- The caller's own ------------------------------------------------------------------


class MeView(TenantScopedMixin, APIView):
    """Users of any role; API clients have no inbox (no ``required_scope``: 403)."""

    required_role = Role.MEMBER


class InboxView(MeView, GenericAPIView):
    pagination_class = DefaultCursorPagination
    serializer_class = InboxItemOutputSerializer
    queryset = NotificationRecipient.objects.none()

    @extend_schema(
        operation_id="me_notifications_list",
        summary="The caller's notifications, newest first; `unread=true` for the unread ones only",
        parameters=[OpenApiParameter("unread", bool, required=False)],
        responses={200: InboxItemOutputSerializer(many=True), **error_responses(400, 401, 403, 429)},
        tags=ME_TAGS,
    )
    def get(self, request):
        query = InboxQueryInputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = notifications_for_user(actor=self.principal, unread_only=query.validated_data["unread"])
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(InboxItemOutputSerializer(page, many=True).data)


class UnreadCountView(MeView):
    @extend_schema(
        operation_id="me_notifications_unread_count",
        summary="How many of the caller's notifications are unread",
        responses={200: NotificationUnreadCountOutputSerializer, **error_responses(401, 403, 429)},
        tags=ME_TAGS,
    )
    def get(self, request):
        return Response({"unread": unread_count(actor=self.principal)})


class ReadView(MeView):
    @extend_schema(
        operation_id="me_notifications_read",
        summary="Mark one notification read (idempotent)",
        request=None,
        responses={200: NotificationReadOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=ME_TAGS,
    )
    def post(self, request, notification_id):
        result = inbox.notification_read(actor=self.principal, notification_id=notification_id)
        return Response({"notification": str(notification_id), "unread": result.unread})


class ReadAllView(MeView):
    @extend_schema(
        operation_id="me_notifications_read_all",
        summary="Mark every notification read (idempotent)",
        request=None,
        responses={200: NotificationReadAllOutputSerializer, **error_responses(401, 403, 429)},
        tags=ME_TAGS,
    )
    def post(self, request):
        result = inbox.notifications_read_all(actor=self.principal)
        return Response({"read": result.marked, "unread": result.unread})


def _preferences_body(principal) -> dict:
    rows = preferences.preferences_for_user(actor=principal)
    return {
        "preferences": [{"category": r.category, "channel": r.channel, "enabled": r.enabled} for r in rows],
        "defaults": preferences.preference_defaults(),
    }


class PreferencesView(MeView):
    @extend_schema(
        operation_id="me_notification_preferences_retrieve",
        summary="The caller's per category and channel choices, and the defaults",
        responses={200: NotificationPreferencesOutputSerializer, **error_responses(401, 403, 429)},
        tags=ME_TAGS,
    )
    def get(self, request):
        return Response(_preferences_body(self.principal))

    @extend_schema(
        operation_id="me_notification_preferences_replace",
        summary="Replace the caller's preferences with the given set",
        request=NotificationPreferencesInputSerializer,
        responses={200: NotificationPreferencesOutputSerializer, **error_responses(400, 401, 403, 429)},
        tags=ME_TAGS,
    )
    def put(self, request):
        serializer = NotificationPreferencesInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preferences.preferences_replace(actor=self.principal, preferences=serializer.validated_data["preferences"])
        return Response(_preferences_body(self.principal))


def _settings_body(request, principal) -> dict:
    row = preferences.notification_settings_get(actor=principal)
    body = NotificationSettingsSerializer(row).data
    user = request.user
    body.update(timezone=user.timezone, locale=user.locale)
    return body


class SettingsView(MeView):
    @extend_schema(
        operation_id="me_notification_settings_retrieve",
        summary="The caller's quiet hours, SMS number and digest window",
        responses={200: NotificationSettingsOutputSerializer, **error_responses(401, 403, 429)},
        tags=ME_TAGS,
    )
    def get(self, request):
        return Response(_settings_body(request, self.principal))

    @extend_schema(
        operation_id="me_notification_settings_replace",
        summary="Replace the caller's quiet hours, SMS number and digest window",
        request=NotificationSettingsSerializer,
        responses={200: NotificationSettingsOutputSerializer, **error_responses(400, 401, 403, 429)},
        tags=ME_TAGS,
    )
    def put(self, request):
        serializer = NotificationSettingsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preferences.notification_settings_set(actor=self.principal, **serializer.validated_data)
        return Response(_settings_body(request, self.principal))


class PushSubscriptionsView(MeView):
    @extend_schema(
        operation_id="me_push_subscriptions_create",
        summary="Register this browser's Web Push subscription (idempotent on the endpoint)",
        request=PushSubscriptionInputSerializer,
        responses={
            201: PushSubscriptionOutputSerializer,
            200: OpenApiResponse(PushSubscriptionOutputSerializer, description="Already registered: renewed."),
            **error_responses(400, 401, 403, 429),
        },
        tags=ME_TAGS,
    )
    def post(self, request):
        serializer = PushSubscriptionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        result = preferences.webpush_subscribe(
            actor=self.principal,
            endpoint=values["endpoint"],
            p256dh=values["keys"]["p256dh"],
            auth=values["keys"]["auth"],
        )
        return Response(
            PushSubscriptionOutputSerializer(result.device).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(
        operation_id="me_push_subscriptions_delete",
        summary="Forget one of the caller's Web Push subscriptions",
        request=PushUnsubscribeInputSerializer,
        responses={204: None, **error_responses(400, 401, 403, 404, 429)},
        tags=ME_TAGS,
    )
    def delete(self, request):
        serializer = PushUnsubscribeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preferences.webpush_unsubscribe(actor=self.principal, endpoint=serializer.validated_data["endpoint"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MobileTokensView(MeView):
    @extend_schema(
        operation_id="me_mobile_tokens_create",
        summary="Register this app install's push token (idempotent on platform and token)",
        request=MobileTokenInputSerializer,
        responses={
            201: MobileTokenOutputSerializer,
            200: OpenApiResponse(MobileTokenOutputSerializer, description="Already registered: renewed."),
            **error_responses(400, 401, 403, 429),
        },
        tags=ME_TAGS,
    )
    def post(self, request):
        serializer = MobileTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = preferences.mobile_token_register(actor=self.principal, **serializer.validated_data)
        return Response(
            MobileTokenOutputSerializer(result.device).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    @extend_schema(
        operation_id="me_mobile_tokens_delete",
        summary="Forget one of the caller's push tokens",
        request=MobileTokenInputSerializer,
        responses={204: None, **error_responses(400, 401, 403, 404, 429)},
        tags=ME_TAGS,
    )
    def delete(self, request):
        serializer = MobileTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preferences.mobile_token_unregister(actor=self.principal, **serializer.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)
