"""System checks of the chat app: a misconfigured moderation pipeline fails at
startup (``manage.py check``, daphne, workers), not at the first message sent."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from .moderation import Moderator


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
