"""Sending a notification: ``send_notification``, the one entry point REST, the
admin and the other apps call.

It validates everything, creates the ``Notification``, one inbox row
(``NotificationRecipient``) per recipient with its title and content in the
recipient's language, and the ``Delivery`` rows routing chooses
(``notifications.routing``), all in one transaction (the outbox). Once that
commits it hands the deliveries to
``notifications.services.delivery.deliveries_dispatch`` (which delays those
held by quiet hours); the ones gathered into a digest go with it. docs/api.md,
"Notifications" → "Sending", documents inputs, limits and errors.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.constants import ApiScope, Role
from accounts.models import Tenant
from accounts.principals import Principal
from audit.constants import AuditAction
from audit.services import NO_CONTEXT, Actor, RequestContext, audit_record
from spotify_agent.errors import DomainError, Forbidden, Invalid, NotFound

from ..constants import (
    CATEGORY_MAX_LENGTH,
    CONTENT_MAX_LENGTH,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    PENDING_STATUSES,
    TEMPLATE_KEY_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    Channel,
    DeliveryStatus,
    Priority,
)
from ..models import Delivery, Notification, NotificationRecipient
from ..routing import Route, digests_for_routes, reaches_for_users, route, rules_by_priority
from ..templates import locale_chain, render_row, template_candidates, template_choose, template_missing

logger = logging.getLogger(__name__)

# ``data`` travels in every push payload: FCM and APNs take 4 KB in all and
# Web Push about as much, with the title and body, so 2 KB is what is left.
DATA_MAX_BYTES = 2048
# ``context`` is only rendered, never sent; 8 KB is many times what a title and a
# short text need, and bounds what a row stores.
CONTEXT_MAX_BYTES = 8192
# A longer list is a room or the whole tenant; this bounds the request's size
# and the one query that checks the ids.
MAX_USER_RECIPIENTS = 1000
# Users handled per round of queries when the audience is a room or a tenant:
# each round is a handful of statements (users, their devices and preferences,
# the inbox rows, the deliveries), so 2000 keeps IN lists and multi-row
# inserts moderate while a tenant of 10 000 users takes five rounds.
SEND_BATCH_SIZE = 2000
# Deliveries drain at hundreds a second per worker; half a minute is a fair
# first wait before trying a refused send again.
BACKLOG_RETRY_AFTER = 30
# pg_advisory_xact_lock's first key for "a tenant's backlog" (the second is the tenant id).
_BACKLOG_LOCK_CLASS = 0x4E4F  # "NO"

CATEGORY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")
TEMPLATE_KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*\Z")

SEND_ROLE = Role.ADMIN
SEND_SCOPE = ApiScope.NOTIFICATIONS_SEND


class BacklogFull(DomainError):
    """The tenant has too many deliveries waiting (``NOTIFICATION_QUEUE_SIZE``):
    nothing was created; try again after ``retry_after`` seconds."""

    code = "backlog_full"
    http_status = 429
    default_message = "Too many notifications are waiting to be delivered; try again later."

    def __init__(self, message: str | None = None, *, retry_after: float, details: dict[str, Any] | None = None):
        super().__init__(message, details={**(details or {}), "retry_after": retry_after})
        self.retry_after = retry_after


@dataclass(frozen=True)
class SendOutcome:
    """The notification, and whether this call created it (False: an idempotent repeat)."""

    notification: Notification
    created: bool


@dataclass(frozen=True)
class _Content:
    """What each recipient reads: fixed text, or a template rendered per locale."""

    title: str
    content: str
    template_key: str
    context: dict[str, Any]


# --- Validation ----------------------------------------------------------------------


def _json_object(value: Any, *, field: str, max_bytes: int) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(_("%(field)s must be a JSON object.") % {"field": field}, field=field)
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        raise Invalid(_("%(field)s must hold JSON values only.") % {"field": field}, field=field) from None
    if json.loads(encoded) != value:  # non-string keys, tuples...
        raise Invalid(_("%(field)s must hold JSON values only.") % {"field": field}, field=field)
    if len(encoded.encode()) > max_bytes:
        raise Invalid(
            _("%(field)s is larger than %(max)d bytes of JSON.") % {"field": field, "max": max_bytes},
            field=field,
            details={"max_bytes": max_bytes},
        )
    return value


def _text(value: Any, *, field: str, max_length: int, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise Invalid(_("%(field)s must be a string.") % {"field": field}, field=field)
    value = value.strip()
    if required and not value:
        raise Invalid(_("%(field)s is required.") % {"field": field}, field=field)
    if len(value) > max_length:
        raise Invalid(
            _("%(field)s is longer than %(max)d characters.") % {"field": field, "max": max_length}, field=field
        )
    return value


def _content(*, title, content, template_key, context) -> _Content:
    """Fixed title and content, or a template key and its context: exactly one pair."""
    if template_key not in (None, ""):
        for name, value in (("title", title), ("content", content)):
            if value not in (None, ""):
                raise Invalid(_("Give either title and content, or template_key and context, not both."), field=name)
        key = _text(template_key, field="template_key", max_length=TEMPLATE_KEY_MAX_LENGTH, required=True)
        if not TEMPLATE_KEY_PATTERN.match(key):
            raise Invalid(
                _("template_key may hold lowercase letters, digits, dots, hyphens and underscores."),
                field="template_key",
            )
        return _Content("", "", key, _json_object(context, field="context", max_bytes=CONTEXT_MAX_BYTES))
    if context not in (None, {}):
        raise Invalid(_("context goes with template_key."), field="context")
    return _Content(
        _text(title, field="title", max_length=TITLE_MAX_LENGTH, required=True),
        _text(content, field="content", max_length=CONTENT_MAX_LENGTH, required=False),
        "",
        {},
    )


def _category(value: Any) -> str:
    category = _text(value, field="category", max_length=CATEGORY_MAX_LENGTH, required=True)
    if not CATEGORY_PATTERN.match(category):
        raise Invalid(_("category is a slug: lowercase letters, digits, hyphens and underscores."), field="category")
    return category


def _priority(value: Any) -> str:
    if value not in Priority.values:
        raise Invalid(_("priority is one of %(choices)s.") % {"choices": ", ".join(Priority.values)}, field="priority")
    return value


def _idempotency_key(value: Any) -> str:
    key = _text(value, field="idempotency_key", max_length=IDEMPOTENCY_KEY_MAX_LENGTH, required=False)
    if not key.isprintable():
        raise Invalid(_("idempotency_key must be printable text."), field="idempotency_key")
    return key


def _integer_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _audience(recipients: Any) -> dict[str, Any]:
    """``recipients`` checked for shape: exactly one of users, room, tenant."""
    kinds = ("users", "room", "tenant")
    if not isinstance(recipients, dict) or len(recipients) != 1 or next(iter(recipients)) not in kinds:
        raise Invalid(_('recipients is one of {"users": [ids]}, {"room": id} or {"tenant": true}.'), field="recipients")
    kind, value = next(iter(recipients.items()))
    if kind == "users":
        if not isinstance(value, list) or not value or not all(_integer_id(item) for item in value):
            raise Invalid(_("recipients.users is a non-empty list of user ids."), field="recipients.users")
        ids = list(dict.fromkeys(value))
        if len(ids) > MAX_USER_RECIPIENTS:
            raise Invalid(
                _("recipients.users holds at most %(max)d ids; send to a room or the tenant instead.")
                % {"max": MAX_USER_RECIPIENTS},
                field="recipients.users",
                details={"max_users": MAX_USER_RECIPIENTS},
            )
        return {"users": ids}
    if kind == "room":
        if not _integer_id(value):
            raise Invalid(_("recipients.room is a room id."), field="recipients.room")
        return {"room": value}
    if value is not True:
        raise Invalid(_("recipients.tenant must be true."), field="recipients.tenant")
    return {"tenant": True}


def notification_send_allowed(actor: Principal) -> bool:
    """Whether ``actor`` may send: a tenant admin, or an API client with ``notifications:send``."""
    return actor.has_role(SEND_ROLE) or actor.has_scope(SEND_SCOPE)


# --- Recipients ----------------------------------------------------------------------


def _recipient_users(*, tenant_id: int, audience: dict[str, Any]):
    """The active users the audience names, as a queryset of the fields sending
    reads. Unknown ids, and ids of another tenant's users, are ``Invalid``
    naming them (the same answer for both, so nothing leaks); another tenant's
    room is ``NotFound``. Deactivated users are skipped."""
    User = get_user_model()
    users = User.objects.filter(membership__tenant_id=tenant_id)
    if "users" in audience:
        ids = audience["users"]
        known = set(users.filter(pk__in=ids).values_list("pk", flat=True))
        unknown = [pk for pk in ids if pk not in known]
        if unknown:
            raise Invalid(
                _("These ids are not users of your tenant: %(ids)s.") % {"ids": ", ".join(map(str, unknown))},
                field="recipients.users",
                details={"unknown": unknown},
            )
        users = users.filter(pk__in=ids)
    elif "room" in audience:
        from chat.models import Room

        if not Room.objects.filter(tenant_id=tenant_id, pk=audience["room"]).exists():
            raise NotFound(_("No such room."))
        users = users.filter(room_memberships__room_id=audience["room"])
    return users.filter(is_active=True).only("pk", "email", "timezone", "locale").order_by("pk")


def _batches(users, size: int) -> Iterator[list]:
    """The users in pk order, ``size`` per query (keyset pagination, no OFFSET)."""
    last = 0
    while True:
        batch = list(users.filter(pk__gt=last)[:size])
        if not batch:
            return
        yield batch
        last = batch[-1].pk


class _Renderer:
    """Titles and contents per locale, rendered once per locale per send."""

    def __init__(self, *, tenant: Tenant, content: _Content):
        self.tenant, self.content = tenant, content
        self.rows = template_candidates(tenant_id=tenant.pk, key=content.template_key) if content.template_key else []
        self.cache: dict[str, tuple[str, str]] = {}

    def for_locale(self, locale: str) -> tuple[str, str]:
        if not self.content.template_key:
            return self.content.title, self.content.content
        if locale not in self.cache:
            # The inbox is the in-app channel: a WebSocket row first, then a blank one.
            row = template_choose(
                self.rows,
                tenant_id=self.tenant.pk,
                channel=Channel.WEBSOCKET,
                locales=locale_chain(locale, self.tenant.locale),
            )
            if row is None:
                raise template_missing(self.content.template_key)
            rendered = render_row(row, self.content.context)
            self.cache[locale] = (rendered.subject, rendered.text[:CONTENT_MAX_LENGTH])
        return self.cache[locale]


# --- The service ------------------------------------------------------------------------


def send_notification(
    *,
    actor: Principal | None = None,
    tenant_id: int,
    title: str | None = None,
    content: str | None = None,
    priority: str = Priority.NORMAL,
    category: str,
    data: dict[str, Any] | None = None,
    recipients: dict[str, Any],
    idempotency_key: str | None = None,
    template_key: str | None = None,
    context: dict[str, Any] | None = None,
    audit_as: Actor | None = None,
    request_context: RequestContext = NO_CONTEXT,
) -> SendOutcome:
    """Send a notification to users of ``tenant_id``; see the module docstring.

    ``actor``: the user or API client sending (a tenant admin, or a client with
    ``notifications:send``; ``Forbidden`` otherwise), None for the app itself
    or staff, who pass ``audit_as``. A send with an actor or ``audit_as`` is
    audited (``notification.sent``).

    Idempotent on ``idempotency_key`` (per tenant): a repeat returns the first
    notification with ``created=False`` and creates nothing, also when two
    arrive at once (the unique constraint decides). Errors: ``Invalid`` naming
    the field; ``NotFound`` for a room that is not the tenant's;
    ``BacklogFull`` (429) when the tenant's pending deliveries plus this send's
    would exceed ``NOTIFICATION_QUEUE_SIZE``. Emits nothing itself: the
    deliveries (the WebSocket's included) go through the dispatcher after commit.
    """
    if actor is not None:
        if actor.tenant_id != tenant_id:
            raise Forbidden(_("You may only notify users of your own tenant."))
        if not notification_send_allowed(actor):
            raise Forbidden(_("Sending notifications takes a tenant admin or an API client with notifications:send."))
    checked = _content(title=title, content=content, template_key=template_key, context=context)
    priority = _priority(priority)
    category = _category(category)
    data = _json_object(data, field="data", max_bytes=DATA_MAX_BYTES)
    audience = _audience(recipients)
    key = _idempotency_key(idempotency_key)

    if key:
        existing = Notification.objects.filter(tenant_id=tenant_id, idempotency_key=key).first()
        if existing is not None:
            return SendOutcome(existing, created=False)
    tenant = Tenant.objects.get(pk=tenant_id)
    users = _recipient_users(tenant_id=tenant_id, audience=audience)
    renderer = _Renderer(tenant=tenant, content=checked)
    if checked.template_key and not renderer.rows:
        raise template_missing(checked.template_key)
    _backlog_check(tenant_id=tenant_id)

    with transaction.atomic():
        notification = Notification(
            tenant_id=tenant_id,
            priority=priority,
            category=category,
            title=checked.title,
            content=checked.content,
            data=data,
            template_key=checked.template_key,
            context=checked.context,
            idempotency_key=key,
            audience=audience,
            sent_by_user_id=actor.user_id if actor else None,
            sent_by_client_id=actor.api_client_id if actor else None,
        )
        try:
            with transaction.atomic():
                notification.save(force_insert=True)
        except IntegrityError:
            if not key:
                raise
            # Another send with this key committed first (we waited for it on the unique index).
            return SendOutcome(Notification.objects.get(tenant_id=tenant_id, idempotency_key=key), created=False)

        recipient_count, created, due = _write(
            notification=notification, users=users, renderer=renderer, rule=rules_by_priority()[priority]
        )
        if checked.template_key and recipient_count == 0:
            # Nobody to render for: the key must still name a template.
            renderer.for_locale(tenant.locale)
        _backlog_check(tenant_id=tenant_id, inserted=created)
        Notification.objects.filter(pk=notification.pk).update(recipient_count=recipient_count)
        notification.recipient_count = recipient_count

        audit_actor = Actor.from_principal(actor) if actor is not None else audit_as
        if audit_actor is not None:
            _audit(notification=notification, actor=audit_actor, context=request_context, deliveries=created)
        if due:
            transaction.on_commit(lambda: _dispatch(due), robust=True)
    return SendOutcome(notification, created=True)


def _write(*, notification: Notification, users, renderer: _Renderer, rule) -> tuple[int, int, list[int]]:
    """Inbox rows and deliveries for every user, ``SEND_BATCH_SIZE`` users per round
    of a handful of statements. Answers (recipients, deliveries, ids to dispatch)."""
    tenant_id, now = notification.tenant_id, timezone.now()
    recipient_count, created, due = 0, 0, []
    for batch in _batches(users, SEND_BATCH_SIZE):
        reaches = reaches_for_users(tenant_id=tenant_id, users=batch)
        routes = {
            user.pk: route(rule=rule, category=notification.category, reach=reaches[user.pk], now=now) for user in batch
        }
        digests = digests_for_routes(
            tenant_id=tenant_id,
            wanted=(
                (user_id, r.channel, r.digest_window)
                for user_id, user_routes in routes.items()
                for r in user_routes
                if r.digest_window is not None
            ),
        )
        inbox = []
        for user in batch:
            title, content = renderer.for_locale(user.locale)
            inbox.append(
                NotificationRecipient(
                    tenant_id=tenant_id, notification=notification, user_id=user.pk, title=title, content=content
                )
            )
        NotificationRecipient.objects.bulk_create(inbox, batch_size=SEND_BATCH_SIZE)
        deliveries = [
            _delivery(notification=notification, user_id=user_id, route=r, digests=digests)
            for user_id, user_routes in routes.items()
            for r in user_routes
        ]
        Delivery.objects.bulk_create(deliveries, batch_size=SEND_BATCH_SIZE)
        recipient_count += len(batch)
        created += len(deliveries)
        # Digest deliveries go with their digest; the dispatcher delays held ones.
        due.extend(d.pk for d in deliveries if d.digest is None)
    return recipient_count, created, due


def _audit(*, notification: Notification, actor: Actor, context: RequestContext, deliveries: int) -> None:
    audience = notification.audience
    audit_record(
        action=AuditAction.NOTIFICATION_SENT,
        actor=actor,
        tenant_id=notification.tenant_id,
        target_type="notifications.notification",
        target_id=str(notification.pk),
        context=context,
        details={
            "priority": notification.priority,
            "category": notification.category,
            # A user list is summed up: the ids are in the notification's audience.
            "audience": {"users": len(audience["users"])} if "users" in audience else audience,
            "recipients": notification.recipient_count,
            "deliveries": deliveries,
            "template_key": notification.template_key,
        },
    )


def _delivery(*, notification: Notification, user_id: int, route: Route, digests: dict) -> Delivery:
    digest = digests[(user_id, route.channel, route.digest_window[0])] if route.digest_window else None
    return Delivery(
        tenant_id=notification.tenant_id,
        notification=notification,
        user_id=user_id,
        channel=route.channel,
        status=DeliveryStatus.QUEUED,
        digest=digest,
        next_attempt_at=route.hold_until,
    )


def _backlog_check(*, tenant_id: int, inserted: int | None = None) -> None:
    """Refuse when the tenant's backlog is full.

    Before any write (``inserted`` None) it refuses a tenant already at the
    bound, cheaply. After the inserts it takes the tenant's backlog lock until
    the transaction ends, so two sends cannot both fit into the last free
    places, and counts again: this send's ``inserted`` deliveries are visible
    to its own transaction, others' once they commit.
    """
    limit = settings.NOTIFICATION_QUEUE_SIZE
    # SQLite (the embedded default) has one writer at a time already.
    if inserted is not None and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_BACKLOG_LOCK_CLASS, tenant_id])
    pending = Delivery.objects.filter(tenant_id=tenant_id, status__in=PENDING_STATUSES).count()
    full = pending > limit if inserted is not None else pending >= limit
    if full:
        waiting = pending - (inserted or 0)
        raise BacklogFull(
            _("Your tenant has %(pending)d deliveries waiting (at most %(limit)d); try again later.")
            % {"pending": waiting, "limit": limit},
            retry_after=BACKLOG_RETRY_AFTER,
            details={"pending": waiting, "limit": limit},
        )


def _dispatch(delivery_ids: list[int]) -> None:
    """After commit: hand the deliveries due now to the workers. Best effort: a
    delivery whose hand-off is lost (a broker outage) stays queued, and the relay
    hands it over again."""
    from .delivery import deliveries_dispatch

    deliveries_dispatch(delivery_ids)
