"""Fixtures of the listening tests: alice hosts, bob and carol listen, dave is
of another tenant; a short catalog with tracks of one second, so the server's
own track advance can be watched."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from accounts.services.tokens import principal_for_user
from playlists.models import Track
from tests.factories import UserFactory


@pytest.fixture
def bob(tenant):
    return UserFactory(username="bob", tenant=tenant)


@pytest.fixture
def carol(tenant):
    return UserFactory(username="carol", tenant=tenant)


@pytest.fixture
def people(user, bob, carol, other_user):
    return SimpleNamespace(
        alice=principal_for_user(user),
        bob=principal_for_user(bob),
        carol=principal_for_user(carol),
        dave=principal_for_user(other_user),
    )


@pytest.fixture
def tracks(tenant):
    return [
        Track.objects.create(
            tenant=tenant, uri=f"test:l:{n}", title=f"Tune {n}", artist="Band", duration_ms=(n + 1) * 60_000
        )
        for n in range(5)
    ]
