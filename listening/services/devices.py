"""A user's devices (their players) and moving playback from one to another.

A device is a player the client names with its own stable ``device_id``
(registered over the WebSocket, ``device.register``). At most one device of a
user is *active*: it plays, the others stay silent. ``device_transfer`` makes
another one active and answers with what the user is listening to (the
playback state of their live session, if any, and the server's time), so the
new device resumes at the right position; every socket of the user is told
(``device.active``), so the old device stops.

Every write here first locks the user's row (``SELECT … FOR NO KEY UPDATE``):
the user's device writes then apply one at a time across server processes,
even when the user has no device row to lock yet (two first registrations at
once). The partial unique constraint ``listening_device_one_active`` backs the
one-active rule in the database itself. The WebSocket handlers
(``listening.handlers.devices``) and the REST views (``listening.api.devices``)
call these functions; reads are ``listening.selectors.devices_for_user``.
docs/protocol.md, "Devices", is the client-facing description.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.principals import Principal
from realtime.events import event_send_on_commit
from realtime.groups import user_group
from realtime.protocol import timestamp
from spotify_agent.errors import Invalid, NotFound

from ..constants import DEVICE_ID_MAX_LENGTH, DEVICE_NAME_MAX_LENGTH, DeviceKind, SessionStatus
from ..events import DeviceActiveEvent, DeviceForgottenEvent
from ..models import Device, SessionMember
from .common import now_ms, state_payload, user_of

# Devices remembered per user. A person has a handful of players (phone,
# laptop, a speaker, the car); every reinstall or browser profile registers a
# new id, so the list would only grow. Past the cap, registering a new device
# forgets the inactive device seen least recently rather than refusing: the
# new device is the one in the person's hand, a stale entry is the one they
# would delete anyway. Also the bound that lets device.list go unpaginated.
DEVICES_PER_USER = 20

_DEVICE_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{DEVICE_ID_MAX_LENGTH}}}")


def device_payload(device: Device) -> dict[str, Any]:
    """A device as the WebSocket and REST answers show it."""
    return {
        "device_id": device.device_id,
        "name": device.name,
        "kind": device.kind,
        "active": device.active,
        "last_seen_at": timestamp(device.last_seen_at),
        "created_at": timestamp(device.created_at),
    }


# --- Validation ----------------------------------------------------------------------------


def _device_id_error(value: Any) -> str | None:
    if not isinstance(value, str) or not _DEVICE_ID.fullmatch(value):
        return f"device_id must be 1-{DEVICE_ID_MAX_LENGTH} characters of A-Z a-z 0-9 . _ : -."
    return None


def _name_error(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > DEVICE_NAME_MAX_LENGTH:
        return f"name must be 1-{DEVICE_NAME_MAX_LENGTH} characters."
    # Control characters have no place in a label (and PostgreSQL refuses NUL).
    if any(unicodedata.category(char) == "Cc" for char in value.strip()):
        return "name must not contain control characters."
    return None


def _kind_error(value: Any) -> str | None:
    if value not in DeviceKind.values:
        return f"kind must be one of {', '.join(DeviceKind.values)}."
    return None


def _require_valid(**errors: str | None) -> None:
    """One ``Invalid`` naming every bad field at once."""
    fields = {field: [message] for field, message in errors.items() if message is not None}
    if fields:
        message = next(iter(fields.values()))[0] if len(fields) == 1 else "Some fields are invalid."
        raise Invalid(message, details={"fields": fields})


def _lookup_id(value: Any) -> str:
    """A device id naming an existing device: missing or not a string is
    ``invalid``; a string no device can have is simply not found."""
    if not isinstance(value, str):
        raise Invalid("device_id is required.", field="device_id")
    if _device_id_error(value) is not None:
        raise NotFound("No such device.")
    return value


# --- Locking -------------------------------------------------------------------------------


def _lock_user_devices(actor: Principal) -> int:
    """Lock the caller's user row (the mutex of their device writes) and return the user id.

    A user moved to another tenant leaves their old tenant's devices behind;
    they are dropped here, so the per-user constraints only ever see the
    current tenant's rows."""
    user_id = user_of(actor)
    list(get_user_model().objects.select_for_update(no_key=True).filter(pk=user_id).values_list("pk", flat=True))
    Device.objects.filter(user_id=user_id).exclude(tenant_id=actor.tenant_id).delete()
    return user_id


def _own(actor: Principal, user_id: int):
    return Device.objects.filter(tenant_id=actor.tenant_id, user_id=user_id)


def _device(actor: Principal, user_id: int, device_id: Any) -> Device:
    device = _own(actor, user_id).filter(device_id=_lookup_id(device_id)).first()
    if device is None:
        raise NotFound("No such device.")
    return device


# --- Use cases -----------------------------------------------------------------------------


@transaction.atomic
def device_register(*, actor: Principal, device_id: Any, name: Any, kind: Any) -> Device:
    """Create or update the caller's device ``device_id`` (name and kind) and mark
    it seen now. If the user has no active device, this one becomes active.

    A new device past ``DEVICES_PER_USER`` forgets the inactive device seen
    least recently. Bad fields are one ``invalid`` naming each. Users only
    (API clients: ``forbidden``). Idempotent; emits nothing."""
    _require_valid(device_id=_device_id_error(device_id), name=_name_error(name), kind=_kind_error(kind))
    user_id = _lock_user_devices(actor)
    devices = _own(actor, user_id)
    has_active = devices.filter(active=True).exists()
    now = timezone.now()
    device = devices.filter(device_id=device_id).first()
    if device is None:
        surplus = devices.count() - (DEVICES_PER_USER - 1)
        if surplus > 0:
            stale = devices.filter(active=False).order_by("last_seen_at", "pk").values_list("pk", flat=True)[:surplus]
            Device.objects.filter(pk__in=list(stale)).delete()
        return Device.objects.create(
            tenant_id=actor.tenant_id,
            user_id=user_id,
            device_id=device_id,
            name=name.strip(),
            kind=kind,
            active=not has_active,
            last_seen_at=now,
        )
    device.name, device.kind, device.last_seen_at = name.strip(), kind, now
    device.active = device.active or not has_active
    device.save(update_fields=["name", "kind", "last_seen_at", "active"])
    return device


def _playback_now(actor: Principal, user_id: int) -> tuple[int | None, dict[str, Any] | None]:
    """The live session the user is present in (the latest joined, should there
    be several) and its playback state."""
    member = (
        SessionMember.objects.select_related("session__track")
        .filter(
            tenant_id=actor.tenant_id,
            user_id=user_id,
            left_at__isnull=True,
            session__status=SessionStatus.LIVE,
        )
        .order_by("-joined_at", "-pk")
        .first()
    )
    if member is None:
        return None, None
    return member.session_id, state_payload(member.session)


@transaction.atomic
def device_transfer(*, actor: Principal, device_id: Any) -> dict[str, Any]:
    """Make the caller's device ``device_id`` the active one (the one that plays).

    Answers ``{device, previous, changed, session, playback, server_time_ms}``:
    ``playback`` is the state of the user's live session (null if none), from
    which the device computes where the track is at ``server_time_ms`` or any
    later moment. After commit, every socket of the user gets ``device.active``
    with the same content (the target starts, the others stop).

    Locks the user's row, so concurrent transfers apply one after the other
    and exactly one device ends up active. Idempotent: on the device already
    active it changes and emits nothing (``changed: false``). Another user's
    or tenant's device is ``not_found``."""
    user_id = _lock_user_devices(actor)
    target = _device(actor, user_id, device_id)
    previous = _own(actor, user_id).filter(active=True).first()
    changed = previous is None or previous.pk != target.pk
    if changed:
        if previous is not None:
            previous.active = False
            previous.save(update_fields=["active"])
        target.active = True
        target.save(update_fields=["active"])
    session_id, playback = _playback_now(actor, user_id)
    server_time_ms = now_ms()
    if changed:
        event_send_on_commit(
            group=user_group(tenant_id=actor.tenant_id, user_id=user_id),
            event=DeviceActiveEvent(
                device_id=target.device_id,
                name=target.name,
                kind=target.kind,
                previous=previous.device_id if previous is not None else None,
                session=session_id,
                playback=playback,
                server_time_ms=server_time_ms,
            ),
        )
    return {
        "device": device_payload(target),
        "previous": previous.device_id if previous is not None and changed else None,
        "changed": changed,
        "session": session_id,
        "playback": playback,
        "server_time_ms": server_time_ms,
    }


@transaction.atomic
def device_rename(*, actor: Principal, device_id: Any, name: Any) -> Device:
    """Rename one of the caller's devices (``name`` trimmed, 1..100). Emits nothing."""
    user_id = _lock_user_devices(actor)
    device = _device(actor, user_id, device_id)
    _require_valid(name=_name_error(name))
    device.name = name.strip()
    device.save(update_fields=["name"])
    return device


@transaction.atomic
def device_forget(*, actor: Principal, device_id: Any) -> None:
    """Forget one of the caller's devices. Forgetting the active device leaves
    none active (nothing plays until a transfer). The user's sockets are told
    (``device.forgotten``); a socket of that device registers again to come back."""
    user_id = _lock_user_devices(actor)
    device = _device(actor, user_id, device_id)
    device.delete()
    event_send_on_commit(
        group=user_group(tenant_id=actor.tenant_id, user_id=user_id),
        event=DeviceForgottenEvent(device_id=device.device_id, was_active=device.active),
    )


def device_seen(*, actor: Principal, device_id: str) -> None:
    """Mark the caller's device seen now (one ``UPDATE``, no lock: the latest
    writer wins, which is what "last seen" means). A forgotten device stays forgotten."""
    _own(actor, user_of(actor)).filter(device_id=device_id).update(last_seen_at=timezone.now())
