"""The client's IP address, taken the same way by REST, WebSocket, axes and audit.

Behind ``NUM_PROXIES`` trusted reverse proxies, the client is the N-th address
from the right of ``X-Forwarded-For`` (the ones further left are whatever the
client chose to send). With NUM_PROXIES=0 the socket peer is the client and the
header is ignored, so it cannot be spoofed.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def _valid(ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return None


def _pick(forwarded_for: str | None, peer: str | None) -> str | None:
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    if proxies and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        if len(hops) >= proxies:
            return _valid(hops[-proxies])
    return _valid(peer) if peer else None


def client_ip(request) -> str | None:
    """Client IP of a Django (or DRF) request."""
    meta = request.META
    return _pick(meta.get("HTTP_X_FORWARDED_FOR"), meta.get("REMOTE_ADDR"))


def scope_client_ip(scope) -> str | None:
    """Client IP of an ASGI scope (WebSocket)."""
    headers = dict(scope.get("headers") or [])
    forwarded = headers.get(b"x-forwarded-for")
    client = scope.get("client")
    peer = client[0] if client else None
    return _pick(forwarded.decode("latin-1") if forwarded else None, peer)
