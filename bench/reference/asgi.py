"""ASGI entry point of the reference server: the project's settings, database and
token authentication, with ``/ws/`` routed to the textbook consumer instead of
the hub. Served by daphne exactly like ``spotify_agent.asgi:application``::

    daphne -b 127.0.0.1 -p 8101 bench.reference.asgi:application

The channel-layer prefix (``CHANNEL_LAYER_PREFIX``) is set by ``bench.run`` so
that the reference and the hub never share Redis keys.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spotify_agent.settings")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.reference.consumers import BearerTokenMiddleware, ReferenceChatConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BearerTokenMiddleware(URLRouter([path("ws/", ReferenceChatConsumer.as_asgi())])),
    }
)
