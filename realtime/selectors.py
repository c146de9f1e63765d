"""Reads of the WebSocket lifecycle: re-validating an open socket's principal.

The periodic re-check is the safety net behind the ``session.revoked``
broadcast, which the channel layer may drop: it applies the same account rules
as ``accounts.services.tokens.access_token_authenticate``.
"""

from __future__ import annotations

from accounts.models import User
from accounts.principals import Principal
from accounts.services.tokens import AuthenticationError, principal_for_user


def ws_principal_recheck(*, principal: Principal) -> Principal:
    """Return the principal as the database sees it now (role included), or raise
    ``AuthenticationError`` if the user is gone, inactive, moved tenant, lost the
    tenant, the tenant is suspended, or the user's sessions were revoked since the
    socket's credential was issued (its token generation is no longer current)."""
    user = User.objects.select_related("membership__tenant").filter(pk=principal.user_id).first()
    if user is None:
        raise AuthenticationError("token_invalid", "The user no longer exists.")
    if principal.token_generation is not None and user.token_generation != principal.token_generation:
        raise AuthenticationError("token_revoked", "This session has been revoked.")
    current = principal_for_user(user, expires_at=principal.expires_at, jti=principal.token_jti)
    if current.tenant_id != principal.tenant_id:
        raise AuthenticationError("token_invalid", "The user moved to another tenant.")
    return current
