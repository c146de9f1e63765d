"""Keys, sealing and the keyed-hash word index (chat.crypto), and the startup checks of their settings."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from chat.checks import check_attachment_types, check_encryption_keys
from chat.crypto import (
    DecryptionFailed,
    KeyConfigError,
    KeyMissing,
    encryption_available,
    keyring,
    parse_keys,
    search_token,
    search_tokens,
    search_words,
    text_open,
    text_seal,
)
from tests.chat.conftest import KEY_NEW, KEY_OLD


def test_new_writes_use_the_first_key_and_reads_accept_any(settings):
    settings.CHAT_ENCRYPTION_KEYS = [KEY_OLD]
    stored_old, old_id = text_seal("under the old key")

    settings.CHAT_ENCRYPTION_KEYS = [KEY_NEW, KEY_OLD]
    stored_new, new_id = text_seal("under the new key")

    assert (old_id, new_id) == ("k1", "k2")
    assert text_open(stored_old, old_id) == "under the old key"
    assert text_open(stored_new, new_id) == "under the new key"
    assert "key" not in stored_new and stored_new.isascii()
    # Fernet is randomised: the same text never gives the same ciphertext twice.
    assert text_seal("same")[0] != text_seal("same")[0]


def test_a_dropped_key_or_a_tampered_row_fails_loudly(settings):
    settings.CHAT_ENCRYPTION_KEYS = [KEY_OLD]
    stored, key_id = text_seal("secret")
    settings.CHAT_ENCRYPTION_KEYS = [KEY_NEW]

    with pytest.raises(KeyMissing):
        text_open(stored, key_id)
    settings.CHAT_ENCRYPTION_KEYS = [KEY_OLD]
    tampered = stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(DecryptionFailed):
        text_open(tampered, key_id)
    # An empty key id is a value stored in clear.
    assert text_open("plain", "") == "plain"


@pytest.mark.parametrize(
    ("entries", "complaint"),
    [
        (["no-separator"], "entry 1 is not '<id>:<key>'"),
        ([f"bad id!:{Fernet.generate_key().decode()}"], "entry 1"),
        ([KEY_OLD, KEY_OLD], "'k1' appears twice"),
        (["k3:not-a-fernet-key"], "key 'k3' is not a Fernet key"),
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(entries, complaint):
    with pytest.raises(KeyConfigError, match=complaint) as caught:
        parse_keys(entries)

    assert "not-a-fernet-key" not in str(caught.value)


def test_the_startup_checks_report_bad_keys_and_unknown_types(settings):
    settings.CHAT_ENCRYPTION_KEYS = []
    assert check_encryption_keys() == [] and not encryption_available()
    settings.CHAT_ENCRYPTION_KEYS = [KEY_NEW, KEY_OLD]
    assert check_encryption_keys() == [] and encryption_available() and keyring().ids == ("k2", "k1")

    settings.CHAT_ENCRYPTION_KEYS = ["k1:short"]
    assert [error.id for error in check_encryption_keys()] == ["chat.E003"]
    settings.CHAT_ENCRYPTION_KEYS = [KEY_OLD]
    settings.CHAT_SEARCH_INDEX_KEY = ""
    assert [error.id for error in check_encryption_keys()] == ["chat.E005"]

    assert check_attachment_types() == []
    settings.CHAT_ATTACHMENT_ALLOWED_TYPES = ["image/png", "image/svg+xml"]
    (error,) = check_attachment_types()
    assert error.id == "chat.E004" and "image/svg+xml" in error.msg


def test_the_startup_check_fails_manage_py_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.CHAT_ENCRYPTION_KEYS = ["k1"]
    with pytest.raises(SystemCheckError, match=r"chat\.E003"):
        call_command("check")


def test_search_words_normalise_case_width_and_punctuation():
    assert search_words("Fox, FOX! \uff46\uff4f\uff58-trot; naïve\u200bté 42") == ["fox", "trot", "naïveté", "42"]
    assert search_words("¡¿...!?") == []


def test_search_tokens_are_keyed_per_tenant_and_per_key(settings):
    one = search_token(tenant_id=1, word="fox")

    assert one == search_token(tenant_id=1, word="fox") and len(one) == 32
    assert one != search_token(tenant_id=2, word="fox")
    assert search_tokens(tenant_id=1, text="Fox fox FOX") == [one]
    settings.CHAT_SEARCH_INDEX_KEY = "another index key"
    assert search_token(tenant_id=1, word="fox") != one
