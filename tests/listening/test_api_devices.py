"""The devices REST API once through each endpoint with real JWTs: shapes, the
transfer carrying the session's state, bad input, API clients refused, and
other users' and tenants' devices answering 404. The rules themselves are
tested at the service level (test_devices.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.constants import ApiScope
from accounts.services.api_clients import api_client_create
from accounts.services.tokens import principal_for_user, token_pair_issue
from audit.services import Actor
from listening.models import Device
from listening.services.devices import device_register
from listening.services.playback import playback_command
from listening.services.sessions import session_create, session_join
from playlists.services.editing import playlist_apply_op
from tests.accounts.conftest import error_of

pytestmark = pytest.mark.django_db

DEVICES = "/api/v1/me/devices/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user).access}")
    return client


@pytest.fixture
def alice_devices(user):
    alice = principal_for_user(user)
    device_register(actor=alice, device_id="ios:7F3A", name="Phone", kind="phone")
    device_register(actor=alice, device_id="web.1", name="Browser", kind="web")


def test_list_rename_transfer_and_forget(user, bob, tracks, alice_devices):
    api = client_for(user)
    listed = api.get(DEVICES)
    assert listed.status_code == 200, listed.content
    devices = listed.json()["devices"]
    assert [(d["device_id"], d["name"], d["kind"], d["active"]) for d in devices] == [
        ("ios:7F3A", "Phone", "phone", True),
        ("web.1", "Browser", "web", False),
    ]
    assert set(devices[0]) == {"device_id", "name", "kind", "active", "last_seen_at", "created_at"}
    assert devices[0]["last_seen_at"].endswith("Z")

    renamed = api.patch(f"{DEVICES}web.1/", {"name": "  Laptop "}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Laptop"

    # bob hosts a session alice is in; a transfer answers its state.
    bob_p, alice = principal_for_user(bob), principal_for_user(user)
    session = session_create(actor=bob_p, title="Live")
    session_join(actor=alice, session_id=session.pk)
    playlist_apply_op(
        actor=bob_p,
        playlist_id=session.queue_id,
        base_revision=0,
        op={"op": "insert", "index": 0, "track": tracks[0].pk},
        client_op_id="fill",
    )
    playback_command(actor=bob_p, session_id=session.pk, action="play", base_revision=0)
    moved = api.post(f"{DEVICES}web.1/transfer/")
    assert moved.status_code == 200, moved.content
    body = moved.json()
    assert set(body) == {"device", "previous", "changed", "session", "playback", "server_time_ms"}
    assert (body["device"]["device_id"], body["device"]["active"], body["previous"]) == ("web.1", True, "ios:7F3A")
    assert body["changed"] and body["session"] == session.pk
    assert body["playback"]["track"]["id"] == tracks[0].pk and body["playback"]["revision"] == 1
    again = api.post(f"{DEVICES}web.1/transfer/").json()
    assert (again["changed"], again["previous"]) == (False, None)

    assert api.delete(f"{DEVICES}web.1/").status_code == 204
    assert api.get(DEVICES).json()["devices"][0]["active"] is False  # none plays now
    assert error_of(api.delete(f"{DEVICES}web.1/"))["code"] == "not_found"


def test_bad_input_is_400_naming_the_field(user, alice_devices):
    api = client_for(user)
    for body, field in [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({}, "name"),
        ({"name": "Ok", "active": True}, "active"),
        ({"name": "Ok", "kind": "tv"}, "kind"),
    ]:
        response = api.patch(f"{DEVICES}web.1/", body, format="json")
        assert response.status_code == 400, body
        error = error_of(response)
        assert error["code"] == "invalid" and field in error["details"]["fields"], body
    assert Device.objects.get(device_id="web.1").name == "Browser"
    # An id no device can have is simply not found.
    for url in (f"{DEVICES}no%20such/transfer/", f"{DEVICES}missing/", f"{DEVICES}{'x' * 65}/transfer/"):
        response = api.post(url) if url.endswith("transfer/") else api.delete(url)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found", url


def test_other_users_tenants_and_api_clients_never_reach_devices(user, bob, other_user, tenant, alice_devices):
    for stranger in (client_for(bob), client_for(other_user)):
        assert stranger.get(DEVICES).json() == {"devices": []}
        for response in (
            stranger.post(f"{DEVICES}web.1/transfer/"),
            stranger.patch(f"{DEVICES}web.1/", {"name": "Mine"}, format="json"),
            stranger.delete(f"{DEVICES}web.1/"),
        ):
            assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert Device.objects.filter(user=user).count() == 2

    # Devices are a person's: an API client is refused whatever its scopes.
    key = api_client_create(
        tenant=tenant, name="partner", scopes=[scope.value for scope in ApiScope], actor=Actor.system()
    ).key
    partner = APIClient()
    partner.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    for response in (partner.get(DEVICES), partner.post(f"{DEVICES}web.1/transfer/")):
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
    assert error_of(APIClient().get(DEVICES))["code"] == "unauthenticated"
