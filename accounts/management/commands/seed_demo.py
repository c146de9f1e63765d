"""``manage.py seed_demo [--password P]``: create the demo tenants, users, rooms,
catalog and playlist (accounts/services/demo.py), then print how to log in.

Idempotent. Without ``--password`` new accounts get one random password, shown
once, and existing accounts keep theirs; with it every demo account gets P.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.services.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo data (idempotent) and print the credentials and URLs."

    def add_arguments(self, parser):
        parser.add_argument(
            "--password",
            help="Set this password on every demo account (default: keep existing ones, random for new ones).",
        )
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="Where the server runs, for the printed URLs."
        )

    def handle(self, *args, password: str | None = None, base_url: str, **options):
        try:
            result = demo_seed(password=password)
        except ValidationError as exc:
            raise CommandError(f"--password is refused: {' '.join(exc.messages)}") from exc

        created = ", ".join(f"{count} {kind}" for kind, count in sorted(result.created.items())) or "nothing"
        self.stdout.write(self.style.SUCCESS(f"Demo data ready (created: {created})."))
        self.stdout.write("")
        self.stdout.write(f"  {'user':<8} {'tenant':<8} {'role':<8} password")
        for account in result.accounts:
            shown = account.password if account.password is not None else "(unchanged)"
            self.stdout.write(f"  {account.username:<8} {account.tenant or '-':<8} {account.role:<8} {shown}")
        base = base_url.rstrip("/")
        ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self.stdout.write("")
        self.stdout.write(f"  Admin:      {base}/admin/")
        self.stdout.write(f"  API docs:   {base}/api/docs/")
        self.stdout.write(f"  Token:      POST {base}/api/v1/auth/token/")
        self.stdout.write(f"  Readiness:  {base}/readyz")
        self.stdout.write(f"  WebSocket:  {ws_base}/ws/")
