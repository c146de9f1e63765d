"""WebSocket URL patterns: the hub has exactly one endpoint, ``/ws/``."""

from django.urls import path

from .consumers import HubConsumer

websocket_urlpatterns = [
    path("ws/", HubConsumer.as_asgi()),
]
