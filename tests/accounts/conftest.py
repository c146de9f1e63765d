"""Fixtures of the accounts API tests: an API client, logged-in users of each
role, and an API key."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from accounts.constants import ApiScope, Role
from accounts.services.api_clients import api_client_create
from audit.services import Actor
from tests.factories import DEFAULT_PASSWORD, UserFactory

TOKEN_URL = "/api/v1/auth/token/"
REFRESH_URL = "/api/v1/auth/token/refresh/"
VERIFY_URL = "/api/v1/auth/token/verify/"
WS_TICKET_URL = "/api/v1/auth/ws-ticket/"
ME_URL = "/api/v1/me/"
USERS_URL = "/api/v1/users/"
API_CLIENTS_URL = "/api/v1/api-clients/"


def login(client: APIClient, username: str, password: str = DEFAULT_PASSWORD) -> dict:
    response = client.post(TOKEN_URL, {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def api_key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def error_of(response) -> dict:
    """The ``error`` object of an answer, after checking the shape is exactly ours."""
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def tenant_admin(tenant):
    return UserFactory(username="ada", tenant=tenant, role=Role.ADMIN)


@pytest.fixture
def moderator(tenant):
    return UserFactory(username="mo", tenant=tenant, role=Role.MODERATOR)


@pytest.fixture
def user_client(api, user):
    return bearer(login(api, user.username)["access"])


@pytest.fixture
def tenant_admin_client(api, tenant_admin):
    return bearer(login(api, tenant_admin.username)["access"])


@pytest.fixture
def partner(tenant, tenant_admin):
    """An API client of ``tenant`` with ``tenant:read``: (client row, key)."""
    issued = api_client_create(
        tenant=tenant, name="partner", scopes=[ApiScope.TENANT_READ], actor=Actor.user(tenant_admin)
    )
    return issued.client, issued.key
