"""realtime.presence on the real Redis and in memory: devices, expiry, grace, tenants."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
import redis

from realtime.presence import (
    PresenceChange,
    PresenceState,
    close_presence,
    presence_connect,
    presence_disconnect,
    presence_get,
    presence_heartbeat,
    presence_set_away,
)

ONLINE, AWAY, OFFLINE = PresenceState.ONLINE, PresenceState.AWAY, PresenceState.OFFLINE
_tenant_ids = itertools.count(random.randint(10**6, 10**9))


@pytest.fixture(params=["redis", "memory"])
async def backend(request, settings):
    """Both backends through the public API, with a one-second connection TTL."""
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("needs REDIS_URL (the real Redis); run through .ci/run or set it")
    else:
        settings.REDIS_URL = None
    settings.PRESENCE_TTL_SECONDS = 1
    settings.PRESENCE_GRACE_SECONDS = 0.3
    await close_presence()
    tenants: list[int] = []

    def tenant() -> int:
        tenants.append(next(_tenant_ids))
        return tenants[-1]

    yield tenant
    await close_presence()
    if request.param == "redis":
        client = redis.Redis.from_url(settings.REDIS_URL)
        for tenant_id in tenants:
            keys = list(client.scan_iter(match=f"presence:t{tenant_id}:*"))
            if keys:
                client.delete(*keys)
        client.close()


async def test_two_devices_of_one_user_count_once(backend):
    tenant = backend()

    first = await presence_connect(tenant_id=tenant, user_id=1, connection_id="phone")
    second = await presence_connect(tenant_id=tenant, user_id=1, connection_id="laptop")

    assert first == PresenceChange(tenant_id=tenant, user_id=1, state=ONLINE)
    assert second is None
    assert await presence_get(tenant_id=tenant, user_ids=[1, 2]) == {1: ONLINE, 2: OFFLINE}

    check = await presence_disconnect(tenant_id=tenant, user_id=1, connection_id="phone", grace=0.05)
    assert await check is None
    assert await presence_get(tenant_id=tenant, user_ids=[1]) == {1: ONLINE}

    changes: list[PresenceChange] = []

    async def broadcast(change: PresenceChange) -> None:
        changes.append(change)

    check = await presence_disconnect(
        tenant_id=tenant, user_id=1, connection_id="laptop", on_change=broadcast, grace=0.05
    )
    assert await check == PresenceChange(tenant_id=tenant, user_id=1, state=OFFLINE)
    assert changes == [PresenceChange(tenant_id=tenant, user_id=1, state=OFFLINE)]


async def test_a_user_whose_server_died_goes_offline_by_expiry(backend):
    tenant = backend()
    await presence_connect(tenant_id=tenant, user_id=5, connection_id="c1")
    await presence_connect(tenant_id=tenant, user_id=6, connection_id="c2")

    # User 6's server keeps heartbeating; user 5's server is gone and never calls disconnect.
    for _ in range(3):
        await asyncio.sleep(0.5)
        assert await presence_heartbeat(tenant_id=tenant, user_id=6, connection_id="c2") is None

    assert await presence_get(tenant_id=tenant, user_ids=[5, 6]) == {5: OFFLINE, 6: ONLINE}
    # The lapse itself was never announced (no server was left to decide it), so
    # reappearing is no change either: watchers kept seeing "online".
    assert await presence_connect(tenant_id=tenant, user_id=5, connection_id="c3") is None
    assert await presence_get(tenant_id=tenant, user_ids=[5]) == {5: ONLINE}


async def test_a_reconnect_within_the_grace_period_reports_no_change(backend):
    tenant = backend()
    await presence_connect(tenant_id=tenant, user_id=3, connection_id="old")

    check = await presence_disconnect(tenant_id=tenant, user_id=3, connection_id="old")
    assert await presence_connect(tenant_id=tenant, user_id=3, connection_id="new") is None

    assert await check is None
    assert await presence_get(tenant_id=tenant, user_ids=[3]) == {3: ONLINE}

    # Without the reconnect, the grace period ends in "offline".
    check = await presence_disconnect(tenant_id=tenant, user_id=3, connection_id="new")
    assert await presence_get(tenant_id=tenant, user_ids=[3]) == {3: OFFLINE}
    assert await check == PresenceChange(tenant_id=tenant, user_id=3, state=OFFLINE)


async def test_away_needs_every_live_connection_away(backend):
    tenant = backend()
    await presence_connect(tenant_id=tenant, user_id=4, connection_id="a")
    await presence_connect(tenant_id=tenant, user_id=4, connection_id="b")

    assert await presence_set_away(tenant_id=tenant, user_id=4, connection_id="a", away=True) is None
    change = await presence_set_away(tenant_id=tenant, user_id=4, connection_id="b", away=True)
    assert change == PresenceChange(tenant_id=tenant, user_id=4, state=AWAY)
    assert await presence_get(tenant_id=tenant, user_ids=[4]) == {4: AWAY}

    change = await presence_set_away(tenant_id=tenant, user_id=4, connection_id="a", away=False)
    assert change == PresenceChange(tenant_id=tenant, user_id=4, state=ONLINE)


async def test_the_same_user_id_in_two_tenants_never_mixes(backend):
    tenant_a, tenant_b = backend(), backend()

    assert await presence_connect(tenant_id=tenant_a, user_id=9, connection_id="x") is not None

    assert await presence_get(tenant_id=tenant_b, user_ids=[9]) == {9: OFFLINE}
    assert await presence_connect(tenant_id=tenant_b, user_id=9, connection_id="x") is not None
    check = await presence_disconnect(tenant_id=tenant_b, user_id=9, connection_id="x", grace=0.05)
    await check
    assert await presence_get(tenant_id=tenant_a, user_ids=[9]) == {9: ONLINE}
    assert await presence_get(tenant_id=tenant_b, user_ids=[9]) == {9: OFFLINE}


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_keys_carry_the_tenant_and_lapse_on_their_own(backend, settings):
    tenant = backend()
    await presence_connect(tenant_id=tenant, user_id=1, connection_id="c")
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        keys = sorted(client.scan_iter(match=f"presence:t{tenant}:*"))
        assert keys == [f"presence:t{tenant}:u1:conns", f"presence:t{tenant}:u1:reported"]
        assert all(0 < client.ttl(key) for key in keys)
    finally:
        client.close()


async def test_the_presence_of_a_big_room_is_read_in_one_go(backend):
    tenant = backend()
    users = range(1, 601)  # more users than one read call takes
    expected = {}
    for user_id in users:
        if user_id % 3 == 0:
            expected[user_id] = OFFLINE
            continue
        await presence_connect(tenant_id=tenant, user_id=user_id, connection_id=f"c{user_id}")
        if user_id % 3 == 1:
            await presence_set_away(tenant_id=tenant, user_id=user_id, connection_id=f"c{user_id}", away=True)
        expected[user_id] = AWAY if user_id % 3 == 1 else ONLINE

    got = await presence_get(tenant_id=tenant, user_ids=list(reversed(users)))
    assert got == expected
    assert list(got) == list(reversed(users))
    assert await presence_get(tenant_id=tenant, user_ids=[]) == {}
