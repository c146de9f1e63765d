from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        # Connects the session-login audit receivers (accounts/signals.py).
        from . import signals  # noqa: F401
