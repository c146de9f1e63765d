"""Chat use cases: one function per use case, the only writers of chat rows.

- ``rooms``: create, direct rooms, join, leave, invite, kick, ban, unban;
- ``messages``: send (gap-free seq, idempotent on client_id), edit, delete, reactions;
- ``reads``: the per-member read marker.

Every service takes the caller as a ``Principal`` (keyword-only), authorizes
through ``chat.selectors``, validates, writes inside ``transaction.atomic``,
records audit for moderation, and broadcasts through ``chat.events`` after
commit. They raise ``chat.errors`` only; REST views (``chat.api``) and the
WebSocket handlers (``chat.handlers``) map those to their own error shapes.
"""
