"""Password login, its lockout and its audit, plus the identity layer's housekeeping.

- ``login_with_password`` is the REST login: django.contrib.auth's
  ``authenticate`` (so django-axes counts and locks), one audit event per
  failure, one more per locked-out attempt, then ``token_pair_issue``.
- ``login_lockout_response`` is ``AXES_LOCKOUT_CALLABLE``: the answer AxesMiddleware
  substitutes for any locked-out login (REST or admin), in the API error shape.
- ``login_failed_record`` and friends are the audit writes shared with the
  Django admin's login, whose signals ``accounts.signals`` receives.
- ``token_verify`` backs ``/api/v1/auth/token/verify/``.
- ``token_flush_expired`` and ``login_attempts_purge`` are the periodic
  clean-ups run by beat (``accounts.tasks``).

Token issuance, refresh rotation and reuse detection live in ``tokens``;
docs/api.md, "Authentication", describes the flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth import authenticate
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import UntypedToken

from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from spotify_agent.api.exceptions import error_body

from ..models import Membership, User
from .tokens import AuthenticationError, TokenPair, access_token_authenticate, principal_for_claims, token_pair_issue

# axes' AccessLog (one row per successful admin login) is kept this long; the
# audit trail is the record of logins, AccessLog only axes' working data.
LOGIN_ACCESS_LOG_RETENTION_DAYS = 30
# Expired refresh tokens are deleted in batches of this size, so one run never
# holds a long lock on the outstanding-token table.
TOKEN_FLUSH_BATCH_SIZE = 5000

_LOCKED_OUT_MESSAGE = "Too many failed login attempts. Try again later."


class LoginLockedOut(AuthenticationError):
    """The username or the client address is locked out by django-axes."""

    def __init__(self, *, retry_after: int):
        super().__init__("locked_out", _LOCKED_OUT_MESSAGE)
        self.retry_after = retry_after


# --- Audit of login attempts (REST here, admin through accounts.signals) ---------


def _tenant_id_of_username(username: str) -> int | None:
    """The tenant whose chain records attempts on this username (None: unknown
    username or staff without tenant, recorded in the installation chain), so a
    tenant's admins see the attacks on their own accounts."""
    if not username:
        return None
    return Membership.objects.filter(user__username__iexact=username).values_list("tenant_id", flat=True).first()


def login_failed_record(*, username: str, reason: str, channel: str, context: RequestContext = NO_CONTEXT) -> None:
    """Audit one refused login. The actor is anonymous: nobody proved who they are."""
    audit_record(
        action=AuditAction.LOGIN_FAILED,
        actor=Actor.anonymous(),
        tenant_id=_tenant_id_of_username(username),
        target_type="user",
        context=context,
        details={"username": username[:150], "reason": reason, "channel": channel},
    )


def login_locked_out_record(*, username: str, channel: str, context: RequestContext = NO_CONTEXT) -> None:
    """Audit a login attempt answered with a lockout."""
    audit_record(
        action=AuditAction.LOGIN_LOCKED_OUT,
        actor=Actor.anonymous(),
        tenant_id=_tenant_id_of_username(username),
        target_type="user",
        context=context,
        details={"username": username[:150], "channel": channel},
    )


def login_succeeded_record(*, user: User, channel: str, context: RequestContext = NO_CONTEXT) -> None:
    """Audit a session login (the admin). REST logins are audited by ``token_pair_issue``."""
    membership = user.tenant_membership
    audit_record(
        action=AuditAction.LOGIN_SUCCEEDED,
        actor=Actor.user(user),
        tenant_id=membership.tenant_id if membership else None,
        target_type="user",
        target_id=user.pk,
        context=context,
        details={"channel": channel},
    )


# --- Lockout -----------------------------------------------------------------------


def lockout_retry_after(request: HttpRequest | None = None) -> int:
    """Seconds until a locked-out client may try again, at the latest.

    Every attempt refused during a lockout restarts the cool-off (axes'
    AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT), so right after one the whole
    cool-off remains.
    """
    cool_off = get_cool_off(request)
    return math.ceil(cool_off.total_seconds()) if cool_off else 0


def login_lockout_response(request: HttpRequest, original_response=None, credentials=None) -> JsonResponse:
    """``AXES_LOCKOUT_CALLABLE``: 429, code ``locked_out``, ``details.retry_after``.

    AxesMiddleware calls it with (request, response, credentials) on the sync path
    and (request, credentials) on the async one, so neither is relied upon.
    """
    retry_after = lockout_retry_after(request)
    response = JsonResponse(
        error_body("locked_out", _LOCKED_OUT_MESSAGE, {"retry_after": retry_after}),
        status=429,
    )
    response["Retry-After"] = str(retry_after)
    return response


# --- Login ---------------------------------------------------------------------------


def login_with_password(*, request: HttpRequest, username: str, password: str) -> TokenPair:
    """Check a username and password and issue a token pair.

    ``request`` is Django's ``HttpRequest`` (a DRF view passes ``request._request``):
    axes reads the client address from it and flags it when the attempt is locked
    out, which also makes AxesMiddleware answer with ``login_lockout_response``.

    Raises ``AuthenticationError``: ``invalid_credentials`` (wrong password,
    unknown or disabled user — indistinguishable on purpose), ``locked_out``
    (``LoginLockedOut``, even with the right password), ``no_membership``
    (staff without a tenant) or ``tenant_inactive``. Every refusal is audited;
    the success is audited by ``token_pair_issue``. Not idempotent: each call
    is one attempt.
    """
    context = RequestContext.from_request(request)
    user = authenticate(request=request, username=username, password=password)
    if user is None:
        locked_out = bool(getattr(request, "axes_locked_out", False))
        login_failed_record(
            username=username,
            reason="locked_out" if locked_out else "invalid_credentials",
            channel="api",
            context=context,
        )
        if locked_out:
            login_locked_out_record(username=username, channel="api", context=context)
            raise LoginLockedOut(retry_after=lockout_retry_after(request))
        raise AuthenticationError("invalid_credentials", "No active account found with the given credentials.")

    try:
        pair = token_pair_issue(user=user, context=context)
    except AuthenticationError as error:
        login_failed_record(username=username, reason=error.code, channel="api", context=context)
        raise
    if settings.AXES_RESET_ON_SUCCESS:
        # axes resets on the user_logged_in signal, which only a session login
        # sends; a token login is stateless, so the reset is done here.
        # axes keys its rows by the username as typed, which is what matched.
        axes_reset(username=username)
    return pair


# --- Verify --------------------------------------------------------------------------


def token_verify(*, raw_token: str) -> None:
    """Check any of our tokens as the API would accept it today: signature,
    algorithm, audience, issuer and expiry, then for an access token the account
    behind it, for a refresh token also the blacklist. Raises
    ``AuthenticationError``; reads, never writes (verifying a rotated refresh
    token does not trigger reuse detection: only presenting it for refresh does).
    """
    try:
        token = UntypedToken(raw_token)
    except ExpiredTokenError:
        raise AuthenticationError("token_expired", "The token has expired.") from None
    except TokenError:
        raise AuthenticationError("token_invalid", "The token is invalid.") from None

    kind = token.get(jwt_settings.TOKEN_TYPE_CLAIM)
    if kind == "access":
        access_token_authenticate(raw_token=raw_token)
        return
    if kind != "refresh":
        raise AuthenticationError("token_invalid", "The token is invalid.")
    if BlacklistedToken.objects.filter(token__jti=token.get(jwt_settings.JTI_CLAIM)).exists():
        raise AuthenticationError("token_revoked", "This token has been revoked.")
    principal_for_claims(token.payload)


# --- Housekeeping (beat) ---------------------------------------------------------------


@dataclass(frozen=True)
class PurgeResult:
    attempts: int
    access_logs: int


def token_flush_expired() -> int:
    """Delete outstanding refresh tokens past their expiry (and, by cascade, their
    blacklist rows): what simplejwt's ``flushexpiredtokens`` does, in batches.
    An expired token is refused on its ``exp`` alone, so its rows are dead weight.
    Idempotent. Returns how many outstanding tokens were deleted."""
    now = timezone.now()
    deleted = 0
    while True:
        batch = list(
            OutstandingToken.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[:TOKEN_FLUSH_BATCH_SIZE]
        )
        if not batch:
            return deleted
        OutstandingToken.objects.filter(pk__in=batch).delete()
        deleted += len(batch)


def login_attempts_purge() -> PurgeResult:
    """Delete axes' failed-attempt rows older than the cool-off (they no longer
    count towards a lockout) and its access log past ``LOGIN_ACCESS_LOG_RETENTION_DAYS``.
    axes only cleans attempts when the same client logs in again. Idempotent."""
    cool_off = get_cool_off()
    attempts = 0
    if cool_off is not None:
        _, by_model = AccessAttempt.objects.filter(attempt_time__lte=timezone.now() - cool_off).delete()
        attempts = by_model.get(AccessAttempt._meta.label, 0)
    access_logs = AxesProxyHandler.reset_logs(age_days=LOGIN_ACCESS_LOG_RETENTION_DAYS)
    return PurgeResult(attempts=attempts, access_logs=access_logs)
