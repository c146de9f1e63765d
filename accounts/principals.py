"""Who is calling: the one shape REST views, WebSocket handlers and services see.

Both REST authentication classes put a ``Principal`` in ``request.auth``; the
WebSocket middleware puts one in ``scope["principal"]``. Services take the
tenant and actor from it, so tenant scoping never depends on the transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .constants import role_at_least


@dataclass(frozen=True)
class Principal:
    tenant_id: int
    tenant_slug: str
    user_id: int | None = None
    username: str | None = None
    api_client_id: int | None = None
    role: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    # When the credential that authenticated this principal stops being valid.
    expires_at: datetime | None = None
    token_jti: str | None = None
    # The user's token generation the credential was issued under.
    token_generation: int | None = None

    @property
    def kind(self) -> str:
        return "user" if self.user_id is not None else "api_client"

    @property
    def throttle_key(self) -> str:
        return f"user:{self.user_id}" if self.user_id is not None else f"client:{self.api_client_id}"

    def has_role(self, minimum: str) -> bool:
        return self.user_id is not None and role_at_least(self.role, minimum)

    def has_scope(self, scope: str) -> bool:
        return self.api_client_id is not None and scope in self.scopes
