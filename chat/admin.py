"""Admin screens of chat: rooms with their members inline, memberships, bans,
invitations, and messages with their edit history.

A room member, ban or invitation takes its room's tenant, and only users of
that tenant can be linked (``TenantScopedForm``). A room's tenant is fixed once
the room exists. Edits are plain saves recorded in the audit trail by
``AuditedModelAdmin``. Messages are read-only here: their seq, tombstones and
broadcasts belong to ``chat.services.messages``, which an admin save would
bypass.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from spotify_agent.admin import AuditedModelAdmin, TenantScopedForm, TenantScopedInlineFormSet

from .models import Message, MessageEdit, Room, RoomBan, RoomInvitation, RoomMember


class RoomMemberForm(TenantScopedForm):
    tenant_from = "room"

    class Meta:
        model = RoomMember
        fields = ("room", "user", "role", "muted_until", "receipts_private")


class RoomMemberInline(admin.TabularInline):
    model = RoomMember
    form = RoomMemberForm
    formset = TenantScopedInlineFormSet
    fields = ("user", "role", "joined_at")
    readonly_fields = ("joined_at",)
    autocomplete_fields = ("user",)
    extra = 0


@admin.register(Room)
class RoomAdmin(AuditedModelAdmin):
    form = TenantScopedForm
    inlines = (RoomMemberInline,)
    list_display = ("name", "tenant", "kind", "member_count", "created_by", "created_at", "archived_at")
    list_filter = ("kind", ("archived_at", admin.EmptyFieldListFilter), "tenant", "created_at")
    list_select_related = ("tenant", "created_by")
    search_fields = ("name", "topic", "tenant__slug")
    autocomplete_fields = ("tenant",)
    fields = (
        "tenant",
        "name",
        "kind",
        "topic",
        "encrypted",
        "direct_key",
        "last_seq",
        "created_by",
        "created_at",
        "archived_at",
    )
    readonly_fields = ("direct_key", "last_seq", "created_by", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("members"))

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "tenant") if obj is not None else self.readonly_fields

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj: Room) -> int:
        return obj.member_count


@admin.register(RoomMember)
class RoomMemberAdmin(AuditedModelAdmin):
    form = RoomMemberForm
    list_display = ("user", "room", "role", "tenant", "joined_at")
    list_filter = ("role", "tenant", "joined_at")
    list_select_related = ("user", "room", "tenant")
    search_fields = ("user__username", "room__name", "tenant__slug")
    autocomplete_fields = ("room", "user")
    fields = ("room", "user", "role", "muted_until", "receipts_private", "last_read_seq", "tenant", "joined_at")
    readonly_fields = ("last_read_seq", "tenant", "joined_at")

    def get_readonly_fields(self, request, obj=None):
        # On change only the role is editable: another room or user is another membership.
        return (*self.readonly_fields, "room", "user") if obj is not None else self.readonly_fields


class RoomBanForm(TenantScopedForm):
    tenant_from = "room"

    class Meta:
        model = RoomBan
        fields = ("room", "user", "until", "reason")


@admin.register(RoomBan)
class RoomBanAdmin(AuditedModelAdmin):
    form = RoomBanForm
    list_display = ("user", "room", "until", "reason", "created_by", "created_at")
    list_filter = (("until", admin.EmptyFieldListFilter), "tenant", "created_at")
    list_select_related = ("user", "room", "created_by")
    search_fields = ("user__username", "room__name", "tenant__slug")
    autocomplete_fields = ("room", "user")
    fields = ("room", "user", "until", "reason", "tenant", "created_by", "created_at")
    readonly_fields = ("tenant", "created_by", "created_at")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(RoomInvitation)
class RoomInvitationAdmin(AuditedModelAdmin):
    list_display = ("invitee", "room", "invited_by", "created_at", "accepted_at")
    list_filter = (("accepted_at", admin.EmptyFieldListFilter), "tenant", "created_at")
    list_select_related = ("invitee", "room", "invited_by")
    search_fields = ("invitee__username", "room__name", "tenant__slug")
    fields = ("room", "invitee", "invited_by", "tenant", "created_at", "accepted_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False


class MessageEditInline(admin.TabularInline):
    model = MessageEdit
    fields = ("edited_at", "edited_by", "previous_body")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(AuditedModelAdmin):
    """Messages and their edit history, for review; changes go through the services."""

    inlines = (MessageEditInline,)
    list_display = ("room", "seq", "sender", "short_body", "created_at", "edited_at", "deleted_at")
    list_filter = (("deleted_at", admin.EmptyFieldListFilter), ("edited_at", admin.EmptyFieldListFilter), "tenant")
    list_select_related = ("room", "sender")
    search_fields = ("body", "sender__username", "room__name")
    fields = (
        "tenant",
        "room",
        "seq",
        "sender",
        "client_id",
        "body",
        "reply_to",
        "created_at",
        "edited_at",
        "deleted_at",
        "deleted_by",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Body")
    def short_body(self, obj: Message) -> str:
        return obj.body if len(obj.body) <= 80 else f"{obj.body[:79]}…"
