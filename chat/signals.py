"""Signal receivers of the chat app; every one is listed in docs/signals.md.

An attachment row goes away through a service (a deleted message, the purge
of unsent uploads) or through a cascade the project does not run itself: a
room or a tenant deleted from the admin, a user's erasure. Its file must go
with it in every case, so the file follows the row here, after the commit
(a rolled-back delete keeps both)."""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import Attachment
from .services.attachments import attachment_files_delete_on_commit


@receiver(post_delete, sender=Attachment, dispatch_uid="chat.attachment_file_delete")
def attachment_file_delete(sender, instance: Attachment, **kwargs) -> None:
    attachment_files_delete_on_commit([instance.storage_name])
