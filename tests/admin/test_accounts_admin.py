"""Identity admin: audited edits, API keys shown once, deactivation through the service."""

from __future__ import annotations

import hashlib
import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.constants import ApiScope
from accounts.models import ApiClient, Tenant
from accounts.services.api_clients import api_client_create
from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.selectors import audit_chains_verify
from audit.services import Actor
from tests.factories import TenantFactory, UserFactory

from .conftest import changeform_data

pytestmark = pytest.mark.django_db

KEY_PATTERN = re.compile(r"sa_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_tenant_change_is_audited(superuser_client, superuser, tenant):
    url = reverse("admin:accounts_tenant_change", args=[tenant.pk])
    data = changeform_data(superuser_client.get(url))
    data["name"] = "Acme Corporation"

    response = superuser_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.name == "Acme Corporation"
    [event] = _events(AuditAction.ADMIN_CHANGED)
    assert (event.tenant_id, event.target_type, event.target_id) == (tenant.pk, "accounts.tenant", str(tenant.pk))
    assert (event.actor_type, event.actor_id, event.actor_label) == ("user", superuser.pk, "root-admin")
    assert event.ip == "127.0.0.1"
    assert event.details == {"object": "acme", "change_message": [{"changed": {"fields": ["Name"]}}]}
    assert all(result.ok for result in audit_chains_verify())


def test_tenant_add_and_delete_are_audited(superuser_client):
    response = superuser_client.post(
        reverse("admin:accounts_tenant_add"),
        {"slug": "initech", "name": "Initech", "tier": "pro", "status": "active", "locale": "fr"},
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.locale == "fr"

    response = superuser_client.post(reverse("admin:accounts_tenant_delete", args=[tenant.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    [added] = _events(AuditAction.ADMIN_ADDED)
    [deleted] = _events(AuditAction.ADMIN_DELETED)
    assert added.target_id == deleted.target_id == str(tenant.pk)
    assert added.details["change_message"] == [{"added": {}}]
    assert deleted.details == {"object": "initech", "change_message": []}
    # The trail outlives the tenant: its chain still verifies.
    [result] = audit_chains_verify(chain_keys=[tenant.pk])
    assert result.summary() == f"chain tenant#{tenant.pk}: OK, 2 events, head seq 2"


def test_bulk_delete_action_is_audited_per_object(superuser_client):
    doomed = [TenantFactory(slug="old-1"), TenantFactory(slug="old-2")]

    response = superuser_client.post(
        reverse("admin:accounts_tenant_changelist"),
        {"action": "delete_selected", "_selected_action": [t.pk for t in doomed], "post": "yes"},
    )

    assert response.status_code == 302
    assert sorted(e.target_id for e in _events(AuditAction.ADMIN_DELETED)) == sorted(str(t.pk) for t in doomed)


def test_api_client_creation_shows_the_key_once_and_stores_its_hash(superuser_client, superuser, tenant):
    response = superuser_client.post(
        reverse("admin:accounts_apiclient_add"),
        {"tenant": tenant.pk, "name": "billing", "scopes": [ApiScope.TENANT_READ, ApiScope.ALERTS_READ]},
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [key] = KEY_PATTERN.findall(response.content.decode())
    client = ApiClient.objects.get(tenant=tenant, name="billing")
    assert client.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.split("_")[1] == client.key_prefix
    assert all(key not in str(value) for value in vars(client).values())
    assert client.scopes == [ApiScope.ALERTS_READ, ApiScope.TENANT_READ]
    assert client.created_by_id == superuser.pk

    change_page = superuser_client.get(reverse("admin:accounts_apiclient_change", args=[client.pk]))
    assert key not in change_page.content.decode()
    [created] = _events(AuditAction.API_CLIENT_CREATED)
    [added] = _events(AuditAction.ADMIN_ADDED)
    assert created.actor_id == added.actor_id == superuser.pk
    assert created.target_id == added.target_id == str(client.pk)


def test_api_client_duplicate_name_is_a_form_error(superuser_client, tenant):
    api_client_create(tenant=tenant, name="billing", scopes=[], actor=Actor.system())

    response = superuser_client.post(reverse("admin:accounts_apiclient_add"), {"tenant": tenant.pk, "name": "billing"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert ApiClient.objects.filter(tenant=tenant).count() == 1


def test_api_client_key_fields_are_never_editable(superuser_client, tenant):
    issued = api_client_create(tenant=tenant, name="billing", scopes=[], actor=Actor.system())
    url = reverse("admin:accounts_apiclient_change", args=[issued.client.pk])
    response = superuser_client.get(url)

    form = response.context["adminform"].form
    assert set(form.fields) == {"name", "scopes"}
    assert issued.client.key_hash not in response.content.decode()

    data = changeform_data(response)
    data.update({"key_prefix": "forged", "key_hash": "0" * 64, "name": "billing-v2"})
    assert superuser_client.post(url, data).status_code == 302
    client = ApiClient.objects.get(pk=issued.client.pk)
    assert (client.name, client.key_prefix, client.key_hash) == (
        "billing-v2",
        issued.client.key_prefix,
        issued.client.key_hash,
    )
    assert superuser_client.post(reverse("admin:accounts_apiclient_delete", args=[client.pk])).status_code == 403


def test_revoke_action_calls_the_service(superuser_client, superuser, tenant):
    clients = [api_client_create(tenant=tenant, name=n, scopes=[], actor=Actor.system()).client for n in "ab"]

    response = superuser_client.post(
        reverse("admin:accounts_apiclient_changelist"),
        {"action": "revoke", "_selected_action": [c.pk for c in clients]},
    )

    assert response.status_code == 302
    assert all(c.revoked_at is not None for c in ApiClient.objects.filter(pk__in=[c.pk for c in clients]))
    revoked = _events(AuditAction.API_CLIENT_REVOKED)
    assert sorted(e.target_id for e in revoked) == sorted(str(c.pk) for c in clients)
    assert {e.actor_id for e in revoked} == {superuser.pk}


def test_user_deactivation_from_the_change_form_goes_through_the_service(superuser_client, superuser, user):
    url = reverse("admin:accounts_user_change", args=[user.pk])
    data = changeform_data(superuser_client.get(url))
    assert data.pop("is_active") == "on"
    data["display_name"] = "Alice A."

    response = superuser_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.is_active is False
    assert user.display_name == "Alice A."
    assert user.sessions_revoked_at is not None and user.token_generation == 1  # the service revoked the sessions
    [deactivated] = _events(AuditAction.USER_DEACTIVATED)
    assert (deactivated.actor_id, deactivated.tenant_id, deactivated.target_id) == (
        superuser.pk,
        user.membership.tenant_id,
        str(user.pk),
    )
    [changed] = _events(AuditAction.ADMIN_CHANGED)
    assert changed.tenant_id == user.membership.tenant_id
    assert changed.target_type == "accounts.user"


def test_user_change_without_activity_change_does_not_deactivate(superuser_client, user):
    url = reverse("admin:accounts_user_change", args=[user.pk])
    data = changeform_data(superuser_client.get(url))
    data["email"] = "alice@example.org"

    assert superuser_client.post(url, data).status_code == 302

    user.refresh_from_db()
    assert (user.email, user.is_active) == ("alice@example.org", True)
    assert not _events(AuditAction.USER_DEACTIVATED)


def test_deactivate_and_reactivate_actions(superuser_client, superuser, user, member):
    url = reverse("admin:accounts_user_changelist")
    selected = [user.pk, member.pk, superuser.pk]

    superuser_client.post(url, {"action": "deactivate_users", "_selected_action": selected})

    users = get_user_model().objects.in_bulk(selected)
    assert (users[user.pk].is_active, users[member.pk].is_active) == (False, False)
    assert users[superuser.pk].is_active is True  # never one's own account
    assert sorted(e.target_id for e in _events(AuditAction.USER_DEACTIVATED)) == sorted([str(user.pk), str(member.pk)])

    superuser_client.post(url, {"action": "reactivate_users", "_selected_action": [user.pk]})

    assert get_user_model().objects.get(pk=user.pk).is_active is True
    [reactivated] = _events(AuditAction.USER_REACTIVATED)
    assert reactivated.actor_id == superuser.pk


def test_user_changelist_shows_tenant_and_role(superuser_client, user, other_user):
    response = superuser_client.get(
        reverse("admin:accounts_user_changelist"), {"membership__tenant__id__exact": user.membership.tenant_id}
    )

    assert [u.username for u in response.context["cl"].result_list] == ["alice"]
    content = response.content.decode()
    assert "acme" in content
    assert "Member" in content


def test_user_added_with_a_membership_is_audited_in_its_tenant(superuser_client, tenant):
    response = superuser_client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "carol",
            "usable_password": "true",
            "password1": "a-long-enough-passphrase-2026",
            "password2": "a-long-enough-passphrase-2026",
            "membership-TOTAL_FORMS": "1",
            "membership-INITIAL_FORMS": "0",
            "membership-MIN_NUM_FORMS": "0",
            "membership-MAX_NUM_FORMS": "1",
            "membership-0-tenant": tenant.pk,
            "membership-0-role": "moderator",
        },
    )

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    carol = get_user_model().objects.get(username="carol")
    assert (carol.membership.tenant_id, carol.membership.role) == (tenant.pk, "moderator")
    [added] = _events(AuditAction.ADMIN_ADDED)
    assert (added.tenant_id, added.target_id) == (tenant.pk, str(carol.pk))
    assert {"added": {"name": "membership", "object": str(carol.membership)}} in added.details["change_message"]


def test_staff_without_tenant_is_audited_globally(superuser_client):
    staff = UserFactory(username="ops", tenant=None, is_staff=True)
    url = reverse("admin:accounts_user_change", args=[staff.pk])
    data = changeform_data(superuser_client.get(url))
    data["first_name"] = "Op"

    assert superuser_client.post(url, data).status_code == 302

    [changed] = _events(AuditAction.ADMIN_CHANGED)
    assert changed.tenant_id is None
