"""OpenAPI pieces shared by every app's views (drf-spectacular).

- ``ErrorResponseSerializer`` and ``error_responses(...)`` document the one
  error shape, so each view lists the statuses it can answer in one line;
- the authentication extensions describe the project's two credentials
  (``Bearer`` JWT, ``Api-Key``); spectacular finds them once this module is
  imported, which every view module that documents errors does.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from .exceptions import ERROR_CODES


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=sorted(ERROR_CODES))
    message = serializers.CharField()
    details = serializers.DictField(help_text="Code-specific: fields, retry_after, ...")


class ErrorResponseSerializer(serializers.Serializer):
    """Every 4xx/5xx answer: ``{"error": {"code", "message", "details"}}``."""

    error = ErrorBodySerializer()


_DESCRIPTIONS = {
    400: "Invalid input (code `invalid`, details.fields).",
    401: "Missing or refused credentials (`unauthenticated`, `token_*`, `api_key_*`, ...).",
    403: "Role or scope too low (`forbidden`).",
    404: "Not found, or another tenant's (`not_found`).",
    429: "Throttled (`rate_limited`) or locked out (`locked_out`); details.retry_after.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """``responses=`` entries for the given error statuses."""
    return {code: OpenApiResponse(ErrorResponseSerializer, description=_DESCRIPTIONS[code]) for code in statuses}


class TenantJWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.TenantJWTAuthentication"
    name = "BearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class ApiClientAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiClientAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` as issued to an API client.",
        }
