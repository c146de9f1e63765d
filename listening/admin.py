"""Admin screens of listening sessions: who hosts what, who is there, what plays,
what the audience asks for, and each user's players.

Fields are read-only: playback, membership and the host change through the
session services, which lock the session and tell every member's socket; a
field edited here would leave clients playing something else. What staff do
is an action calling those services' trusted paths (audited): end a session;
mute, unmute or remove a member. The queue is a playlist (kind ``queue``)
and has its playlist screen.
"""

from __future__ import annotations

from django.contrib import admin, messages

from spotify_agent.admin import AuditedModelAdmin

from .models import Device, ListeningSession, SessionInvite, SessionMember, TrackRequest
from .services.sessions import member_moderate_do, session_end_do


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
    list_display = (
        "title",
        "tenant",
        "host",
        "mode",
        "visibility",
        "status",
        "track",
        "playing",
        "playback_revision",
        "created_at",
    )
    list_filter = ("status", "mode", "visibility", "tenant", "created_at")
    list_select_related = ("tenant", "host", "track")
    search_fields = ("title", "host__username", "tenant__slug")
    fields = (
        "tenant",
        "title",
        "host",
        "mode",
        "visibility",
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
        "waiting_until_ms",
        "dj",
        "dj_turn_tracks",
        "dj_turn_played",
        "created_at",
        "ended_at",
    )
    readonly_fields = fields
    actions = ("end_sessions",)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_moderate_permission(self, request) -> bool:
        # Fields are never edited here, so "change" stands for running the session.
        return request.user.has_perm("listening.change_listeningsession")

    @admin.action(description="End the selected live sessions", permissions=["moderate"])
    def end_sessions(self, request, queryset):
        actor, context = self.audit_actor(request), self.audit_context(request)
        ended = sum(
            session_end_do(session_id=pk, actor=actor, context=context)
            for pk in queryset.values_list("pk", flat=True).order_by("pk")
        )
        self.message_user(request, f"{ended} session(s) ended.", messages.SUCCESS)


@admin.register(SessionMember)
class SessionMemberAdmin(AuditedModelAdmin):
    """Who is or was in which session; staff mute, unmute or remove members here
    as a host would (audited, and the member's sockets are told)."""

    list_display = ("user", "session", "tenant", "role", "joined_at", "left_at", "muted_at", "removed_at")
    list_filter = ("role", "tenant", ("left_at", admin.EmptyFieldListFilter), ("muted_at", admin.EmptyFieldListFilter))
    list_select_related = ("user", "session", "tenant")
    search_fields = ("user__username", "session__title", "tenant__slug")
    fields = ("tenant", "session", "user", "role", "joined_at", "left_at", "muted_at", "removed_at", "buffering_since")
    readonly_fields = fields
    actions = ("mute_members", "unmute_members", "remove_members")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_moderate_permission(self, request) -> bool:
        return request.user.has_perm("listening.change_sessionmember")

    def _moderate(self, request, queryset, action: str, done: str) -> None:
        actor, context = self.audit_actor(request), self.audit_context(request)
        changed = sum(
            member_moderate_do(member_id=pk, action=action, actor=actor, context=context)
            for pk in queryset.values_list("pk", flat=True).order_by("pk")
        )
        skipped = queryset.count() - changed
        note = f" ({skipped} skipped: already so, gone, a host, or the session ended)" if skipped else ""
        self.message_user(request, f"{changed} member(s) {done}{note}.", messages.SUCCESS)

    @admin.action(description="Mute the selected members", permissions=["moderate"])
    def mute_members(self, request, queryset):
        self._moderate(request, queryset, "mute", "muted")

    @admin.action(description="Lift the selected members' mute", permissions=["moderate"])
    def unmute_members(self, request, queryset):
        self._moderate(request, queryset, "unmute", "unmuted")

    @admin.action(description="Remove the selected members from their session", permissions=["moderate"])
    def remove_members(self, request, queryset):
        self._moderate(request, queryset, "remove", "removed")


@admin.register(TrackRequest)
class TrackRequestAdmin(AuditedModelAdmin):
    """The audience's requests and where they went. Read-only: a DJ decides them
    (``listening.services.requests``), which tells the session."""

    list_display = ("track", "session", "tenant", "requested_by", "status", "votes", "created_at", "decided_by")
    list_filter = ("status", "tenant", "created_at")
    list_select_related = ("track", "session", "tenant", "requested_by", "decided_by")
    search_fields = ("track__title", "track__artist", "session__title", "requested_by__username")
    fields = (
        "tenant",
        "session",
        "track",
        "requested_by",
        "status",
        "votes",
        "created_at",
        "decided_at",
        "decided_by",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SessionInvite)
class SessionInviteAdmin(AuditedModelAdmin):
    """Who invited whom to which session, and whether they came. Read-only."""

    list_display = ("user", "session", "tenant", "invited_by", "created_at", "accepted_at")
    list_filter = ("tenant", "created_at", ("accepted_at", admin.EmptyFieldListFilter))
    list_select_related = ("user", "session", "tenant", "invited_by")
    search_fields = ("user__username", "invited_by__username", "session__title")
    fields = ("tenant", "session", "user", "invited_by", "created_at", "accepted_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Device)
class DeviceAdmin(AuditedModelAdmin):
    """Users' players, to see which one plays. Read-only: a device is changed by
    its user (``listening.services.devices``), which tells their sockets; a row
    edited or deleted here would leave a player playing that should not."""

    list_display = ("name", "user", "tenant", "kind", "active", "last_seen_at")
    list_filter = ("active", "kind", "tenant", "last_seen_at")
    list_select_related = ("user", "tenant")
    search_fields = ("name", "device_id", "user__username", "tenant__slug")
    fields = ("tenant", "user", "device_id", "name", "kind", "active", "created_at", "last_seen_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
