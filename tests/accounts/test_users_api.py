"""/api/v1/users/: the caller's tenant's members, and nobody else's."""

from __future__ import annotations

import pytest

from accounts.constants import ApiScope, Role
from accounts.services.api_clients import api_client_create
from audit.services import Actor
from tests.factories import UserFactory

from .conftest import USERS_URL, api_key_client, error_of

pytestmark = pytest.mark.django_db


def test_list_shows_only_the_callers_tenant(user_client, user, tenant_admin, other_user):
    response = user_client.get(USERS_URL)

    assert response.status_code == 200
    results = response.json()["results"]
    assert {u["id"] for u in results} == {user.pk, tenant_admin.pk}
    assert other_user.pk not in {u["id"] for u in results}
    by_id = {u["id"]: u for u in results}
    assert by_id[tenant_admin.pk]["role"] == Role.ADMIN
    assert set(by_id[user.pk]) == {"id", "username", "display_name", "role", "is_active", "date_joined"}


def test_list_is_cursor_paginated(user_client, tenant, user):
    for n in range(4):
        UserFactory(username=f"member{n}", tenant=tenant)

    seen, url, pages = [], f"{USERS_URL}?page_size=2", 0
    while url:
        body = user_client.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        assert len(body["results"]) <= 2
        seen += [u["id"] for u in body["results"]]
        url, pages = body["next"], pages + 1

    assert pages == 3
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)


def test_retrieve_own_tenants_member(user_client, tenant_admin):
    response = user_client.get(f"{USERS_URL}{tenant_admin.pk}/")

    assert response.status_code == 200
    assert response.json()["username"] == tenant_admin.username


def test_another_tenants_user_answers_404_like_a_missing_one(user_client, other_user):
    foreign = user_client.get(f"{USERS_URL}{other_user.pk}/")
    missing = user_client.get(f"{USERS_URL}999999/")

    assert foreign.status_code == missing.status_code == 404
    assert error_of(foreign) == error_of(missing)


def test_api_client_with_tenant_read_lists_its_tenants_users(partner, user, other_user):
    _client, key = partner

    response = api_key_client(key).get(USERS_URL)
    foreign = api_key_client(key).get(f"{USERS_URL}{other_user.pk}/")

    assert response.status_code == 200
    assert user.pk in {u["id"] for u in response.json()["results"]}
    assert other_user.pk not in {u["id"] for u in response.json()["results"]}
    assert foreign.status_code == 404


def test_api_client_without_tenant_read_is_forbidden(tenant):
    issued = api_client_create(tenant=tenant, name="sender", scopes=[ApiScope.NOTIFICATIONS_SEND], actor=Actor.system())

    response = api_key_client(issued.key).get(USERS_URL)

    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"
