"""``manage.py webpush_vapid_keys``: make a VAPID key pair for Web Push.

Prints the private key to put in ``WEBPUSH_VAPID_PRIVATE_KEY`` (base64url of
the raw P-256 scalar) and the public key (``applicationServerKey``) the web
app passes to ``pushManager.subscribe``. ``--show`` prints the public key of
the configured private key instead. Keep the private key secret; changing it
invalidates every browser subscription (docs/operations.md, "Push providers").
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management.base import BaseCommand, CommandError

from notifications.providers.webpush import load_vapid, vapid_application_server_key, webpush_public_key


class Command(BaseCommand):
    help = "Generate a VAPID key pair for Web Push (or --show the configured one's public key)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--show", action="store_true", help="Print the public key of WEBPUSH_VAPID_PRIVATE_KEY instead."
        )

    def handle(self, *args, show: bool, **options):
        if show:
            try:
                public = webpush_public_key()
            except Exception as exc:  # any parse failure means the same thing here
                raise CommandError(f"WEBPUSH_VAPID_PRIVATE_KEY is not a usable key: {exc}") from exc
            if not public:
                raise CommandError("WEBPUSH_VAPID_PRIVATE_KEY is not set.")
            self.stdout.write(f"WEBPUSH_VAPID_PUBLIC_KEY={public}")
            return
        key = ec.generate_private_key(ec.SECP256R1())
        raw = key.private_numbers().private_value.to_bytes(32, "big")
        private = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        public = vapid_application_server_key(load_vapid(private))
        self.stdout.write(f"WEBPUSH_VAPID_PRIVATE_KEY={private}")
        self.stdout.write(f"WEBPUSH_VAPID_PUBLIC_KEY={public}")
