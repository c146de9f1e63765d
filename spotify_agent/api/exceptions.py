"""One error shape for every 4xx and 5xx answer of the REST API:

    {"error": {"code": "<machine code>", "message": "<human text>", "details": {...}}}

``exception_handler`` is DRF's hook for exceptions raised in views and
authentication classes: it also maps the identity layer's domain error
(``AuthenticationError``) so views can call services without a try/except.
The ``handler4xx/5xx`` views give Django's own errors (unknown URL, crash) the
same shape under /api/ and leave the admin's HTML pages alone.

``ERROR_CODES`` is the closed list of codes; docs/api.md lists exactly these
(a test keeps the two in step). Add a code here before raising it.
"""

from __future__ import annotations

import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from accounts.services.tokens import AuthenticationError
from spotify_agent.errors import DomainError

API_PATH_PREFIX = "/api/"

# code -> (HTTP status, meaning). The closed list of codes a client can receive.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "invalid": (400, "The input failed validation; details.fields maps each field to its errors."),
    "bad_request": (400, "The request body could not be parsed."),
    "unauthenticated": (401, "No credentials were given."),
    "invalid_credentials": (401, "Wrong username or password, or the account is disabled."),
    "token_missing": (401, "An empty token was given."),
    "token_invalid": (401, "The token is malformed, forged, of the wrong type or for another audience."),
    "token_expired": (401, "The token has expired; refresh it or log in again."),
    "token_revoked": (401, "The token was revoked (logout everywhere, reuse detection, blacklist)."),
    "token_reused": (401, "A rotated refresh token was presented again; every session was revoked."),
    "user_inactive": (401, "The account is disabled."),
    "tenant_inactive": (401, "The account's tenant is suspended."),
    "no_membership": (401, "The account belongs to no tenant and cannot use the API."),
    "api_key_invalid": (401, "The API key is unknown or malformed."),
    "api_key_revoked": (401, "The API key has been revoked."),
    "forbidden": (403, "Authenticated, but the role or scope does not allow this."),
    "not_found": (404, "No such resource (also for another tenant's resources)."),
    "conflict": (409, "The operation conflicts with the current state (already a member, a deleted message...)."),
    "resync_required": (
        409,
        "The playlist edit was based on a revision too old to merge; details.snapshot is the playlist now.",
    ),
    "moderated": (422, "Moderation rejected the content (flooding, repetition, a blocked word); nothing was stored."),
    "method_not_allowed": (405, "The HTTP method is not supported here."),
    "not_acceptable": (406, "No renderer matches the Accept header."),
    "unsupported_media_type": (415, "The request's Content-Type is not supported."),
    "too_large": (413, "The upload exceeds the size limit; details.max_bytes gives the limit in bytes."),
    "type_not_allowed": (415, "The file's content is not an accepted type; details.allowed lists the accepted types."),
    "type_mismatch": (415, "The file's content disagrees with its declared type (details.declared, details.detected)."),
    "locked_out": (429, "Too many failed logins; details.retry_after gives the seconds to wait."),
    "rate_limited": (429, "Too many requests; details.retry_after gives the seconds to wait."),
    "backlog_full": (
        429,
        "Too many notifications of the tenant are waiting to be delivered; "
        "details.retry_after gives the seconds to wait.",
    ),
    "server_error": (500, "An unexpected error; it has been logged."),
}


class ApiError(exceptions.APIException):
    """An error with an explicit code, for views that map domain errors."""

    def __init__(self, *, code: str, message: str, status_code: int, details: dict | None = None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details or {}


_CODE_BY_CLASS = {
    exceptions.ValidationError: "invalid",
    exceptions.ParseError: "bad_request",
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}

# simplejwt's own codes, should one of its classes ever raise, mapped onto ours.
_SIMPLEJWT_CODES = {
    "token_not_valid": "token_invalid",
    "bad_authorization_header": "token_invalid",
    "user_not_found": "token_invalid",
    "password_changed": "token_revoked",
    "no_active_account": "invalid_credentials",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def retry_after_seconds(wait: float | None) -> int | None:
    """Seconds a client should wait, rounded up so that retrying on time succeeds."""
    return None if wait is None else max(1, math.ceil(wait))


def _message_of(detail) -> str:
    if isinstance(detail, list) and detail:
        return _message_of(detail[0])
    if isinstance(detail, dict):
        return "Invalid input." if detail else ""
    return str(detail)


def _from_domain(exc: Exception) -> Exception:
    """Translate domain and Django errors into DRF's, so one path renders them."""
    if isinstance(exc, DomainError):
        return ApiError(code=str(exc.code), message=exc.message, status_code=exc.http_status, details=exc.details)
    if isinstance(exc, AuthenticationError):
        return _from_authentication(exc)
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def _from_authentication(exc: AuthenticationError) -> Exception:
    if exc.code == "forbidden":
        return exceptions.PermissionDenied(detail=exc.message)
    if exc.code == "locked_out":
        return ApiError(
            code="locked_out",
            message=exc.message,
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            details={"retry_after": getattr(exc, "retry_after", None)},
        )
    return exceptions.AuthenticationFailed(detail={"detail": exc.message, "code": exc.code})


def _auth_failure_code(exc: exceptions.APIException) -> str:
    detail = exc.detail
    if isinstance(detail, dict) and "code" in detail:
        code = str(detail["code"])
        return _SIMPLEJWT_CODES.get(code, code)
    return "unauthenticated"


def _www_authenticate(exc: exceptions.APIException, context) -> str | None:
    header = getattr(exc, "auth_header", None)
    view, request = context.get("view"), context.get("request")
    if header is None and view is not None and request is not None:
        # Domain errors bypass APIView.handle_exception, which sets it otherwise.
        header = view.get_authenticate_header(request)
    return header


def _render(exc: exceptions.APIException, context) -> tuple[dict, dict[str, str]]:
    """The error body and extra headers of a DRF exception."""
    if isinstance(exc, ApiError):
        headers = {}
        if exc.details.get("retry_after"):
            headers["Retry-After"] = str(exc.details["retry_after"])
        return error_body(exc.error_code, str(exc.detail), exc.details), headers
    if isinstance(exc, exceptions.ValidationError):
        details = {"fields": exc.detail} if isinstance(exc.detail, dict) else {"errors": exc.detail}
        return error_body("invalid", "Invalid input.", details), {}

    headers, details = {}, {}
    if isinstance(exc, exceptions.AuthenticationFailed):
        code = _auth_failure_code(exc)
    else:
        code = next((c for cls, c in _CODE_BY_CLASS.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, (exceptions.AuthenticationFailed, exceptions.NotAuthenticated)):
        challenge = _www_authenticate(exc, context)
        if challenge:
            headers["WWW-Authenticate"] = challenge
    if isinstance(exc, exceptions.Throttled):
        details["retry_after"] = retry_after_seconds(exc.wait)
        if exc.wait is not None:
            headers["Retry-After"] = str(details["retry_after"])
    if isinstance(exc.detail, dict):
        message = str(exc.detail.get("detail", "")) or _message_of(exc.detail)
    else:
        message = _message_of(exc.detail)
    return error_body(code, message, details), headers


def exception_handler(exc, context):
    exc = _from_domain(exc)
    if not isinstance(exc, exceptions.APIException):
        # Not ours to render: Django's handler500 answers (JSON under /api/) and
        # the error reaches logging, got_request_exception and Sentry as usual.
        return None
    body, headers = _render(exc, context)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


# --- Django's own error views (settings in spotify_agent/urls.py) ----------------


def _is_api(request) -> bool:
    return request.path.startswith(API_PATH_PREFIX)


def _json_error(code: str, message: str, status_code: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def handler400(request, exception=None):
    if _is_api(request):
        return _json_error("bad_request", "Bad request.", 400)
    return defaults.bad_request(request, exception)


def handler403(request, exception=None):
    if _is_api(request):
        return _json_error("forbidden", "Forbidden.", 403)
    return defaults.permission_denied(request, exception)


def handler404(request, exception=None):
    if _is_api(request):
        return _json_error("not_found", "Not found.", 404)
    return defaults.page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return _json_error("server_error", "Internal server error.", 500)
    return defaults.server_error(request)
