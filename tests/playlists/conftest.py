"""Fixtures of the playlist tests: users of two tenants as principals, a small
catalog per tenant, and a playlist alice owns with bob as an editor."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from accounts.services.tokens import principal_for_user
from playlists.constants import CollaboratorRole, Visibility
from playlists.models import Track
from playlists.services.playlists import playlist_create
from playlists.services.sharing import collaborator_set
from tests.factories import UserFactory


def as_principal(user):
    return principal_for_user(user)


def make_tracks(tenant, count: int, *, prefix: str = "t") -> list[Track]:
    return [
        Track.objects.create(
            tenant=tenant,
            uri=f"test:{prefix}:{number}",
            title=f"Song {prefix}{number}",
            artist=f"Artist {number % 3}",
            duration_ms=180_000 + number,
        )
        for number in range(count)
    ]


@pytest.fixture
def bob(tenant):
    return UserFactory(username="bob", tenant=tenant)


@pytest.fixture
def carol(tenant):
    return UserFactory(username="carol", tenant=tenant)


@pytest.fixture
def people(user, bob, carol, other_user):
    """alice (owner), bob (editor), carol (no role yet) of one tenant; dave of another."""
    return SimpleNamespace(
        alice=as_principal(user), bob=as_principal(bob), carol=as_principal(carol), dave=as_principal(other_user)
    )


@pytest.fixture
def tracks(tenant):
    return make_tracks(tenant, 10)


@pytest.fixture
def foreign_tracks(other_tenant):
    return make_tracks(other_tenant, 3, prefix="x")


@pytest.fixture
def playlist(people, bob):
    """A private playlist alice owns, with bob as an editor."""
    playlist = playlist_create(actor=people.alice, title="Road trip", visibility=Visibility.PRIVATE)
    collaborator_set(actor=people.alice, playlist_id=playlist.pk, user_id=bob.pk, role=CollaboratorRole.EDITOR)
    return playlist
