"""/api/v1/api-clients/: tenant admins manage partner keys; the key authenticates
on any endpoint until it is revoked."""

from __future__ import annotations

import pytest

from accounts.constants import ApiScope, Role
from accounts.models import ApiClient
from accounts.services.api_clients import api_client_create
from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.services import Actor
from tests.factories import UserFactory

from .conftest import API_CLIENTS_URL, ME_URL, USERS_URL, api_key_client, bearer, error_of, login

pytestmark = pytest.mark.django_db


def _detail_url(client_id: int) -> str:
    return f"{API_CLIENTS_URL}{client_id}/"


def test_admin_creates_a_client_and_sees_the_key_once(tenant_admin_client, tenant_admin, tenant):
    response = tenant_admin_client.post(
        API_CLIENTS_URL, {"name": "billing", "scopes": [ApiScope.TENANT_READ]}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "billing"
    assert body["scopes"] == [ApiScope.TENANT_READ]
    assert body["is_active"] is True
    assert body["key"].startswith(f"sa_{body['key_prefix']}_")
    client = ApiClient.objects.get(pk=body["id"])
    assert client.tenant_id == tenant.pk
    assert client.created_by_id == tenant_admin.pk
    assert body["key"] not in client.key_hash
    event = AuditEvent.objects.get(action=AuditAction.API_CLIENT_CREATED)
    assert event.actor_id == tenant_admin.pk

    listed = tenant_admin_client.get(API_CLIENTS_URL).json()["results"]
    detail = tenant_admin_client.get(_detail_url(body["id"])).json()
    assert [c["id"] for c in listed] == [body["id"]]
    assert "key" not in listed[0]
    assert "key" not in detail
    assert body["key"] not in str(listed) + str(detail)

    # The key works at once, on any endpoint its scopes allow.
    assert api_key_client(body["key"]).get(USERS_URL).status_code == 200


def test_create_validates_scopes_and_name(tenant_admin_client, partner):
    unknown = tenant_admin_client.post(API_CLIENTS_URL, {"name": "x", "scopes": ["root:all"]}, format="json")
    empty = tenant_admin_client.post(API_CLIENTS_URL, {"name": "x", "scopes": []}, format="json")
    duplicate = tenant_admin_client.post(
        API_CLIENTS_URL, {"name": partner[0].name, "scopes": [ApiScope.TENANT_READ]}, format="json"
    )

    for response in (unknown, empty):
        assert response.status_code == 400
        assert "scopes" in error_of(response)["details"]["fields"]
    assert duplicate.status_code == 400
    assert "name" in error_of(duplicate)["details"]["fields"]


@pytest.mark.parametrize("role", [Role.MEMBER, Role.MODERATOR])
def test_members_and_moderators_are_forbidden(api, tenant, partner, role):
    person = UserFactory(username=f"p-{role}", tenant=tenant, role=role)
    client = bearer(login(api, person.username)["access"])

    responses = [
        client.get(API_CLIENTS_URL),
        client.get(_detail_url(partner[0].pk)),
        client.post(API_CLIENTS_URL, {"name": "x", "scopes": [ApiScope.TENANT_READ]}, format="json"),
        client.delete(_detail_url(partner[0].pk)),
    ]

    assert [r.status_code for r in responses] == [403] * 4
    assert {error_of(r)["code"] for r in responses} == {"forbidden"}
    assert ApiClient.objects.get(pk=partner[0].pk).is_active


def test_api_clients_cannot_manage_api_clients(partner, tenant, tenant_admin):
    almighty = api_client_create(tenant=tenant, name="almighty", scopes=list(ApiScope.values), actor=Actor.system())
    client = api_key_client(almighty.key)

    assert client.get(API_CLIENTS_URL).status_code == 403
    assert client.delete(_detail_url(partner[0].pk)).status_code == 403


def test_another_tenants_client_answers_404(tenant_admin_client, other_tenant, other_user):
    foreign = api_client_create(
        tenant=other_tenant, name="foreign", scopes=[ApiScope.TENANT_READ], actor=Actor.user(other_user)
    ).client

    read = tenant_admin_client.get(_detail_url(foreign.pk))
    revoke = tenant_admin_client.delete(_detail_url(foreign.pk))
    listed = tenant_admin_client.get(API_CLIENTS_URL).json()["results"]

    for response in (read, revoke):
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
    assert foreign.pk not in [c["id"] for c in listed]
    foreign.refresh_from_db()
    assert foreign.is_active


def test_revoking_refuses_the_key_at_once(tenant_admin_client, partner):
    client_row, key = partner
    partner_api = api_key_client(key)
    assert partner_api.get(ME_URL).status_code == 200

    response = tenant_admin_client.delete(_detail_url(client_row.pk))

    assert response.status_code == 204
    refused = partner_api.get(ME_URL)
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "api_key_revoked"
    assert tenant_admin_client.get(_detail_url(client_row.pk)).json()["is_active"] is False
    # Idempotent: a second revoke answers the same and records nothing new.
    assert tenant_admin_client.delete(_detail_url(client_row.pk)).status_code == 204
    assert AuditEvent.objects.filter(action=AuditAction.API_CLIENT_REVOKED).count() == 1


@pytest.mark.parametrize("header", ["Api-Key sa_nope_nope", "Api-Key garbage", "Api-Key"])
def test_unknown_or_malformed_keys_are_401(db, header):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get(ME_URL)

    assert response.status_code == 401
    assert error_of(response)["code"] == "api_key_invalid"


def test_a_forged_secret_with_a_real_prefix_is_refused(partner):
    _client, key = partner
    prefix = key.rsplit("_", 1)[0]

    response = api_key_client(f"{prefix}_{'A' * 43}").get(ME_URL)

    assert response.status_code == 401
    assert error_of(response)["code"] == "api_key_invalid"
