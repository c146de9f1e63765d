"""The periodic upkeep of open sockets, batched per process (realtime.upkeep)."""

from __future__ import annotations

import asyncio
import random

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.constants import TenantStatus
from accounts.models import Membership, User
from accounts.principals import Principal
from accounts.services.tokens import AuthenticationError, principal_for_user
from realtime import upkeep
from realtime.connections import connection_slot_acquire, connection_slot_count, connection_slot_release
from realtime.limits import redis_client_close
from realtime.presence import (
    PresenceChange,
    PresenceState,
    close_presence,
    presence_check,
    presence_connect,
    presence_get,
)
from realtime.registry import registry
from realtime.selectors import ws_principals_recheck
from realtime.upkeep import Upkeep
from tests.factories import TenantFactory, UserFactory


def _principal(user):
    return principal_for_user(User.objects.select_related("membership__tenant").get(pk=user.pk))


@pytest.mark.django_db
def test_principals_nothing_moved_for_cost_one_narrow_query_and_come_back_as_they_were(tenant):
    principals = [_principal(UserFactory(tenant=tenant)) for _ in range(5)]
    with CaptureQueriesContext(connection) as queries:
        verdicts = ws_principals_recheck(principals=principals)
    assert len(queries) == 1
    assert all(verdict is principal for verdict, principal in zip(verdicts, principals, strict=True))


@pytest.mark.django_db
def test_two_queries_judge_every_principal(tenant):
    fine, inactive, revoked, moved, gone = (UserFactory(tenant=tenant) for _ in range(5))
    principals = [_principal(u) for u in (fine, inactive, revoked, moved, gone)]
    User.objects.filter(pk=inactive.pk).update(is_active=False)
    User.objects.filter(pk=revoked.pk).update(token_generation=revoked.token_generation + 1)
    Membership.objects.filter(user=moved).update(tenant=TenantFactory(), role="admin")
    gone.delete()

    with CaptureQueriesContext(connection) as queries:
        verdicts = ws_principals_recheck(principals=principals)

    # The narrow read of all, then the users whose row moved, whole.
    assert len(queries) == 2
    assert verdicts[0] is principals[0]
    assert [v.code for v in verdicts[1:]] == ["user_inactive", "token_revoked", "token_invalid", "token_invalid"]
    assert all(isinstance(v, AuthenticationError) for v in verdicts[1:])


@pytest.mark.django_db
def test_a_suspended_tenant_refuses_its_principals(tenant):
    principal = _principal(UserFactory(tenant=tenant))
    type(tenant).objects.filter(pk=tenant.pk).update(status=TenantStatus.SUSPENDED)
    [verdict] = ws_principals_recheck(principals=[principal])
    assert isinstance(verdict, AuthenticationError)
    assert verdict.code == "tenant_inactive"


@pytest.mark.django_db
def test_a_role_change_reaches_the_principal(tenant):
    user = UserFactory(tenant=tenant, role="member")
    principal = _principal(user)
    Membership.objects.filter(user=user).update(role="admin")
    [verdict] = ws_principals_recheck(principals=[principal])
    assert verdict.role == "admin"


class _Socket:
    def __init__(self, principal, connection_id="c", *, holds_slot=True, present=True):
        self.principal = principal
        self.connection_id = connection_id
        self.holds_slot = holds_slot
        self.present = present
        self.verdicts = []
        self.lost = 0

    async def principal_rechecked(self, checked, verdict):
        self.verdicts.append((checked, verdict))

    async def slot_lost(self):
        self.lost += 1


@pytest.mark.django_db(transaction=True)
async def test_recheck_reads_in_batches_and_tells_each_socket(tenant, monkeypatch):
    monkeypatch.setattr(upkeep, "BATCH", 2)
    users = [await database_sync_to_async(UserFactory)(tenant=tenant) for _ in range(5)]
    sockets = [_Socket(await database_sync_to_async(_principal)(u)) for u in users]
    await database_sync_to_async(User.objects.filter(pk=users[3].pk).update)(is_active=False)
    calls = []
    real = ws_principals_recheck

    def counting(*, principals):
        calls.append(len(principals))
        return real(principals=principals)

    monkeypatch.setattr(upkeep, "ws_principals_recheck", counting)
    keeper = Upkeep(asyncio.get_running_loop())
    for socket in sockets:
        keeper.watch(socket)
    keeper.unwatch(sockets[4])

    assert await keeper.recheck_all() == 4
    assert calls == [2, 2]
    assert [len(s.verdicts) for s in sockets] == [1, 1, 1, 1, 0]
    assert isinstance(sockets[3].verdicts[0][1], AuthenticationError)
    assert sockets[0].verdicts[0][1] == sockets[0].principal
    for socket in sockets[:4]:
        keeper.unwatch(socket)
    assert len(keeper) == 0


def _fake_principal(tenant_id, user_id):
    return Principal(tenant_id=tenant_id, tenant_slug="t", user_id=user_id, username=f"u{user_id}")


@pytest.fixture(params=["redis", "memory"])
async def backend(request, settings):
    """The registry and presence on the real Redis, and on the embedded default's memory."""
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("needs REDIS_URL (the real Redis); run through .ci/run or set it")
    else:
        settings.REDIS_URL = ""
    await close_presence()
    yield request.param
    await close_presence()
    await redis_client_close()


async def test_slot_refresh_covers_every_socket_and_reports_lost_slots(backend, settings, monkeypatch):
    settings.MAX_WS_CONNECTIONS_PER_USER = 1
    monkeypatch.setattr(upkeep, "BATCH", 3)
    tenant_id = 910_000 + random.randrange(1000)
    sockets = [_Socket(_fake_principal(tenant_id, user_id), f"conn-{user_id}") for user_id in range(1, 6)]
    for socket in sockets:
        assert await connection_slot_acquire(
            tenant_id=tenant_id, user_id=socket.principal.user_id, connection_id=socket.connection_id
        )
    # User 2's entry lapsed and another socket of theirs took the only slot.
    await connection_slot_release(tenant_id=tenant_id, user_id=2, connection_id="conn-2")
    assert await connection_slot_acquire(tenant_id=tenant_id, user_id=2, connection_id="elsewhere")
    keeper = Upkeep(asyncio.get_running_loop())
    for socket in sockets:
        keeper.watch(socket)
    sockets[4].holds_slot = False

    assert await keeper.refresh_slots() == 4
    assert [s.lost for s in sockets] == [0, 1, 0, 0, 0]
    assert await connection_slot_count(tenant_id=tenant_id, user_id=1) == 1
    for socket in sockets:
        keeper.unwatch(socket)


async def test_presence_refresh_keeps_users_online_and_reports_a_return(backend, settings, monkeypatch):
    settings.PRESENCE_TTL_SECONDS = 1
    await close_presence()
    tenant_id = 920_000 + random.randrange(1000)
    steady, lapsed = _Socket(_fake_principal(tenant_id, 7), "conn-7"), _Socket(_fake_principal(tenant_id, 8), "conn-8")
    changes = []

    async def listener(change):
        changes.append(change)

    monkeypatch.setattr(registry, "_presence_listeners", [listener])
    keeper = Upkeep(asyncio.get_running_loop())
    for socket in (steady, lapsed):
        await presence_connect(
            tenant_id=tenant_id, user_id=socket.principal.user_id, connection_id=socket.connection_id
        )
        keeper.watch(socket)
    keeper.unwatch(lapsed)
    await asyncio.sleep(0.6)
    assert await keeper.refresh_presence() == 1
    await asyncio.sleep(0.6)
    # User 8 missed its heartbeat and went offline; user 7 did not.
    assert await presence_check(tenant_id=tenant_id, user_id=8) == PresenceChange(tenant_id, 8, PresenceState.OFFLINE)
    assert await presence_check(tenant_id=tenant_id, user_id=7) is None
    assert changes == []

    keeper.watch(lapsed)
    assert await keeper.refresh_presence() == 2
    assert changes == [PresenceChange(tenant_id, 8, PresenceState.ONLINE)]
    for socket in (steady, lapsed):
        keeper.unwatch(socket)
    assert await presence_get(tenant_id=tenant_id, user_ids=[7, 8]) == {7: "online", 8: "online"}
