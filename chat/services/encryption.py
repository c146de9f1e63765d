"""Encryption at rest as the other chat services use it, and key rotation.

``room_seal_text`` / ``room_seal_bytes`` are what every writer of bodies, edit
history and attachment files calls: in an encrypted room they encrypt under the
newest key of ``CHAT_ENCRYPTION_KEYS`` (``chat.crypto``), elsewhere they pass
the value through. ``message_index`` keeps the keyed-hash word index of
encrypted messages (search) in step with their bodies.

``message_keys_rotate`` (``manage.py rotate_message_keys``) moves every row
still under an older key, and every row of an encrypted room still in clear,
to the newest key, batch by batch, each batch its own transaction: it can be
stopped and run again (resumable), and a second run finds nothing to do
(idempotent). docs/operations.md, "Encryption at rest", gives the procedure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Q

from ..crypto import bytes_open, bytes_seal, encryption_available, keyring, search_tokens, text_open, text_seal
from ..errors import Conflict
from ..models import Attachment, Message, MessageEdit, MessageSearchToken, Room


def _require_keys() -> None:
    if not encryption_available():
        raise Conflict("This room is encrypted, but the server has no encryption keys (CHAT_ENCRYPTION_KEYS).")


def room_seal_text(*, room: Room, text: str) -> tuple[str, str]:
    """``(stored value, key id)`` of a body or previous body of ``room``. An empty
    text stays empty (a tombstone, a message that is only attachments)."""
    if not room.encrypted or not text:
        return text, ""
    _require_keys()
    return text_seal(text)


def room_seal_bytes(*, room: Room, data: bytes) -> tuple[bytes, str]:
    """``(stored bytes, key id)`` of an attachment's content in ``room``."""
    if not room.encrypted:
        return data, ""
    _require_keys()
    return bytes_seal(data)


def message_index(*, message: Message, text: str) -> None:
    """(Re)build the search tokens of a message of an encrypted room from its clear
    text (empty: the message is a tombstone and leaves the index). Plain rooms
    are searched by PostgreSQL's full-text index and get no tokens."""
    MessageSearchToken.objects.filter(message=message).delete()
    if not text:
        return
    MessageSearchToken.objects.bulk_create(
        [
            MessageSearchToken(message=message, token=token)
            for token in search_tokens(tenant_id=message.tenant_id, text=text)
        ]
    )


# --- Rotation ---------------------------------------------------------------------------


@dataclass
class RotationReport:
    """Rows moved to ``key_id`` by one run of ``message_keys_rotate``."""

    key_id: str
    messages: int = 0
    edits: int = 0
    attachments: int = 0


def _stale(field: str, *, room_path: str, current: str) -> Q:
    """Rows under a key other than ``current``, or in clear in an encrypted room."""
    under_other_key = ~Q(**{field: ""}) & ~Q(**{field: current})
    in_clear = Q(**{field: "", f"{room_path}encrypted": True})
    return under_other_key | in_clear


def _stale_messages(current: str):
    return Message.objects.filter(_stale("body_key_id", room_path="room__", current=current)).exclude(body="")


def _stale_edits(current: str):
    return MessageEdit.objects.filter(_stale("key_id", room_path="message__room__", current=current)).exclude(
        previous_body=""
    )


def _stale_attachments(current: str):
    return Attachment.objects.filter(_stale("key_id", room_path="room__", current=current))


def message_keys_pending() -> Counter:
    """How many rows each key id still protects, ``""`` counting rows of encrypted
    rooms still in clear: a key may leave ``CHAT_ENCRYPTION_KEYS`` once it is
    absent from here."""
    pending: Counter = Counter()
    for queryset, field in (
        (Message.objects.filter(Q(room__encrypted=True) | ~Q(body_key_id="")).exclude(body=""), "body_key_id"),
        (
            MessageEdit.objects.filter(Q(message__room__encrypted=True) | ~Q(key_id="")).exclude(previous_body=""),
            "key_id",
        ),
        (Attachment.objects.filter(Q(room__encrypted=True) | ~Q(key_id="")), "key_id"),
    ):
        for key_id, count in queryset.order_by().values(field).annotate(count=Count("pk")).values_list(field, "count"):
            pending[key_id] += count
    return pending


def _rotate_messages(batch: list[Message]) -> int:
    for message in batch:
        text = text_open(message.body, message.body_key_id)
        was_clear = not message.body_key_id
        message.body, message.body_key_id = text_seal(text)
        message.save(update_fields=["body", "body_key_id"])
        if was_clear and message.deleted_at is None:
            message_index(message=message, text=text)
    return len(batch)


def _rotate_edits(batch: list[MessageEdit]) -> int:
    for edit in batch:
        edit.previous_body, edit.key_id = text_seal(text_open(edit.previous_body, edit.key_id))
        edit.save(update_fields=["previous_body", "key_id"])
    return len(batch)


def _rotate_attachments(batch: list[Attachment]) -> int:
    from .attachments import attachment_files_delete_on_commit, attachment_storage_name

    replaced = []
    for attachment in batch:
        with default_storage.open(attachment.storage_name, "rb") as handle:
            stored = handle.read()
        token, key_id = bytes_seal(bytes_open(stored, attachment.key_id))
        new_name = default_storage.save(attachment_storage_name(tenant_id=attachment.tenant_id), ContentFile(token))
        replaced.append(attachment.storage_name)
        attachment.storage_name, attachment.key_id = new_name, key_id
        attachment.save(update_fields=["storage_name", "key_id"])
    # The old files go once the rows naming the new ones are committed.
    attachment_files_delete_on_commit(replaced)
    return len(batch)


def _rotate(
    queryset_of: Callable[[str], object], rotate: Callable[[list], int], *, current: str, batch_size: int
) -> int:
    done, after = 0, 0
    while True:
        with transaction.atomic():
            batch = list(
                queryset_of(current)
                .select_for_update(of=("self",), skip_locked=True)
                .filter(pk__gt=after)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                return done
            done += rotate(batch)
        after = batch[-1].pk


def message_keys_rotate(*, batch_size: int = 500) -> RotationReport:
    """Re-encrypt under the newest key every message body, edit-history body and
    attachment file still under an older key, and encrypt those of encrypted
    rooms still in clear (indexing such messages for search).

    Batches of ``batch_size`` rows, each committed on its own, ordered by id, so
    an interrupted run loses nothing and the next one continues; rows locked by
    a concurrent writer are skipped (that writer already uses the newest key).
    Idempotent. Emits nothing: clients see the same messages. Raises ``Conflict``
    without keys.
    """
    _require_keys()
    current = keyring().current_id
    report = RotationReport(key_id=current)
    report.messages = _rotate(_stale_messages, _rotate_messages, current=current, batch_size=batch_size)
    report.edits = _rotate(_stale_edits, _rotate_edits, current=current, batch_size=batch_size)
    report.attachments = _rotate(_stale_attachments, _rotate_attachments, current=current, batch_size=batch_size)
    return report
