"""REST adapters of the identity layer: parse, call one service, render.

Domain errors (``AuthenticationError`` and its ``LoginLockedOut``) are not caught
here: ``spotify_agent.api.exceptions.exception_handler`` maps them to the API
error shape. Reads are tenant-scoped through ``TenantScopedMixin``.
docs/api.md describes the endpoints.
"""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import Actor, RequestContext
from spotify_agent.api.permissions import IsUser, request_principal
from spotify_agent.api.schema import error_responses
from spotify_agent.api.throttling import AuthEndpointThrottle
from spotify_agent.api.views import TenantScopedMixin

from ..constants import ApiScope, Role
from ..models import ApiClient, User
from ..services.api_clients import api_client_create, api_client_revoke
from ..services.auth import login_with_password, token_verify
from ..services.tokens import token_refresh, ws_ticket_issue
from .serializers import (
    ApiClientCreateInputSerializer,
    ApiClientCreateOutputSerializer,
    ApiClientOutputSerializer,
    MeApiClientOutputSerializer,
    MeUserOutputSerializer,
    TokenObtainInputSerializer,
    TokenPairOutputSerializer,
    TokenRefreshInputSerializer,
    TokenVerifyInputSerializer,
    TokenVerifyOutputSerializer,
    UserOutputSerializer,
    WsTicketOutputSerializer,
)

# --- Credential endpoints ------------------------------------------------------------


class CredentialEndpointView(APIView):
    """Base of the unauthenticated credential endpoints.

    No authentication class runs (an expired access token in the header must not
    stop a refresh), so the per-IP ``AuthEndpointThrottle`` is what bounds them,
    with django-axes locking accounts on the login.
    """

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (AuthEndpointThrottle,)

    def get_authenticate_header(self, request):
        # Keeps refusals at 401 (DRF downgrades to 403 without a challenge).
        return 'Bearer realm="api"'


class TokenObtainView(CredentialEndpointView):
    """Password login. After `LOGIN_FAILURE_LIMIT` failures the username and the
    client address are locked out (429 `locked_out`, even with the right password)
    for `LOGIN_LOCKOUT_SECONDS`. Accounts without a tenant (staff) get 401 `no_membership`."""

    @extend_schema(
        operation_id="auth_token_obtain",
        summary="Log in: exchange a username and password for a token pair",
        request=TokenObtainInputSerializer,
        responses={200: TokenPairOutputSerializer, **error_responses(400, 401, 429)},
        auth=[],
        tags=["auth"],
    )
    def post(self, request):
        serializer = TokenObtainInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # Django's HttpRequest, not DRF's wrapper: axes flags the lockout on it.
        pair = login_with_password(request=request._request, **serializer.validated_data)
        return Response(TokenPairOutputSerializer(pair).data)


class TokenRefreshView(CredentialEndpointView):
    """Refresh-token rotation with reuse detection."""

    @extend_schema(
        operation_id="auth_token_refresh",
        summary="Rotate a refresh token: the old one is blacklisted, a new pair returned",
        description=(
            "Rotation with reuse detection: presenting a refresh token that was already rotated "
            "answers 401 `token_reused` and revokes every session of the account."
        ),
        request=TokenRefreshInputSerializer,
        responses={200: TokenPairOutputSerializer, **error_responses(400, 401, 429)},
        auth=[],
        tags=["auth"],
    )
    def post(self, request):
        serializer = TokenRefreshInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pair = token_refresh(
            raw_refresh=serializer.validated_data["refresh"], context=RequestContext.from_request(request)
        )
        return Response(TokenPairOutputSerializer(pair).data)


class TokenVerifyView(CredentialEndpointView):
    """Token check: signature, expiry, audience, issuer, blacklist and the account."""

    @extend_schema(
        operation_id="auth_token_verify",
        summary="Check that an access or refresh token would be accepted now",
        request=TokenVerifyInputSerializer,
        responses={200: TokenVerifyOutputSerializer, **error_responses(400, 401, 429)},
        auth=[],
        tags=["auth"],
    )
    def post(self, request):
        serializer = TokenVerifyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token_verify(raw_token=serializer.validated_data["token"])
        return Response({})


class WsTicketIssueView(APIView):
    """Users only: an API client has no WebSocket and is answered 403."""

    permission_classes = (IsAuthenticated, IsUser)

    @extend_schema(
        operation_id="auth_ws_ticket_issue",
        summary="Mint a single-use ticket for opening one WebSocket",
        request=None,
        responses={200: WsTicketOutputSerializer, **error_responses(401, 403, 429)},
        tags=["auth"],
    )
    def post(self, request):
        ticket = ws_ticket_issue(principal=request.auth, context=RequestContext.from_request(request))
        return Response(WsTicketOutputSerializer(ticket).data)


# --- The caller ----------------------------------------------------------------------


class MeView(APIView):
    """The caller as the API sees it: a user with role and tenant, or an API
    client with its scopes and tenant."""

    @extend_schema(
        operation_id="me_retrieve",
        summary="Who is calling: the user or the API client, with its tenant",
        responses={
            200: PolymorphicProxySerializer(
                component_name="Me",
                serializers=[MeUserOutputSerializer, MeApiClientOutputSerializer],
                resource_type_field_name=None,
            ),
            **error_responses(401, 429),
        },
        tags=["me"],
    )
    def get(self, request):
        principal = request_principal(request)
        if principal.user_id is not None:
            # The authentication class loaded the user with membership and tenant.
            return Response(MeUserOutputSerializer(request.user).data)
        client = ApiClient.objects.select_related("tenant").get(pk=principal.api_client_id)
        return Response(MeApiClientOutputSerializer(client).data)


# --- Tenant members --------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Members of the caller's tenant",
        responses={200: UserOutputSerializer(many=True), **error_responses(401, 403, 429)},
    ),
    retrieve=extend_schema(
        summary="One member of the caller's tenant (another tenant's id answers 404)",
        responses={200: UserOutputSerializer, **error_responses(401, 403, 404, 429)},
    ),
)
class UserViewSet(TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Members of the caller's tenant. Users of any role; API clients with the
    `tenant:read` scope."""

    queryset = User.objects.select_related("membership")
    serializer_class = UserOutputSerializer
    tenant_field = "membership__tenant_id"
    required_role = Role.MEMBER
    required_scope = ApiScope.TENANT_READ


# --- API clients ---------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="API clients of the caller's tenant",
        responses={200: ApiClientOutputSerializer(many=True), **error_responses(401, 403, 429)},
    ),
    retrieve=extend_schema(
        summary="One API client (another tenant's id answers 404)",
        responses={200: ApiClientOutputSerializer, **error_responses(401, 403, 404, 429)},
    ),
    create=extend_schema(
        summary="Create an API client; the response carries its key, shown this once",
        request=ApiClientCreateInputSerializer,
        responses={201: ApiClientCreateOutputSerializer, **error_responses(400, 401, 403, 429)},
    ),
    destroy=extend_schema(
        summary="Revoke an API client's key for good (idempotent)",
        responses={204: None, **error_responses(401, 403, 404, 429)},
    ),
)
class ApiClientViewSet(
    TenantScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """API clients (partner keys) of the caller's tenant. Tenant admins only."""

    queryset = ApiClient.objects.all()
    serializer_class = ApiClientOutputSerializer
    # Tenant admins only; API clients cannot manage API clients (no scope grants it).
    required_role = Role.ADMIN
    required_scope = None

    def create(self, request):
        serializer = ApiClientCreateInputSerializer(data=request.data, context={"tenant_id": self.principal.tenant_id})
        serializer.is_valid(raise_exception=True)
        issued = api_client_create(
            tenant=self.get_tenant(),
            name=serializer.validated_data["name"],
            scopes=serializer.validated_data["scopes"],
            actor=Actor.from_principal(self.principal),
            context=RequestContext.from_request(request),
        )
        output = ApiClientCreateOutputSerializer(issued.client, context={"key": issued.key})
        return Response(output.data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        api_client_revoke(
            client=self.get_object(),
            actor=Actor.from_principal(self.principal),
            context=RequestContext.from_request(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
