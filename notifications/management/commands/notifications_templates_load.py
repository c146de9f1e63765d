"""``manage.py notifications_templates_load [FILE ...]``: create or update the
platform's notification templates from JSON files (default: the shipped ones,
``notifications/data/templates/*.json``). Idempotent; ``seed_demo`` runs it too.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from notifications.templates import templates_load


class Command(BaseCommand):
    help = "Load the platform's notification templates from JSON files (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", help="JSON files (default: notifications/data/templates/*.json).")

    def handle(self, *args, files: list[str], **options):
        try:
            result = templates_load([Path(name) for name in files] if files else None)
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"Templates not loaded: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Notification templates: {result.created} created, {result.updated} updated, "
                f"{result.unchanged} unchanged."
            )
        )
