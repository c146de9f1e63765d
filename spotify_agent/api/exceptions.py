"""One error shape for every 4xx and 5xx answer of the REST API:

    {"error": {"code": "<machine code>", "message": "<human text>", "details": {...}}}

``exception_handler`` is DRF's hook for exceptions raised in views; the
``handler4xx/5xx`` views give Django's own errors (unknown URL, crash) the same
shape under /api/. Codes are listed in docs/api.md.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


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
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _message_of(detail) -> str:
    if isinstance(detail, list) and detail:
        return _message_of(detail[0])
    if isinstance(detail, dict):
        return "Invalid input." if detail else ""
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return Response(
            error_body("server_error", "Internal server error."), status=status.HTTP_500_INTERNAL_SERVER_ERROR
        )

    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, str(exc.detail), exc.details)
    elif isinstance(exc, exceptions.ValidationError):
        body = error_body(
            "invalid",
            "Invalid input.",
            {"fields": exc.detail} if isinstance(exc.detail, dict) else {"errors": exc.detail},
        )
    else:
        code = next((c for cls, c in _CODE_BY_CLASS.items() if isinstance(exc, cls)), None)
        if code is None:
            codes = exc.get_codes() if hasattr(exc, "get_codes") else None
            code = codes if isinstance(codes, str) else "error"
        details = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            details["retry_after"] = int(exc.wait) + 1
        # simplejwt puts a machine code of its own in its detail dict.
        if isinstance(exc.detail, dict) and "code" in exc.detail:
            details["reason"] = str(exc.detail["code"])
            message = str(exc.detail.get("detail", "")) or _message_of(exc.detail)
        else:
            message = _message_of(exc.detail)
        body = error_body(code, message, details)
    response.data = body
    return response


def _json_error(code: str, message: str, status_code: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code)


def handler404(request, exception=None):
    return _json_error("not_found", "Not found.", 404)


def handler500(request):
    return _json_error("server_error", "Internal server error.", 500)


def handler400(request, exception=None):
    return _json_error("bad_request", "Bad request.", 400)


def handler403(request, exception=None):
    return _json_error("forbidden", "Forbidden.", 403)
