"""ASGI entry point: HTTP goes to Django, ``/ws/`` to the real-time hub.

The WebSocket stack is: origin and credential checks (``realtime.middleware``)
then the hub consumer. Django is set up before the routing imports models.
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spotify_agent.settings")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.middleware import WebSocketAuthMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WebSocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)

# What is loaded by now (Django, the apps, the libraries: about 136,000 objects)
# lives as long as the process. Frozen, it is left out of the collector's full
# passes, which would otherwise re-scan it each time and pause every socket of
# the process for it (about 100 ms on the benchmark machine).
# docs/operations.md, "Garbage collection".
gc.freeze()
