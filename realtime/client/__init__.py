"""A reconnecting asyncio client for the hub (``/ws/``), and its command line.

``HubClient`` (``hub.py``) is the library; ``PasswordTokenProvider``
(``tokens.py``) logs in over the REST API and keeps an access token fresh;
``BackoffPolicy`` (``backoff.py``) decides how long to wait between
reconnects. ``python -m realtime.client`` (``__main__.py``) is a terminal chat
and a connectivity check built on them. It depends on ``websockets`` and the
standard library only (plus ``realtime.protocol`` for the close codes), so it
runs without Django settings. docs/protocol.md, "Client", describes the
behaviour a client of the hub should have; this package implements it.
"""

from .backoff import BackoffPolicy
from .hub import (
    CLIENT_CONNECTED,
    CLIENT_DISCONNECTED,
    CLIENT_RESUMED,
    CLIENT_ROOM_LOST,
    ConnectionLost,
    HubClient,
    HubClosed,
    HubError,
)
from .tokens import AuthenticationFailed, PasswordTokenProvider, TokenProvider, hub_url

__all__ = [
    "CLIENT_CONNECTED",
    "CLIENT_DISCONNECTED",
    "CLIENT_RESUMED",
    "CLIENT_ROOM_LOST",
    "AuthenticationFailed",
    "BackoffPolicy",
    "ConnectionLost",
    "HubClient",
    "HubClosed",
    "HubError",
    "PasswordTokenProvider",
    "TokenProvider",
    "hub_url",
]
