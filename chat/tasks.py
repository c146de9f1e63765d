"""Celery entry points of chat (periodic, scheduled by beat in
settings.CELERY_BEAT_SCHEDULE). Each task calls one service and is idempotent,
as late acks require."""

from __future__ import annotations

from celery import shared_task

from .services import attachments


@shared_task(name="chat.tasks.attachments_purge_unattached")
def attachments_purge_unattached() -> int:
    """Delete uploads no message claimed within a day; returns how many."""
    return attachments.attachments_purge_unattached()
