"""Fixtures of the notifications tests."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.constants import ApiScope, Role
from accounts.services.api_clients import api_client_authenticate, api_client_create
from accounts.services.tokens import principal_for_user, token_pair_issue
from audit.services import Actor
from tests.factories import UserFactory
from tests.notifications.workers import queue, services  # noqa: F401  (fixtures of the worker tests)


@pytest.fixture(autouse=True)
def _routing_rules(request):
    """The routing rules migration 0002 seeds. The flush that ends any transactional
    test of the suite (here or elsewhere) empties the table, so every database
    test of this package puts them back first."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    from tests.notifications.servers import routing_rules_seed

    routing_rules_seed()


# --- Sending, routing, inbox, preferences, REST ------------------------------------------

# A Web Push subscription's keys as a browser gives them (65-byte P-256 point, 16-byte secret).
P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"
APNS_TOKEN = "a" * 64


def principal_of(user):
    """The ``Principal`` a request of ``user`` carries."""
    return principal_for_user(user)


@pytest.fixture
def tenant_admin(tenant):
    return UserFactory(username="ada", tenant=tenant, role=Role.ADMIN)


@pytest.fixture
def admin_principal(tenant_admin):
    return principal_of(tenant_admin)


@pytest.fixture
def member_principal(user):
    return principal_of(user)


@pytest.fixture
def bob(tenant):
    return UserFactory(username="bob", tenant=tenant)


def issue_client(tenant, *scopes: str, name: str = "partner"):
    """An API client of ``tenant`` with ``scopes``: (row, key)."""
    issued = api_client_create(tenant=tenant, name=name, scopes=list(scopes), actor=Actor.system("tests"))
    return issued.client, issued.key


@pytest.fixture
def sender_client(tenant):
    """An API client allowed to send and read statuses."""
    return issue_client(tenant, ApiScope.NOTIFICATIONS_SEND, ApiScope.NOTIFICATIONS_READ)


def api_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def logged_in(user) -> APIClient:
    """A client sending ``user``'s real access token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user).access}")
    return client


def key_principal(key: str):
    return api_client_authenticate(raw_key=key)[1]
