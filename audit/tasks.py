"""Celery entry points of the audit trail.

``audit_anchor_heads`` runs from beat (settings.CELERY_BEAT_SCHEDULE) and writes
every chain head to the ``audit.chain`` log stream, so a chain that saw no new
event since the last anchor is still anchored outside the database. Idempotent:
logging a head twice anchors the same (chain, seq, hash) twice.
"""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task
def audit_anchor_heads() -> int:
    """Anchor every chain head in the log stream; returns how many heads were logged."""
    return services.audit_anchor_heads()
