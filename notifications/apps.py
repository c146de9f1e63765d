"""Notifications: sends, inboxes, routing, deliveries over five channels.

``ready`` registers the delivery metrics collector (``notifications.metrics``);
the hub imports ``notifications.handlers`` itself.
"""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from .metrics import DeliveryCollector

        # Once per process: ready() may run again in tests that reload apps.
        if not getattr(NotificationsConfig, "_collector_registered", False):
            REGISTRY.register(DeliveryCollector())
            NotificationsConfig._collector_registered = True
