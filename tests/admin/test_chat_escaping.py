"""User text shown in the chat admin is escaped: a message body, an edit's
previous body or an attachment's name with markup renders as text, never as
markup (Django escapes by default; these pin that nothing bypasses it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.models import Attachment
from chat.services.messages import message_edit, message_send
from chat.services.rooms import room_create
from tests.chat.conftest import KEY_OLD, as_principal

pytestmark = pytest.mark.django_db

SCRIPT = '<script>alert("pwned")</script>'
ESCAPED = "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"


@pytest.fixture
def hostile(settings, member):
    settings.CHAT_MODERATORS = []
    settings.CHAT_ENCRYPTION_KEYS = [KEY_OLD]
    actor = as_principal(member)
    plain = room_create(actor=actor, name="plain")
    vault = room_create(actor=actor, name="vault", encrypted=True)
    message, _ = message_send(actor=actor, room_id=plain.pk, client_id="p", body=f"hi {SCRIPT}")
    message_edit(actor=actor, room_id=plain.pk, seq=1, body=f"edited {SCRIPT}")
    secret, _ = message_send(actor=actor, room_id=vault.pk, client_id="v", body=f"secret {SCRIPT}")
    attachment = Attachment.objects.create(
        tenant=plain.tenant,
        room=plain,
        uploader=member,
        message=message,
        name=f"{SCRIPT}.png",
        content_type="image/png",
        size=3,
        sha256="0" * 64,
        storage_name="chat/attachments/x/escaping",
    )
    return message, secret, attachment


def assert_escaped(response) -> str:
    assert response.status_code == 200
    html = response.content.decode()
    assert SCRIPT not in html
    return html


def test_message_screens_escape_bodies(superuser_client, hostile):
    message, secret, _attachment = hostile

    changelist = assert_escaped(superuser_client.get("/admin/chat/message/"))
    assert f"edited {ESCAPED}" in changelist
    assert f"secret {ESCAPED}" in changelist  # an encrypted body, decrypted for staff, escaped all the same
    change = assert_escaped(superuser_client.get(f"/admin/chat/message/{message.pk}/change/"))
    assert f"edited {ESCAPED}" in change and f"hi {ESCAPED}" in change  # the body and its edit history
    assert ESCAPED in assert_escaped(superuser_client.get(f"/admin/chat/message/{secret.pk}/change/"))


def test_attachment_screens_escape_names_and_link_to_the_message(superuser_client, hostile):
    message, _secret, attachment = hostile

    changelist = assert_escaped(superuser_client.get("/admin/chat/attachment/"))
    assert ESCAPED in changelist
    assert f'href="/admin/chat/message/{message.pk}/change/"' in changelist
    change = assert_escaped(superuser_client.get(f"/admin/chat/attachment/{attachment.pk}/change/"))
    assert "3\xa0bytes (3 bytes)" in change
    # Read-only: no save button.
    assert 'name="_save"' not in change


def test_the_chat_admin_never_marks_text_safe():
    source = (Path(__file__).resolve().parents[2] / "chat" / "admin.py").read_text()

    assert "mark_safe" not in source and "|safe" not in source and "allow_tags" not in source
