"""REST adapters of a user's devices: list, rename, forget, transfer playback.

Devices are a person's players, so these endpoints take a user's JWT; API
clients are refused (``403``: no ``required_scope``). Registering a device is
the WebSocket's ``device.register`` only: a device is a player with a socket.
Every endpoint calls the service the WebSocket ``device.*`` handlers call
(``listening.services.devices``), so both answer the same shapes and errors;
a transfer made here tells the user's sockets (``device.active``) as one made
over the WebSocket does. docs/api.md, "Listening sessions" → "Devices".
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.constants import Role
from spotify_agent.api.schema import error_responses
from spotify_agent.api.views import TenantScopedMixin

from ..constants import DEVICE_NAME_MAX_LENGTH, DeviceKind
from ..selectors import devices_for_user
from ..services.devices import device_forget, device_payload, device_rename, device_transfer

TAGS = ["devices"]

# --- Serializers ------------------------------------------------------------------------------


class DeviceOutputSerializer(serializers.Serializer):
    device_id = serializers.CharField(help_text="The client's own stable id of the device.")
    name = serializers.CharField()
    # A plain string: "kind" already names other enum components of the schema.
    kind = serializers.CharField(help_text=f"One of {', '.join(DeviceKind.values)}.")
    active = serializers.BooleanField(help_text="The device that plays; at most one of the user's is active.")
    last_seen_at = serializers.CharField(help_text="ISO 8601 UTC with milliseconds.")
    created_at = serializers.CharField(help_text="ISO 8601 UTC with milliseconds.")


class DeviceListOutputSerializer(serializers.Serializer):
    devices = DeviceOutputSerializer(many=True, help_text="The active device first, then the most recently seen.")


class DeviceRenameInputSerializer(serializers.Serializer):
    # Types only; the service checks the length (after trimming) and names the field.
    name = serializers.CharField(
        allow_blank=True, trim_whitespace=False, help_text=f"1..{DEVICE_NAME_MAX_LENGTH} characters, trimmed."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        others = sorted(set(self.initial_data) - {"name"})
        if others:
            # "active" changes by a transfer, "kind" by the device registering again.
            raise serializers.ValidationError({field: ["Only name can be changed here."] for field in others})
        return attrs


class DeviceTransferOutputSerializer(serializers.Serializer):
    device = DeviceOutputSerializer(help_text="The device now active.")
    previous = serializers.CharField(
        allow_null=True, help_text="The device_id of the device that stopped; null if none or unchanged."
    )
    changed = serializers.BooleanField(help_text="False when the device was already the active one.")
    session = serializers.IntegerField(allow_null=True, help_text="The live session the user is in; null if none.")
    playback = serializers.JSONField(
        allow_null=True,
        help_text="The session's playback state (docs/protocol.md, 'Listening sessions'), null without a session.",
    )
    server_time_ms = serializers.IntegerField(help_text="The server's clock (Unix ms) when the answer was made.")


# --- Views ------------------------------------------------------------------------------------


class DeviceView(TenantScopedMixin, APIView):
    """Base of the device views: users of any role; API clients are refused
    (no ``required_scope``): devices are a person's."""

    required_role = Role.MEMBER
    required_scope = None


class DeviceListView(DeviceView):
    @extend_schema(
        operation_id="me_devices_list",
        summary="The caller's devices, the active one first (at most 20: not paginated)",
        responses={200: DeviceListOutputSerializer, **error_responses(401, 403, 429)},
        tags=TAGS,
    )
    def get(self, request):
        listed = [device_payload(device) for device in devices_for_user(actor=self.principal)]
        return Response(DeviceListOutputSerializer({"devices": listed}).data)


class DeviceDetailView(DeviceView):
    @extend_schema(
        operation_id="me_devices_rename",
        summary="Rename one of the caller's devices",
        request=DeviceRenameInputSerializer,
        responses={200: DeviceOutputSerializer, **error_responses(400, 401, 403, 404, 429)},
        tags=TAGS,
    )
    def patch(self, request, device_id: str):
        serializer = DeviceRenameInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = device_rename(actor=self.principal, device_id=device_id, name=serializer.validated_data["name"])
        return Response(DeviceOutputSerializer(device_payload(device)).data)

    @extend_schema(
        operation_id="me_devices_forget",
        summary="Forget one of the caller's devices; forgetting the active one leaves none active",
        responses={204: None, **error_responses(401, 403, 404, 429)},
        tags=TAGS,
    )
    def delete(self, request, device_id: str):
        device_forget(actor=self.principal, device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceTransferView(DeviceView):
    @extend_schema(
        operation_id="me_devices_transfer",
        summary="Make the device the one that plays (idempotent); answers the user's session and its "
        "playback state, and every socket of the user gets `device.active`",
        request=None,
        responses={200: DeviceTransferOutputSerializer, **error_responses(401, 403, 404, 429)},
        tags=TAGS,
    )
    def post(self, request, device_id: str):
        result = device_transfer(actor=self.principal, device_id=device_id)
        return Response(DeviceTransferOutputSerializer(result).data)


urlpatterns = [
    path("me/devices/", DeviceListView.as_view(), name="me-devices"),
    path("me/devices/<str:device_id>/", DeviceDetailView.as_view(), name="me-device"),
    path("me/devices/<str:device_id>/transfer/", DeviceTransferView.as_view(), name="me-device-transfer"),
]
