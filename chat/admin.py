"""Admin screens of chat: rooms with their members inline, memberships, bans,
invitations, messages with their edit history and moderation status,
attachments, and each tenant's blocked words.

A room member, ban or invitation takes its room's tenant, and only users of
that tenant can be linked (``TenantScopedForm``). A room's tenant is fixed once
the room exists. Edits are plain saves recorded in the audit trail by
``AuditedModelAdmin``. Messages are read-only here: their seq, tombstones and
broadcasts belong to ``chat.services.messages``, which an admin save would
bypass; the one moderation action offered, clearing a flag after review, calls
``chat.services.moderation``. Attachments are read-only for the same reason.

Bodies are shown through ``Message.text`` (decrypted for encrypted rooms) and
always escaped: they are user text, so nothing here builds HTML from them by
hand; ``format_html`` is used only to wrap links around escaped values.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from spotify_agent.admin import AuditedModelAdmin, TenantScopedForm, TenantScopedInlineFormSet

from .constants import ModerationStatus
from .crypto import encryption_available
from .models import Attachment, BlockedWord, Message, MessageEdit, Room, RoomBan, RoomInvitation, RoomMember
from .moderation import phrase_pattern
from .services.moderation import message_flag_clear_do


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


class RoomForm(TenantScopedForm):
    def clean_encrypted(self) -> bool:
        encrypted = self.cleaned_data.get("encrypted", False)
        if encrypted and not encryption_available():
            raise forms.ValidationError("Encrypted rooms need CHAT_ENCRYPTION_KEYS; none are configured.")
        return encrypted


@admin.register(Room)
class RoomAdmin(AuditedModelAdmin):
    form = RoomForm
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
    fields = ("edited_at", "edited_by", "previous_text")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Previous body")
    def previous_text(self, obj: MessageEdit) -> str:
        return obj.previous_text


class AttachmentInline(admin.TabularInline):
    model = Attachment
    fields = ("attachment_link", "content_type", "human_size", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Attachment")
    def attachment_link(self, obj: Attachment) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:chat_attachment_change", args=[obj.pk]), obj.name)

    @admin.display(description="Size")
    def human_size(self, obj: Attachment) -> str:
        return filesizeformat(obj.size)


@admin.register(Message)
class MessageAdmin(AuditedModelAdmin):
    """Messages and their edit history, for review; changes go through the services.

    Filter "Moderation status: Flagged for review" is the review queue; after
    reading a flagged message, staff keep it with "Clear the moderation flag".
    """

    inlines = (MessageEditInline, AttachmentInline)
    list_display = (
        "room",
        "seq",
        "sender",
        "short_body",
        "moderation_status",
        "moderation_reason",
        "created_at",
        "edited_at",
        "deleted_at",
    )
    list_filter = (
        "moderation_status",
        ("deleted_at", admin.EmptyFieldListFilter),
        ("edited_at", admin.EmptyFieldListFilter),
        "tenant",
    )
    list_select_related = ("room", "sender")
    search_fields = ("body", "sender__username", "room__name")
    fields = (
        "tenant",
        "room",
        "seq",
        "sender",
        "client_id",
        "text",
        "encryption_key",
        "reply_to",
        "moderation_status",
        "moderation_reason",
        "created_at",
        "edited_at",
        "deleted_at",
        "deleted_by",
    )
    readonly_fields = fields
    actions = ("clear_flag",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_moderate_permission(self, request) -> bool:
        # Messages are never edited here, so "change" is the permission that
        # stands for reviewing them.
        return request.user.has_perm("chat.change_message")

    @admin.action(description="Clear the moderation flag (keep the message)", permissions=["moderate"])
    def clear_flag(self, request, queryset):
        actor, context = self.audit_actor(request), self.audit_context(request)
        count = 0
        for message in queryset.filter(moderation_status=ModerationStatus.FLAGGED).order_by("pk"):
            count += message_flag_clear_do(message=message, actor=actor, context=context)
        self.message_user(request, f"{count} flag(s) cleared.", messages.SUCCESS)

    @admin.display(description="Body")
    def short_body(self, obj: Message) -> str:
        text = obj.text
        return text if len(text) <= 80 else f"{text[:79]}…"

    @admin.display(description="Body")
    def text(self, obj: Message) -> str:
        return obj.text

    @admin.display(description="Encrypted under key")
    def encryption_key(self, obj: Message) -> str:
        return obj.body_key_id or "—"


@admin.register(Attachment)
class AttachmentAdmin(AuditedModelAdmin):
    """Uploaded files, for review: read-only (uploads, claims and deletes go
    through ``chat.services``). The content itself is downloaded through the API
    by members of the room; here are its metadata and where it was posted."""

    list_display = ("name", "room", "uploader", "content_type", "human_size", "message_link", "created_at")
    list_filter = ("content_type", ("message", admin.EmptyFieldListFilter), "tenant", "created_at")
    list_select_related = ("room", "uploader", "message")
    search_fields = ("name", "sha256", "uploader__username", "room__name")
    fields = (
        "tenant",
        "room",
        "uploader",
        "message_link",
        "name",
        "content_type",
        "human_size",
        "sha256",
        "storage_name",
        "encryption_key",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Size", ordering="size")
    def human_size(self, obj: Attachment) -> str:
        return f"{filesizeformat(obj.size)} ({obj.size} bytes)"

    @admin.display(description="Message", ordering="message")
    def message_link(self, obj: Attachment) -> str:
        if obj.message_id is None:
            return "— (not sent yet)"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:chat_message_change", args=[obj.message_id]), obj.message
        )

    @admin.display(description="Encrypted under key")
    def encryption_key(self, obj: Attachment) -> str:
        return obj.key_id or "—"


class BlockedWordForm(TenantScopedForm):
    class Meta:
        model = BlockedWord
        fields = ("tenant", "phrase", "action")

    def clean_phrase(self) -> str:
        phrase = " ".join(self.cleaned_data["phrase"].split())
        if phrase_pattern(phrase) is None:
            raise forms.ValidationError("Give at least one word.")
        return phrase

    def clean(self):
        # Checked here as well as by the constraint: on change the tenant is not
        # a form field, and Django skips constraints on fields outside the form.
        cleaned_data = super().clean()
        tenant_id, phrase = self.row_tenant_id(cleaned_data), cleaned_data.get("phrase")
        if tenant_id is not None and phrase:
            rules = BlockedWord.objects.filter(tenant_id=tenant_id, phrase__iexact=phrase).exclude(pk=self.instance.pk)
            if rules.exists():
                self.add_error("phrase", "This tenant already has a rule for this phrase.")
        return cleaned_data


@admin.register(BlockedWord)
class BlockedWordAdmin(AuditedModelAdmin):
    """A tenant's blocked words and phrases. Matching is whole-word and ignores case;
    "flag" stores the message for review, "reject" refuses it. A change applies to
    the next message sent."""

    form = BlockedWordForm
    list_display = ("phrase", "action", "tenant", "created_by", "created_at")
    list_filter = ("action", "tenant")
    list_select_related = ("tenant", "created_by")
    search_fields = ("phrase", "tenant__slug")
    autocomplete_fields = ("tenant",)
    fields = ("tenant", "phrase", "action", "created_by", "created_at")
    readonly_fields = ("created_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        # Another tenant's rule is another rule: add it there.
        return (*self.readonly_fields, "tenant") if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
