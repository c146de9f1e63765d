"""Input and output shapes of the accounts REST API.

Input serializers only parse and validate; the services do the work. The token
endpoints keep simplejwt's field names (``username``/``password`` in,
``access``/``refresh`` out, ``refresh`` and ``token`` for refresh and verify),
so simplejwt clients work unchanged. docs/api.md lists every endpoint.
"""

from __future__ import annotations

from rest_framework import serializers

from ..constants import ApiScope
from ..models import ApiClient, Tenant, User

# --- Tokens ----------------------------------------------------------------------


class TokenObtainInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=4096, write_only=True, trim_whitespace=False)


class TokenPairOutputSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Access token (JWT, short-lived): `Authorization: Bearer <access>`.")
    refresh = serializers.CharField(help_text="Refresh token (JWT): single use, rotated by /auth/token/refresh/.")


class TokenRefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096)


class TokenVerifyInputSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=4096)


class TokenVerifyOutputSerializer(serializers.Serializer):
    """An empty object: the token is valid (simplejwt's shape)."""


class WsTicketOutputSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text="Single use; pass it to the WebSocket as `?ticket=`.")
    expires_at = serializers.DateTimeField()


# --- Identity ----------------------------------------------------------------------


class TenantOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "slug", "name", "tier"]
        read_only_fields = fields


class MeUserOutputSerializer(serializers.ModelSerializer):
    role = serializers.CharField(source="membership.role")
    tenant = TenantOutputSerializer(source="membership.tenant")

    class Meta:
        model = User
        fields = ["id", "username", "email", "display_name", "role", "tenant"]
        read_only_fields = fields


class ApiClientSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiClient
        fields = ["id", "name", "scopes"]
        read_only_fields = fields


class MeApiClientOutputSerializer(serializers.Serializer):
    api_client = ApiClientSummarySerializer(source="*")
    tenant = TenantOutputSerializer()


class UserOutputSerializer(serializers.ModelSerializer):
    role = serializers.CharField(source="membership.role")

    class Meta:
        model = User
        fields = ["id", "username", "display_name", "role", "is_active", "date_joined"]
        read_only_fields = fields


# --- API clients -------------------------------------------------------------------


class ApiClientOutputSerializer(serializers.ModelSerializer):
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiScope.choices))
    is_active = serializers.BooleanField()

    class Meta:
        model = ApiClient
        fields = ["id", "name", "scopes", "key_prefix", "is_active", "created_at", "revoked_at", "last_used_at"]
        read_only_fields = fields


class ApiClientCreateOutputSerializer(ApiClientOutputSerializer):
    key = serializers.SerializerMethodField(help_text="The API key. Shown in this response only: store it now.")

    class Meta(ApiClientOutputSerializer.Meta):
        fields = [*ApiClientOutputSerializer.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, obj) -> str:
        return self.context["key"]


class ApiClientCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiScope.choices), allow_empty=False)

    def validate_name(self, value: str) -> str:
        # The unique constraint is per tenant; say so politely before it fires.
        if ApiClient.objects.for_tenant(self.context["tenant_id"]).filter(name=value).exists():
            raise serializers.ValidationError("An API client with this name already exists.")
        return value
