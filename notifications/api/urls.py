"""Notifications routes (sending, status, the caller's inbox, preferences,
settings and devices), mounted under /api/v1/ by spotify_agent/urls.py."""

from django.urls import path

from . import views

urlpatterns = [
    path("notifications/", views.NotificationSendView.as_view(), name="notifications"),
    path("notifications/analytics/", views.NotificationAnalyticsView.as_view(), name="notifications-analytics"),
    path("notifications/<uuid:notification_id>/", views.NotificationStatusView.as_view(), name="notification"),
    path("me/notifications/", views.InboxView.as_view(), name="me-notifications"),
    path("me/notifications/unread-count/", views.UnreadCountView.as_view(), name="me-notifications-unread-count"),
    path("me/notifications/read-all/", views.ReadAllView.as_view(), name="me-notifications-read-all"),
    path("me/notifications/<uuid:notification_id>/read/", views.ReadView.as_view(), name="me-notification-read"),
    path("me/notification-preferences/", views.PreferencesView.as_view(), name="me-notification-preferences"),
    path("me/notification-settings/", views.SettingsView.as_view(), name="me-notification-settings"),
    path("me/push-subscriptions/", views.PushSubscriptionsView.as_view(), name="me-push-subscriptions"),
    path("me/mobile-tokens/", views.MobileTokensView.as_view(), name="me-mobile-tokens"),
]
