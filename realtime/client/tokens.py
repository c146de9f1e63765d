"""Access tokens for the hub client: log in with a password, refresh before expiry.

``PasswordTokenProvider`` speaks the REST authentication endpoints
(``POST /api/v1/auth/token/`` and ``/api/v1/auth/token/refresh/``, docs/api.md)
with the standard library's ``urllib`` in a worker thread, so the client adds
no HTTP dependency. Refresh tokens are single use (rotation with reuse
detection): the provider serialises its calls so that two concurrent refreshes
never present the same refresh token, which the server would treat as theft.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

TOKEN_PATH = "/api/v1/auth/token/"  # noqa: S105 (a URL path, not a secret)
REFRESH_PATH = "/api/v1/auth/token/refresh/"


class TokenProvider(Protocol):
    """What ``HubClient`` calls for a credential.

    Returns an access token valid for a while yet. ``force`` asks for a token
    other than the one last returned: the server refused it (close 4401) or the
    open socket needs a later expiry (the ``auth`` refresh frame)."""

    async def __call__(self, *, force: bool = False) -> str: ...


class AuthenticationFailed(Exception):
    """The credentials were refused (HTTP 401/403): retrying cannot help."""

    def __init__(self, status: int, body: dict[str, Any]):
        super().__init__(f"authentication refused ({status}): {body.get('detail') or body.get('code') or body}")
        self.status = status
        self.body = body


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT as a Unix time, read without verifying the
    signature: the client only uses it to schedule a refresh, the server decides."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def http_base(url: str) -> str:
    """``http(s)://host[:port]`` of a server given as an http(s) or ws(s) URL."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in {"http", "https"}:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}")
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def hub_url(url: str) -> str:
    """The ``/ws/`` endpoint for a server given as ``http://host:port`` (or already ``ws://…/ws/``)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in {"ws", "wss"}:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r}")
    path = parts.path if parts.path not in {"", "/"} else "/ws/"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


@dataclass
class _Pair:
    access: str
    refresh: str
    access_expires_at: float | None


class PasswordTokenProvider:
    """Logs in with ``username``/``password`` once, then rotates the refresh token.

    A cached access token is returned while more than ``margin`` seconds of it
    remain; otherwise (or when ``force``) the refresh token buys a new pair,
    and when that is refused (expired, revoked) the password logs in again."""

    def __init__(self, base_url: str, *, username: str, password: str, margin: float = 60.0, timeout: float = 10.0):
        self._base = http_base(base_url)
        self._username = username
        self._password = password
        self._margin = margin
        self._timeout = timeout
        self._pair: _Pair | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, *, force: bool = False) -> str:
        async with self._lock:
            pair = self._pair
            if pair is not None and not force and not self._expiring(pair):
                return pair.access
            if pair is not None:
                try:
                    self._pair = await self._obtain(REFRESH_PATH, {"refresh": pair.refresh})
                    return self._pair.access
                except AuthenticationFailed:
                    self._pair = None
            self._pair = await self._obtain(TOKEN_PATH, {"username": self._username, "password": self._password})
            return self._pair.access

    def _expiring(self, pair: _Pair) -> bool:
        return pair.access_expires_at is not None and pair.access_expires_at - time.time() <= self._margin

    async def _obtain(self, path: str, body: dict[str, str]) -> _Pair:
        data = await asyncio.to_thread(self._post, path, body)
        return _Pair(access=data["access"], refresh=data["refresh"], access_expires_at=token_expiry(data["access"]))

    def _post(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in http_base)
            self._base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in {400, 401, 403}:
                try:
                    detail = json.loads(exc.read() or b"{}")
                except ValueError:
                    detail = {}
                raise AuthenticationFailed(exc.code, detail if isinstance(detail, dict) else {}) from None
            # 429 (locked out, throttled) and 5xx are transient: the caller backs off.
            raise
