"""The track catalog: bulk import (idempotent on URI) and the tenant-scoped reads.

``track_import`` owns the whole use case: who may import (a tenant admin, or an
API client with ``tracks:write``), the rules for each row, the writes in one
transaction and the audit event. The REST view only parses the body and renders
the result; the demo seed (``accounts.services.demo``) writes its catalog
directly, as a trusted bootstrap path. docs/api.md, "Tracks", describes the
semantics and limits clients see.

The reads at the end (``# --- Reads``) belong in ``playlists/selectors.py``
and will move there; they live here until that module is free to edit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.constants import ApiScope, Role
from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from spotify_agent.errors import Forbidden, Invalid, NotFound

from ..constants import TRACK_TEXT_MAX_LENGTH, TRACK_URI_MAX_LENGTH
from ..models import Track

# Who may import: the REST view declares the same requirement from these, so
# the rule is written once.
TRACK_IMPORT_ROLE = Role.ADMIN
TRACK_IMPORT_SCOPE = ApiScope.TRACKS_WRITE

# A day: nothing longer is a track, and the bound keeps the value far inside
# the column's PositiveIntegerField range.
TRACK_DURATION_MS_MAX = 24 * 60 * 60 * 1000
TRACK_TEMPO_MAX = 300.0

# The fields a row may carry. Required text must not be blank; optional ones
# may be omitted or null. A row replaces the stored track's fields: an omitted
# optional field is stored empty (album) or null (features).
_REQUIRED_TEXT = {"uri": TRACK_URI_MAX_LENGTH, "title": TRACK_TEXT_MAX_LENGTH, "artist": TRACK_TEXT_MAX_LENGTH}
_OPTIONAL_TEXT = {"album": TRACK_TEXT_MAX_LENGTH}
_FEATURES = {"tempo": TRACK_TEMPO_MAX, "energy": 1.0, "danceability": 1.0, "valence": 1.0}
_FIELDS = (*_REQUIRED_TEXT, *_OPTIONAL_TEXT, "duration_ms", *_FEATURES)
# The stored columns an import sets (everything but the URI, which finds the row).
_WRITTEN = tuple(name for name in _FIELDS if name != "uri")

# One INSERT or UPDATE statement per batch. An UPDATE of many rows is one
# CASE expression per column, so it is kept smaller than the insert batches.
_CREATE_BATCH_SIZE = 500
_UPDATE_BATCH_SIZE = 200


@dataclass(frozen=True)
class ImportedTrack:
    uri: str
    id: int


@dataclass(frozen=True)
class ImportResult:
    """What an import did; ``tracks`` lists every row's track, in request order."""

    created: int
    updated: int
    unchanged: int
    tracks: list[ImportedTrack]


def track_import_allowed(actor: Principal) -> bool:
    """Whether ``actor`` may import tracks into their tenant's catalog."""
    return actor.has_role(TRACK_IMPORT_ROLE) or actor.has_scope(TRACK_IMPORT_SCOPE)


@transaction.atomic
def track_import(
    *, actor: Principal, tracks: list[dict[str, Any]], context: RequestContext = NO_CONTEXT
) -> ImportResult:
    """Create or update tracks of the actor's tenant, found by URI.

    Idempotent: a URI not in the catalog is created, a known one is updated only
    when a field differs, and importing the same rows again changes nothing.
    Every row is checked before anything is written: one bad row (or a URI
    given twice, or more than ``TRACK_IMPORT_MAX_TRACKS`` rows) refuses the
    whole request with ``Invalid``, whose ``details.fields`` names each
    ``tracks[i].field``. Callers: a tenant admin or an API client with
    ``tracks:write`` (``Forbidden`` otherwise). Runs in one transaction of a
    few bulk statements, whatever the row count. Audited (``tracks.imported``,
    with the counts); emits no events.
    """
    if not track_import_allowed(actor):
        raise Forbidden("Importing tracks takes a tenant admin or an API client with the tracks:write scope.")
    rows = _validated_rows(tracks)

    # Known rows are locked in id order and new ones inserted in URI order, so
    # two imports touching the same tracks wait for each other instead of
    # deadlocking. NO KEY: a playlist may still reference these tracks meanwhile
    # (an import never changes the tenant or URI, the keys).
    known = (
        Track.objects.for_tenant(actor.tenant_id)
        .filter(uri__in=[row["uri"] for row in rows])
        .select_for_update(no_key=True)
        .order_by("pk")
    )
    existing = {track.uri: track for track in known}
    now = timezone.now()
    to_create: list[Track] = []
    to_update: list[Track] = []
    for row in sorted(rows, key=lambda r: r["uri"]):
        track = existing.get(row["uri"])
        if track is None:
            to_create.append(Track(tenant_id=actor.tenant_id, **row))
        elif any(getattr(track, name) != row[name] for name in _WRITTEN):
            for name in _WRITTEN:
                setattr(track, name, row[name])
            # bulk_update bypasses auto_now.
            track.updated_at = now
            to_update.append(track)

    # An upsert rather than a plain insert: a concurrent import may have
    # created one of these URIs since the read above, and then this row
    # overwrites it (last writer wins) instead of failing the whole request.
    Track.objects.bulk_create(
        to_create,
        batch_size=_CREATE_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["tenant", "uri"],
        update_fields=[*_WRITTEN, "updated_at"],
    )
    Track.objects.bulk_update(to_update, [*_WRITTEN, "updated_at"], batch_size=_UPDATE_BATCH_SIZE)

    ids = {track.uri: track.pk for track in (*existing.values(), *to_create)}
    result = ImportResult(
        created=len(to_create),
        updated=len(to_update),
        unchanged=len(rows) - len(to_create) - len(to_update),
        tracks=[ImportedTrack(uri=row["uri"], id=ids[row["uri"]]) for row in rows],
    )
    audit_record(
        action=AuditAction.TRACKS_IMPORTED,
        actor=Actor.from_principal(actor),
        tenant_id=actor.tenant_id,
        target_type="accounts.tenant",
        target_id=actor.tenant_id,
        context=context,
        details={"created": result.created, "updated": result.updated, "unchanged": result.unchanged},
    )
    return result


# --- Validation ---------------------------------------------------------------


def _validated_rows(tracks: Any) -> list[dict[str, Any]]:
    """The rows, cleaned (text stripped, album defaulted, features as floats),
    or ``Invalid`` naming every wrong ``tracks[i].field`` at once."""
    if not isinstance(tracks, list):
        raise Invalid("tracks must be a list of tracks.", field="tracks")
    if not tracks:
        raise Invalid("Give at least one track.", field="tracks")
    limit = settings.TRACK_IMPORT_MAX_TRACKS
    if len(tracks) > limit:
        raise Invalid(f"At most {limit} tracks per request; split the import.", field="tracks")

    errors: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(tracks):
        row, row_errors = _clean_row(raw)
        uri = row.get("uri")
        if uri is not None and "uri" not in row_errors:
            if uri in first_index:
                row_errors["uri"] = [f"Duplicate of tracks[{first_index[uri]}].uri: each URI at most once."]
            else:
                first_index[uri] = index
        for name, messages in row_errors.items():
            errors[f"tracks[{index}]" if name == "" else f"tracks[{index}].{name}"] = messages
        rows.append(row)
    if errors:
        field, messages = next(iter(errors.items()))
        more = len(errors) - 1
        also = f" {more} more problem{'s' if more > 1 else ''} in details.fields." if more else ""
        raise Invalid(f"{field}: {messages[0]}{also}", details={"fields": errors})
    return rows


def _clean_row(raw: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """One row, cleaned, and its errors by field name ("" for the row itself)."""
    if not isinstance(raw, dict):
        return {}, {"": ["Each track must be an object."]}
    errors = {str(name): ["Unknown field."] for name in sorted(set(raw) - set(_FIELDS))}
    row: dict[str, Any] = {}
    for name, check in _ROW_CHECKS.items():
        try:
            row[name] = check(raw.get(name))
        except ValueError as exc:
            errors[name] = [str(exc)]
    return row, errors


def _clean_text(value: Any, *, max_length: int, required: bool) -> str:
    if value is None:
        if required:
            raise ValueError("This field is required.")
        return ""
    if not isinstance(value, str):
        raise ValueError("Must be a string.")
    value = value.strip()
    if required and not value:
        raise ValueError("Must not be blank.")
    if len(value) > max_length:
        raise ValueError(f"At most {max_length} characters.")
    return value


def _clean_duration(value: Any) -> int:
    if value is None:
        raise ValueError("This field is required.")
    # bool is an int in Python, but true is no duration.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("Must be an integer (milliseconds).")
    if not 0 < value <= TRACK_DURATION_MS_MAX:
        raise ValueError(f"Must be greater than 0 and at most {TRACK_DURATION_MS_MAX} (a day).")
    return value


def _clean_feature(value: Any, *, maximum: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("Must be a number.")
    if not 0 <= value <= maximum:
        raise ValueError(f"Must be between 0 and {maximum:g}.")
    return float(value)


# Each field's check: the cleaned value, or ValueError with the message.
_ROW_CHECKS: dict[str, Callable[[Any], Any]] = {
    **{name: partial(_clean_text, max_length=m, required=True) for name, m in _REQUIRED_TEXT.items()},
    **{name: partial(_clean_text, max_length=m, required=False) for name, m in _OPTIONAL_TEXT.items()},
    "duration_ms": _clean_duration,
    **{name: partial(_clean_feature, maximum=m) for name, m in _FEATURES.items()},
}


# --- Reads ----------------------------------------------------------------------


def tracks_for_tenant(*, tenant_id: int, search: str | None = None) -> QuerySet[Track]:
    """The tenant's tracks; ``search`` keeps those where every word of it occurs
    in the title, artist or album (case-insensitive)."""
    queryset = Track.objects.for_tenant(tenant_id)
    for word in (search or "").split():
        queryset = queryset.filter(Q(title__icontains=word) | Q(artist__icontains=word) | Q(album__icontains=word))
    return queryset


def track_get(*, tenant_id: int, track_id: int) -> Track:
    """One track of the tenant; another tenant's, like a missing one, is ``NotFound``."""
    track = tracks_for_tenant(tenant_id=tenant_id).filter(pk=track_id).first()
    if track is None:
        raise NotFound("No such track.")
    return track
