"""DRF authentication classes. Both delegate to services and put a ``Principal``
in ``request.auth``; views read the tenant from there, never from the URL."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions

from .principals import Principal
from .services.api_clients import api_client_authenticate
from .services.tokens import AuthenticationError, access_token_authenticate


def _failed(error: AuthenticationError) -> exceptions.AuthenticationFailed:
    return exceptions.AuthenticationFailed(detail={"detail": error.message, "code": error.code}, code=error.code)


class TenantJWTAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <access token>`` (simplejwt tokens with a tenant claim)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() != self.keyword.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                detail={"detail": "Malformed Authorization header.", "code": "token_invalid"}
            )
        try:
            user, principal = access_token_authenticate(raw_token=header[1].decode("latin-1"))
        except AuthenticationError as error:
            raise _failed(error) from None
        return user, principal

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


@dataclass(frozen=True)
class ApiClientUser:
    """What ``request.user`` is for an API client: authenticated, not a person."""

    principal: Principal
    is_authenticated: bool = True
    is_anonymous: bool = False
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def pk(self):
        return None

    id = pk

    def __str__(self) -> str:
        return f"api-client:{self.principal.api_client_id}"


class ApiClientAuthentication(authentication.BaseAuthentication):
    """``Authorization: Api-Key <key>`` (preferred) or ``X-Api-Key: <key>``."""

    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if header and header[0].decode("latin-1").lower() == self.keyword.lower():
            if len(header) != 2:
                raise exceptions.AuthenticationFailed(
                    detail={"detail": "Malformed Authorization header.", "code": "api_key_invalid"}
                )
            raw_key = header[1].decode("latin-1")
        else:
            raw_key = request.META.get("HTTP_X_API_KEY")
            if not raw_key:
                return None
        try:
            _client, principal = api_client_authenticate(raw_key=raw_key)
        except AuthenticationError as error:
            raise _failed(error) from None
        return ApiClientUser(principal), principal

    def authenticate_header(self, request):
        return self.keyword
