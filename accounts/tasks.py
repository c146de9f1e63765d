"""Celery entry points of the accounts app (periodic clean-ups scheduled by beat
in settings.CELERY_BEAT_SCHEDULE). Each task calls one service in
``accounts.services.auth`` and is idempotent, as late acks require."""

from __future__ import annotations

from celery import shared_task

from .services import auth as auth_services


@shared_task(name="accounts.tasks.token_flush_expired")
def token_flush_expired() -> int:
    """Delete expired refresh tokens from simplejwt's outstanding/blacklist tables."""
    return auth_services.token_flush_expired()


@shared_task(name="accounts.tasks.login_attempts_purge")
def login_attempts_purge() -> dict[str, int]:
    """Delete axes attempts older than the cool-off and its stale access log."""
    result = auth_services.login_attempts_purge()
    return {"attempts": result.attempts, "access_logs": result.access_logs}
