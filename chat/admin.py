"""Admin screens of chat: rooms with their members inline, and memberships on their own.

A room member takes its room's tenant, and only users of that tenant can be
added (``TenantScopedForm``). A room's tenant is fixed once the room exists.
Edits are plain saves recorded in the audit trail by ``AuditedModelAdmin``.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count

from spotify_agent.admin import AuditedModelAdmin, TenantScopedForm, TenantScopedInlineFormSet

from .models import Room, RoomMember


class RoomMemberForm(TenantScopedForm):
    tenant_from = "room"

    class Meta:
        model = RoomMember
        fields = ("room", "user", "role")


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
    fields = ("tenant", "name", "kind", "topic", "created_by", "created_at", "archived_at")
    readonly_fields = ("created_by", "created_at")

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
    fields = ("room", "user", "role", "tenant", "joined_at")
    readonly_fields = ("tenant", "joined_at")

    def get_readonly_fields(self, request, obj=None):
        # On change only the role is editable: another room or user is another membership.
        return (*self.readonly_fields, "room", "user") if obj is not None else self.readonly_fields
