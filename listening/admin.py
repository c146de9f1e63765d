"""Admin screens of listening sessions: who hosts what, who is there, what plays.

Read-only: playback, membership and the host change through the session
services, which lock the session and tell every member's socket; a field
edited here would leave clients playing something else. The queue is a
playlist (kind ``queue``) and has its playlist screen.
"""

from __future__ import annotations

from django.contrib import admin

from spotify_agent.admin import AuditedModelAdmin

from .models import ListeningSession, SessionMember


class SessionMemberInline(admin.TabularInline):
    model = SessionMember
    fields = ("user", "role", "joined_at", "left_at")
    readonly_fields = fields
    ordering = ("joined_at",)
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ListeningSession)
class ListeningSessionAdmin(AuditedModelAdmin):
    inlines = (SessionMemberInline,)
    list_display = ("title", "tenant", "host", "mode", "status", "track", "playing", "playback_revision", "created_at")
    list_filter = ("status", "mode", "tenant", "created_at")
    list_select_related = ("tenant", "host", "track")
    search_fields = ("title", "host__username", "tenant__slug")
    fields = (
        "tenant",
        "title",
        "host",
        "mode",
        "status",
        "audience_limit",
        "vote_skip_threshold",
        "radio",
        "queue",
        "room",
        "track",
        "position_ms",
        "anchor_ms",
        "playing",
        "rate",
        "volume",
        "playback_revision",
        "track_serial",
        "created_at",
        "ended_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
