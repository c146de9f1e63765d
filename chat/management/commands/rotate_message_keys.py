"""Move encrypted chat rows to the newest key of CHAT_ENCRYPTION_KEYS.

An adapter of ``chat.services.encryption.message_keys_rotate``: run it after
putting a new key first in the setting (every process restarted with it), then
drop an old key once the report shows nothing left under it.
docs/operations.md, "Encryption at rest", gives the whole procedure.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chat.crypto import KeyConfigError, keyring
from chat.errors import DomainError
from chat.services.encryption import message_keys_pending, message_keys_rotate


def _describe(pending) -> str:
    if not pending:
        return "none"
    return ", ".join(f"{key_id or '(in clear)'}: {count}" for key_id, count in sorted(pending.items()))


class Command(BaseCommand):
    help = "Re-encrypt chat messages, edit history and attachments still under older keys (idempotent, resumable)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")
        parser.add_argument(
            "--check", action="store_true", help="Only report the rows each key protects; change nothing."
        )

    def handle(self, *args, batch_size: int, check: bool, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            current = keyring().current_id if keyring().keys else None
        except KeyConfigError as exc:
            raise CommandError(f"CHAT_ENCRYPTION_KEYS: {exc}") from None
        if current is None:
            raise CommandError("CHAT_ENCRYPTION_KEYS is empty: there is no key to rotate to.")
        if not check:
            try:
                report = message_keys_rotate(batch_size=batch_size)
            except DomainError as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(
                f"Re-encrypted under key {report.key_id!r}: {report.messages} messages, "
                f"{report.edits} edit-history entries, {report.attachments} attachments."
            )
        pending = message_keys_pending()
        older = {key_id: count for key_id, count in pending.items() if key_id != current}
        self.stdout.write(f"Rows by key: {_describe(pending)}.")
        if older:
            self.stdout.write(f"Still under older keys or in clear: {_describe(older)}; run again.")
        else:
            self.stdout.write(f"Nothing left under older keys: keys other than {current!r} can be dropped.")
