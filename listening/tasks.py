"""Celery entry points of listening sessions. Each takes ids, calls one service
and is idempotent, as late acks require (docs/operations.md, "Celery")."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from .services import playback


@shared_task(
    name="listening.tasks.playback_advance",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=5,
)
def playback_advance(session_id: int, revision: int) -> bool:
    """At a track's end: start the next queue item if playback is still at
    ``revision`` (any command since makes this a no-op). Retried quickly on a
    database hiccup: the listeners are waiting for the next track."""
    return playback.playback_advance(session_id=session_id, revision=revision)


@shared_task(
    name="listening.tasks.playback_wait_end",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=5,
    max_retries=5,
)
def playback_wait_end(session_id: int, revision: int) -> bool:
    """At the deadline of a start that waits for buffering members: start it
    without them if playback is still at ``revision`` and still waiting (a
    release or any command since makes this a no-op). Retried quickly on a
    database hiccup: the room is waiting in silence."""
    return playback.playback_wait_end(session_id=session_id, revision=revision)
