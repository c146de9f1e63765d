"""Demo data for ``make run`` and manual testing (``manage.py seed_demo``).

Creates, idempotently, two tenants that must never see each other's data:

* ``demo``: alice (admin), bob and carol (members); public rooms ``general`` and
  ``indie-lovers``, private ``band-practice``, a direct room of alice and bob; the
  invented catalog in ``playlists/data/demo_tracks.json`` (300 tracks by
  invented artists, in eight "scenes" whose audio features are close, so audio
  similarity means something); a listening history for alice, bob and carol;
  alice's collaborative playlist "Friday Mix" with bob as an editor, and a
  private playlist per "mood" of each user (what suggestions learn from);
* ``other``: dave and a ``general`` room of its own;

and ``admin``, a staff superuser without a tenant.

Rows are found by natural keys (slug, username, room name, track URI), so a
second run creates nothing; a user's listening history is written only while
they have none. Passwords: a user created by this run gets the
given password, or one random password generated for the run; an existing
user's password is reset only when a password is given, so re-seeding never
locks anybody out of an account they changed.

Seeding is a trusted bootstrap path, like a migration: it writes most rows
directly and records no audit events or realtime broadcasts. Playlists are
the exception: they go through the playlist services (created, shared, filled
by one edit), so their op log, snapshots and collaborators are what a real
playlist has. The suggestion model is rebuilt once the seed commits.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

import playlists
from chat.constants import RoomKind, RoomRole
from chat.models import Room, RoomMember
from notifications.templates import templates_load
from playlists.constants import CollaboratorRole, Visibility
from playlists.models import Playlist, Track, TrackPlay
from playlists.services.editing import playlist_apply_op
from playlists.services.playlists import playlist_create
from playlists.services.sharing import collaborator_set
from playlists.tasks import suggestions_rebuild as suggestions_rebuild_task

from ..constants import Role, TenantTier
from ..models import Membership, Tenant, User
from .tokens import principal_for_user

DEMO_TRACKS_FILE = Path(playlists.__file__).parent / "data" / "demo_tracks.json"

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
_MOOD_PLAYLIST_TRACKS = 8
# Listening history: each user's sessions cycle through their "moods" (artists
# of one scene of the demo catalog), so tracks of a scene co-occur in sessions
# as they would for real listeners, which gives suggestions something to learn.
LISTENING_MOODS = {
    "alice": [
        ("Sunny Side Collective", "The Tumble Dryers", "Coin-Op Casanova", "Lint Trap Orchestra"),
        ("Lumen Tapes", "Neon Pelican Society", "Cassiopeia Fax", "Dial-Up Romance"),
    ],
    "bob": [
        ("Velvet Static", "Fennel Drift", "Softcorner", "Yara Moonwell"),
        ("Halvard Brook", "Tamsin Creel", "The Kettle Choir", "Wren & Willowmere"),
        ("Subway Kestrel", "Vantablack Pigeon", "Night Bus 47"),
    ],
    "carol": [
        ("Dusk Municipal", "Bramblewire", "The Paper Comets", "Zoning Board"),
        ("Mira Okonkwo-Lind", "Oda Reyes", "Juniper & the Late Trains", "Pim Vosberg"),
        ("Pencil Shavings", "Marlow Quill", "The Nap Committee", "Tea Steam Tapes"),
    ],
}
LISTENING_SESSIONS = 6  # per user, one a day, the last one yesterday
_SESSION_TRACKS = (5, 9)  # tracks per session, inclusive
# Plays follow each other with this pause: far inside SUGGESTION_SESSION_GAP_MINUTES,
# so each day's plays form one session.
_PAUSE_BETWEEN_PLAYS = timedelta(seconds=20)


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

    def count(self, kind: str, n: int = 1) -> None:
        if n:
            self.created[kind] = self.created.get(kind, 0) + n


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
    for username, moods in LISTENING_MOODS.items():
        _listening_history(result, user=users[username], tracks=tracks, moods=moods)
    _playlist(
        result,
        owner=users["alice"],
        title=PLAYLIST_TITLE,
        tracks=tracks[:_PLAYLIST_TRACKS],
        visibility=Visibility.COLLABORATIVE,
        description="Warm-up for the weekend.",
        editors=(users["bob"],),
    )
    for username, moods in LISTENING_MOODS.items():
        _mood_playlists(result, user=users[username], tracks=tracks, moods=moods)
    # The platform's notification templates (en, fr), so demo sends can use them.
    loaded = templates_load()
    result.count("notification templates", loaded.created)
    # The suggestion model learns from what was just written, once it is committed.
    suggestions_rebuild_task.delay_on_commit(tenants["demo"].pk)
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
    """The catalog in file order; missing URIs are created, existing tracks are
    left as they are (one query to read, one to insert, not one per track)."""
    rows = json.loads(DEMO_TRACKS_FILE.read_text(encoding="utf-8"))
    existing = {track.uri: track for track in Track.objects.for_tenant(tenant)}
    missing = [Track(tenant=tenant, **row) for row in rows if row["uri"] not in existing]
    Track.objects.bulk_create(missing)
    result.count("tracks", len(missing))
    by_uri = {**existing, **{track.uri: track for track in missing}}
    return [by_uri[row["uri"]] for row in rows]


def _listening_history(result: DemoSeedResult, *, user: User, tracks: list[Track], moods: list[tuple]) -> None:
    """``LISTENING_SESSIONS`` sessions of plays for ``user``, written only while
    they have none, so re-seeding never duplicates (or rewrites) their history.

    Which tracks and in what order is fixed per user; the days are counted back
    from the seeding day, so the history is always recent.
    """
    if TrackPlay.objects.filter(user=user).exists():
        return
    # Deterministic demo data, not security: a seeded generator is the point.
    rng = random.Random(f"demo-listening:{user.username}")  # noqa: S311
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    plays = []
    for session in range(LISTENING_SESSIONS):
        mood = moods[session % len(moods)]
        pool = [track for track in tracks if track.artist in mood]
        played_at = today - timedelta(days=LISTENING_SESSIONS - session) + timedelta(hours=rng.randint(8, 21))
        for track in rng.sample(pool, min(len(pool), rng.randint(*_SESSION_TRACKS))):
            plays.append(TrackPlay(tenant_id=track.tenant_id, user=user, track=track, played_at=played_at))
            played_at += timedelta(milliseconds=track.duration_ms) + _PAUSE_BETWEEN_PLAYS
    TrackPlay.objects.bulk_create(plays)
    result.count("track_plays", len(plays))


def _playlist(
    result: DemoSeedResult,
    *,
    owner: User,
    title: str,
    tracks: list[Track],
    visibility: str = Visibility.PRIVATE,
    description: str = "",
    editors: tuple[User, ...] = (),
) -> None:
    """A playlist made the way users make one: created, shared, then filled by one
    edit through the edit service (so it has its history from revision 0)."""
    actor = principal_for_user(owner)
    if Playlist.objects.filter(tenant_id=actor.tenant_id, owner=owner, title=title).exists():
        # Demo users may have edited it since; seeding again must not undo that.
        return
    playlist = playlist_create(actor=actor, title=title, description=description, visibility=visibility)
    for editor in editors:
        collaborator_set(actor=actor, playlist_id=playlist.pk, user_id=editor.pk, role=CollaboratorRole.EDITOR)
    playlist_apply_op(
        actor=actor,
        playlist_id=playlist.pk,
        base_revision=0,
        op={"op": "batch", "ops": [{"op": "insert", "index": i, "track": t.pk} for i, t in enumerate(tracks)]},
        client_op_id="demo-seed",
    )
    result.count("playlists")
    result.count("playlist_items", len(tracks))


def _mood_playlists(result: DemoSeedResult, *, user: User, tracks: list[Track], moods: list[tuple]) -> None:
    """One private playlist per mood of the user: the tracks of a scene that belong
    together, which is what suggestions learn co-occurrence from."""
    for number, mood in enumerate(moods, start=1):
        pool = [track for track in tracks if track.artist in mood]
        _playlist(result, owner=user, title=f"{mood[0]} and friends", tracks=pool[number::3][:_MOOD_PLAYLIST_TRACKS])
