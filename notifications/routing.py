"""Routing: which channels a notification takes to one user, and when.

The decision is pure (``route``): it takes the priority's ``Rule``, the
notification's category, the recipient's ``Reach`` (where they can be reached,
their preferences, quiet hours, time zone and digest window) and the time,
and answers a list of ``Route``s: a channel, how long it waits
(``hold_until``) and the digest window it joins. ``deliveries_route`` is the
database side: it loads the rules and every recipient's rows in a fixed number
of queries whatever the audience, and creates the ``Digest`` rows the routes
name. Sending (``services.sending``) writes the deliveries.

docs/api.md, "Notifications" → "Routing", states the rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .constants import ANY_CATEGORY, Channel, Priority

# A channel is on by default (no preference row for the category nor ``*``)
# for these priorities. In-app and device pushes are what people install an
# app for; email is on for low-priority notifications only, which arrive as
# one digest per window rather than a mail per event; SMS costs money and
# wakes people up, so it is opt-in only.
_EVERY_PRIORITY = frozenset(Priority.values)
NOTIFICATION_DEFAULT_CHANNELS: Mapping[str, frozenset[str]] = {
    Channel.WEBSOCKET: _EVERY_PRIORITY,
    Channel.WEBPUSH: _EVERY_PRIORITY,
    Channel.MOBILE: _EVERY_PRIORITY,
    Channel.EMAIL: frozenset({Priority.LOW}),
    Channel.SMS: frozenset(),
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Rule:
    """A ``RoutingRule`` as routing reads it."""

    priority: str
    channels: tuple[str, ...]
    follow_preferences: bool = True
    respect_quiet_hours: bool = True
    digest: bool = False

    @classmethod
    def from_row(cls, row) -> Rule:
        return cls(
            priority=row.priority,
            channels=tuple(row.channels),
            follow_preferences=row.follow_preferences,
            respect_quiet_hours=row.respect_quiet_hours,
            digest=row.digest,
        )


@dataclass(frozen=True)
class Reach:
    """One recipient as routing sees them."""

    reachable: frozenset[str]
    # (category or "*", channel) -> enabled
    preferences: Mapping[tuple[str, str], bool] = field(default_factory=dict)
    timezone: str = "UTC"
    quiet_start: time | None = None
    quiet_end: time | None = None
    digest_minutes: int = 60


@dataclass(frozen=True)
class Route:
    """One delivery to create: its channel, the moment it may go (None: now) and
    the digest window it joins (None: none)."""

    channel: str
    hold_until: datetime | None = None
    digest_window: tuple[datetime, datetime] | None = None


def channel_enabled(*, reach: Reach, category: str, channel: str, priority: str) -> bool:
    """The user's choice for ``channel``: the category's row, else the ``*`` row,
    else ``NOTIFICATION_DEFAULT_CHANNELS``."""
    for key in ((category, channel), (ANY_CATEGORY, channel)):
        if key in reach.preferences:
            return reach.preferences[key]
    return priority in NOTIFICATION_DEFAULT_CHANNELS.get(channel, frozenset())


def zone(name: str) -> ZoneInfo:
    """The user's time zone; an unknown name counts as UTC rather than failing a send."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _at(day: date, wall: time, tz: ZoneInfo) -> datetime:
    # fold=0: an ambiguous wall time (autumn) is its first occurrence; a wall
    # time in the spring gap maps to the instant the clocks jump past it.
    return datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


def quiet_until(*, now: datetime, timezone: str, start: time | None, end: time | None) -> datetime | None:
    """When the user's quiet window that ``now`` falls in ends (UTC), or None when
    ``now`` is outside it. The window is ``[start, end)`` in the user's wall-clock
    time and crosses midnight when ``start > end``; no window without both ends
    or when they are equal."""
    if start is None or end is None or start == end:
        return None
    tz = zone(timezone)
    local = now.astimezone(tz)
    wall, today = local.time().replace(tzinfo=None), local.date()
    if start < end:
        ends = _at(today, end, tz) if start <= wall < end else None
    elif wall >= start:
        ends = _at(today + timedelta(days=1), end, tz)
    elif wall < end:
        ends = _at(today, end, tz)
    else:
        ends = None
    if ends is None:
        return None
    # Never in the past, whatever the zone's transitions did to the arithmetic.
    return max(ends, now)


def digest_window(*, now: datetime, minutes: int) -> tuple[datetime, datetime]:
    """The ``minutes``-long window containing ``now``, aligned to the Unix epoch in UTC."""
    length = timedelta(minutes=max(1, minutes))
    start = _EPOCH + ((now - _EPOCH) // length) * length
    return start, start + length


def route(*, rule: Rule, category: str, reach: Reach, now: datetime) -> list[Route]:
    """The deliveries of one notification to one user, in the rule's channel order.

    Pure: everything it needs is in its arguments.
    """
    routes: list[Route] = []
    quiet_ends = (
        quiet_until(now=now, timezone=reach.timezone, start=reach.quiet_start, end=reach.quiet_end)
        if rule.respect_quiet_hours
        else None
    )
    for channel in dict.fromkeys(rule.channels):  # in order, once each
        if channel not in reach.reachable:
            continue
        if rule.follow_preferences and not channel_enabled(
            reach=reach, category=category, channel=channel, priority=rule.priority
        ):
            continue
        if channel == Channel.WEBSOCKET:
            # In-app is silent: it never waits for quiet hours nor a digest.
            routes.append(Route(channel))
            continue
        if rule.digest:
            window = digest_window(now=now, minutes=reach.digest_minutes)
            hold = window[1]
            if rule.respect_quiet_hours:
                hold = (
                    quiet_until(now=hold, timezone=reach.timezone, start=reach.quiet_start, end=reach.quiet_end) or hold
                )
            routes.append(Route(channel, hold_until=hold, digest_window=window))
            continue
        routes.append(Route(channel, hold_until=quiet_ends))
    return routes


# --- The database side ------------------------------------------------------------


def rules_by_priority() -> dict[str, Rule]:
    """Every priority's rule. A priority whose row staff deleted routes to the
    WebSocket only, so a notification still lands in the app."""
    from .models import RoutingRule

    rules = {row.priority: Rule.from_row(row) for row in RoutingRule.objects.all()}
    for priority in Priority.values:
        rules.setdefault(priority, Rule(priority=priority, channels=(Channel.WEBSOCKET,)))
    return rules


def reaches_for_users(*, tenant_id: int, users: Sequence) -> dict[int, Reach]:
    """Every user's ``Reach``, in five queries whatever their number (callers
    batch large audiences). ``users`` are ``User`` rows (email, timezone)."""
    from django.conf import settings

    from .models import MobileToken, NotificationPreference, NotificationSettings, WebPushSubscription

    ids = [user.pk for user in users]
    preferences: dict[int, dict[tuple[str, str], bool]] = {}
    for user_id, category, channel, enabled in NotificationPreference.objects.filter(
        tenant_id=tenant_id, user_id__in=ids
    ).values_list("user_id", "category", "channel", "enabled"):
        preferences.setdefault(user_id, {})[(category, channel)] = enabled
    settings_rows = NotificationSettings.objects.filter(tenant_id=tenant_id, user_id__in=ids)
    settings_of = {row.user_id: row for row in settings_rows}
    webpush = set(
        WebPushSubscription.objects.filter(tenant_id=tenant_id, user_id__in=ids, disabled_at__isnull=True)
        .values_list("user_id", flat=True)
        .distinct()
    )
    mobile = set(
        MobileToken.objects.filter(tenant_id=tenant_id, user_id__in=ids, disabled_at__isnull=True)
        .values_list("user_id", flat=True)
        .distinct()
    )
    # Without an SMS account nobody is reachable by SMS: no delivery bound to fail.
    sms_configured = bool(getattr(settings, "SMS_ACCOUNT_SID", ""))
    reaches = {}
    for user in users:
        settings_row = settings_of.get(user.pk)
        reachable = {Channel.WEBSOCKET}
        if user.email:
            reachable.add(Channel.EMAIL)
        if settings_row is not None and settings_row.phone and sms_configured:
            reachable.add(Channel.SMS)
        if user.pk in webpush:
            reachable.add(Channel.WEBPUSH)
        if user.pk in mobile:
            reachable.add(Channel.MOBILE)
        reaches[user.pk] = Reach(
            reachable=frozenset(reachable),
            preferences=preferences.get(user.pk, {}),
            timezone=user.timezone,
            quiet_start=settings_row.quiet_start if settings_row else None,
            quiet_end=settings_row.quiet_end if settings_row else None,
            digest_minutes=settings_row.digest_minutes if settings_row else 60,
        )
    return reaches


def digests_for_routes(*, tenant_id: int, wanted: Iterable[tuple[int, str, tuple[datetime, datetime]]]) -> dict:
    """The open ``Digest`` of each (user, channel, window), created when missing.

    Two statements whatever the count: an insert that skips rows another send
    created meanwhile (the unique (user, channel, window_start)), then one read.
    Answers {(user_id, channel, window_start): Digest}.
    """
    from .models import Digest

    wanted = {(user_id, channel, window): None for user_id, channel, window in wanted}
    if not wanted:
        return {}
    Digest.objects.bulk_create(
        [
            Digest(tenant_id=tenant_id, user_id=user_id, channel=channel, window_start=start, window_end=end)
            for user_id, channel, (start, end) in wanted
        ],
        ignore_conflicts=True,
        batch_size=1000,
    )
    users = {user_id for user_id, _channel, _window in wanted}
    starts = {window[0] for _user, _channel, window in wanted}
    found = Digest.objects.filter(tenant_id=tenant_id, user_id__in=users, window_start__in=starts)
    digests = {(digest.user_id, digest.channel, digest.window_start): digest for digest in found}
    return {(user_id, channel, start): digests[(user_id, channel, start)] for user_id, channel, (start, _end) in wanted}
