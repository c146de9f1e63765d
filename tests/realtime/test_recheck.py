"""The periodic re-check of open sockets, batched per process (realtime.recheck)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Membership, User
from accounts.services.tokens import AuthenticationError, principal_for_user
from realtime import recheck
from realtime.recheck import Rechecker
from realtime.selectors import ws_principals_recheck
from tests.factories import TenantFactory, UserFactory


def _principal(user):
    return principal_for_user(User.objects.select_related("membership__tenant").get(pk=user.pk))


@pytest.mark.django_db
def test_one_query_judges_every_principal(tenant):
    fine, inactive, revoked, moved, gone = (UserFactory(tenant=tenant) for _ in range(5))
    principals = [_principal(u) for u in (fine, inactive, revoked, moved, gone)]
    User.objects.filter(pk=inactive.pk).update(is_active=False)
    User.objects.filter(pk=revoked.pk).update(token_generation=revoked.token_generation + 1)
    Membership.objects.filter(user=moved).update(tenant=TenantFactory(), role="admin")
    gone.delete()

    with CaptureQueriesContext(connection) as queries:
        verdicts = ws_principals_recheck(principals=principals)

    assert len(queries) == 1
    assert verdicts[0] == principals[0]
    assert [v.code for v in verdicts[1:]] == ["user_inactive", "token_revoked", "token_invalid", "token_invalid"]
    assert all(isinstance(v, AuthenticationError) for v in verdicts[1:])


@pytest.mark.django_db
def test_a_role_change_reaches_the_principal(tenant):
    user = UserFactory(tenant=tenant, role="member")
    principal = _principal(user)
    Membership.objects.filter(user=user).update(role="admin")
    [verdict] = ws_principals_recheck(principals=[principal])
    assert verdict.role == "admin"


class _Socket:
    def __init__(self, principal):
        self.principal = principal
        self.verdicts = []

    async def principal_rechecked(self, checked, verdict):
        self.verdicts.append((checked, verdict))


@pytest.mark.django_db(transaction=True)
async def test_rechecker_reads_in_batches_and_tells_each_socket(tenant, monkeypatch):
    monkeypatch.setattr(recheck, "RECHECK_BATCH", 2)
    users = [await database_sync_to_async(UserFactory)(tenant=tenant) for _ in range(5)]
    sockets = [_Socket(await database_sync_to_async(_principal)(u)) for u in users]
    await database_sync_to_async(User.objects.filter(pk=users[3].pk).update)(is_active=False)
    calls = []
    real = ws_principals_recheck

    def counting(*, principals):
        calls.append(len(principals))
        return real(principals=principals)

    monkeypatch.setattr(recheck, "ws_principals_recheck", counting)
    rechecker = Rechecker(asyncio.get_running_loop())
    for socket in sockets:
        rechecker.watch(socket)
    rechecker.unwatch(sockets[4])

    assert await rechecker.check_all() == 4
    assert calls == [2, 2]
    assert [len(s.verdicts) for s in sockets] == [1, 1, 1, 1, 0]
    assert isinstance(sockets[3].verdicts[0][1], AuthenticationError)
    assert sockets[0].verdicts[0][1] == sockets[0].principal
    for socket in sockets[:4]:
        rechecker.unwatch(socket)
    assert len(rechecker) == 0
