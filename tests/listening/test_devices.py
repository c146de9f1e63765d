"""A user's devices at the service level: registration and its validation, the
cap, exactly one active device (also under concurrent transfers), a transfer
carrying the user's session state and position, idempotency, renaming and
forgetting, the events the user's sockets get, and tenants."""

from __future__ import annotations

import threading
from dataclasses import fields
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.principals import Principal
from accounts.services.tokens import principal_for_user
from listening.constants import DeviceKind
from listening.events import DeviceActiveEvent
from listening.models import Device
from listening.selectors import devices_for_user
from listening.services import devices as services
from listening.services.common import now_ms, state_payload
from listening.services.devices import (
    DEVICES_PER_USER,
    device_forget,
    device_register,
    device_rename,
    device_seen,
    device_transfer,
)
from listening.services.playback import playback_command
from listening.services.sessions import session_create, session_end, session_join, session_leave
from playlists.services.editing import playlist_apply_op
from realtime.client.playback import position_at
from realtime.groups import user_group
from spotify_agent.errors import Forbidden, Invalid, NotFound
from tests.chat.conftest import Listener
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def register(actor, device_id: str, name: str | None = None, kind: str = DeviceKind.PHONE) -> Device:
    return device_register(actor=actor, device_id=device_id, name=name or device_id.title(), kind=kind)


def play(actor, session, tracks, *, seek_ms: int) -> None:
    """Queue ``tracks``, play the first and seek into it."""
    playlist_apply_op(
        actor=actor,
        playlist_id=session.queue_id,
        base_revision=0,
        op={"op": "batch", "ops": [{"op": "insert", "index": i, "track": t.pk} for i, t in enumerate(tracks)]},
        client_op_id="fill",
    )
    for revision, (action, extra) in enumerate([("play", {}), ("seek", {"position_ms": seek_ms})]):
        playback_command(actor=actor, session_id=session.pk, action=action, base_revision=revision, **extra)


def active_ids(actor) -> list[str]:
    return [device.device_id for device in devices_for_user(actor=actor) if device.active]


BAD_REGISTRATIONS = [
    ({"device_id": ""}, {"device_id"}),
    ({"device_id": "x" * 65}, {"device_id"}),
    ({"device_id": "has space"}, {"device_id"}),
    ({"device_id": "ümlaut"}, {"device_id"}),
    ({"device_id": 42}, {"device_id"}),
    ({"name": "   "}, {"name"}),
    ({"name": "n" * 101}, {"name"}),
    ({"name": None}, {"name"}),
    ({"name": "Pho\x00ne"}, {"name"}),
    ({"name": "Line\nbreak"}, {"name"}),
    ({"kind": "laptop"}, {"kind"}),
    ({"kind": None}, {"kind"}),
    ({"device_id": None, "name": "", "kind": "toaster"}, {"device_id", "name", "kind"}),
]


def test_registering_names_each_bad_field(people):
    for content, named in BAD_REGISTRATIONS:
        values = {"device_id": "phone-1", "name": "Phone", "kind": "phone", **content}
        with pytest.raises(Invalid) as caught:
            device_register(actor=people.alice, **values)
        assert set(caught.value.details["fields"]) == named, content
    assert not Device.objects.exists()
    # The longest valid values pass.
    assert register(people.alice, "x" * 64, name="n" * 100).name == "n" * 100


def test_only_users_have_devices(people, tenant):
    client = Principal(tenant_id=tenant.pk, tenant_slug=tenant.slug, api_client_id=1, scopes=frozenset())
    for call in (
        lambda: register(client, "phone"),
        lambda: device_transfer(actor=client, device_id="phone"),
        lambda: devices_for_user(actor=client),
    ):
        with pytest.raises(Forbidden):
            call()


def test_registering_upserts_and_the_first_device_becomes_active(people):
    phone = device_register(actor=people.alice, device_id="ios:A1.b_2-c", name="  My phone \n", kind="phone")
    assert (phone.name, phone.kind, phone.active) == ("My phone", "phone", True)
    laptop = register(people.alice, "laptop", kind=DeviceKind.DESKTOP)
    assert not laptop.active
    Device.objects.filter(pk=phone.pk).update(last_seen_at=timezone.now() - timedelta(hours=1))

    again = device_register(actor=people.alice, device_id="ios:A1.b_2-c", name="Phone", kind="tablet")
    assert again.pk == phone.pk and (again.name, again.kind, again.active) == ("Phone", "tablet", True)
    assert again.last_seen_at > timezone.now() - timedelta(seconds=5)
    assert Device.objects.filter(user_id=people.alice.user_id).count() == 2
    # Active first, then the most recently seen.
    assert [d.device_id for d in devices_for_user(actor=people.alice)] == ["ios:A1.b_2-c", "laptop"]


def test_past_the_cap_the_least_recently_seen_inactive_device_is_forgotten(people):
    for number in range(DEVICES_PER_USER):
        register(people.alice, f"d{number}")
    # d0 is active and seen longest ago: it stays; d5 is the stalest inactive one.
    past = timezone.now() - timedelta(days=30)
    Device.objects.filter(device_id="d0").update(last_seen_at=past - timedelta(days=1))
    Device.objects.filter(device_id="d5").update(last_seen_at=past)

    register(people.alice, "d5")  # known: re-registering forgets nothing
    assert Device.objects.filter(user_id=people.alice.user_id).count() == DEVICES_PER_USER
    Device.objects.filter(device_id="d7").update(last_seen_at=past)

    register(people.alice, "new")
    kept = {device.device_id for device in devices_for_user(actor=people.alice)}
    assert len(kept) == DEVICES_PER_USER
    assert "new" in kept and "d0" in kept and "d7" not in kept
    assert active_ids(people.alice) == ["d0"]


def test_a_transfer_moves_the_one_active_device_and_is_idempotent(people):
    register(people.alice, "phone")
    register(people.alice, "speaker", kind=DeviceKind.SPEAKER)

    moved = device_transfer(actor=people.alice, device_id="speaker")
    assert (moved["changed"], moved["previous"], moved["device"]["device_id"]) == (True, "phone", "speaker")
    assert moved["device"]["active"] and moved["session"] is None and moved["playback"] is None
    assert active_ids(people.alice) == ["speaker"]

    again = device_transfer(actor=people.alice, device_id="speaker")
    assert (again["changed"], again["previous"]) == (False, None)
    assert active_ids(people.alice) == ["speaker"]
    # Registering again does not take the role back.
    assert not register(people.alice, "phone").active


def test_naming_a_device_that_cannot_be_found(people):
    register(people.alice, "phone")
    cases = [(None, Invalid), (7, Invalid), ("missing", NotFound), ("bad id!", NotFound), ("x" * 65, NotFound)]
    for device_id, error in cases:
        for function, extra in ((device_transfer, {}), (device_rename, {"name": "x"}), (device_forget, {})):
            with pytest.raises(error) as caught:
                function(actor=people.alice, device_id=device_id, **extra)
            if error is Invalid:
                assert "device_id" in caught.value.details["fields"]
    assert active_ids(people.alice) == ["phone"]


def test_a_transfer_carries_the_sessions_state_and_position(people, tracks):
    session = session_create(actor=people.alice, title="Friday")
    session_join(actor=people.bob, session_id=session.pk)
    play(people.alice, session, tracks[:2], seek_ms=42_000)
    register(people.bob, "phone")
    register(people.bob, "speaker")

    result = device_transfer(actor=people.bob, device_id="speaker")
    session.refresh_from_db()
    assert result["session"] == session.pk
    assert result["playback"] == state_payload(session)
    assert result["playback"]["track"]["id"] == tracks[0].pk and result["playback"]["playing"]
    # From the answer alone the device places itself where the session is.
    later = now_ms() + 1_000
    assert abs(position_at(result["playback"], later) - session.position_at(later)) < 1
    assert abs(result["server_time_ms"] - now_ms()) < 1_000

    # The session joined last is the one that plays; a left or ended one plays nothing.
    other = session_create(actor=people.carol, title="Later")
    session_join(actor=people.bob, session_id=other.pk)
    assert device_transfer(actor=people.bob, device_id="phone")["session"] == other.pk
    session_leave(actor=people.bob, session_id=other.pk)
    assert device_transfer(actor=people.bob, device_id="speaker")["session"] == session.pk
    session_end(actor=people.alice, session_id=session.pk)
    ended = device_transfer(actor=people.bob, device_id="phone")
    assert (ended["session"], ended["playback"]) == (None, None)


def test_renaming_and_forgetting(people):
    register(people.alice, "phone")
    register(people.alice, "laptop")
    assert device_rename(actor=people.alice, device_id="laptop", name="  Work laptop ").name == "Work laptop"
    with pytest.raises(Invalid) as caught:
        device_rename(actor=people.alice, device_id="laptop", name=" ")
    assert set(caught.value.details["fields"]) == {"name"}

    device_forget(actor=people.alice, device_id="phone")
    # Forgetting the active device leaves none active; the next to register plays.
    assert active_ids(people.alice) == []
    assert [d.device_id for d in devices_for_user(actor=people.alice)] == ["laptop"]
    assert register(people.alice, "tablet").active
    with pytest.raises(NotFound):
        device_forget(actor=people.alice, device_id="phone")


def test_last_seen_is_refreshed_by_the_device_only(people):
    phone = register(people.alice, "phone")
    Device.objects.filter(pk=phone.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    device_seen(actor=people.bob, device_id="phone")  # bob has no such device
    assert Device.objects.get(pk=phone.pk).last_seen_at < timezone.now() - timedelta(hours=1)
    device_seen(actor=people.alice, device_id="phone")
    assert Device.objects.get(pk=phone.pk).last_seen_at > timezone.now() - timedelta(seconds=5)
    device_seen(actor=people.alice, device_id="forgotten")  # nothing to refresh, nothing raised


def test_other_users_and_tenants_never_reach_a_device(people, other_tenant):
    register(people.alice, "phone")
    register(people.alice, "speaker")
    # dave (another tenant) and bob (same tenant) may use the same ids for their own devices.
    assert register(people.dave, "phone").active
    assert register(people.bob, "phone").active
    for stranger in (people.dave, people.bob):
        for function, extra in ((device_transfer, {}), (device_rename, {"name": "Mine"}), (device_forget, {})):
            with pytest.raises(NotFound):
                function(actor=stranger, device_id="speaker", **extra)
    assert active_ids(people.alice) == ["phone"]
    assert [d.device_id for d in devices_for_user(actor=people.dave)] == ["phone"]
    assert Device.objects.get(user_id=people.alice.user_id, device_id="speaker").name == "Speaker"


def test_devices_left_in_a_former_tenant_are_dropped(people, other_tenant, user):
    # A user moved to another tenant: their old tenant's rows must not block the new ones.
    Device.objects.create(
        tenant=other_tenant, user=user, device_id="phone", name="Old", active=True, last_seen_at=timezone.now()
    )
    assert devices_for_user(actor=people.alice) == []
    phone = register(people.alice, "phone")
    assert phone.active and phone.tenant_id == people.alice.tenant_id
    assert Device.objects.filter(user=user).count() == 1


@pytest.mark.redis
def test_the_users_sockets_are_told_after_commit(people, django_capture_on_commit_callbacks):
    register(people.alice, "phone")
    register(people.alice, "speaker", kind=DeviceKind.SPEAKER)
    listener, stranger = Listener(), Listener()
    try:
        listener.subscribe(user_group(tenant_id=people.alice.tenant_id, user_id=people.alice.user_id))
        stranger.subscribe(user_group(tenant_id=people.bob.tenant_id, user_id=people.bob.user_id))
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            device_transfer(actor=people.alice, device_id="speaker")
        assert listener.drain(timeout=0.1) == []  # nothing before the commit
        for callback in callbacks:
            callback()
        (told,) = listener.drain()
        assert told["type"] == "device.active"
        assert set(told["content"]) == {field.name for field in fields(DeviceActiveEvent)}
        assert told["content"] == {
            "device_id": "speaker",
            "name": "Speaker",
            "kind": "speaker",
            "previous": "phone",
            "session": None,
            "playback": None,
            "server_time_ms": told["content"]["server_time_ms"],
        }

        with django_capture_on_commit_callbacks(execute=True):
            device_transfer(actor=people.alice, device_id="speaker")  # already active
            device_forget(actor=people.alice, device_id="speaker")
        assert [(m["type"], m["content"]) for m in listener.drain()] == [
            ("device.forgotten", {"device_id": "speaker", "was_active": True})
        ]
        assert stranger.drain(timeout=0.1) == []
    finally:
        listener.close()
        stranger.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_transfers_leave_exactly_one_device_active(tenant):
    alice = principal_for_user(UserFactory(username="alice", tenant=tenant))
    names = ["phone", "laptop", "speaker"]
    for name in names:
        register(alice, name)
    failures: list[BaseException] = []

    def transfer(device_id: str, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout=5)
            device_transfer(actor=alice, device_id=device_id)
        except BaseException as exc:  # reported by the test
            failures.append(exc)
        finally:
            connection.close()

    for round_ in range(5):
        barrier = threading.Barrier(2)
        targets = [names[(round_ + 1) % 3], names[(round_ + 2) % 3]]
        threads = [threading.Thread(target=transfer, args=(target, barrier)) for target in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert failures == []
        active = list(Device.objects.filter(active=True).values_list("device_id", flat=True))
        assert len(active) == 1 and active[0] in targets


def test_device_payload_shape(people):
    payload = services.device_payload(register(people.alice, "phone"))
    assert set(payload) == {"device_id", "name", "kind", "active", "last_seen_at", "created_at"}
    assert payload["last_seen_at"].endswith("Z")
