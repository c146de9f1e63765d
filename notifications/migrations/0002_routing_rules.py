"""The default routing (docs/api.md, "Routing"); staff edit it in the admin."""

from django.db import migrations

DEFAULTS = [
    # CRITICAL: every channel the user can be reached on, at once, preferences,
    # quiet hours and digests aside, on its own queue.
    ("critical", ["websocket", "webpush", "mobile", "email", "sms"], False, False, False, "notifications_critical"),
    # HIGH: in the app and on the user's devices.
    ("high", ["websocket", "webpush", "mobile"], True, True, False, "notifications"),
    # NORMAL: wherever the user's preferences say.
    ("normal", ["websocket", "webpush", "mobile", "email", "sms"], True, True, False, "notifications"),
    # LOW: gathered into a digest per window.
    ("low", ["websocket", "email"], True, True, True, "notifications"),
]


def seed(apps, schema_editor):
    RoutingRule = apps.get_model("notifications", "RoutingRule")
    for priority, channels, follow, quiet, digest, queue in DEFAULTS:
        RoutingRule.objects.update_or_create(
            priority=priority,
            defaults={
                "channels": channels,
                "follow_preferences": follow,
                "respect_quiet_hours": quiet,
                "digest": digest,
                "queue": queue,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
