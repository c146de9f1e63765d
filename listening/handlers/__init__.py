"""The WebSocket families of listening sessions, one module per subdomain:
``sessions`` (``session.*``, ``playback.*``) and ``quality`` (``quality.*``).
Importing this package registers them all (``realtime.apps``)."""

from . import quality, sessions  # noqa: F401  (registration on import)
