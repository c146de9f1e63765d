"""Attachment use cases: upload, read for download, delete files, purge unclaimed uploads.

An upload is two steps for the client: ``attachment_upload`` stores the file
for the room (REST, multipart) and answers its id; ``message_send`` then names
that id in ``attachments`` and the file becomes part of the message
(``chat.services.messages``). Who may upload is who may post: a member, not
muted or banned, in a room that is not archived.

Files go through Django's storage API (``default_storage``) under a random name
(``<ATTACHMENT_STORAGE_PREFIX>/<tenant id>/<hex>``): nothing the client sends
reaches a path. The type is sniffed from the content (``chat.sniffing``),
checked against ``CHAT_ATTACHMENT_ALLOWED_TYPES`` and against the declared
type. In an encrypted room the stored bytes are encrypted
(``chat.services.encryption``). Files are deleted after the commit that
forgets their row, so a rollback never leaves a row without its file.
docs/api.md, "Attachments", is the client's view.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata
import uuid
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from accounts.principals import Principal

from ..constants import (
    ATTACHMENT_NAME_MAX_LENGTH,
    ATTACHMENT_PURGE_BATCH_SIZE,
    ATTACHMENT_PURGE_MAX_BATCHES,
    ATTACHMENT_STORAGE_PREFIX,
    ATTACHMENT_UNATTACHED_MAX_AGE_SECONDS,
)
from ..crypto import bytes_open
from ..errors import Invalid, TooLarge, TypeMismatch, TypeNotAllowed
from ..models import Attachment
from ..selectors import actor_user_id, member_check_may_post, room_get_for_member
from ..sniffing import declaration_matches, declared_type, sniff
from .encryption import room_seal_bytes

DEFAULT_ATTACHMENT_NAME = "attachment"
# Characters never kept in a name: path separators, quotes that break a
# Content-Disposition header, and characters Windows refuses.
_NAME_FORBIDDEN = set('/\\:*?"<>|')


def attachment_name_clean(name: str | None) -> str:
    """The client's filename as metadata: its last path component, NFC, without
    control, format or path characters, spaces collapsed, at most
    ``ATTACHMENT_NAME_MAX_LENGTH`` characters keeping the extension; never empty
    and never a dot-name ("..", ".env")."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(
        char
        for char in name
        if char not in _NAME_FORBIDDEN and unicodedata.category(char)[0] != "C"  # Cc, Cf, Cs, Co, Cn
    )
    name = " ".join(name.split()).strip(". ")
    if not name:
        return DEFAULT_ATTACHMENT_NAME
    if len(name) > ATTACHMENT_NAME_MAX_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = f"{stem[: ATTACHMENT_NAME_MAX_LENGTH - len(extension) - 1]}.{extension}"
        else:
            name = name[:ATTACHMENT_NAME_MAX_LENGTH]
    return name


def attachment_storage_name(*, tenant_id: int) -> str:
    """A fresh random storage name; nothing of the client's is in it."""
    return f"{ATTACHMENT_STORAGE_PREFIX}/{tenant_id}/{uuid.uuid4().hex}"


def attachment_files_delete_on_commit(storage_names: list[str]) -> None:
    """Delete these files from storage once the current transaction commits."""

    def delete() -> None:
        for name in storage_names:
            default_storage.delete(name)

    if storage_names:
        transaction.on_commit(delete)


def _read_limited(upload, max_bytes: int) -> bytes:
    """The upload's content; ``TooLarge`` past ``max_bytes`` (the declared size
    is checked first, the bytes read as well in case it lied)."""
    if upload.size is not None and upload.size > max_bytes:
        raise TooLarge(f"A file has at most {max_bytes} bytes.", details={"max_bytes": max_bytes})
    chunks, total = [], 0
    for chunk in upload.chunks():
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(f"A file has at most {max_bytes} bytes.", details={"max_bytes": max_bytes})
        chunks.append(chunk)
    return b"".join(chunks)


def _check_type(data: bytes, declared: str | None) -> str:
    allowed = list(settings.CHAT_ATTACHMENT_ALLOWED_TYPES)
    detected = sniff(data)
    if detected is None or detected not in allowed:
        raise TypeNotAllowed(
            "This type of file is not accepted.", details={"detected": detected, "allowed": sorted(allowed)}
        )
    if not declaration_matches(declared, detected):
        raise TypeMismatch(
            f"The file is {detected}, not {declared_type(declared)}.",
            details={"declared": declared_type(declared), "detected": detected},
        )
    return detected


@transaction.atomic
def attachment_upload(*, actor: Principal, room_id: int, upload, declared_content_type: str | None) -> Attachment:
    """Store one file for the caller's next message in the room.

    ``upload`` is a Django ``UploadedFile`` (anything with ``name``, ``size``
    and ``chunks()``). Preconditions: the caller may post in the room (member,
    not muted or banned, room not archived); the file is not empty, at most
    ``CHAT_ATTACHMENT_MAX_BYTES`` (``TooLarge``), of an allowed type by its
    content (``TypeNotAllowed``) and, when the client declared a type, of that
    type (``TypeMismatch``). Not idempotent: each call stores a new file.
    Emits nothing: the file is private to the uploader until a message carries it.
    """
    user_id = actor_user_id(actor)
    membership = room_get_for_member(actor=actor, room_id=room_id)
    member_check_may_post(membership)
    room = membership.room
    data = _read_limited(upload, settings.CHAT_ATTACHMENT_MAX_BYTES)
    if not data:
        raise Invalid("The file is empty.", field="file")
    content_type = _check_type(data, declared_content_type)
    stored, key_id = room_seal_bytes(room=room, data=data)
    storage_name = default_storage.save(attachment_storage_name(tenant_id=room.tenant_id), ContentFile(stored))
    try:
        return Attachment.objects.create(
            tenant_id=room.tenant_id,
            room=room,
            uploader_id=user_id,
            name=attachment_name_clean(getattr(upload, "name", "")),
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            storage_name=storage_name,
            key_id=key_id,
        )
    except BaseException:
        default_storage.delete(storage_name)
        raise


def attachment_open(*, attachment: Attachment) -> IO[bytes]:
    """The file's content as uploaded, to stream: the stored file itself, or its
    decryption (in memory, at most ``CHAT_ATTACHMENT_MAX_BYTES``) when it was
    stored encrypted. The caller has checked access
    (``chat.selectors.attachment_get_for_member``) and closes the file."""
    handle = default_storage.open(attachment.storage_name, "rb")
    if not attachment.key_id:
        return handle
    with handle:
        return io.BytesIO(bytes_open(handle.read(), attachment.key_id))


def attachments_purge_unattached(*, older_than: timedelta | None = None) -> int:
    """Delete uploads no message claimed within ``older_than`` (a day by default),
    rows and files. Returns how many.

    Batches of ``ATTACHMENT_PURGE_BATCH_SIZE`` rows, each its own transaction,
    at most ``ATTACHMENT_PURGE_MAX_BATCHES`` per call (the next run continues).
    Rows a concurrent send is attaching are locked and skipped; a send that
    names a row purged meanwhile fails with ``conflict``. Idempotent. Emits nothing.
    """
    age = older_than if older_than is not None else timedelta(seconds=ATTACHMENT_UNATTACHED_MAX_AGE_SECONDS)
    cutoff = timezone.now() - age
    purged = 0
    for _ in range(ATTACHMENT_PURGE_MAX_BATCHES):
        with transaction.atomic():
            batch = list(
                Attachment.objects.select_for_update(skip_locked=True)
                .filter(message__isnull=True, created_at__lt=cutoff)
                .order_by("pk")
                .values_list("pk", "storage_name")[:ATTACHMENT_PURGE_BATCH_SIZE]
            )
            if not batch:
                break
            # The files follow after commit (chat.signals).
            Attachment.objects.filter(pk__in=[pk for pk, _ in batch], message__isnull=True).delete()
        purged += len(batch)
    return purged
