"""Listening sessions in the admin: staff end sessions and mute, unmute or remove
members through the services' trusted paths, audited, with the effects a host's
command has (events, the session ended, the member gone)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.services.tokens import principal_for_user
from audit.constants import AuditAction
from audit.models import AuditEvent
from listening.constants import SessionStatus
from listening.models import ListeningSession, SessionMember
from listening.services.sessions import session_create, session_join
from spotify_agent.errors import Forbidden
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(tenant, user, member):
    session = session_create(actor=principal_for_user(user), title="Friday")
    session_join(actor=principal_for_user(member), session_id=session.pk)
    return session


def act(client, model: str, action: str, pks: list[int]):
    return client.post(
        reverse(f"admin:listening_{model}_changelist"), {"action": action, "_selected_action": pks}, follow=True
    )


def test_staff_end_live_sessions_audited_and_ended_ones_are_skipped(
    superuser_client, superuser, live, tenant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = act(superuser_client, "listeningsession", "end_sessions", [live.pk])
    assert "1 session(s) ended." in response.content.decode()
    live.refresh_from_db()
    assert live.status == SessionStatus.ENDED and live.ended_at is not None
    assert not SessionMember.objects.filter(session=live, left_at__isnull=True).exists()
    [event] = AuditEvent.objects.filter(action=AuditAction.LISTENING_SESSION_ENDED)
    assert (event.tenant_id, event.target_type, event.target_id) == (tenant.pk, "listening_session", str(live.pk))
    assert event.actor_id == superuser.pk

    again = act(superuser_client, "listeningsession", "end_sessions", [live.pk])
    assert "0 session(s) ended." in again.content.decode()
    assert AuditEvent.objects.filter(action=AuditAction.LISTENING_SESSION_ENDED).count() == 1


def test_staff_mute_unmute_and_remove_members_but_never_the_host(superuser_client, live, user, member):
    host = SessionMember.objects.get(session=live, user=user)
    listener = SessionMember.objects.get(session=live, user=member)

    muted = act(superuser_client, "sessionmember", "mute_members", [host.pk, listener.pk]).content.decode()
    assert "1 member(s) muted (1 skipped" in muted
    listener.refresh_from_db()
    host.refresh_from_db()
    assert listener.muted_at is not None and host.muted_at is None
    act(superuser_client, "sessionmember", "unmute_members", [listener.pk])
    listener.refresh_from_db()
    assert listener.muted_at is None

    act(superuser_client, "sessionmember", "remove_members", [listener.pk])
    listener.refresh_from_db()
    assert listener.removed_at is not None and listener.left_at is not None
    actions = list(
        AuditEvent.objects.filter(action__startswith="listening.").order_by("id").values_list("action", "details")
    )
    assert actions == [
        (AuditAction.LISTENING_MEMBER_MUTED, {"user": member.pk}),
        (AuditAction.LISTENING_MEMBER_UNMUTED, {"user": member.pk}),
        (AuditAction.LISTENING_MEMBER_REMOVED, {"user": member.pk}),
    ]
    # Removed: joining again is refused, as after the host's own removal.
    with pytest.raises(Forbidden):
        session_join(actor=principal_for_user(member), session_id=live.pk)


def test_staff_without_the_change_permission_cannot_run_the_actions(client, live, member):
    viewer = UserFactory(username="viewer", tenant=None, is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_listeningsession", "view_sessionmember"])
    )
    client.force_login(viewer)
    listener = SessionMember.objects.get(session=live, user=member)
    response = client.get(reverse("admin:listening_sessionmember_changelist"))
    assert response.status_code == 200 and "remove_members" not in response.content.decode()
    act(client, "sessionmember", "remove_members", [listener.pk])
    act(client, "listeningsession", "end_sessions", [live.pk])
    listener.refresh_from_db()
    assert listener.removed_at is None
    assert ListeningSession.objects.get(pk=live.pk).status == SessionStatus.LIVE
