"""verify_audit_chain: intact chains pass, and every kind of tampering is named by seq."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.core.management import CommandError
from django.utils import timezone

from audit.constants import AuditAction
from audit.models import AuditChainHead
from audit.selectors import Anchor, audit_anchors_parse, audit_chains_verify
from audit.services import Actor, audit_anchor_heads, audit_record
from tests.conftest import ROOT, subprocess_env

from .conftest import anchor_lines, raw_sql, record_trail, verify

pytestmark = pytest.mark.django_db


def test_intact_chains_verify(trail):
    status, out = verify()

    assert status == 0, out
    assert "chain acme: OK, 4 events, head seq 4" in out
    assert "chain globex: OK, 3 events, head seq 3" in out
    assert "chain global: OK, 2 events, head seq 2" in out


def test_selector_returns_a_result_per_chain(trail):
    results = {result.label: result for result in audit_chains_verify()}

    assert set(results) == {"acme", "globex", "global"}
    assert all(result.ok for result in results.values())
    assert results["acme"].chain_key == trail.tenant_id
    assert results["acme"].tenant_id == trail.tenant_id
    assert results["global"].tenant_id is None
    assert (results["globex"].events, results["globex"].head_seq) == (3, 3)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("action", AuditAction.USER_DEACTIVATED.value),
        ("target_id", "999"),
        ("actor_type", "system"),
        ("details", '{"n": 99, "note": "tenant chain"}'),
        ("ip", "198.51.100.1"),
        ("actor_label", "somebody-else"),
        ("user_agent", "curl/8"),
    ],
)
def test_altered_row_breaks_the_chain_at_its_seq(trail, column, value):
    event = trail.event(trail.tenant_id, 2)
    assert raw_sql(f"UPDATE audit_auditevent SET {column} = %s WHERE id = %s", [value, event.pk]) == 1  # noqa: S608

    status, out = verify()

    assert status == 1
    assert f"chain acme: BROKEN at seq 2 (event id {event.pk}):" in out
    # The other chains are still reported, and still fine.
    assert "chain globex: OK, 3 events, head seq 3" in out
    assert "chain global: OK, 2 events, head seq 2" in out


def test_altered_actor_id_breaks_the_chain(trail):
    event = trail.event(trail.tenant_id, 3)
    raw_sql("UPDATE audit_auditevent SET actor_id = actor_id + 1 WHERE id = %s", [event.pk])

    status, out = verify("--tenant", "acme")

    assert status == 1
    assert f"BROKEN at seq 3 (event id {event.pk}): personal fields" in out


def test_recomputed_prev_hash_is_still_caught(trail):
    # Someone who rewrites prev_hash to hide a change still cannot forge the
    # keyed hash of the row.
    event = trail.event(trail.other_tenant_id, 2)
    raw_sql("UPDATE audit_auditevent SET prev_hash = %s WHERE id = %s", ["f" * 64, event.pk])

    status, out = verify("--tenant", "globex")

    assert status == 1
    assert f"chain globex: BROKEN at seq 2 (event id {event.pk}): prev_hash" in out


def test_deleted_middle_row_is_a_gap(trail):
    removed = trail.event(trail.tenant_id, 2)
    following = trail.event(trail.tenant_id, 3)
    raw_sql("DELETE FROM audit_auditevent WHERE id = %s", [removed.pk])

    status, out = verify()

    assert status == 1
    assert f"chain acme: BROKEN at seq 3 (event id {following.pk}): seq 2 is missing" in out


def test_deleted_middle_row_with_renumbered_seqs_is_caught(trail):
    # Closing the gap by renumbering leaves prev_hash pointing at the removed row.
    removed = trail.event(trail.tenant_id, 2)
    raw_sql("DELETE FROM audit_auditevent WHERE id = %s", [removed.pk])
    for seq in (3, 4):
        raw_sql(
            "UPDATE audit_auditevent SET seq = %s WHERE tenant_id = %s AND seq = %s", [seq - 1, trail.tenant_id, seq]
        )

    status, out = verify()

    assert status == 1
    assert "chain acme: BROKEN at seq 2 " in out
    assert "prev_hash does not match" in out


def test_truncated_tail_is_caught_by_the_head(trail):
    last = trail.event(trail.tenant_id, 4)
    raw_sql("DELETE FROM audit_auditevent WHERE id = %s", [last.pk])

    status, out = verify()

    assert status == 1
    assert "chain acme: BROKEN at seq 4 (no event): the chain head records seq 4 but the last event is seq 3" in out


def test_truncated_global_tail_is_caught(trail):
    raw_sql("DELETE FROM audit_auditevent WHERE tenant_id IS NULL AND seq = 2")

    status, out = verify("--tenant", "global")

    assert status == 1
    assert out.strip().splitlines() == [
        "chain global: BROKEN at seq 2 (no event): the chain head records seq 2 but the last event is seq 1 "
        "(tail truncated)"
    ]


def test_truncation_that_rewinds_the_head_is_caught_by_the_anchors(trail, anchor_log):
    audit_anchor_heads()
    third = trail.event(trail.tenant_id, 3)
    raw_sql("DELETE FROM audit_auditevent WHERE tenant_id = %s AND seq = 4", [trail.tenant_id])
    raw_sql("UPDATE audit_auditchainhead SET seq = 3, hash = %s WHERE chain_key = %s", [third.hash, trail.tenant_id])

    assert verify()[0] == 0  # the table alone is consistent again
    status, out = verify("--anchors", str(anchor_log))

    assert status == 1
    assert "chain acme: BROKEN at seq 4 (no event): anchored seq 4 is missing" in out
    assert "chain globex: OK" in out


@pytest.mark.django_db(transaction=True)
def test_rebuilt_chain_is_caught_by_the_anchors(tenant, other_tenant, user, other_user, anchor_log):
    # Committed transactions: the anchors are logged on commit, as in production.
    trail = record_trail(tenant=tenant, other_tenant=other_tenant, user=user, other_user=other_user)
    anchored = [line for line in anchor_lines(anchor_log) if line["chain"] == tenant.pk]
    assert [line["seq"] for line in anchored] == [1, 2, 3, 4]
    assert all(line["message"] == "audit chain head" and line["logger"] == "audit.chain" for line in anchored)

    original_anchors = anchor_log.with_name("before-rebuild.log")
    original_anchors.write_text(anchor_log.read_text())

    # Replace the tenant's whole chain with a self-consistent forgery.
    raw_sql("DELETE FROM audit_auditevent WHERE tenant_id = %s", [tenant.pk])
    raw_sql("DELETE FROM audit_auditchainhead WHERE chain_key = %s", [tenant.pk])
    for _ in range(4):
        audit_record(action=AuditAction.LOGIN_SUCCEEDED, actor=Actor.user(user), tenant_id=tenant.pk)
    first = trail.event(tenant.pk, 1)
    assert first.hash != anchored[0]["hash"]

    assert verify()[0] == 0
    status, out = verify("--anchors", str(original_anchors))
    assert status == 1
    assert "9 anchors read" in out
    assert f"chain acme: BROKEN at seq 1 (event id {first.pk}): hash differs from the anchored hash" in out

    # The live log holds the forgery's anchors too, after the originals.
    status, out = verify("--anchors", str(anchor_log))
    assert status == 1
    assert f"chain acme: BROKEN at seq 1 (event id {first.pk}): the anchors hold two different hashes" in out
    assert "chain globex: OK, 3 events, head seq 3" in out


def test_anchors_that_match_verify(trail, anchor_log):
    audit_anchor_heads()

    status, out = verify("--anchors", str(anchor_log))

    assert status == 0, out
    assert "3 anchors read" in out


def test_anchors_of_a_vanished_chain_are_reported(trail, tmp_path):
    path = tmp_path / "anchors.log"
    line = {"message": "audit chain head", "logger": "audit.chain", "chain": 987654, "seq": 5, "hash": "a" * 64}
    path.write_text(json.dumps(line) + "\n")

    status, out = verify("--anchors", str(path))

    assert status == 1
    assert "chain tenant#987654: BROKEN at seq 5 (no event): anchored seq 5 is missing" in out


def test_anchor_parser_skips_other_log_lines():
    lines = [
        "plain text from some other process\n",
        '{"message": "request finished", "chain": 1, "seq": 1, "hash": "x"}\n',
        '{"message": "audit chain head", "chain": 3, "seq": "7", "hash": "abc"}\n',
        '{"message": "audit chain head", "chain": 3}\n',
        "{not json\n",
        '{"message": "audit chain head", "chain": 0, "seq": 2, "hash": "def"}\n',
    ]

    assert audit_anchors_parse(lines) == {3: [Anchor(3, 7, "abc")], 0: [Anchor(0, 2, "def")]}


def test_erasure_blanking_still_verifies(trail):
    raw_sql(
        "UPDATE audit_auditevent SET actor_id = NULL, actor_label = '', ip = NULL, user_agent = '', "
        "details = %s, personal_erased_at = %s WHERE tenant_id = %s",
        ["{}", timezone.now(), trail.tenant_id],
    )

    status, out = verify()

    assert status == 0, out
    assert "chain acme: OK, 4 events, head seq 4" in out
    assert all(event.actor_label == "" and event.details == {} for event in trail.events(trail.tenant_id))


def test_forged_erasure_that_keeps_an_actor_is_caught(trail):
    # Marking a row erased is not a licence to re-attribute it.
    event = trail.event(trail.tenant_id, 2)
    raw_sql(
        "UPDATE audit_auditevent SET actor_id = %s, actor_label = '', ip = NULL, user_agent = '', "
        "details = %s, personal_erased_at = %s WHERE id = %s",
        [event.actor_id + 1, "{}", timezone.now(), event.pk],
    )

    status, out = verify()

    assert status == 1
    assert f"chain acme: BROKEN at seq 2 (event id {event.pk}): erased event still holds personal fields" in out


def test_missing_head_row_is_reported(trail):
    raw_sql("DELETE FROM audit_auditchainhead WHERE chain_key = %s", [trail.other_tenant_id])

    status, out = verify()

    assert status == 1
    assert "chain globex: BROKEN at seq 3 (no event): the chain has events but no head row" in out


def test_tenant_option_limits_the_walk(trail):
    status, out = verify("--tenant", "globex")

    assert status == 0
    assert out.strip().splitlines() == ["chain globex: OK, 3 events, head seq 3"]


def test_unknown_tenant_is_a_usage_error(trail):
    with pytest.raises(CommandError, match="unknown tenant 'nope'") as excinfo:
        verify("--tenant", "nope")
    assert excinfo.value.returncode == 2


def test_empty_trail_verifies():
    assert verify() == (0, "no audit chains\n")
    assert not AuditChainHead.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_command_exit_status_from_a_real_process(tenant, other_tenant, user, other_user):
    trail = record_trail(tenant=tenant, other_tenant=other_tenant, user=user, other_user=other_user)
    command = [sys.executable, "manage.py", "verify_audit_chain"]

    ok = subprocess.run(
        command, check=False, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert "chain acme: OK, 4 events, head seq 4" in ok.stdout

    event = trail.event(tenant.pk, 1)
    raw_sql("UPDATE audit_auditevent SET action = %s WHERE id = %s", [AuditAction.LOGIN_FAILED.value, event.pk])
    broken = subprocess.run(
        command, check=False, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60
    )
    assert broken.returncode == 1, broken.stderr
    assert f"chain acme: BROKEN at seq 1 (event id {event.pk}): hash does not match" in broken.stdout
