"""Admin screens of the catalog and playlists: a back office for looking, and
for the two repairs staff need (revert a playlist, revoke share links).

The admin never writes a playlist's content, access or history itself: each of
those writes has a service that locks the playlist and tells open sessions
(``playlist.changed``, ``playlist.access_changed``), and an admin save would
skip both, leaving clients holding a list the server no longer has. So:

- A playlist is read-only here: title, description, items and revision change
  only through ``playlists.services.editing`` (``update`` ops, reverts), and
  visibility only through ``playlist_visibility_set``, whose owner check has no
  trusted split yet (owners change it through the API). Playlists are not
  added here (``playlist_create`` also writes the owner's collaborator row and
  the revision-0 snapshot the history starts from) nor deleted
  (``playlist_delete`` ends every subscriber's stream).
- Collaborators and share links are shown read-only inline. Collaborators stay
  with the owner and the API: who shares a playlist is the owner's decision,
  and ``collaborator_remove`` is what tells the removed user's sockets. Share
  links can be revoked from their own list ("Revoke selected links", through
  ``share_link_revoke_do``); the token hash is never shown.
- "Revert to an earlier revision…" on a playlist's page (``<id>/revert/``) asks
  for the revision and calls ``playlist_revert_do`` with the staff user as the
  op's author: the revert is a new revision in the op log, broadcast like any
  edit, and the admin's change history and the audit trail record who asked.
- The op log, listening history and suggestion model are read-only lists: they
  are written by the services and the Celery tasks.

Staff have no tenant, so the actions call the trusted ``*_do`` service paths
with an audit ``Actor``. Reverting takes ``playlists.change_playlist`` and
revoking ``playlists.change_playlistsharelink``: nothing is edited in place on
these screens, so "change" is the permission that stands for the repairs.
The revert page's template is ``admin/playlists/playlist/revert.html``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.db.models import Count
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from spotify_agent.admin import AuditedModelAdmin, TenantScopedForm
from spotify_agent.errors import DomainError

from .constants import CLIENT_OP_ID_MAX_LENGTH
from .models import (
    Playlist,
    PlaylistCollaborator,
    PlaylistItem,
    PlaylistOp,
    PlaylistShareLink,
    Track,
    TrackPlay,
    TrackSimilarity,
)
from .services.editing import playlist_revert_do
from .services.sharing import share_link_revoke_do

# A playlist's page shows its latest op-log entries; the full log is one click away.
RECENT_OPS = 20

_UPDATED_FIELDS = ("title", "description")


def ops_summary(ops: list[dict[str, Any]]) -> str:
    """A short reading of applied ops (docs/protocol.md), e.g. ``insert 2, move 1,
    update title``: counts by kind in order of first appearance, then the fields
    an ``update`` set. An entry that changed nothing reads ``no change``."""
    counts: dict[str, int] = {}
    updated: set[str] = set()
    for op in ops:
        kind = op.get("op", "?") if isinstance(op, dict) else "?"
        if kind == "update":
            updated.update(op.get("set") or {})
        else:
            counts[kind] = counts.get(kind, 0) + 1
    parts = [f"{kind} {count}" for kind, count in counts.items()]
    if updated:
        parts.append("update " + " and ".join(name for name in _UPDATED_FIELDS if name in updated))
    return ", ".join(parts) or "no change"


def _pretty_json(value: Any):
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


class _ReadOnlyInline(admin.TabularInline):
    """An inline that only shows rows: they are written by services."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _ReadOnlyAdmin(AuditedModelAdmin):
    """A list and detail pages, nothing else: the rows are written by services and tasks."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Catalog ----------------------------------------------------------------------------


@admin.register(Track)
class TrackAdmin(AuditedModelAdmin):
    form = TenantScopedForm
    list_display = ("title", "artist", "album", "tenant", "duration", "tempo", "created_at")
    list_filter = ("tenant", "created_at")
    list_select_related = ("tenant",)
    search_fields = ("title", "artist", "album", "uri")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "tenant") if obj is not None else self.readonly_fields

    @admin.display(description="Duration", ordering="duration_ms")
    def duration(self, obj: Track) -> str:
        minutes, seconds = divmod(obj.duration_ms // 1000, 60)
        return f"{minutes}:{seconds:02d}"


@admin.register(TrackPlay)
class TrackPlayAdmin(_ReadOnlyAdmin):
    """The listening history suggestions learn from."""

    list_display = ("played_at", "user", "track", "tenant")
    list_filter = ("tenant", "played_at")
    list_select_related = ("user", "track", "tenant")
    search_fields = ("user__username", "track__title", "track__artist")
    fields = ("tenant", "user", "track", "played_at")
    readonly_fields = fields


@admin.register(TrackSimilarity)
class TrackSimilarityAdmin(_ReadOnlyAdmin):
    """The suggestion model, rebuilt by ``playlists.tasks.suggestions_rebuild``."""

    list_display = ("track", "similar", "kind", "score", "together", "tenant")
    list_filter = ("kind", "tenant")
    list_select_related = ("track", "similar", "tenant")
    search_fields = ("track__title", "track__artist", "similar__title", "similar__artist")
    ordering = ("track", "kind", "-score")
    fields = ("tenant", "track", "similar", "kind", "score", "together")
    readonly_fields = fields


# --- Playlists ----------------------------------------------------------------------------


class PlaylistItemInline(_ReadOnlyInline):
    model = PlaylistItem
    fields = ("position", "track", "added_by", "added_at", "item_id")
    readonly_fields = fields
    ordering = ("position",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("track", "added_by")


class PlaylistCollaboratorInline(_ReadOnlyInline):
    model = PlaylistCollaborator
    fields = ("user", "role", "added_by", "created_at")
    readonly_fields = fields
    ordering = ("created_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "added_by")


class PlaylistShareLinkInline(_ReadOnlyInline):
    model = PlaylistShareLink
    fields = (
        "token_prefix",
        "role",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "use_count",
        "last_used_at",
    )
    readonly_fields = fields
    ordering = ("-created_at",)
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")


class _LatestOpsFormSet(forms.BaseInlineFormSet):
    """The inline's rows are the latest ``RECENT_OPS`` entries, not the whole log."""

    def get_queryset(self):
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset()[:RECENT_OPS]
        return self._latest


class PlaylistOpInline(_ReadOnlyInline):
    model = PlaylistOp
    formset = _LatestOpsFormSet
    verbose_name_plural = f"Recent op log (latest {RECENT_OPS})"
    fields = ("revision", "kind", "actor", "client_op_id", "summary", "created_at")
    readonly_fields = fields
    ordering = ("-pk",)
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    @admin.display(description="Ops")
    def summary(self, obj: PlaylistOp) -> str:
        return ops_summary(obj.ops)


class PlaylistRevertForm(forms.Form):
    """Which revision to go back to; ``client_op_id`` is drawn when the page is
    shown, so submitting the page twice reverts once."""

    revision = forms.IntegerField(min_value=0)
    client_op_id = forms.CharField(widget=forms.HiddenInput, max_length=CLIENT_OP_ID_MAX_LENGTH)

    def __init__(self, *args, playlist: Playlist, **kwargs):
        super().__init__(*args, **kwargs)
        self.playlist = playlist
        self.has_choices = playlist.revision > playlist.history_floor
        self.fields["revision"].help_text = (
            f"From {playlist.history_floor} (the oldest revision kept) to {playlist.revision - 1}. "
            "The playlist becomes what it was then, as a new revision that can itself be reverted."
        )
        if not self.is_bound:
            self.initial = {
                "revision": max(playlist.revision - 1, playlist.history_floor),
                "client_op_id": f"admin-revert-{uuid.uuid4().hex}",
            }

    def clean_revision(self) -> int:
        revision = self.cleaned_data["revision"]
        if not self.playlist.history_floor <= revision < self.playlist.revision:
            raise forms.ValidationError(
                f"Pick a revision from {self.playlist.history_floor} to {self.playlist.revision - 1}."
            )
        return revision


@admin.register(Playlist)
class PlaylistAdmin(AuditedModelAdmin):
    """Playlists, read-only, with their items, collaborators, share links and
    latest op log; "Revert to an earlier revision…" is the one write."""

    inlines = (PlaylistItemInline, PlaylistCollaboratorInline, PlaylistShareLinkInline, PlaylistOpInline)
    list_display = (
        "title",
        "tenant",
        "owner",
        "visibility",
        "item_count",
        "revision",
        "history_floor",
        "updated_at",
    )
    list_filter = ("visibility", "tenant", "updated_at")
    list_select_related = ("tenant", "owner")
    search_fields = ("title", "owner__username", "tenant__slug")
    fields = (
        "tenant",
        "owner",
        "title",
        "description",
        "visibility",
        "revision",
        "history_floor",
        "snapshot_count",
        "op_log",
        "revert_link",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(item_count=Count("items"))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revert_permission(self, request) -> bool:
        return request.user.has_perm("playlists.change_playlist")

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if self.has_revert_permission(request) else tuple(f for f in fields if f != "revert_link")

    @admin.display(description="Items", ordering="item_count")
    def item_count(self, obj: Playlist) -> int:
        return obj.item_count

    @admin.display(description="Snapshots")
    def snapshot_count(self, obj: Playlist) -> int:
        return obj.snapshots.count()

    @admin.display(description="Op log")
    def op_log(self, obj: Playlist):
        url = reverse("admin:playlists_playlistop_changelist")
        return format_html(
            '<a href="{}?playlist__id__exact={}">{} entries</a>',
            url,
            obj.pk,
            PlaylistOp.objects.filter(playlist=obj).count(),
        )

    @admin.display(description="Revert")
    def revert_link(self, obj: Playlist):
        url = reverse("admin:playlists_playlist_revert", args=[obj.pk])
        return format_html('<a class="button" href="{}">Revert to an earlier revision…</a>', url)

    # --- Revert ---------------------------------------------------------------------------

    def get_urls(self):
        revert = path(
            "<path:object_id>/revert/",
            self.admin_site.admin_view(self.revert_view),
            name="playlists_playlist_revert",
        )
        return [revert, *super().get_urls()]

    def revert_view(self, request, object_id):
        """Ask for a revision, then revert through ``playlist_revert_do`` with the
        staff user as the op's author, and record it in the playlist's history."""
        if not self.has_revert_permission(request):
            raise PermissionDenied
        playlist = self.get_object(request, unquote(object_id))
        if playlist is None:
            raise Http404("No such playlist.")
        form = PlaylistRevertForm(request.POST if request.method == "POST" else None, playlist=playlist)
        change_url = reverse("admin:playlists_playlist_change", args=[playlist.pk])
        if form.is_bound and form.is_valid() and self._revert(request, playlist, form):
            return HttpResponseRedirect(change_url)
        revisions = (
            PlaylistOp.objects.filter(playlist=playlist, revision__isnull=False)
            .select_related("actor")
            .order_by("-revision")[:RECENT_OPS]
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": playlist,
            "change_url": change_url,
            "title": "Revert to an earlier revision",
            "form": form,
            "revisions": [(entry, ops_summary(entry.ops)) for entry in revisions],
        }
        return TemplateResponse(request, "admin/playlists/playlist/revert.html", context)

    def _revert(self, request, playlist: Playlist, form: PlaylistRevertForm) -> bool:
        """Revert; False (with the service's refusal on the form) when nothing was done."""
        revision = form.cleaned_data["revision"]
        try:
            with transaction.atomic(using=router.db_for_write(Playlist)):
                result = playlist_revert_do(
                    playlist_id=playlist.pk,
                    revision=revision,
                    actor_user_id=request.user.pk,
                    client_op_id=form.cleaned_data["client_op_id"],
                )
                if result.committed and not result.duplicate:
                    playlist.refresh_from_db()
                    self.log_change(
                        request,
                        playlist,
                        f"Reverted to revision {revision} as revision {result.revision} ({ops_summary(result.ops)}).",
                    )
        except DomainError as exc:
            form.add_error(None, exc.message)
            return False
        if result.duplicate:
            self.message_user(request, "This revert was already done.", messages.INFO)
        elif result.committed:
            self.message_user(
                request,
                f"“{playlist}” reverted to revision {revision}: now revision {result.revision}.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, f"Nothing to change: “{playlist}” already matches revision {revision}.")
        return True


@admin.register(PlaylistShareLink)
class PlaylistShareLinkAdmin(_ReadOnlyAdmin):
    """Every share link, for review; "Revoke selected links" is the one write.
    Only the token's first characters are shown: the hash stays in the database."""

    list_display = (
        "token_prefix",
        "playlist",
        "tenant",
        "role",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "use_count",
        "last_used_at",
    )
    list_filter = ("role", ("revoked_at", admin.EmptyFieldListFilter), "tenant", "expires_at", "created_at")
    list_select_related = ("playlist", "tenant", "created_by")
    search_fields = ("token_prefix", "playlist__title", "tenant__slug", "created_by__username")
    fields = (
        "tenant",
        "playlist",
        "token_prefix",
        "role",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "use_count",
        "last_used_at",
    )
    readonly_fields = fields
    actions = ("revoke_links",)

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("playlists.change_playlistsharelink")

    @admin.action(description="Revoke selected links", permissions=["revoke"])
    def revoke_links(self, request, queryset):
        actor, context = self.audit_actor(request), self.audit_context(request)
        count = 0
        for link in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            count += share_link_revoke_do(link=link, actor=actor, context=context)
        self.message_user(request, f"{count} link(s) revoked.", messages.SUCCESS)


class OpChangedFilter(admin.SimpleListFilter):
    """Entries that made a revision, or edits that changed nothing (revision empty)."""

    title = "outcome"
    parameter_name = "changed"

    def lookups(self, request, model_admin):
        return (("yes", "Made a revision"), ("no", "Changed nothing"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(revision__isnull=self.value() == "no")
        return queryset


@admin.register(PlaylistOp)
class PlaylistOpAdmin(_ReadOnlyAdmin):
    """The op log: one row per edit request. ``revision`` empty: the edit changed
    nothing (kept so a retry gets its first answer). Ops are shown as applied,
    in the form clients replay (docs/protocol.md)."""

    list_display = ("playlist", "revision", "kind", "summary", "actor", "client_op_id", "tenant", "created_at")
    list_filter = ("kind", OpChangedFilter, "tenant", "created_at")
    list_select_related = ("playlist", "actor", "tenant")
    search_fields = ("playlist__title", "client_op_id")
    fields = (
        "tenant",
        "playlist",
        "revision",
        "base_revision",
        "kind",
        "actor",
        "client_op_id",
        "created_at",
        "summary",
        "ops_json",
        "outcome_json",
    )
    readonly_fields = fields

    @admin.display(description="Ops")
    def summary(self, obj: PlaylistOp) -> str:
        return ops_summary(obj.ops)

    @admin.display(description="Ops as applied")
    def ops_json(self, obj: PlaylistOp):
        return _pretty_json(obj.ops)

    @admin.display(description="Outcome (the author's ack)")
    def outcome_json(self, obj: PlaylistOp):
        return _pretty_json(obj.outcome)
