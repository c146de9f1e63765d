"""docs/audit.md lists exactly the actions of audit.constants.AuditAction."""

from __future__ import annotations

import re

from audit.constants import AuditAction
from tests.conftest import ROOT


def test_docs_catalogue_matches_the_actions():
    text = (ROOT / "docs" / "audit.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.MULTILINE))

    assert documented == set(AuditAction.values)
