"""The WebSocket families of listening sessions, one module per subdomain:
``sessions`` (``session.*`` and ``playback.*``), ``audience`` (``dj.*`` and
``request.*``), ``devices`` (``device.*``) and ``quality`` (``quality.*``).
Importing this package registers them all (``realtime.apps``)."""

from . import audience, devices, quality, sessions  # noqa: F401  (registration on import)
