"""``user_set_active``: revocation, audit, idempotency and the after-commit
``session.revoked`` broadcast. The socket side is in tests/realtime/test_session.py."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from accounts.services.tokens import (
    AuthenticationError,
    TenantRefreshToken,
    access_token_authenticate,
    token_refresh,
)
from accounts.services.users import user_set_active
from audit.constants import AuditAction
from audit.models import AuditEvent
from audit.services import Actor, RequestContext
from realtime.events import SessionRevoked, event_message
from realtime.groups import user_group


def test_deactivation_revokes_every_session_and_is_audited(user, tenant):
    refresh = TenantRefreshToken.for_user(user)
    access = str(refresh.access_token)
    admin = Actor.system("ops")

    changed = user_set_active(
        user=user, active=False, actor=admin, context=RequestContext(ip="10.0.0.9", user_agent="console")
    )

    assert changed is True
    user.refresh_from_db()
    assert user.is_active is False
    assert user.sessions_revoked_at is not None and user.token_generation == 1
    assert BlacklistedToken.objects.filter(token__jti=refresh["jti"]).exists()
    with pytest.raises(AuthenticationError) as refused:
        access_token_authenticate(raw_token=access)
    assert refused.value.code == "token_revoked"
    event = AuditEvent.objects.get(action=AuditAction.USER_DEACTIVATED)
    assert (event.tenant_id, event.target_type, event.target_id) == (tenant.pk, "user", str(user.pk))
    assert event.details == {"revoked_refresh_tokens": 1}
    assert (event.actor_label, event.ip, event.user_agent) == ("ops", "10.0.0.9", "console")


def test_setting_the_current_state_changes_nothing(user):
    assert user_set_active(user=user, active=True, actor=Actor.system()) is False
    assert user_set_active(user=user, active=False, actor=Actor.system()) is True
    assert user_set_active(user=user, active=False, actor=Actor.system()) is False

    assert AuditEvent.objects.filter(action=AuditAction.USER_DEACTIVATED).count() == 1
    assert not AuditEvent.objects.filter(action=AuditAction.USER_REACTIVATED).exists()


def test_reactivation_keeps_earlier_tokens_revoked(user):
    old_refresh = str(TenantRefreshToken.for_user(user))
    old_access = str(TenantRefreshToken.for_user(user).access_token)
    user_set_active(user=user, active=False, actor=Actor.system())

    assert user_set_active(user=user, active=True, actor=Actor.system()) is True

    user.refresh_from_db()
    assert user.is_active is True
    assert AuditEvent.objects.filter(action=AuditAction.USER_REACTIVATED, target_id=str(user.pk)).count() == 1
    with pytest.raises(AuthenticationError) as refused:
        access_token_authenticate(raw_token=old_access)
    assert refused.value.code == "token_revoked"
    with pytest.raises(AuthenticationError):
        token_refresh(raw_refresh=old_refresh)


def test_session_revoked_event_shape():
    assert event_message(SessionRevoked(reason="user_deactivated")) == {
        "type": "session.revoked",
        "content": {"reason": "user_deactivated"},
    }


async def _subscribe(group: str) -> tuple[object, str]:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return layer, channel


@pytest.mark.django_db(transaction=True)
async def test_deactivation_broadcasts_to_the_users_group_after_commit(tenant, user):
    layer, channel = await _subscribe(user_group(tenant_id=tenant.pk, user_id=user.pk))

    await database_sync_to_async(user_set_active)(user=user, active=False, actor=Actor.system())

    message = await asyncio.wait_for(layer.receive(channel), 3)
    assert message == {"type": "session.revoked", "content": {"reason": "user_deactivated"}}


@pytest.mark.django_db(transaction=True)
async def test_rolled_back_deactivation_broadcasts_nothing(tenant, user):
    layer, channel = await _subscribe(user_group(tenant_id=tenant.pk, user_id=user.pk))

    @database_sync_to_async
    def deactivate_then_fail() -> None:
        with transaction.atomic():
            user_set_active(user=user, active=False, actor=Actor.system())
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await deactivate_then_fail()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.5)
    await database_sync_to_async(user.refresh_from_db)()
    assert user.is_active is True
