"""The providers of each channel, by name: ``provider_for(channel)``.

The delivery service (``notifications.services.delivery``) asks this registry
for a channel's provider and never imports a concrete one. Providers are named
by import path and built lazily, once per process, so a provider whose module
is missing or broken (an optional dependency not installed) fails only the
deliveries of its channel, with ``ProviderUnavailable`` saying why, and never
an import of the app. docs/operations.md, "Notifications", lists the settings
each provider reads.
"""

from __future__ import annotations

import threading
from importlib import import_module

from .base import Provider

# Channel → "module:Class". The class is looked up by name; a module that names
# its class otherwise is searched for the Provider subclass of that channel.
PROVIDERS: dict[str, str] = {
    "websocket": "notifications.providers.websocket:WebSocketProvider",
    "webpush": "notifications.providers.webpush:WebPushProvider",
    "mobile": "notifications.providers.mobile:MobilePushProvider",
    "email": "notifications.providers.email:EmailProvider",
    "sms": "notifications.providers.sms:SmsProvider",
}


class ProviderUnavailable(Exception):
    """No provider can be built for a channel (unknown channel, module missing or failing to import)."""


_instances: dict[str, Provider] = {}
_lock = threading.Lock()


def _load(channel: str) -> Provider:
    path = PROVIDERS.get(channel)
    if path is None:
        raise ProviderUnavailable(f"No provider is registered for channel {channel!r}.")
    module_name, _, class_name = path.partition(":")
    try:
        module = import_module(module_name)
    except Exception as exc:  # ImportError, or any error the module raises on import
        raise ProviderUnavailable(f"The {channel} provider ({module_name}) cannot be imported: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        candidates = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Provider)
            and value is not Provider
            and getattr(value, "channel", None) == channel
        ]
        if len(candidates) != 1:
            raise ProviderUnavailable(f"{module_name} defines no {class_name} (a Provider for channel {channel!r}).")
        cls = candidates[0]
    try:
        return cls()
    except Exception as exc:
        raise ProviderUnavailable(f"The {channel} provider cannot be built: {exc}") from exc


def provider_for(channel: str) -> Provider:
    """The provider of ``channel``, built on first use and kept for the process.

    Raises ``ProviderUnavailable`` (not cached: a later call tries again)."""
    provider = _instances.get(channel)
    if provider is not None:
        return provider
    with _lock:
        provider = _instances.get(channel)
        if provider is None:
            provider = _instances[channel] = _load(channel)
    return provider


def providers_reset() -> None:
    """Forget the built providers (after settings change, in tests)."""
    with _lock:
        _instances.clear()
