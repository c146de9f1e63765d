"""Demo data for ``make run`` and manual testing (``manage.py seed_demo``).

Creates, idempotently, two tenants that must never see each other's data:

* ``demo``: alice (admin), bob and carol (members); public rooms ``general`` and
  ``indie-lovers``, private ``band-practice``, a direct room of alice and bob; the
  invented catalog in ``demo_tracks.json``; alice's collaborative playlist
  "Friday Mix";
* ``other``: dave and a ``general`` room of its own;

and ``admin``, a staff superuser without a tenant.

Rows are found by natural keys (slug, username, room name, track URI), so a
second run creates nothing. Passwords: a user created by this run gets the
given password, or one random password generated for the run; an existing
user's password is reset only when a password is given, so re-seeding never
locks anybody out of an account they changed.

Seeding is a trusted bootstrap path, like a migration: it writes rows directly
and records no audit events or realtime broadcasts.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from chat.constants import RoomKind, RoomRole
from chat.models import Room, RoomMember
from playlists.constants import Visibility
from playlists.models import Playlist, PlaylistItem, Track

from ..constants import Role, TenantTier
from ..models import Membership, Tenant, User

DEMO_TRACKS_FILE = Path(__file__).with_name("demo_tracks.json")

# (slug, name, tier)
_TENANTS = [("demo", "Demo Records", TenantTier.PRO), ("other", "Other Label", TenantTier.FREE)]
# (username, display name, tenant slug, role)
_USERS = [
    ("alice", "Alice Archer", "demo", Role.ADMIN),
    ("bob", "Bob Brightwater", "demo", Role.MEMBER),
    ("carol", "Carol Castellano", "demo", Role.MEMBER),
    ("dave", "Dave Dunmore", "other", Role.MEMBER),
]
STAFF_USERNAME = "admin"
# (tenant slug, name, kind, topic, [(username, room role)])
_ROOMS = [
    (
        "demo",
        "general",
        RoomKind.PUBLIC,
        "Anything goes",
        [("alice", RoomRole.OWNER), ("bob", RoomRole.MEMBER), ("carol", RoomRole.MEMBER)],
    ),
    (
        "demo",
        "indie-lovers",
        RoomKind.PUBLIC,
        "Small labels, big feelings",
        [("bob", RoomRole.OWNER), ("carol", RoomRole.MEMBER)],
    ),
    (
        "demo",
        "band-practice",
        RoomKind.PRIVATE,
        "Thursday 19:00",
        [("alice", RoomRole.OWNER), ("carol", RoomRole.MEMBER)],
    ),
    ("other", "general", RoomKind.PUBLIC, "Welcome to Other Label", [("dave", RoomRole.OWNER)]),
]
_DIRECT_ROOM = ("demo", "alice", "bob")
PLAYLIST_TITLE = "Friday Mix"
_PLAYLIST_TRACKS = 6


@dataclass(frozen=True)
class DemoAccount:
    username: str
    tenant: str | None
    role: str
    # None: the account existed and its password was left unchanged.
    password: str | None


@dataclass
class DemoSeedResult:
    accounts: list[DemoAccount] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.created[kind] = self.created.get(kind, 0) + 1


@transaction.atomic
def demo_seed(*, password: str | None = None) -> DemoSeedResult:
    """Create whatever of the demo data is missing. Idempotent.

    ``password``, when given, is checked against ``AUTH_PASSWORD_VALIDATORS``
    (``ValidationError`` otherwise) and set on every demo account.
    """
    result = DemoSeedResult()
    new_password = password or secrets.token_urlsafe(12)

    tenants = {}
    for slug, name, tier in _TENANTS:
        tenants[slug], created = Tenant.objects.get_or_create(slug=slug, defaults={"name": name, "tier": tier})
        if created:
            result.count("tenants")

    users = {}
    for username, display_name, tenant_slug, role in _USERS:
        user, password_set = _user(
            result, username=username, display_name=display_name, password=password, new_password=new_password
        )
        _, created = Membership.objects.update_or_create(
            user=user, defaults={"tenant": tenants[tenant_slug], "role": role}
        )
        if created:
            result.count("memberships")
        users[username] = user
        result.accounts.append(DemoAccount(username, tenant_slug, role, password_set))
    _, password_set = _user(
        result,
        username=STAFF_USERNAME,
        display_name="Operator",
        password=password,
        new_password=new_password,
        staff=True,
    )
    result.accounts.append(DemoAccount(STAFF_USERNAME, None, "staff", password_set))

    for tenant_slug, name, kind, topic, members in _ROOMS:
        room, created = Room.objects.get_or_create(
            tenant=tenants[tenant_slug],
            name=name,
            kind=kind,
            defaults={"topic": topic, "created_by": users[members[0][0]]},
        )
        if created:
            result.count("rooms")
        for username, room_role in members:
            _room_member(result, room=room, user=users[username], role=room_role)

    tenant_slug, first, second = _DIRECT_ROOM
    direct = (
        Room.objects.filter(tenant=tenants[tenant_slug], kind=RoomKind.DIRECT, members__user=users[first])
        .filter(members__user=users[second])
        .first()
    )
    if direct is None:
        direct = Room.objects.create(
            tenant=tenants[tenant_slug], kind=RoomKind.DIRECT, name=f"{first}, {second}", created_by=users[first]
        )
        result.count("rooms")
    for username in (first, second):
        _room_member(result, room=direct, user=users[username], role=RoomRole.MEMBER)

    tracks = _tracks(result, tenant=tenants["demo"])
    _playlist(result, owner=users["alice"], tracks=tracks[:_PLAYLIST_TRACKS])
    return result


def _user(
    result: DemoSeedResult,
    *,
    username: str,
    display_name: str,
    password: str | None,
    new_password: str,
    staff: bool = False,
) -> tuple[User, str | None]:
    """The user, created if missing, and the password set on it by this call (if any)."""
    user = User.objects.filter(username__iexact=username).first()
    created = user is None
    if created:
        user = User(
            username=username,
            email=f"{username}@example.com",
            display_name=display_name,
            is_staff=staff,
            is_superuser=staff,
        )
    elif not password:
        return user, None
    chosen = password or new_password
    validate_password(chosen, user)
    user.set_password(chosen)
    user.save()
    result.count("users" if created else "passwords_reset")
    return user, chosen


def _room_member(result: DemoSeedResult, *, room: Room, user: User, role: str) -> None:
    _, created = RoomMember.objects.get_or_create(
        room=room, user=user, defaults={"tenant_id": room.tenant_id, "role": role}
    )
    if created:
        result.count("room_members")


def _tracks(result: DemoSeedResult, *, tenant: Tenant) -> list[Track]:
    tracks = []
    for row in json.loads(DEMO_TRACKS_FILE.read_text(encoding="utf-8")):
        uri = row.pop("uri")
        track, created = Track.objects.get_or_create(tenant=tenant, uri=uri, defaults=row)
        if created:
            result.count("tracks")
        tracks.append(track)
    return tracks


def _playlist(result: DemoSeedResult, *, owner: User, tracks: list[Track]) -> None:
    playlist, created = Playlist.objects.get_or_create(
        tenant_id=owner.membership.tenant_id,
        owner=owner,
        title=PLAYLIST_TITLE,
        defaults={"visibility": Visibility.COLLABORATIVE, "description": "Warm-up for the weekend."},
    )
    if not created:
        # Demo users may have edited it since; seeding again must not undo that.
        return
    result.count("playlists")
    for position, track in enumerate(tracks):
        PlaylistItem.objects.create(
            tenant_id=playlist.tenant_id, playlist=playlist, track=track, position=position, added_by=owner
        )
        result.count("playlist_items")
