"""Token use cases shared by REST and WebSocket.

- Access and refresh tokens are simplejwt's, signed with the pinned algorithm
  and carrying ``aud``/``iss`` (checked on decode) plus the tenant.
- ``access_token_authenticate`` is the only place an access token becomes a
  ``Principal``: REST and WebSocket call it alike, and it re-reads the user,
  membership and tenant so a deactivated user or suspended tenant is refused at
  once, whatever the token says. Tokens carry the user's token generation
  (``gen``); revoking every session increments it.
- ``token_refresh`` rotates refresh tokens and blacklists the old one; a reused
  (already rotated) refresh token is treated as stolen: it is refused, audited,
  and every session of its user is revoked.
- WebSocket tickets: single-use, ``WS_TICKET_TTL`` seconds, stored in the cache
  (Redis in production) under the ticket's SHA-256, never the ticket itself.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record

from ..models import User
from ..principals import Principal

GENERATION_CLAIM = "gen"


class AuthenticationError(Exception):
    """A credential was refused. ``code`` is one of the documented auth error codes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class TenantRefreshToken(RefreshToken):
    """A refresh token that carries the user's tenant (copied into its access tokens)."""

    @classmethod
    def for_user(cls, user: User) -> TenantRefreshToken:
        membership = user.tenant_membership
        if membership is None:
            raise AuthenticationError("no_membership", "This account belongs to no tenant.")
        token = super().for_user(user)
        token["tenant_id"] = membership.tenant_id
        token["tenant"] = membership.tenant.slug
        token[GENERATION_CLAIM] = user.token_generation
        return token


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


def _epoch_to_datetime(value: int | float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def principal_for_user(user: User, *, expires_at: datetime | None = None, jti: str | None = None) -> Principal:
    """Build the principal of an active user with a membership in an active tenant."""
    if not user.is_active:
        raise AuthenticationError("user_inactive", "This account is disabled.")
    membership = user.tenant_membership
    if membership is None:
        raise AuthenticationError("no_membership", "This account belongs to no tenant.")
    tenant = membership.tenant
    if not tenant.is_active:
        raise AuthenticationError("tenant_inactive", "This tenant is suspended.")
    return Principal(
        tenant_id=tenant.pk,
        tenant_slug=tenant.slug,
        user_id=user.pk,
        username=user.get_username(),
        role=membership.role,
        expires_at=expires_at,
        token_jti=jti,
        token_generation=user.token_generation,
    )


def _load_user(user_id) -> User:
    try:
        return User.objects.select_related("membership__tenant").get(pk=user_id)
    except (User.DoesNotExist, ValueError, TypeError):
        raise AuthenticationError("token_invalid", "The token's user does not exist.") from None


def principal_for_claims(
    claims: dict, *, expires_at: datetime | None = None, invalid_code: str = "token_invalid"
) -> tuple[User, Principal]:
    """The user and principal behind already-verified credential claims (a token's
    payload or a ticket's): the user exists and is active, its tenant is active,
    the credential was issued under the user's current token generation and for
    the tenant the user still belongs to. The one place these rules live."""
    user = _load_user(claims.get(jwt_settings.USER_ID_CLAIM))
    if claims.get(GENERATION_CLAIM) != user.token_generation:
        raise AuthenticationError("token_revoked", "This credential has been revoked.")
    principal = principal_for_user(user, expires_at=expires_at, jti=claims.get("jti"))
    if claims.get("tenant_id") != principal.tenant_id:
        # The user moved tenant after the credential was issued.
        raise AuthenticationError(invalid_code, "The credential was issued for another tenant.")
    return user, principal


def access_token_authenticate(*, raw_token: str) -> tuple[User, Principal]:
    """Validate an access token (signature, algorithm, expiry, audience, issuer, type)
    and the account behind it. Raises ``AuthenticationError``; reads, never writes."""
    if not raw_token:
        raise AuthenticationError("token_missing", "No access token was given.")
    try:
        token = AccessToken(raw_token)
    except ExpiredTokenError:
        raise AuthenticationError("token_expired", "The access token has expired.") from None
    except TokenError:
        raise AuthenticationError("token_invalid", "The access token is invalid.") from None
    return principal_for_claims(token.payload, expires_at=_epoch_to_datetime(token["exp"]))


def token_pair_issue(*, user: User, context: RequestContext = NO_CONTEXT) -> TokenPair:
    """Issue a fresh access/refresh pair to an authenticated user. Audits the login."""
    principal = principal_for_user(user)
    refresh = TenantRefreshToken.for_user(user)
    if jwt_settings.UPDATE_LAST_LOGIN:
        User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    audit_record(
        action=AuditAction.LOGIN_SUCCEEDED,
        actor=Actor.user(user),
        tenant_id=principal.tenant_id,
        target_type="user",
        target_id=user.pk,
        context=context,
    )
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def user_revoke_sessions(*, user: User) -> int:
    """Blacklist every outstanding refresh token of the user and refuse every token
    issued until now (the generation moves on; open WebSockets notice it at their
    next re-check). Returns how many refresh tokens were blacklisted."""
    now = timezone.now()
    User.objects.filter(pk=user.pk).update(token_generation=F("token_generation") + 1, sessions_revoked_at=now)
    user.refresh_from_db(fields=["token_generation", "sessions_revoked_at"])
    outstanding = OutstandingToken.objects.filter(user=user, expires_at__gt=now).exclude(blacklistedtoken__isnull=False)
    count = 0
    for token in outstanding:
        BlacklistedToken.objects.get_or_create(token=token)
        count += 1
    return count


def token_refresh(*, raw_refresh: str, context: RequestContext = NO_CONTEXT) -> TokenPair:
    """Rotate a refresh token: the old one is blacklisted, a new pair is returned.

    Serialised per token with a row lock on its OutstandingToken, so two
    concurrent uses of one refresh token yield one success and one reuse.
    Audits the refresh; audits and revokes every session on reuse.
    """
    reused_by = None
    with transaction.atomic():
        try:
            token = TenantRefreshToken(raw_refresh, verify=False)
            token.get_token_backend().decode(raw_refresh, verify=True)
        except ExpiredTokenError:
            raise AuthenticationError("token_expired", "The refresh token has expired.") from None
        except Exception:  # noqa: BLE001
            raise AuthenticationError("token_invalid", "The refresh token is invalid.") from None
        if token.get(jwt_settings.TOKEN_TYPE_CLAIM) != "refresh":
            raise AuthenticationError("token_invalid", "This is not a refresh token.")
        # Lock the token's row so concurrent refreshes with it serialise here.
        list(OutstandingToken.objects.select_for_update().filter(jti=token["jti"]))
        try:
            token.verify()
        except TokenError:
            # The signature is genuine (decoded above). A blacklisted jti of the
            # current generation means the token was rotated already and someone
            # is replaying it; one of an older generation was revoked with every
            # session (log out everywhere), which is no sign of theft.
            if not BlacklistedToken.objects.filter(token__jti=token["jti"]).exists():
                raise AuthenticationError("token_invalid", "The refresh token is invalid.") from None
            owner = _load_user(token.get(jwt_settings.USER_ID_CLAIM))
            if token.get(GENERATION_CLAIM) != owner.token_generation:
                raise AuthenticationError("token_revoked", "This credential has been revoked.") from None
            reused_by = owner
        if reused_by is None:
            user, principal = principal_for_claims(token.payload)
            token.blacklist()
            token.set_jti()
            token.set_exp()
            token.set_iat()
            token.outstand()
            audit_record(
                action=AuditAction.TOKEN_REFRESHED,
                actor=Actor.user(user),
                tenant_id=principal.tenant_id,
                target_type="user",
                target_id=user.pk,
                context=context,
            )
            return TokenPair(access=str(token.access_token), refresh=str(token))

    # Reuse of a rotated token: revoke in a transaction of its own, so the
    # revocation stands although the request fails.
    with transaction.atomic():
        revoked = user_revoke_sessions(user=reused_by)
        membership = reused_by.tenant_membership
        audit_record(
            action=AuditAction.TOKEN_REUSE_DETECTED,
            actor=Actor.user(reused_by),
            tenant_id=membership.tenant_id if membership else None,
            target_type="user",
            target_id=reused_by.pk,
            context=context,
            details={"revoked_refresh_tokens": revoked},
        )
    raise AuthenticationError(
        "token_reused", "This refresh token was already used; every session of the account has been revoked."
    )


# --- WebSocket tickets -----------------------------------------------------------

_TICKET_PREFIX = "ws-ticket:"


def _ticket_key(ticket: str) -> str:
    return _TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


@dataclass(frozen=True)
class WsTicket:
    ticket: str
    expires_at: datetime


def ws_ticket_issue(*, principal: Principal, context: RequestContext = NO_CONTEXT) -> WsTicket:
    """Mint a single-use ticket for opening one WebSocket as ``principal`` (a user).

    The socket it opens stays authenticated until the access token that minted
    it expires (``principal.expires_at``), like a socket opened with the token.
    """
    if principal.user_id is None:
        raise AuthenticationError("forbidden", "Only users can open WebSockets.")
    ticket = secrets.token_urlsafe(32)
    ttl = settings.WS_TICKET_TTL
    expires_at = timezone.now() + timedelta(seconds=ttl)
    payload = {
        jwt_settings.USER_ID_CLAIM: principal.user_id,
        "tenant_id": principal.tenant_id,
        "session_expires_at": principal.expires_at.timestamp() if principal.expires_at else None,
        "jti": principal.token_jti,
        GENERATION_CLAIM: principal.token_generation,
    }
    cache.set(_ticket_key(ticket), json.dumps(payload), timeout=ttl)
    audit_record(
        action=AuditAction.WS_TICKET_ISSUED,
        actor=Actor.from_principal(principal),
        tenant_id=principal.tenant_id,
        target_type="user",
        target_id=principal.user_id,
        context=context,
    )
    return WsTicket(ticket=ticket, expires_at=expires_at)


def ws_ticket_consume(*, ticket: str) -> tuple[User, Principal]:
    """Redeem a ticket exactly once. Unknown, expired and replayed tickets are all
    ``ticket_invalid``: the deletion is the atomic step, so of two concurrent
    redemptions only one wins."""
    if not ticket or len(ticket) > 256:
        raise AuthenticationError("ticket_invalid", "The ticket is invalid, expired or already used.")
    key = _ticket_key(ticket)
    raw = cache.get(key)
    if raw is None or not cache.delete(key):
        raise AuthenticationError("ticket_invalid", "The ticket is invalid, expired or already used.")
    payload = json.loads(raw)
    expires_at = (
        _epoch_to_datetime(payload["session_expires_at"]) if payload.get("session_expires_at") is not None else None
    )
    if expires_at is not None and expires_at <= timezone.now():
        raise AuthenticationError("token_expired", "The access token behind this ticket has expired.")
    # A "log out everywhere" between minting and redeeming voids the ticket too.
    return principal_for_claims(payload, expires_at=expires_at, invalid_code="ticket_invalid")
