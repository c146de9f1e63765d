"""The periodic clean-ups of accounts.tasks, run through Celery's task API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.services import auth as auth_services
from accounts.tasks import login_attempts_purge, token_flush_expired

pytestmark = pytest.mark.django_db


def _outstanding(user, jti: str, expires_in: timedelta) -> OutstandingToken:
    now = timezone.now()
    return OutstandingToken.objects.create(
        user=user, jti=jti, token=f"token-{jti}", created_at=now, expires_at=now + expires_in
    )


def test_token_flush_expired_deletes_only_expired_tokens_and_their_blacklist_rows(user, monkeypatch):
    monkeypatch.setattr(auth_services, "TOKEN_FLUSH_BATCH_SIZE", 2)
    expired = [_outstanding(user, f"old{n}", -timedelta(minutes=1)) for n in range(5)]
    BlacklistedToken.objects.create(token=expired[0])
    live = _outstanding(user, "live", timedelta(hours=1))
    BlacklistedToken.objects.create(token=live)

    deleted = token_flush_expired.apply().get()

    assert deleted == 5
    assert list(OutstandingToken.objects.values_list("jti", flat=True)) == ["live"]
    assert list(BlacklistedToken.objects.values_list("token__jti", flat=True)) == ["live"]
    assert token_flush_expired.apply().get() == 0


def _attempt(username: str, age: timedelta) -> None:
    attempt = AccessAttempt.objects.create(
        username=username,
        ip_address="127.0.0.1",
        user_agent="ua",
        get_data="",
        post_data="",
        http_accept="*/*",
        path_info="/api/v1/auth/token/",
        failures_since_start=3,
    )
    # attempt_time is auto_now_add: age the row afterwards.
    AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=timezone.now() - age)


def test_login_attempts_purge_deletes_attempts_older_than_the_cool_off(db):
    cool_off = settings.AXES_COOLOFF_TIME
    _attempt("stale", cool_off + timedelta(seconds=5))
    _attempt("fresh", cool_off - timedelta(seconds=60))
    AccessLog.objects.create(
        username="old", ip_address="127.0.0.1", user_agent="ua", http_accept="*/*", path_info="/admin/login/"
    )
    AccessLog.objects.filter(username="old").update(
        attempt_time=timezone.now() - timedelta(days=auth_services.LOGIN_ACCESS_LOG_RETENTION_DAYS + 1)
    )

    result = login_attempts_purge.apply().get()

    assert result == {"attempts": 1, "access_logs": 1}
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["fresh"]
    assert not AccessLog.objects.exists()
