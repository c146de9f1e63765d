"""Reads of the WebSocket lifecycle: re-validating open sockets' principals.

The periodic re-check is the safety net behind the ``session.revoked``
broadcast, which the channel layer may drop: it applies the same account rules
as ``accounts.services.tokens.access_token_authenticate``. It runs for every
socket of a process at once (``realtime.recheck``), so it reads the users of
many principals in one query.
"""

from __future__ import annotations

from collections.abc import Sequence

from accounts.constants import TenantStatus
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


def _unchanged(principal: Principal, row: tuple | None) -> bool:
    """Whether the user's row still says exactly what ``principal`` says, with an
    active account in an active tenant: then the rules of ``_recheck`` can only
    confirm it, and no model needs building."""
    return row is not None and row == (
        principal.username,
        True,
        principal.token_generation,
        principal.role,
        principal.tenant_id,
        principal.tenant_slug,
        TenantStatus.ACTIVE,
    )


def ws_principals_recheck(*, principals: Sequence[Principal]) -> list[Principal | AuthenticationError]:
    """Each principal as the database sees it now (role included), or the
    ``AuthenticationError`` that now refuses it: the user is gone, inactive,
    moved tenant, lost the tenant, the tenant is suspended, or the user's
    sessions were revoked since the credential was issued (its token generation
    is no longer current). Results in the given order.

    It runs for every socket of a process every few seconds, and almost every
    account is as it was: one query reads the few columns the rules look at, a
    principal they still match is returned as it is, and only the users whose
    row moved are loaded as models and judged by the rules."""
    user_ids = {principal.user_id for principal in principals}
    rows = {
        row[0]: row[1:]
        for row in User.objects.filter(pk__in=user_ids).values_list(
            "pk",
            User.USERNAME_FIELD,
            "is_active",
            "token_generation",
            "membership__role",
            "membership__tenant_id",
            "membership__tenant__slug",
            "membership__tenant__status",
        )
    }
    moved = {p.user_id for p in principals if not _unchanged(p, rows.get(p.user_id))} & rows.keys()
    users = User.objects.select_related("membership__tenant").in_bulk(moved) if moved else {}
    return [
        principal
        if _unchanged(principal, rows.get(principal.user_id))
        else _recheck(principal, users.get(principal.user_id))
        for principal in principals
    ]
