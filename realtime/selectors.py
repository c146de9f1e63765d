"""Reads of the WebSocket lifecycle: re-validating open sockets' principals.

The periodic re-check is the safety net behind the ``session.revoked``
broadcast, which the channel layer may drop: it applies the same account rules
as ``accounts.services.tokens.access_token_authenticate``. It runs for every
socket of a process at once (``realtime.recheck``), so it reads the users of
many principals in one query.
"""

from __future__ import annotations

from collections.abc import Sequence

from accounts.models import User
from accounts.principals import Principal
from accounts.services.tokens import AuthenticationError, principal_for_user


def _recheck(principal: Principal, user: User | None) -> Principal | AuthenticationError:
    if user is None:
        return AuthenticationError("token_invalid", "The user no longer exists.")
    if principal.token_generation is not None and user.token_generation != principal.token_generation:
        return AuthenticationError("token_revoked", "This session has been revoked.")
    try:
        current = principal_for_user(user, expires_at=principal.expires_at, jti=principal.token_jti)
    except AuthenticationError as exc:
        return exc
    if current.tenant_id != principal.tenant_id:
        return AuthenticationError("token_invalid", "The user moved to another tenant.")
    return current


def ws_principals_recheck(*, principals: Sequence[Principal]) -> list[Principal | AuthenticationError]:
    """Each principal as the database sees it now (role included), or the
    ``AuthenticationError`` that now refuses it: the user is gone, inactive,
    moved tenant, lost the tenant, the tenant is suspended, or the user's
    sessions were revoked since the credential was issued (its token generation
    is no longer current). One query for the lot; results in the given order."""
    users = User.objects.select_related("membership__tenant").in_bulk({p.user_id for p in principals})
    return [_recheck(principal, users.get(principal.user_id)) for principal in principals]
