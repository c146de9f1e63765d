"""Attachments: upload (size, sniffed type, spoofing), sending them with a message,
download (who may, which headers), deletion with the message, and the purge of
unclaimed uploads. Service level first, then once through REST."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from chat.constants import MESSAGE_ATTACHMENTS_MAX, RoomKind
from chat.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge, TypeMismatch, TypeNotAllowed
from chat.models import Attachment
from chat.selectors import attachment_get_for_member, messages_page
from chat.services.attachments import attachment_open, attachment_upload
from chat.services.messages import message_delete, message_send
from chat.services.moderation import room_member_mute
from chat.services.rooms import room_create
from chat.tasks import attachments_purge_unattached
from tests.accounts.conftest import error_of
from tests.chat.conftest import PNG, png_upload
from tests.chat.test_api import client_for

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"


def upload(actor, room, file=None, *, declared: str | None = "image/png") -> Attachment:
    file = file or png_upload()
    return attachment_upload(actor=actor, room_id=room.pk, upload=file, declared_content_type=declared)


# --- Upload -------------------------------------------------------------------------------


def test_an_upload_is_stored_under_a_random_name_with_its_metadata(public_room, alice_p):
    attachment = upload(alice_p, public_room, png_upload("../../My Photo.png"))

    assert (attachment.name, attachment.content_type, attachment.size) == ("My Photo.png", "image/png", len(PNG))
    assert attachment.sha256 == hashlib.sha256(PNG).hexdigest()
    assert attachment.message_id is None and attachment.uploader_id == alice_p.user_id
    assert attachment.storage_name.startswith(f"chat/attachments/{public_room.tenant_id}/")
    assert "Photo" not in attachment.storage_name and ".." not in attachment.storage_name
    with default_storage.open(attachment.storage_name, "rb") as handle:
        assert handle.read() == PNG


def test_an_upload_over_the_limit_is_too_large(settings, public_room, alice_p):
    settings.CHAT_ATTACHMENT_MAX_BYTES = len(PNG) - 1

    with pytest.raises(TooLarge) as caught:
        upload(alice_p, public_room)

    assert (caught.value.code, caught.value.http_status) == ("too_large", 413)
    assert caught.value.details == {"max_bytes": len(PNG) - 1}
    assert not Attachment.objects.exists()


def test_a_type_outside_the_allowlist_is_refused_by_its_content(settings, public_room, alice_p):
    executable = png_upload("setup.png", content=b"MZ\x90\x00" + bytes(64), content_type="image/png")
    with pytest.raises(TypeNotAllowed) as caught:
        upload(alice_p, public_room, executable)
    assert caught.value.http_status == 415 and caught.value.details["detected"] is None

    settings.CHAT_ATTACHMENT_ALLOWED_TYPES = ["image/png"]
    with pytest.raises(TypeNotAllowed) as caught:
        upload(alice_p, public_room, png_upload("doc.pdf", content=PDF, content_type="application/pdf"))
    assert caught.value.details == {"detected": "application/pdf", "allowed": ["image/png"]}
    assert not Attachment.objects.exists()


def test_a_declared_type_that_lies_about_the_content_is_refused(public_room, alice_p):
    spoofed = png_upload("invoice.pdf", content=PNG, content_type="application/pdf")

    with pytest.raises(TypeMismatch) as caught:
        upload(alice_p, public_room, spoofed, declared="application/pdf")

    assert caught.value.details == {"declared": "application/pdf", "detected": "image/png"}
    # No claim at all is not a lie: the content decides.
    assert upload(alice_p, public_room, declared="application/octet-stream").content_type == "image/png"


def test_only_members_who_may_post_upload(public_room, private_room, people):
    alice_p, bob_p, carol_p, dave_p = people.alice, people.bob, people.carol, people.dave
    with pytest.raises(Forbidden):
        upload(carol_p, public_room)  # public room not joined
    with pytest.raises(NotFound):
        upload(bob_p, private_room)
    with pytest.raises(NotFound):
        upload(dave_p, public_room)  # another tenant
    room_member_mute(
        actor=alice_p, room_id=public_room.pk, user_id=bob_p.user_id, until=timezone.now() + timedelta(hours=1)
    )
    with pytest.raises(Forbidden, match="muted"):
        upload(bob_p, public_room)
    assert not Attachment.objects.exists()


# --- Sending ---------------------------------------------------------------------------


def test_a_message_carries_its_senders_uploads(public_room, alice_p, bob_p):
    first, second = upload(alice_p, public_room), upload(alice_p, public_room, png_upload("two.png"))

    message, created = message_send(
        actor=alice_p, room_id=public_room.pk, client_id="c", body="", attachments=[second.pk, first.pk]
    )

    assert created and message.body == ""
    assert set(Attachment.objects.filter(message=message).values_list("pk", flat=True)) == {first.pk, second.pk}
    (page,) = messages_page(room=public_room)
    assert [a.name for a in page.attachments.all()] == ["photo.png", "two.png"]
    # Now any member reads it.
    assert attachment_get_for_member(actor=bob_p, attachment_id=first.pk) == first


def test_attachment_ids_that_are_not_the_senders_own_unsent_uploads_are_refused(
    public_room, alice_p, bob_p, dave_p, tenant
):
    bobs = upload(bob_p, public_room)
    elsewhere = room_create(actor=alice_p, name="elsewhere")
    other_room = upload(alice_p, elsewhere)
    foreign_room = room_create(actor=dave_p, name="general")
    foreign = upload(dave_p, foreign_room)
    mine = upload(alice_p, public_room)

    for ids in ([bobs.pk], [other_room.pk], [foreign.pk], [999_999], [mine.pk, foreign.pk]):
        with pytest.raises(Invalid) as caught:
            message_send(actor=alice_p, room_id=public_room.pk, client_id=f"c{ids}", body="hi", attachments=ids)
        # One answer for every case: another tenant's id is indistinguishable from none.
        assert caught.value.details == {
            "fields": {"attachments": ["attachments must name your own uploads to this room."]}
        }
    with pytest.raises(Invalid, match="twice"):
        message_send(actor=alice_p, room_id=public_room.pk, client_id="d", body="hi", attachments=[mine.pk, mine.pk])
    with pytest.raises(Invalid, match="at most"):
        message_send(
            actor=alice_p,
            room_id=public_room.pk,
            client_id="m",
            body="hi",
            attachments=list(range(1, MESSAGE_ATTACHMENTS_MAX + 2)),
        )
    with pytest.raises(Invalid, match="list"):
        message_send(actor=alice_p, room_id=public_room.pk, client_id="t", body="hi", attachments=["1"])
    with pytest.raises(Invalid, match="empty"):
        message_send(actor=alice_p, room_id=public_room.pk, client_id="e", body=" ", attachments=[])
    assert public_room.messages.count() == 0


def test_an_attachment_already_used_is_a_conflict(public_room, alice_p):
    attachment = upload(alice_p, public_room)
    message_send(actor=alice_p, room_id=public_room.pk, client_id="a", body="first", attachments=[attachment.pk])

    with pytest.raises(Conflict):
        message_send(actor=alice_p, room_id=public_room.pk, client_id="b", body="again", attachments=[attachment.pk])

    assert public_room.messages.count() == 1


# --- Reading -------------------------------------------------------------------------------


def test_who_may_read_an_attachment(public_room, people):
    alice_p, bob_p, carol_p, dave_p = people.alice, people.bob, people.carol, people.dave
    pending = upload(bob_p, public_room)
    sent = upload(alice_p, public_room)
    message_send(actor=alice_p, room_id=public_room.pk, client_id="c", body="look", attachments=[sent.pk])

    assert attachment_get_for_member(actor=bob_p, attachment_id=pending.pk) == pending
    for actor, attachment_id in [
        (alice_p, pending.pk),  # someone else's upload, not sent yet
        (carol_p, sent.pk),  # not a member of the room
        (dave_p, sent.pk),  # another tenant
        (bob_p, 999_999),
    ]:
        with pytest.raises(NotFound):
            attachment_get_for_member(actor=actor, attachment_id=attachment_id)
    with attachment_open(attachment=sent) as handle:
        assert handle.read() == PNG


def test_deleting_the_message_deletes_its_files(public_room, alice_p, django_capture_on_commit_callbacks):
    attachment = upload(alice_p, public_room)
    message_send(actor=alice_p, room_id=public_room.pk, client_id="c", body="pic", attachments=[attachment.pk])

    with django_capture_on_commit_callbacks(execute=True):
        tombstone = message_delete(actor=alice_p, room_id=public_room.pk, seq=1)

    assert not Attachment.objects.exists()
    assert not default_storage.exists(attachment.storage_name)
    assert list(tombstone.attachments.all()) == []


# --- Purge -----------------------------------------------------------------------------------


def test_uploads_left_unsent_for_a_day_are_purged(public_room, alice_p, django_capture_on_commit_callbacks):
    stale, fresh, sent = (upload(alice_p, public_room) for _ in range(3))
    message_send(actor=alice_p, room_id=public_room.pk, client_id="c", body="pic", attachments=[sent.pk])
    Attachment.objects.filter(pk__in=[stale.pk, sent.pk]).update(created_at=timezone.now() - timedelta(days=2))

    with django_capture_on_commit_callbacks(execute=True):
        purged = attachments_purge_unattached.apply().get()

    assert purged == 1
    assert set(Attachment.objects.values_list("pk", flat=True)) == {fresh.pk, sent.pk}
    assert not default_storage.exists(stale.storage_name)
    assert default_storage.exists(fresh.storage_name) and default_storage.exists(sent.storage_name)
    assert attachments_purge_unattached.apply().get() == 0


# --- REST -----------------------------------------------------------------------------------


@pytest.fixture
def alice_api(user):
    return client_for(user)


def post_file(client, room, file, **extra):
    return client.post(f"/api/v1/rooms/{room.pk}/attachments/", {"file": file}, format="multipart", **extra)


def test_upload_send_and_download_over_rest(alice_api, bob, public_room):
    uploaded = post_file(alice_api, public_room, png_upload("cover art.png"))
    assert uploaded.status_code == 201, uploaded.content
    body = uploaded.json()
    assert {k: body[k] for k in ("name", "content_type", "size", "message_id", "room_id")} == {
        "name": "cover art.png",
        "content_type": "image/png",
        "size": len(PNG),
        "message_id": None,
        "room_id": public_room.pk,
    }

    sent = alice_api.post(
        f"/api/v1/rooms/{public_room.pk}/messages/",
        {"client_id": "c", "body": "new cover", "attachments": [body["id"]]},
        format="json",
    )
    assert sent.status_code == 201, sent.content
    assert sent.json()["attachments"] == [
        {"id": body["id"], "name": "cover art.png", "content_type": "image/png", "size": len(PNG)}
    ]

    download = client_for(bob).get(f"/api/v1/attachments/{body['id']}/", HTTP_ACCEPT="image/png")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PNG
    assert download["Content-Type"] == "image/png"
    assert download["Content-Disposition"] == 'attachment; filename="cover art.png"'
    assert download["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in download["Content-Security-Policy"]


def test_rest_upload_errors_are_documented_codes(settings, alice_api, public_room):
    settings.CHAT_ATTACHMENT_MAX_BYTES = 10
    too_large = post_file(alice_api, public_room, png_upload())
    assert (too_large.status_code, error_of(too_large)["code"]) == (413, "too_large")
    assert error_of(too_large)["details"] == {"max_bytes": 10}
    # Refused from the announced length alone, before the body is parsed.
    announced = alice_api.post(
        f"/api/v1/rooms/{public_room.pk}/attachments/",
        data=b"x",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(10 * 1024 * 1024),
    )
    assert (announced.status_code, error_of(announced)["code"]) == (413, "too_large")

    settings.CHAT_ATTACHMENT_MAX_BYTES = 1024 * 1024
    not_allowed = post_file(alice_api, public_room, png_upload("x.exe", content=b"MZ" + bytes(64)))
    assert (not_allowed.status_code, error_of(not_allowed)["code"]) == (415, "type_not_allowed")
    spoofed = post_file(alice_api, public_room, png_upload("x.pdf", content_type="application/pdf"))
    assert (spoofed.status_code, error_of(spoofed)["code"]) == (415, "type_mismatch")
    empty = post_file(alice_api, public_room, png_upload("empty.png", content=b""))
    assert (empty.status_code, error_of(empty)["code"]) == (400, "invalid")
    assert "file" in error_of(empty)["details"]["fields"]
    not_multipart = alice_api.post(f"/api/v1/rooms/{public_room.pk}/attachments/", {"file": "x"}, format="json")
    assert (not_multipart.status_code, error_of(not_multipart)["code"]) == (415, "unsupported_media_type")
    assert not Attachment.objects.exists()


def test_rest_download_is_404_for_anyone_outside_the_room(alice_api, carol, other_user, public_room, alice_p):
    attachment = upload(alice_p, public_room)
    message_send(actor=alice_p, room_id=public_room.pk, client_id="c", body="pic", attachments=[attachment.pk])

    for outsider in (carol, other_user):
        response = client_for(outsider).get(f"/api/v1/attachments/{attachment.pk}/")
        assert (response.status_code, error_of(response)["code"]) == (404, "not_found")
    other_tenant_id = client_for(other_user).get("/api/v1/attachments/999999/")
    assert other_tenant_id.status_code == 404


def test_rest_send_with_someone_elses_attachment_is_invalid(alice_api, bob_p, public_room):
    bobs = upload(bob_p, public_room)

    response = alice_api.post(
        f"/api/v1/rooms/{public_room.pk}/messages/",
        {"client_id": "c", "body": "mine now", "attachments": [bobs.pk]},
        format="json",
    )

    assert (response.status_code, error_of(response)["code"]) == (400, "invalid")
    assert "attachments" in error_of(response)["details"]["fields"]


def test_a_private_room_upload_by_an_outsider_is_404(carol, private_room):
    response = post_file(client_for(carol), private_room, png_upload())

    assert response.status_code == 404
    assert private_room.kind == RoomKind.PRIVATE


def test_deleting_the_room_deletes_its_files(public_room, alice_p, django_capture_on_commit_callbacks):
    sent, unsent = upload(alice_p, public_room), upload(alice_p, public_room)
    message_send(actor=alice_p, room_id=public_room.pk, client_id="c", body="pic", attachments=[sent.pk])

    # As the admin does: a cascade through messages and uploads.
    with django_capture_on_commit_callbacks(execute=True):
        type(public_room).objects.filter(pk=public_room.pk).delete()

    assert not Attachment.objects.exists()
    assert not default_storage.exists(sent.storage_name)
    assert not default_storage.exists(unsent.storage_name)


def test_a_rolled_back_delete_keeps_the_files(public_room, alice_p):
    attachment = upload(alice_p, public_room)

    with pytest.raises(RuntimeError), transaction.atomic():
        Attachment.objects.filter(pk=attachment.pk).delete()
        raise RuntimeError("rolled back")

    assert Attachment.objects.filter(pk=attachment.pk).exists()
    assert default_storage.exists(attachment.storage_name)
