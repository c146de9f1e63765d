"""Celery entry points of the operations layer.

``probe`` is what ``/readyz`` sends through the default queue to prove that a
worker is consuming it (monitoring/health.py): it does no work and touches no
table, so it is idempotent and safe to drop, which its short expiry relies on.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="monitoring.tasks.probe", ignore_result=False, acks_late=False)
def probe(nonce: str) -> str:
    """Echo ``nonce`` back, so the caller knows the answer is to its own probe."""
    return nonce
