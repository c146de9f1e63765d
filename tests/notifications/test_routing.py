"""Routing: each rule, preferences' precedence, quiet hours across time zones,
midnight and DST, digest windows; then the database side (reachability, digests)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from notifications.constants import Channel, Priority
from notifications.models import Digest, MobileToken, NotificationSettings, WebPushSubscription
from notifications.routing import (
    Reach,
    Rule,
    digest_window,
    digests_for_routes,
    quiet_until,
    reaches_for_users,
    route,
    rules_by_priority,
)
from tests.factories import UserFactory

ALL = frozenset(Channel.values)
CRITICAL = Rule(Priority.CRITICAL, ("websocket", "webpush", "mobile", "email", "sms"), False, False, False)
HIGH = Rule(Priority.HIGH, ("websocket", "webpush", "mobile"))
NORMAL = Rule(Priority.NORMAL, ("websocket", "webpush", "mobile", "email", "sms"))
LOW = Rule(Priority.LOW, ("websocket", "email"), digest=True)
NOON = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)


def channels(routes) -> list[str]:
    return [r.channel for r in routes]


# --- Rules -------------------------------------------------------------------------------


def test_critical_takes_every_reachable_channel_whatever_the_preferences_and_hours():
    reach = Reach(
        reachable=ALL,
        preferences={("*", "sms"): False, ("*", "email"): False, ("*", "websocket"): False},
        timezone="UTC",
        quiet_start=time(0, 0),
        quiet_end=time(23, 59),
    )
    routes = route(rule=CRITICAL, category="alerts", reach=reach, now=NOON)
    assert channels(routes) == ["websocket", "webpush", "mobile", "email", "sms"]
    assert all(r.hold_until is None and r.digest_window is None for r in routes)


def test_unreachable_channels_get_nothing():
    reach = Reach(reachable=frozenset({"websocket", "email"}))
    assert channels(route(rule=CRITICAL, category="alerts", reach=reach, now=NOON)) == ["websocket", "email"]
    assert channels(route(rule=HIGH, category="alerts", reach=reach, now=NOON)) == ["websocket"]


def test_high_goes_in_app_and_to_devices_only():
    assert channels(route(rule=HIGH, category="x", reach=Reach(reachable=ALL), now=NOON)) == [
        "websocket",
        "webpush",
        "mobile",
    ]


def test_normal_defaults_leave_email_and_sms_off():
    assert channels(route(rule=NORMAL, category="x", reach=Reach(reachable=ALL), now=NOON)) == [
        "websocket",
        "webpush",
        "mobile",
    ]


def test_low_defaults_to_in_app_and_an_email_digest():
    routes = route(rule=LOW, category="x", reach=Reach(reachable=ALL), now=NOON)
    assert channels(routes) == ["websocket", "email"]
    assert routes[0].digest_window is None and routes[0].hold_until is None
    assert routes[1].digest_window == (NOON, NOON + timedelta(hours=1))
    assert routes[1].hold_until == NOON + timedelta(hours=1)


def test_a_rule_without_preferences_still_follows_reachability_only():
    rule = Rule(Priority.NORMAL, ("sms", "websocket"), follow_preferences=False)
    reach = Reach(reachable=ALL, preferences={("*", "sms"): False})
    assert channels(route(rule=rule, category="x", reach=reach, now=NOON)) == ["sms", "websocket"]


@pytest.mark.parametrize(
    ("preferences", "expected_email"),
    [
        ({}, False),  # default: off for normal
        ({("*", "email"): True}, True),
        ({("billing", "email"): True}, True),
        ({("*", "email"): True, ("billing", "email"): False}, False),  # the category's row wins
        ({("*", "email"): False, ("billing", "email"): True}, True),
        ({("other", "email"): True}, False),  # another category's row does not apply
    ],
)
def test_the_categorys_row_overrides_the_star_row_which_overrides_the_default(preferences, expected_email):
    reach = Reach(reachable=ALL, preferences=preferences)
    assert ("email" in channels(route(rule=NORMAL, category="billing", reach=reach, now=NOON))) is expected_email


def test_opting_out_of_websocket_is_honoured_below_critical():
    reach = Reach(reachable=ALL, preferences={("*", "websocket"): False})
    assert "websocket" not in channels(route(rule=NORMAL, category="x", reach=reach, now=NOON))
    assert "websocket" in channels(route(rule=CRITICAL, category="x", reach=reach, now=NOON))


# --- Quiet hours ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "local_now", "expected_local_end"),
    [
        # 22:00-07:00 crosses midnight: before midnight ends tomorrow, after midnight today.
        ("Europe/Paris", datetime(2026, 6, 10, 23, 30), datetime(2026, 6, 11, 7, 0)),
        ("Europe/Paris", datetime(2026, 6, 11, 3, 0), datetime(2026, 6, 11, 7, 0)),
        ("America/New_York", datetime(2026, 1, 15, 22, 0), datetime(2026, 1, 16, 7, 0)),
        ("Asia/Tokyo", datetime(2026, 6, 10, 6, 59), datetime(2026, 6, 10, 7, 0)),
        ("Australia/Sydney", datetime(2026, 7, 1, 0, 0), datetime(2026, 7, 1, 7, 0)),
        ("Asia/Kolkata", datetime(2026, 6, 10, 22, 0), datetime(2026, 6, 11, 7, 0)),
        # Outside the window.
        ("Europe/Paris", datetime(2026, 6, 10, 7, 0), None),
        ("Asia/Tokyo", datetime(2026, 6, 10, 21, 59), None),
        ("America/Los_Angeles", datetime(2026, 6, 10, 12, 0), None),
    ],
)
def test_quiet_hours_across_midnight_in_several_zones(zone, local_now, expected_local_end):
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    now = local_now.replace(tzinfo=tz).astimezone(UTC)
    ends = quiet_until(now=now, timezone=zone, start=time(22, 0), end=time(7, 0))
    if expected_local_end is None:
        assert ends is None
    else:
        assert ends == expected_local_end.replace(tzinfo=tz).astimezone(UTC)


def test_a_window_within_one_day():
    start, end = time(13, 0), time(14, 0)
    assert quiet_until(now=NOON, timezone="UTC", start=start, end=end) is None
    assert quiet_until(now=NOON + timedelta(hours=1, minutes=5), timezone="UTC", start=start, end=end) == NOON.replace(
        hour=14
    )
    assert quiet_until(now=NOON.replace(hour=14), timezone="UTC", start=start, end=end) is None  # end excluded


@pytest.mark.parametrize(("start", "end"), [(None, time(7)), (time(22), None), (time(8), time(8)), (None, None)])
def test_no_window_without_both_ends_or_when_they_are_equal(start, end):
    assert quiet_until(now=NOON, timezone="UTC", start=start, end=end) is None


def test_spring_forward_night_ends_at_local_seven_in_summer_time():
    # Paris, 29 March 2026: clocks jump from 02:00 CET to 03:00 CEST.
    now = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)  # 23:00 CET
    ends = quiet_until(now=now, timezone="Europe/Paris", start=time(22), end=time(7))
    assert ends == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)  # 07:00 CEST
    assert ends - now == timedelta(hours=7)  # an hour shorter night


def test_fall_back_night_ends_at_local_seven_in_winter_time():
    # Paris, 25 October 2026: clocks go back from 03:00 CEST to 02:00 CET.
    now = datetime(2026, 10, 24, 21, 0, tzinfo=UTC)  # 23:00 CEST
    ends = quiet_until(now=now, timezone="Europe/Paris", start=time(22), end=time(7))
    assert ends == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)  # 07:00 CET
    assert ends - now == timedelta(hours=9)


def test_an_end_inside_the_spring_gap_ends_when_the_clocks_jump():
    now = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET
    ends = quiet_until(now=now, timezone="Europe/Paris", start=time(1, 0), end=time(2, 30))
    assert ends == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, the first instant past 02:30 CET
    assert ends > now


def test_new_york_dst_start_window():
    # New York, 8 March 2026: 02:00 EST -> 03:00 EDT. Quiet 23:00-06:00.
    now = datetime(2026, 3, 8, 4, 30, tzinfo=UTC)  # 23:30 EST on the 7th
    assert quiet_until(now=now, timezone="America/New_York", start=time(23), end=time(6)) == datetime(
        2026, 3, 8, 10, 0, tzinfo=UTC
    )  # 06:00 EDT


def test_an_unknown_zone_counts_as_utc():
    assert quiet_until(now=NOON, timezone="Mars/Olympus", start=time(11), end=time(13)) == NOON.replace(hour=13)


def test_quiet_hours_hold_every_channel_but_websocket():
    reach = Reach(reachable=ALL, timezone="Asia/Tokyo", quiet_start=time(20), quiet_end=time(8))
    now = datetime(2026, 6, 10, 14, 0, tzinfo=UTC)  # 23:00 in Tokyo
    routes = {r.channel: r for r in route(rule=HIGH, category="x", reach=reach, now=now)}
    assert routes["websocket"].hold_until is None
    assert routes["webpush"].hold_until == routes["mobile"].hold_until == datetime(2026, 6, 10, 23, 0, tzinfo=UTC)


def test_a_rule_that_ignores_quiet_hours_holds_nothing():
    rule = Rule(Priority.HIGH, ("websocket", "webpush"), respect_quiet_hours=False)
    reach = Reach(reachable=ALL, quiet_start=time(0), quiet_end=time(23, 59))
    assert all(r.hold_until is None for r in route(rule=rule, category="x", reach=reach, now=NOON))


# --- Digests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "minutes", "start"),
    [
        (datetime(2026, 6, 10, 10, 17, tzinfo=UTC), 60, datetime(2026, 6, 10, 10, 0, tzinfo=UTC)),
        (datetime(2026, 6, 10, 10, 17, tzinfo=UTC), 15, datetime(2026, 6, 10, 10, 15, tzinfo=UTC)),
        (datetime(2026, 6, 10, 10, 0, tzinfo=UTC), 15, datetime(2026, 6, 10, 10, 0, tzinfo=UTC)),
        (datetime(2026, 6, 10, 23, 59, tzinfo=UTC), 1440, datetime(2026, 6, 10, 0, 0, tzinfo=UTC)),
        (datetime(2026, 6, 10, 10, 17, tzinfo=UTC), 90, datetime(2026, 6, 10, 9, 0, tzinfo=UTC)),
    ],
)
def test_digest_windows_are_aligned_to_the_epoch_in_utc(now, minutes, start):
    assert digest_window(now=now, minutes=minutes) == (start, start + timedelta(minutes=minutes))


def test_a_digest_that_closes_in_quiet_hours_waits_for_their_end():
    reach = Reach(reachable=ALL, quiet_start=time(22), quiet_end=time(7), digest_minutes=60)
    now = datetime(2026, 6, 10, 21, 30, tzinfo=UTC)
    email = next(r for r in route(rule=LOW, category="x", reach=reach, now=now) if r.channel == "email")
    assert email.digest_window == (now.replace(minute=0), now.replace(hour=22, minute=0))
    assert email.hold_until == datetime(2026, 6, 11, 7, 0, tzinfo=UTC)


# --- The database side ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_seeded_rules_are_the_documented_ones():
    rules = rules_by_priority()
    assert rules["critical"] == CRITICAL
    assert rules["high"] == HIGH
    assert rules["normal"] == NORMAL
    assert rules["low"] == LOW


@pytest.mark.django_db
def test_reachability_comes_from_address_phone_and_enabled_devices(tenant, settings):
    settings.SMS_ACCOUNT_SID = "AC123"
    plain = UserFactory(tenant=tenant, email="")
    full = UserFactory(tenant=tenant, timezone="Europe/Paris")
    NotificationSettings.objects.create(tenant=tenant, user=full, phone="+33612345678", quiet_start=time(22))
    WebPushSubscription.objects.create(
        tenant=tenant, user=full, endpoint="https://push.example/1", p256dh="k", auth="a"
    )
    MobileToken.objects.create(tenant=tenant, user=full, platform="fcm", token="t1")
    gone = UserFactory(tenant=tenant)
    WebPushSubscription.objects.create(
        tenant=tenant, user=gone, endpoint="https://push.example/2", p256dh="k", auth="a", disabled_at=NOON
    )

    reaches = reaches_for_users(tenant_id=tenant.pk, users=[plain, full, gone])

    assert reaches[plain.pk].reachable == {"websocket"}
    assert reaches[full.pk].reachable == ALL
    assert reaches[full.pk].timezone == "Europe/Paris" and reaches[full.pk].quiet_start == time(22)
    assert reaches[gone.pk].reachable == {"websocket", "email"}

    settings.SMS_ACCOUNT_SID = ""
    assert "sms" not in reaches_for_users(tenant_id=tenant.pk, users=[full])[full.pk].reachable


@pytest.mark.django_db
def test_digests_are_created_once_per_user_channel_and_window(tenant, user):
    window = digest_window(now=NOON, minutes=60)
    first = digests_for_routes(tenant_id=tenant.pk, wanted=[(user.pk, "email", window)])
    again = digests_for_routes(tenant_id=tenant.pk, wanted=[(user.pk, "email", window), (user.pk, "email", window)])
    assert first == again
    assert Digest.objects.count() == 1
    digest = Digest.objects.get()
    assert (digest.window_start, digest.window_end) == window
