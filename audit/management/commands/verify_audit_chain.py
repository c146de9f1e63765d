"""``manage.py verify_audit_chain [--tenant SLUG] [--anchors FILE]``

Walks every audit chain (or one tenant's) and prints one line per chain:
``chain <tenant or global>: OK, N events, head seq S`` or
``chain <tenant or global>: BROKEN at seq S (event id X): <reason>``.
Exit status: 0 when every chain verifies, 1 when one is broken, 2 when the
arguments cannot be used (unknown tenant, unreadable anchors file). The checks
live in ``audit.selectors``; docs/audit.md describes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Tenant
from audit.selectors import GLOBAL_CHAIN_KEY, GLOBAL_CHAIN_LABEL, audit_anchors_parse, audit_chains_verify

EXIT_BROKEN = 1
EXIT_USAGE = 2


class Command(BaseCommand):
    help = "Verify the audit trail's hash chains; exit 1 at the first broken link of any chain."
    # An integrity check must still report when an unrelated system check
    # fails; it needs the database and nothing else.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--tenant",
            metavar="SLUG",
            help=f"Verify only this tenant's chain ('{GLOBAL_CHAIN_LABEL}' for the installation-wide chain).",
        )
        parser.add_argument(
            "--anchors",
            metavar="FILE",
            type=Path,
            help="JSON log file holding 'audit chain head' lines; every anchored seq must match.",
        )

    def handle(self, *args, tenant: str | None = None, anchors: Path | None = None, **options):
        chain_keys = None if tenant is None else [self._chain_key(tenant)]
        anchor_map = {}
        if anchors is not None:
            try:
                with anchors.open(encoding="utf-8", errors="replace") as stream:
                    anchor_map = audit_anchors_parse(stream)
            except OSError as exc:
                raise CommandError(f"cannot read anchors file: {exc}", returncode=EXIT_USAGE) from exc
            count = sum(len(items) for items in anchor_map.values())
            self.stdout.write(f"{count} anchors read from {anchors}")
            if chain_keys is not None:
                anchor_map = {key: anchor_map.get(key, []) for key in chain_keys}

        results = audit_chains_verify(chain_keys=chain_keys, anchors=anchor_map)
        if not results:
            self.stdout.write("no audit chains")
        for result in results:
            style = self.style.SUCCESS if result.ok else self.style.ERROR
            self.stdout.write(style(result.summary()))
        if not all(result.ok for result in results):
            # Not a CommandError: the report above is the output, and the
            # status alone tells a scheduler that the trail was tampered with.
            sys.exit(EXIT_BROKEN)

    def _chain_key(self, slug: str) -> int:
        tenant_id = Tenant.objects.filter(slug=slug).values_list("pk", flat=True).first()
        if tenant_id is not None:
            return tenant_id
        if slug == GLOBAL_CHAIN_LABEL:
            return GLOBAL_CHAIN_KEY
        raise CommandError(f"unknown tenant {slug!r}", returncode=EXIT_USAGE)
