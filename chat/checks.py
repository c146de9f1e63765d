"""System checks of the chat app: a misconfigured moderation pipeline, malformed
encryption keys or an attachment type nobody can recognise fail at startup
(``manage.py check``, daphne, workers), not at the first message sent."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from .crypto import KeyConfigError, parse_keys
from .moderation import Moderator
from .sniffing import SNIFFABLE_TYPES


@register()
def check_moderators(app_configs=None, **kwargs) -> list[Error]:
    from django.utils.module_loading import import_string

    errors = []
    for path in settings.CHAT_MODERATORS:
        try:
            moderator = import_string(path)
        except ImportError as exc:
            errors.append(Error(f"CHAT_MODERATORS: cannot import {path!r}: {exc}", id="chat.E001"))
            continue
        if not (isinstance(moderator, type) and issubclass(moderator, Moderator)):
            errors.append(Error(f"CHAT_MODERATORS: {path!r} is not a Moderator subclass.", id="chat.E002"))
    return errors


@register()
def check_encryption_keys(app_configs=None, **kwargs) -> list[Error]:
    """Every entry of CHAT_ENCRYPTION_KEYS parses (the message names the entry, never the key)."""
    try:
        parse_keys(settings.CHAT_ENCRYPTION_KEYS)
    except KeyConfigError as exc:
        return [Error(f"CHAT_ENCRYPTION_KEYS: {exc}", id="chat.E003")]
    if settings.CHAT_ENCRYPTION_KEYS and not settings.CHAT_SEARCH_INDEX_KEY:
        return [Error("CHAT_SEARCH_INDEX_KEY must not be empty when encryption keys are set.", id="chat.E005")]
    return []


@register()
def check_attachment_types(app_configs=None, **kwargs) -> list[Error]:
    unknown = sorted(set(settings.CHAT_ATTACHMENT_ALLOWED_TYPES) - SNIFFABLE_TYPES)
    if unknown:
        return [
            Error(
                f"CHAT_ATTACHMENT_ALLOWED_TYPES: {', '.join(unknown)} cannot be recognised from a file's content; "
                f"choose among {', '.join(sorted(SNIFFABLE_TYPES))}.",
                id="chat.E004",
            )
        ]
    return []
