"""Fixtures of the admin tests: a logged-in superuser, one row of every registered model."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django import forms
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.constants import ApiScope, Role
from accounts.services.api_clients import api_client_create
from audit.constants import AuditAction
from audit.services import Actor, RequestContext, audit_record
from chat.models import Attachment, BlockedWord, Message, Room, RoomBan, RoomInvitation, RoomMember
from listening.models import Device, ListeningSession, SessionInvite, SessionMember, TrackRequest
from notifications.models import (
    Delivery,
    MobileToken,
    Notification,
    NotificationPreference,
    NotificationSettings,
    NotificationTemplate,
    RoutingRule,
    WebPushSubscription,
)
from notifications.services.sending import send_notification
from playlists.constants import CollaboratorRole, PlaylistKind, SimilarityKind
from playlists.models import (
    Playlist,
    PlaylistItem,
    PlaylistOp,
    PlaylistShareLink,
    Track,
    TrackPlay,
    TrackSimilarity,
)
from tests.factories import TenantFactory, UserFactory


@pytest.fixture
def superuser(db):
    return UserFactory(username="root-admin", tenant=None, is_staff=True, is_superuser=True)


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


def make_rows(*, tag: str) -> dict[type, object]:
    """One new row of every model the admin shows, in a new tenant named after ``tag``."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
    from rest_framework_simplejwt.tokens import RefreshToken

    from audit.models import AuditChainHead, AuditEvent

    tenant = TenantFactory(slug=f"tenant-{tag}")
    user = UserFactory(username=f"member-{tag}", tenant=tenant)
    staff = Actor.system("tests")
    issued = api_client_create(tenant=tenant, name=f"partner-{tag}", scopes=[ApiScope.TENANT_READ], actor=staff)
    room = Room.objects.create(tenant=tenant, name=f"lobby-{tag}", created_by=user)
    member = RoomMember.objects.create(tenant=tenant, room=room, user=user)
    outsider = UserFactory(username=f"outsider-{tag}", tenant=tenant)
    ban = RoomBan.objects.create(tenant=tenant, room=room, user=outsider, created_by=user)
    invitation = RoomInvitation.objects.create(tenant=tenant, room=room, invitee=outsider, invited_by=user)
    message = Message.objects.create(tenant=tenant, room=room, seq=1, sender=user, client_id=tag, body="hello")
    track = Track.objects.create(tenant=tenant, uri=f"spotify:track:{tag}", title="Song", artist="Band", duration_ms=1)
    playlist = Playlist.objects.create(tenant=tenant, owner=user, title=f"Mix {tag}")
    PlaylistItem.objects.create(tenant=tenant, playlist=playlist, track=track, position=0, added_by=user)
    similar = Track.objects.create(
        tenant=tenant, uri=f"spotify:track:{tag}-2", title="Other", artist="Band", duration_ms=1
    )
    queue = Playlist.objects.create(tenant=tenant, owner=user, title=f"Queue {tag}", kind=PlaylistKind.QUEUE)
    listening = ListeningSession.objects.create(
        tenant=tenant, host=user, title=f"Session {tag}", queue=queue, room=room, audience_limit=10
    )
    notification = send_notification(
        tenant_id=tenant.pk, title="Hello", category="news", recipients={"users": [user.pk]}
    ).notification
    event = audit_record(
        action=AuditAction.LOGIN_SUCCEEDED,
        actor=Actor.user(user),
        tenant_id=tenant.pk,
        context=RequestContext(ip="192.0.2.1", user_agent="pytest"),
        details={"tag": tag},
    )
    refresh = RefreshToken.for_user(user)
    refresh.blacklist()
    access = {
        "user_agent": "pytest",
        "ip_address": "192.0.2.1",
        "username": user.username,
        "http_accept": "*/*",
        "path_info": "/api/v1/auth/token/",
    }
    return {
        type(tenant): tenant,
        type(user): user,
        type(user.membership): user.membership,
        type(issued.client): issued.client,
        Group: Group.objects.create(name=f"support-{tag}"),
        Room: room,
        RoomMember: member,
        RoomBan: ban,
        RoomInvitation: invitation,
        Message: message,
        Attachment: Attachment.objects.create(
            tenant=tenant,
            room=room,
            uploader=user,
            message=message,
            name=f"photo-{tag}.png",
            content_type="image/png",
            size=1234,
            sha256="0" * 64,
            storage_name=f"chat/attachments/{tenant.pk}/{tag}",
        ),
        BlockedWord: BlockedWord.objects.create(tenant=tenant, phrase=f"spam-{tag}", created_by=user),
        Track: track,
        Playlist: playlist,
        ListeningSession: listening,
        SessionMember: SessionMember.objects.create(
            tenant=tenant, session=listening, user=user, role="host", joined_at=timezone.now()
        ),
        Device: Device.objects.create(
            tenant=tenant, user=user, device_id=f"phone-{tag}", name=f"Phone {tag}", last_seen_at=timezone.now()
        ),
        TrackRequest: TrackRequest.objects.create(tenant=tenant, session=listening, track=track, requested_by=user),
        SessionInvite: SessionInvite.objects.create(tenant=tenant, session=listening, user=user, invited_by=user),
        PlaylistOp: PlaylistOp.objects.create(
            tenant=tenant, playlist=playlist, revision=1, base_revision=0, actor=user, client_op_id=tag, ops=[]
        ),
        PlaylistShareLink: PlaylistShareLink.objects.create(
            tenant=tenant,
            playlist=playlist,
            token_hash=hashlib.sha256(tag.encode()).hexdigest(),
            token_prefix=tag[:8],
            role=CollaboratorRole.VIEWER,
            created_by=user,
            expires_at=timezone.now() + timedelta(days=1),
        ),
        TrackPlay: TrackPlay.objects.create(tenant=tenant, user=user, track=track, played_at=timezone.now()),
        TrackSimilarity: TrackSimilarity.objects.create(
            tenant=tenant, track=track, similar=similar, kind=SimilarityKind.AUDIO, score=0.5
        ),
        AuditEvent: event,
        AuditChainHead: AuditChainHead.objects.get(chain_key=tenant.pk),
        OutstandingToken: OutstandingToken.objects.get(jti=refresh["jti"]),
        BlacklistedToken: BlacklistedToken.objects.get(token__jti=refresh["jti"]),
        AccessAttempt: AccessAttempt.objects.create(**access, get_data="", post_data="", failures_since_start=1),
        AccessLog: AccessLog.objects.create(**access),
        AccessFailureLog: AccessFailureLog.objects.create(**access),
        # Notifications: sends, routing, templates, preferences.
        Notification: notification,
        RoutingRule: RoutingRule.objects.get(priority="normal"),
        NotificationTemplate: NotificationTemplate.objects.create(
            tenant=tenant, key=f"admin.{tag}", locale="en", subject="Hi {{ name }}", body_text="Hello {{ name }}"
        ),
        NotificationPreference: NotificationPreference.objects.create(
            tenant=tenant, user=user, category="*", channel="email", enabled=True
        ),
        NotificationSettings: NotificationSettings.objects.create(tenant=tenant, user=user, digest_minutes=30),
        # Notifications: deliveries and devices.
        Delivery: Delivery.objects.create(
            tenant=tenant, notification=notification, user=user, channel="sms", status="failed", last_error="SMS 500"
        ),
        WebPushSubscription: WebPushSubscription.objects.create(
            tenant=tenant, user=user, endpoint=f"https://push.example.com/{tag}", p256dh="key", auth="secret"
        ),
        MobileToken: MobileToken.objects.create(tenant=tenant, user=user, platform="fcm", token=f"token-{tag}"),
    }


def changeform_data(response) -> dict[str, object]:
    """The POST data that re-submits a rendered change form (and its inlines) unchanged."""
    data: dict[str, object] = {}

    def add(form) -> None:
        for name, field in form.fields.items():
            if field.disabled:
                continue
            key, value = form.add_prefix(name), form[name].value()
            if isinstance(field.widget, forms.CheckboxInput):
                if value:
                    data[key] = "on"
            elif value is None:
                data[key] = ""
            elif isinstance(value, list | tuple):
                data[key] = [str(item) for item in value]
            else:
                data[key] = str(value)

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
        for form in formset.forms:
            add(form)
    return data


@pytest.fixture
def member(tenant):
    return UserFactory(username="bob", tenant=tenant, role=Role.MEMBER)
