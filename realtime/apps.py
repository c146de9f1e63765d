"""The real-time hub: one WebSocket endpoint, its authentication, the envelope
and error codes (``protocol.py``) and the handler registry that every app's
``handlers.py`` plugs a message family into. docs/protocol.md describes it.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from django.apps import AppConfig, apps
from django.conf import settings
from django.utils.module_loading import module_has_submodule


class RealtimeConfig(AppConfig):
    name = "realtime"

    def ready(self) -> None:
        # Import each project app's handlers.py so its WebSocket family
        # registers itself. Only project apps: third-party packages ship
        # unrelated modules named "handlers" (django-axes, django.contrib.auth).
        base_dir = Path(settings.BASE_DIR).resolve()
        for app_config in apps.get_app_configs():
            if not Path(app_config.path).resolve().is_relative_to(base_dir):
                continue
            if module_has_submodule(app_config.module, "handlers"):
                import_module(f"{app_config.name}.handlers")
