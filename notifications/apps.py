"""Notifications: sends, inboxes, routing, deliveries over five channels.

``ready`` registers the WebSocket provider's ``notification`` event handler on
the hub's registry (the hub imports only ``<app>.handlers``) and the delivery
metrics collector (``notifications.metrics``).
"""

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from .metrics import DeliveryCollector
        from .providers import websocket  # noqa: F401 (registers the "notification" event)

        # Once per process: ready() may run again in tests that reload apps.
        if not getattr(NotificationsConfig, "_collector_registered", False):
            REGISTRY.register(DeliveryCollector())
            NotificationsConfig._collector_registered = True
