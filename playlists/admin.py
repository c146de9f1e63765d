"""Admin screens of the catalog and playlists.

Playlist items are shown read-only: their order and revision are owned by the
playlist edit service, which broadcasts each change to open sessions, so an
item edited here would silently diverge from what clients hold. A playlist's
tenant is fixed once it exists, and its owner must belong to that tenant.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from spotify_agent.admin import AuditedModelAdmin, TenantScopedForm

from .models import Playlist, PlaylistItem, Track


@admin.register(Track)
class TrackAdmin(AuditedModelAdmin):
    form = TenantScopedForm
    list_display = ("title", "artist", "album", "tenant", "duration", "tempo", "created_at")
    list_filter = ("tenant", "created_at")
    list_select_related = ("tenant",)
    search_fields = ("title", "artist", "album", "uri")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at",)

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "tenant") if obj is not None else self.readonly_fields

    @admin.display(description="Duration", ordering="duration_ms")
    def duration(self, obj: Track) -> str:
        minutes, seconds = divmod(obj.duration_ms // 1000, 60)
        return f"{minutes}:{seconds:02d}"


class PlaylistItemInline(admin.TabularInline):
    model = PlaylistItem
    fields = ("position", "track", "added_by", "added_at", "item_id")
    readonly_fields = fields
    ordering = ("position",)
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("track", "added_by")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Playlist)
class PlaylistAdmin(AuditedModelAdmin):
    form = TenantScopedForm
    inlines = (PlaylistItemInline,)
    list_display = ("title", "tenant", "owner", "visibility", "item_count", "revision", "updated_at")
    list_filter = ("visibility", "tenant", "updated_at")
    list_select_related = ("tenant", "owner")
    search_fields = ("title", "owner__username", "tenant__slug")
    autocomplete_fields = ("tenant", "owner")
    readonly_fields = ("revision", "created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(item_count=Count("items"))

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "tenant") if obj is not None else self.readonly_fields

    @admin.display(description="Items", ordering="item_count")
    def item_count(self, obj: Playlist) -> int:
        return obj.item_count
