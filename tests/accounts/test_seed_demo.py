"""``manage.py seed_demo``: idempotent, working credentials, tenants kept apart."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Membership, Tenant, User
from chat.constants import RoomKind
from chat.models import Room, RoomMember
from playlists.constants import Visibility
from playlists.models import Playlist, PlaylistItem, Track

PASSWORD = "seed-demo-pass-2026"
MODELS = [Tenant, User, Membership, Room, RoomMember, Track, Playlist, PlaylistItem]


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_seed_demo_twice_creates_everything_once():
    seed("--password", PASSWORD)
    first = counts()

    output = seed("--password", PASSWORD)

    assert counts() == first
    assert first == {
        "Tenant": 2,
        "User": 5,
        "Membership": 4,
        "Room": 5,
        "RoomMember": 10,
        "Track": 20,
        "Playlist": 1,
        "PlaylistItem": 6,
    }
    assert "created: 5 passwords_reset" in output


@pytest.mark.django_db
def test_seeded_users_log_in_with_the_given_password():
    output = seed("--password", PASSWORD)

    for username in ("alice", "bob", "carol", "dave", "admin"):
        assert User.objects.get(username=username).check_password(PASSWORD)
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert admin.tenant_membership is None
    assert PASSWORD in output
    assert "http://127.0.0.1:8000/admin/" in output


@pytest.mark.django_db
def test_seed_demo_without_password_keeps_existing_passwords():
    seed("--password", PASSWORD)

    output = seed()

    assert User.objects.get(username="alice").check_password(PASSWORD)
    assert "(unchanged)" in output


@pytest.mark.django_db
def test_seed_demo_without_password_gives_new_accounts_a_random_one():
    output = seed()

    line = next(line for line in output.splitlines() if line.split()[:1] == ["alice"])
    password = line.split()[-1]
    assert len(password) >= 12
    assert User.objects.get(username="alice").check_password(password)
    assert User.objects.get(username="bob").check_password(password)


@pytest.mark.django_db
def test_seed_demo_refuses_a_weak_password():
    with pytest.raises(CommandError, match="too short"):
        seed("--password", "abc")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_seeded_tenants_are_kept_apart():
    seed("--password", PASSWORD)
    demo, other = Tenant.objects.get(slug="demo"), Tenant.objects.get(slug="other")

    roles = {m.user.username: (m.tenant.slug, m.role) for m in Membership.objects.select_related("user", "tenant")}
    assert roles == {
        "alice": ("demo", "admin"),
        "bob": ("demo", "member"),
        "carol": ("demo", "member"),
        "dave": ("other", "member"),
    }
    for member in RoomMember.objects.select_related("room", "user__membership"):
        assert member.tenant_id == member.room.tenant_id == member.user.membership.tenant_id
    assert set(Room.objects.for_tenant(other).values_list("name", flat=True)) == {"general"}
    assert Track.objects.for_tenant(other).count() == 0
    assert Track.objects.for_tenant(demo).count() == 20

    direct = Room.objects.get(tenant=demo, kind=RoomKind.DIRECT)
    assert set(direct.members.values_list("user__username", flat=True)) == {"alice", "bob"}
    assert set(
        Room.objects.get(tenant=demo, name="band-practice").members.values_list("user__username", flat=True)
    ) == {
        "alice",
        "carol",
    }

    playlist = Playlist.objects.get(title="Friday Mix")
    assert (playlist.owner.username, playlist.tenant_id, playlist.visibility) == (
        "alice",
        demo.pk,
        Visibility.COLLABORATIVE,
    )
    items = list(playlist.items.order_by("position"))
    assert [item.position for item in items] == list(range(6))
    assert all(item.track.tenant_id == demo.pk for item in items)
