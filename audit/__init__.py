"""The append-only, tamper-evident audit trail.

A separate app because every other app records into it and none may write it
directly: ``audit.services.audit_record`` is the only writer. The hash chain and
its verification are described in docs/audit.md.
"""
