from django.apps import AppConfig


class ListeningConfig(AppConfig):
    name = "listening"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from .metrics import SessionDriftCollector

        # Once per process: ready() may run again in tests that reload apps.
        if not getattr(ListeningConfig, "_collector_registered", False):
            REGISTRY.register(SessionDriftCollector())
            ListeningConfig._collector_registered = True
