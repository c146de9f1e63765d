"""Brute-force protection (django-axes) and the audit of login attempts, through
the REST login and the Django admin's login."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client, override_settings

from audit.constants import ActorType, AuditAction
from audit.models import AuditEvent
from tests.factories import DEFAULT_PASSWORD, UserFactory

from .conftest import TOKEN_URL, error_of

pytestmark = pytest.mark.django_db


def _attempt(api, username: str, password: str, **headers):
    return api.post(TOKEN_URL, {"username": username, "password": password}, format="json", **headers)


def _rest_with_proxies(count: int) -> dict:
    return {**settings.REST_FRAMEWORK, "NUM_PROXIES": count}


def test_each_failed_login_is_audited_once_with_the_username_tried(api, user, tenant):
    response = _attempt(api, user.username, "wrong", HTTP_USER_AGENT="pytest-agent")

    assert response.status_code == 401
    event = AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED)
    assert event.actor_type == ActorType.ANONYMOUS
    assert event.actor_id is None
    assert event.details == {"username": user.username, "reason": "invalid_credentials", "channel": "api"}
    # Attributed to the tenant of the account under attack.
    assert event.tenant_id == tenant.pk
    assert event.ip == "127.0.0.1"
    assert event.user_agent == "pytest-agent"


def test_failed_login_for_an_unknown_username_goes_to_the_installation_chain(api, db):
    _attempt(api, "nobody", "wrong")

    event = AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED)
    assert event.tenant_id is None
    assert event.details["username"] == "nobody"


def test_lockout_after_the_failure_limit_even_with_the_right_password(api, user):
    limit = settings.AXES_FAILURE_LIMIT
    cool_off = int(settings.AXES_COOLOFF_TIME.total_seconds())

    for _ in range(limit - 1):
        response = _attempt(api, user.username, "wrong")
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_credentials"

    tripping = _attempt(api, user.username, "wrong")
    assert tripping.status_code == 429
    assert error_of(tripping)["code"] == "locked_out"

    locked = _attempt(api, user.username, DEFAULT_PASSWORD)
    assert locked.status_code == 429
    error = error_of(locked)
    assert error["code"] == "locked_out"
    assert error["details"]["retry_after"] == cool_off
    assert locked.headers["Retry-After"] == str(cool_off)

    failed = AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED)
    assert failed.count() == limit + 1
    assert [e.details["reason"] for e in failed.order_by("seq")][-2:] == ["locked_out", "locked_out"]
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_LOCKED_OUT).count() == 2
    assert not AuditEvent.objects.filter(action=AuditAction.LOGIN_SUCCEEDED).exists()


def test_a_successful_login_resets_the_usernames_failures(api, user):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _attempt(api, user.username, "wrong")

    assert _attempt(api, user.username, DEFAULT_PASSWORD).status_code == 200
    assert not AccessAttempt.objects.filter(username=user.username).exists()
    assert _attempt(api, user.username, "wrong").status_code == 401


def test_spoofed_forwarded_for_does_not_escape_an_ip_lockout_without_proxies(api, db):
    limit = settings.AXES_FAILURE_LIMIT
    statuses = [
        _attempt(api, f"guess{n}", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code for n in range(limit)
    ]

    assert statuses == [401] * (limit - 1) + [429]
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}


def test_forwarded_for_is_honoured_behind_one_proxy(api, user):
    with override_settings(REST_FRAMEWORK=_rest_with_proxies(1)):
        _attempt(api, user.username, "wrong", HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9")

    attempt = AccessAttempt.objects.get()
    assert attempt.ip_address == "203.0.113.9"
    assert AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED).ip == "203.0.113.9"


# --- The admin's session login (audited through signals, accounts/signals.py) ------------


@pytest.fixture
def staff(db, settings):
    # The admin's templates need static URLs; the manifest exists only after collectstatic.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True)


def test_admin_login_success_and_failure_are_audited_once(staff):
    browser = Client()

    failed = browser.post("/admin/login/?next=/admin/", {"username": staff.username, "password": "wrong"})
    assert failed.status_code == 200  # the form again, with an error
    succeeded = browser.post("/admin/login/?next=/admin/", {"username": staff.username, "password": DEFAULT_PASSWORD})
    assert succeeded.status_code == 302

    failure = AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED)
    assert failure.details == {"username": staff.username, "reason": "invalid_credentials", "channel": "admin"}
    success = AuditEvent.objects.get(action=AuditAction.LOGIN_SUCCEEDED)
    assert success.actor_id == staff.pk
    assert success.tenant_id is None
    assert success.details == {"channel": "admin"}


def test_admin_lockout_is_audited_and_answered_in_the_error_shape(staff):
    browser = Client()
    limit = settings.AXES_FAILURE_LIMIT

    responses = [browser.post("/admin/login/", {"username": staff.username, "password": "wrong"}) for _ in range(limit)]

    assert [r.status_code for r in responses] == [200] * (limit - 1) + [429]
    assert error_of(responses[-1])["code"] == "locked_out"
    assert AuditEvent.objects.filter(action=AuditAction.LOGIN_FAILED).count() == limit
    locked = AuditEvent.objects.get(action=AuditAction.LOGIN_LOCKED_OUT)
    assert locked.details == {"username": staff.username, "channel": "admin"}
