"""What a user wants and where their devices are: per category and channel
opt-in or out, quiet hours, SMS number, digest window, Web Push subscriptions
and mobile push tokens.

Every function acts on the actor's own rows (API clients have none:
``Forbidden``). Devices are keyed by what the push service issued (the
endpoint, the platform and token), which identifies a browser or an app
install, not a person: registering one that another account holds moves it to
the caller, since pushes must go to whoever is signed in on that device now.
Routing (``notifications.routing``) reads all of this. docs/api.md,
"Preferences and devices".
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import time
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.principals import Principal
from spotify_agent.errors import Conflict, Invalid, NotFound

from ..constants import ANY_CATEGORY, CATEGORY_MAX_LENGTH, Channel, MobilePlatform
from ..models import MobileToken, NotificationPreference, NotificationSettings, WebPushSubscription
from ..routing import NOTIFICATION_DEFAULT_CHANNELS
from ..selectors import inbox_user_id
from .sending import CATEGORY_PATTERN

# Categories x 5 channels: an app has a few dozen categories; 500 rows leaves
# room for all of them on every channel, while a client looping over made-up
# category names cannot grow the table (or routing's read) without bound.
MAX_PREFERENCES_PER_USER = 500
# A person has a few browsers and devices; past this many the oldest goes
# (stale ones linger until a push finds them gone), and each notification
# fans out to a bounded number of targets.
MAX_WEBPUSH_PER_USER = 10
MAX_MOBILE_TOKENS_PER_USER = 10
# A digest at most every quarter of an hour (fewer mails than that is what a
# digest is for) and at least once a day (older news is no news).
DIGEST_MINUTES_MIN = 15
DIGEST_MINUTES_MAX = 1440
E164 = re.compile(r"^\+[1-9][0-9]{6,14}\Z")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+=*\Z")
# APNs device tokens are 32 bytes in hex today (64 characters), documented as
# variable length; FCM registration tokens are ~150-300 URL-safe characters.
_APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}\Z")
_FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:.-]{32,400}\Z")


# --- Preferences ---------------------------------------------------------------------


def _category(value) -> str:
    if value == ANY_CATEGORY:
        return value
    if not isinstance(value, str) or not value or len(value) > CATEGORY_MAX_LENGTH or not CATEGORY_PATTERN.match(value):
        raise Invalid(_('category is "*" or a category slug.'), field="category")
    return value


def _channel(value) -> str:
    if value not in Channel.values:
        raise Invalid(_("channel is one of %(choices)s.") % {"choices": ", ".join(Channel.values)}, field="channel")
    return value


def _enabled(value) -> bool:
    if not isinstance(value, bool):
        raise Invalid(_("enabled must be true or false."), field="enabled")
    return value


def preferences_for_user(*, actor: Principal) -> list[NotificationPreference]:
    """The user's preference rows, by category then channel. Channels without a
    row follow ``NOTIFICATION_DEFAULT_CHANNELS`` (``preference_defaults``)."""
    return list(
        NotificationPreference.objects.filter(tenant_id=actor.tenant_id, user_id=inbox_user_id(actor)).order_by(
            "category", "channel"
        )
    )


def preference_defaults() -> dict[str, list[str]]:
    """Channel -> the priorities it is on for when the user has no row."""
    return {channel: sorted(priorities) for channel, priorities in NOTIFICATION_DEFAULT_CHANNELS.items()}


@transaction.atomic
def preference_set(*, actor: Principal, category: str, channel: str, enabled: bool) -> NotificationPreference:
    """Opt in or out of ``channel`` for ``category`` (``*``: every category
    without its own row). Idempotent. ``Conflict`` past ``MAX_PREFERENCES_PER_USER`` rows."""
    user_id = inbox_user_id(actor)
    category, channel, enabled = _category(category), _channel(channel), _enabled(enabled)
    row = NotificationPreference.objects.filter(user_id=user_id, category=category, channel=channel).first()
    if row is None:
        _preferences_room(actor=actor, user_id=user_id, adding=1)
        row, _created = NotificationPreference.objects.update_or_create(
            user_id=user_id,
            category=category,
            channel=channel,
            defaults={"enabled": enabled, "tenant_id": actor.tenant_id},
        )
    elif row.enabled != enabled:
        row.enabled = enabled
        row.save(update_fields=["enabled", "updated_at"])
    return row


@transaction.atomic
def preferences_replace(*, actor: Principal, preferences: list[dict]) -> list[NotificationPreference]:
    """Make ``preferences`` (``{"category", "channel", "enabled"}`` each) the user's
    whole set: rows not listed are removed (those channels follow the defaults
    again). A (category, channel) listed twice is ``Invalid``."""
    user_id = inbox_user_id(actor)
    if not isinstance(preferences, list):
        raise Invalid(_("preferences is a list."), field="preferences")
    if len(preferences) > MAX_PREFERENCES_PER_USER:
        raise Invalid(
            _("At most %(max)d preferences.") % {"max": MAX_PREFERENCES_PER_USER},
            field="preferences",
            details={"max_preferences": MAX_PREFERENCES_PER_USER},
        )
    wanted: dict[tuple[str, str], bool] = {}
    for index, item in enumerate(preferences):
        if not isinstance(item, dict):
            raise Invalid(_("Each preference is an object."), field=f"preferences[{index}]")
        try:
            key = (_category(item.get("category")), _channel(item.get("channel")))
            enabled = _enabled(item.get("enabled"))
        except Invalid as exc:
            field = next(iter(exc.details.get("fields", {"": None})))
            raise Invalid(exc.message, field=f"preferences[{index}].{field}") from None
        if key in wanted:
            raise Invalid(_("This category and channel are listed twice."), field=f"preferences[{index}]")
        wanted[key] = enabled
    rows = NotificationPreference.objects.filter(tenant_id=actor.tenant_id, user_id=user_id)
    existing = {(row.category, row.channel): row for row in rows.select_for_update()}
    stale = [row.pk for key, row in existing.items() if key not in wanted]
    NotificationPreference.objects.filter(pk__in=stale).delete()
    changed = [row for key, row in existing.items() if key in wanted and row.enabled != wanted[key]]
    now = timezone.now()
    for row in changed:
        row.enabled, row.updated_at = wanted[(row.category, row.channel)], now
    NotificationPreference.objects.bulk_update(changed, ["enabled", "updated_at"])
    NotificationPreference.objects.bulk_create(
        [
            NotificationPreference(
                tenant_id=actor.tenant_id, user_id=user_id, category=category, channel=channel, enabled=enabled
            )
            for (category, channel), enabled in wanted.items()
            if (category, channel) not in existing
        ]
    )
    return preferences_for_user(actor=actor)


def _preferences_room(*, actor: Principal, user_id: int, adding: int) -> None:
    count = NotificationPreference.objects.filter(tenant_id=actor.tenant_id, user_id=user_id).count()
    if count + adding > MAX_PREFERENCES_PER_USER:
        raise Conflict(
            _("You have %(max)d notification preferences already; remove some first.")
            % {"max": MAX_PREFERENCES_PER_USER},
            details={"max_preferences": MAX_PREFERENCES_PER_USER},
        )


# --- Settings ------------------------------------------------------------------------


def notification_settings_get(*, actor: Principal) -> NotificationSettings:
    """The user's settings; an unsaved row with the defaults when they never set any."""
    user_id = inbox_user_id(actor)
    row = NotificationSettings.objects.filter(tenant_id=actor.tenant_id, user_id=user_id).first()
    return row or NotificationSettings(tenant_id=actor.tenant_id, user_id=user_id)


@transaction.atomic
def notification_settings_set(
    *,
    actor: Principal,
    quiet_start: time | None = None,
    quiet_end: time | None = None,
    phone: str = "",
    digest_minutes: int = 60,
) -> NotificationSettings:
    """Replace the user's settings. Quiet hours: both ends or neither (in the
    user's time zone, ``User.timezone``; ``start > end`` crosses midnight);
    ``phone`` empty or E.164 (``+33612345678``); ``digest_minutes`` within
    ``DIGEST_MINUTES_MIN``..``DIGEST_MINUTES_MAX``. Idempotent."""
    user_id = inbox_user_id(actor)
    for name, value in (("quiet_start", quiet_start), ("quiet_end", quiet_end)):
        if value is not None and not isinstance(value, time):
            raise Invalid(_("%(field)s is a time of day (HH:MM).") % {"field": name}, field=name)
    if (quiet_start is None) != (quiet_end is None):
        missing = "quiet_end" if quiet_end is None else "quiet_start"
        raise Invalid(_("Quiet hours need both a start and an end, or neither."), field=missing)
    if quiet_start is not None and quiet_start == quiet_end:
        raise Invalid(_("Quiet hours cannot start and end at the same time."), field="quiet_end")
    phone = phone or ""
    if not isinstance(phone, str) or (phone and not E164.match(phone)):
        raise Invalid(_("phone is an international number in E.164 form, such as +33612345678."), field="phone")
    if (
        isinstance(digest_minutes, bool)
        or not isinstance(digest_minutes, int)
        or not DIGEST_MINUTES_MIN <= digest_minutes <= DIGEST_MINUTES_MAX
    ):
        raise Invalid(
            _("digest_minutes is a whole number from %(min)d to %(max)d.")
            % {"min": DIGEST_MINUTES_MIN, "max": DIGEST_MINUTES_MAX},
            field="digest_minutes",
        )
    row, _created = NotificationSettings.objects.update_or_create(
        user_id=user_id,
        defaults={
            "tenant_id": actor.tenant_id,
            "quiet_start": quiet_start,
            "quiet_end": quiet_end,
            "phone": phone,
            "digest_minutes": digest_minutes,
        },
    )
    return row


# --- Devices -------------------------------------------------------------------------


def _base64url_bytes(value, *, field: str, length: int) -> str:
    message = _("%(field)s is the subscription's key, base64url-encoded.") % {"field": field}
    if not isinstance(value, str) or not _BASE64URL.match(value) or len(value) > 200:
        raise Invalid(message, field=field)
    try:
        raw = base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise Invalid(message, field=field) from None
    if len(raw) != length or (field == "p256dh" and raw[0] != 4):
        raise Invalid(message, field=field)
    return value


def _endpoint(value) -> str:
    if not isinstance(value, str) or len(value) > 1000:
        raise Invalid(_("endpoint is the subscription's https URL."), field="endpoint")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise Invalid(_("endpoint is the subscription's https URL."), field="endpoint")
    return value


@dataclass(frozen=True)
class DeviceResult:
    device: WebPushSubscription | MobileToken
    created: bool


def _evict_oldest(queryset, keep: int) -> None:
    """Delete the oldest rows beyond ``keep`` (the newest stay)."""
    excess = list(queryset.order_by("-created_at", "-pk").values_list("pk", flat=True)[keep:])
    if excess:
        queryset.model.objects.filter(pk__in=excess).delete()


@transaction.atomic
def webpush_subscribe(*, actor: Principal, endpoint: str, p256dh: str, auth: str) -> DeviceResult:
    """Register the browser's Web Push subscription (``PushSubscription.toJSON()``).
    Idempotent on the endpoint: a known one takes the new keys, becomes the
    caller's and is enabled again. The user keeps their ``MAX_WEBPUSH_PER_USER``
    newest subscriptions."""
    user_id = inbox_user_id(actor)
    endpoint = _endpoint(endpoint)
    p256dh = _base64url_bytes(p256dh, field="p256dh", length=65)
    auth = _base64url_bytes(auth, field="auth", length=16)
    row, created = WebPushSubscription.objects.select_for_update().get_or_create(
        endpoint=endpoint, defaults={"tenant_id": actor.tenant_id, "user_id": user_id, "p256dh": p256dh, "auth": auth}
    )
    if not created:
        row.tenant_id, row.user_id, row.p256dh, row.auth = actor.tenant_id, user_id, p256dh, auth
        row.disabled_at, row.disabled_reason = None, ""
        # Registered again: the newest, so the per-user bound evicts others first.
        row.created_at = timezone.now()
        row.save()
    _evict_oldest(WebPushSubscription.objects.filter(tenant_id=actor.tenant_id, user_id=user_id), MAX_WEBPUSH_PER_USER)
    return DeviceResult(row, created)


@transaction.atomic
def webpush_unsubscribe(*, actor: Principal, endpoint: str) -> None:
    """Forget one of the caller's subscriptions; another's, or an unknown one, is ``NotFound``."""
    user_id = inbox_user_id(actor)
    deleted, _rows = WebPushSubscription.objects.filter(
        tenant_id=actor.tenant_id, user_id=user_id, endpoint=endpoint
    ).delete()
    if not deleted:
        raise NotFound(_("No such push subscription."))


def _token(platform, token) -> tuple[str, str]:
    if platform not in MobilePlatform.values:
        raise Invalid(
            _("platform is one of %(choices)s.") % {"choices": ", ".join(MobilePlatform.values)}, field="platform"
        )
    pattern = _APNS_TOKEN if platform == MobilePlatform.APNS else _FCM_TOKEN
    if not isinstance(token, str) or not pattern.match(token):
        raise Invalid(_("token is not a %(platform)s token.") % {"platform": platform}, field="token")
    return platform, token.lower() if platform == MobilePlatform.APNS else token


@transaction.atomic
def mobile_token_register(*, actor: Principal, platform: str, token: str) -> DeviceResult:
    """Register an app install's push token (FCM registration token or APNs device
    token). Idempotent on (platform, token): a known one becomes the caller's
    and is enabled again. The user keeps their ``MAX_MOBILE_TOKENS_PER_USER`` newest tokens."""
    user_id = inbox_user_id(actor)
    platform, token = _token(platform, token)
    row, created = MobileToken.objects.select_for_update().get_or_create(
        platform=platform, token=token, defaults={"tenant_id": actor.tenant_id, "user_id": user_id}
    )
    if not created:
        row.tenant_id, row.user_id = actor.tenant_id, user_id
        row.disabled_at, row.disabled_reason = None, ""
        # Registered again: the newest, so the per-user bound evicts others first.
        row.created_at = timezone.now()
        row.save()
    _evict_oldest(MobileToken.objects.filter(tenant_id=actor.tenant_id, user_id=user_id), MAX_MOBILE_TOKENS_PER_USER)
    return DeviceResult(row, created)


@transaction.atomic
def mobile_token_unregister(*, actor: Principal, platform: str, token: str) -> None:
    """Forget one of the caller's tokens; another's, or an unknown one, is ``NotFound``."""
    user_id = inbox_user_id(actor)
    platform, token = _token(platform, token)
    deleted, _rows = MobileToken.objects.filter(
        tenant_id=actor.tenant_id, user_id=user_id, platform=platform, token=token
    ).delete()
    if not deleted:
        raise NotFound(_("No such mobile token."))
