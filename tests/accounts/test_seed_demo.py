"""``manage.py seed_demo``: idempotent, working credentials, tenants kept apart."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from itertools import pairwise

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from accounts.models import Membership, Tenant, User
from accounts.services.demo import DEMO_TRACKS_FILE, LISTENING_MOODS, LISTENING_SESSIONS
from chat.constants import RoomKind
from chat.models import Room, RoomMember
from playlists.constants import Visibility
from playlists.models import Playlist, PlaylistItem, Track, TrackPlay

PASSWORD = "seed-demo-pass-2026"
MODELS = [Tenant, User, Membership, Room, RoomMember, Track, TrackPlay, Playlist, PlaylistItem]


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
        "Track": 300,
        "TrackPlay": first["TrackPlay"],
        # "Friday Mix", and one playlist per listening mood of alice, bob and carol.
        "Playlist": 1 + sum(len(moods) for moods in LISTENING_MOODS.values()),
        "PlaylistItem": first["PlaylistItem"],
    }
    assert first["PlaylistItem"] > 6
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
    assert Track.objects.for_tenant(demo).count() == 300
    assert not TrackPlay.objects.for_tenant(other).exists()

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
    # Made through the edit service: one revision in the op log, bob an editor.
    assert playlist.revision == 1
    assert [op["op"] for op in playlist.ops.get(revision=1).ops] == ["insert"] * 6
    assert dict(playlist.collaborators.values_list("user__username", "role")) == {"alice": "owner", "bob": "editor"}
    # A playlist per mood of each user, of tracks of that mood's scene.
    assert Playlist.objects.filter(tenant=demo, visibility=Visibility.PRIVATE).count() == sum(
        len(moods) for moods in LISTENING_MOODS.values()
    )


@pytest.mark.django_db
def test_seeded_listening_history_is_sessions_of_the_users_own_tenant():
    seed("--password", PASSWORD)
    demo = Tenant.objects.get(slug="demo")
    gap = timedelta(minutes=settings.SUGGESTION_SESSION_GAP_MINUTES)

    for username in ("alice", "bob", "carol"):
        plays = list(TrackPlay.objects.filter(user__username=username).select_related("track").order_by("played_at"))
        assert {(p.tenant_id, p.track.tenant_id) for p in plays} == {(demo.pk, demo.pk)}
        sessions = 1 + sum(1 for a, b in pairwise(plays) if b.played_at - a.played_at > gap)
        assert sessions == LISTENING_SESSIONS
        assert 5 * LISTENING_SESSIONS <= len(plays) <= 9 * LISTENING_SESSIONS
    assert not TrackPlay.objects.filter(user__username="dave").exists()


@pytest.mark.django_db
def test_seeding_again_keeps_an_existing_listening_history():
    seed("--password", PASSWORD)
    alice = User.objects.get(username="alice")
    TrackPlay.objects.filter(user=alice).exclude(pk=TrackPlay.objects.filter(user=alice).first().pk).delete()

    seed("--password", PASSWORD)

    assert TrackPlay.objects.filter(user=alice).count() == 1


def test_the_demo_catalog_keeps_its_first_tracks_and_unique_uris():
    rows = json.loads(DEMO_TRACKS_FILE.read_text(encoding="utf-8"))

    assert len(rows) == 300
    assert [row["uri"] for row in rows] == [f"demo:track:{n:04d}" for n in range(1, 301)]
    # The first tracks predate the larger catalog; demo data built on them stays valid.
    assert rows[0] == {
        "uri": "demo:track:0001",
        "title": "Neon Harbour",
        "artist": "The Paper Comets",
        "album": "Low Tide Lights",
        "duration_ms": 214000,
        "tempo": 118.0,
        "energy": 0.72,
        "danceability": 0.66,
        "valence": 0.58,
    }
    for row in rows:
        assert 120_000 <= row["duration_ms"] <= 420_000
        assert 60 <= row["tempo"] <= 180
        assert all(0 <= row[name] <= 1 for name in ("energy", "danceability", "valence"))
