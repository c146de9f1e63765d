"""Celery entry points of the playlists app. Each task takes ids, calls one
service and is idempotent, as late acks require (docs/operations.md, "Celery").

``playlist_snapshot_take`` is enqueued by the edit service after commit;
``playlist_history_prune`` runs from beat and prunes each playlist in its own
short transaction, so the row lock it takes never holds editors up for long.

``suggestions_rebuild_all`` runs from beat (settings.CELERY_BEAT_SCHEDULE) and
enqueues one ``suggestions_rebuild`` per active tenant, so one tenant's rebuild
failing or being retried does not hold up the others.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, OperationalError
from django.utils import timezone

from accounts.constants import TenantStatus
from accounts.models import Tenant

from . import suggestions
from .models import PlaylistOp
from .services import editing

# --- Suggestions -------------------------------------------------------------------------


# Retried: a lost connection or deadlock (OperationalError), and a track deleted
# between the rebuild's read and its write (IntegrityError on the foreign key).
# The rebuild replaces all of the tenant's rows, so running it again is safe.
# Time limits above the project's 10 minutes: a 100k-track catalog writes ~10M
# rows (50 neighbours of two kinds), about 7 minutes at the ~23k rows/s
# bulk_create reaches on one connection, plus a minute of computation. 30
# minutes still ends well within the broker's 1 hour visibility timeout.
@shared_task(
    name="playlists.tasks.suggestions_rebuild",
    autoretry_for=(OperationalError, IntegrityError),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=3,
    soft_time_limit=25 * 60,
    time_limit=30 * 60,
)
def suggestions_rebuild(tenant_id: int) -> dict[str, int] | None:
    """Rebuild one tenant's suggestion model; returns its counts, or None if the tenant is gone."""
    if not Tenant.objects.filter(pk=tenant_id).exists():
        return None
    return asdict(suggestions.suggestions_rebuild(tenant_id=tenant_id))


@shared_task(name="playlists.tasks.suggestions_rebuild_all")
def suggestions_rebuild_all() -> int:
    """Enqueue a rebuild for every active tenant; returns how many were enqueued."""
    tenant_ids = list(Tenant.objects.filter(status=TenantStatus.ACTIVE).order_by("pk").values_list("pk", flat=True))
    for tenant_id in tenant_ids:
        # Not in a transaction, so there is no commit to wait for.
        suggestions_rebuild.delay(tenant_id)
    return len(tenant_ids)


# --- Editing history ---------------------------------------------------------------------


@shared_task(
    name="playlists.tasks.playlist_snapshot_take",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
)
def playlist_snapshot_take(playlist_id: int, revision: int) -> int | None:
    """Snapshot one playlist at ``revision`` (enqueued after the commit of every
    ``PLAYLIST_SNAPSHOT_EVERY``-th revision); returns the revision, or None if the
    playlist or the revision is gone. Idempotent: one snapshot per revision."""
    snapshot = editing.playlist_snapshot_take(playlist_id=playlist_id, revision=revision)
    return snapshot.revision if snapshot is not None else None


@shared_task(name="playlists.tasks.playlist_history_prune")
def playlist_history_prune() -> int:
    """Prune every playlist's op log past ``PLAYLIST_HISTORY_RETENTION_DAYS`` (beat);
    one short transaction per playlist with old entries. Returns the entries deleted."""
    cutoff = timezone.now() - timedelta(days=settings.PLAYLIST_HISTORY_RETENTION_DAYS)
    playlist_ids = (
        PlaylistOp.objects.filter(created_at__lt=cutoff).values_list("playlist_id", flat=True).distinct().order_by()
    )
    return sum(editing.playlist_history_prune(playlist_id=playlist_id) for playlist_id in playlist_ids.iterator())
