from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401 - registers the system checks
            signals,  # noqa: F401 - connects the receivers (docs/signals.md)
        )
