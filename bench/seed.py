"""Benchmark data: one tenant, numbered users, rooms with their members, tokens.

Idempotent: rows that exist are kept, so a second run seeds only what is
missing. Memberships are written up front (``bulk_create``), so a client's
``room.join`` is the already-a-member path on both servers and no
``room.member_joined`` storm distorts the measurement. Access tokens are
minted directly (no refresh token, no ``OutstandingToken`` row) with the
claims ``access_token_authenticate`` checks, and a lifetime that outlasts the
run. Needs ``django.setup()`` first; ``bench.run`` points ``DATABASE_URL`` at
the benchmark database before that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.hashers import make_password
from django.db import transaction
from rest_framework_simplejwt.tokens import AccessToken

from accounts.constants import Role
from accounts.models import Membership, Tenant, User
from accounts.services.tokens import GENERATION_CLAIM
from chat.constants import RoomKind
from chat.models import Room, RoomMember

TENANT_SLUG = "bench"
TOKEN_LIFETIME = timedelta(hours=4)
_BATCH = 2000


@dataclass(frozen=True)
class BenchUser:
    id: int
    token: str


def _username(number: int) -> str:
    return f"bench-u{number:05d}"


@transaction.atomic
def bench_users_ensure(*, count: int) -> list[BenchUser]:
    """``count`` active users of the bench tenant (``bench-u00000`` …), each with a fresh token."""
    tenant, _ = Tenant.objects.get_or_create(slug=TENANT_SLUG, defaults={"name": "Benchmark"})
    wanted = [_username(number) for number in range(count)]
    existing = set(User.objects.filter(username__in=wanted).values_list("username", flat=True))
    # Nobody logs in with a password here; one unusable hash is enough for all.
    password = make_password(None)
    User.objects.bulk_create(
        [User(username=name, password=password) for name in wanted if name not in existing], batch_size=_BATCH
    )
    users = list(User.objects.filter(username__in=wanted).order_by("username"))
    with_membership = set(Membership.objects.filter(user__in=users).values_list("user_id", flat=True))
    Membership.objects.bulk_create(
        [Membership(user=user, tenant=tenant, role=Role.MEMBER) for user in users if user.pk not in with_membership],
        batch_size=_BATCH,
    )
    return [BenchUser(id=user.pk, token=_access_token(user, tenant)) for user in users]


def _access_token(user: User, tenant: Tenant) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=TOKEN_LIFETIME)
    token["tenant_id"] = tenant.pk
    token["tenant"] = tenant.slug
    token[GENERATION_CLAIM] = user.token_generation
    return str(token)


@transaction.atomic
def bench_rooms_ensure(*, prefix: str, members: list[list[int]]) -> list[int]:
    """Public rooms ``<prefix>-0`` … with exactly the given member user ids each; returns their ids."""
    tenant = Tenant.objects.get(slug=TENANT_SLUG)
    names = [f"{prefix}-{index}" for index in range(len(members))]
    rooms = {room.name: room for room in Room.objects.filter(tenant=tenant, name__in=names)}
    Room.objects.bulk_create(
        [
            Room(tenant=tenant, name=name, kind=RoomKind.PUBLIC, created_by_id=member_ids[0])
            for name, member_ids in zip(names, members, strict=True)
            if name not in rooms
        ],
        batch_size=_BATCH,
    )
    rooms = {room.name: room for room in Room.objects.filter(tenant=tenant, name__in=names)}
    RoomMember.objects.bulk_create(
        [
            RoomMember(tenant=tenant, room=rooms[name], user_id=user_id)
            for name, member_ids in zip(names, members, strict=True)
            for user_id in member_ids
        ],
        batch_size=_BATCH,
        ignore_conflicts=True,
    )
    return [rooms[name].pk for name in names]
