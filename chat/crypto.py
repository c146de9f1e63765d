"""Encryption at rest of encrypted rooms, and the keyed-hash index that keeps them searchable.

Keys come from ``settings.CHAT_ENCRYPTION_KEYS``: a list of ``<id>:<Fernet key>``
entries, newest first. New writes use the first key; reads use the key whose id
is stored beside the ciphertext (``Message.body_key_id``,
``MessageEdit.key_id``, ``Attachment.key_id``), so any listed key still
decrypts, and ``manage.py rotate_message_keys`` moves rows off older keys
before they are dropped. Fernet is AES-128-CBC with an HMAC-SHA256, from the
``cryptography`` package: authenticated, so a tampered row fails to decrypt
rather than decrypting to garbage.

Search: the body of an encrypted message is never in clear in the database, so
PostgreSQL's full-text index cannot see it. Instead each distinct normalised
word gets an HMAC-SHA256 under ``settings.CHAT_SEARCH_INDEX_KEY`` (a separate
key), salted with the tenant id so equal words of two tenants do not collide,
stored in ``MessageSearchToken``. A query is hashed the same way and matches
whole words only. docs/operations.md, "Encryption at rest", is the operator's
side of this; ``chat.services.encryption`` the writer's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
KEY_ID_MAX_LENGTH = 32
# 128 bits of HMAC, hex: collisions are out of reach, and a row stays small.
SEARCH_TOKEN_LENGTH = 32


class KeyConfigError(ValueError):
    """``CHAT_ENCRYPTION_KEYS`` is malformed (reported by ``chat.checks`` at startup)."""


class KeyMissing(LookupError):
    """A row is encrypted under a key id that is no longer configured: the key was
    dropped before ``rotate_message_keys`` moved every row off it."""


class DecryptionFailed(ValueError):
    """The ciphertext does not verify under its key (tampered or mislabelled)."""


@dataclass(frozen=True)
class Keyring:
    """The configured keys, newest first."""

    keys: tuple[tuple[str, Fernet], ...]

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.keys)

    def encrypt(self, data: bytes) -> tuple[str, bytes]:
        """``(key id, token)`` of ``data`` under the newest key."""
        key_id, fernet = self.keys[0]
        return key_id, fernet.encrypt(data)

    def decrypt(self, key_id: str, token: bytes) -> bytes:
        fernet = dict(self.keys).get(key_id)
        if fernet is None:
            raise KeyMissing(f"No encryption key {key_id!r} in CHAT_ENCRYPTION_KEYS.")
        try:
            return fernet.decrypt(token)
        except InvalidToken:
            raise DecryptionFailed(f"Ciphertext does not verify under key {key_id!r}.") from None


def parse_keys(entries: Iterable[str]) -> Keyring:
    """The keyring of ``id:key`` entries; raises ``KeyConfigError`` naming the bad entry
    (by position and id, never the key itself)."""
    keys: list[tuple[str, Fernet]] = []
    for position, entry in enumerate(entries, start=1):
        key_id, separator, secret = entry.strip().partition(":")
        if not separator or not KEY_ID_PATTERN.match(key_id):
            raise KeyConfigError(
                f"entry {position} is not '<id>:<key>' with an id of 1-{KEY_ID_MAX_LENGTH} "
                "letters, digits, '.', '_' or '-'."
            )
        if key_id in dict(keys):
            raise KeyConfigError(f"key id {key_id!r} appears twice.")
        try:
            keys.append((key_id, Fernet(secret.strip())))
        except (ValueError, TypeError):
            raise KeyConfigError(
                f"key {key_id!r} is not a Fernet key (32 random bytes, URL-safe base64: "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
            ) from None
    return Keyring(keys=tuple(keys))


@lru_cache(maxsize=4)
def _keyring(entries: tuple[str, ...]) -> Keyring:
    return parse_keys(entries)


def keyring() -> Keyring:
    """The keyring of the current settings (cached per value, so a changed setting applies)."""
    return _keyring(tuple(settings.CHAT_ENCRYPTION_KEYS))


def encryption_available() -> bool:
    """Whether keys are configured: without them, no room can be encrypted."""
    return bool(settings.CHAT_ENCRYPTION_KEYS) and bool(keyring().keys)


def text_seal(text: str) -> tuple[str, str]:
    """``(ciphertext, key id)`` of ``text`` under the newest key; the ciphertext is ASCII."""
    key_id, token = keyring().encrypt(text.encode())
    return token.decode("ascii"), key_id


def text_open(stored: str, key_id: str) -> str:
    """The clear text of a stored value; ``key_id`` empty means it was stored in clear."""
    if not key_id:
        return stored
    return keyring().decrypt(key_id, stored.encode("ascii")).decode()


def bytes_seal(data: bytes) -> tuple[bytes, str]:
    key_id, token = keyring().encrypt(data)
    return token, key_id


def bytes_open(stored: bytes, key_id: str) -> bytes:
    if not key_id:
        return stored
    return keyring().decrypt(key_id, stored)


# --- The keyed-hash search index ------------------------------------------------------

_WORD = re.compile(r"\w+")


def search_words(text: str) -> list[str]:
    """The distinct words of ``text`` as search compares them, in order of first
    appearance: NFKC-normalised, case-folded, invisible format characters
    removed, split on anything that is not a letter, digit or underscore."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(char for char in text if unicodedata.category(char) != "Cf").casefold()
    return list(dict.fromkeys(_WORD.findall(text)))


def search_token(*, tenant_id: int, word: str) -> str:
    """The index entry of one normalised word in one tenant."""
    key = settings.CHAT_SEARCH_INDEX_KEY.encode()
    digest = hmac.new(key, f"{tenant_id}:{word}".encode(), hashlib.sha256).hexdigest()
    return digest[:SEARCH_TOKEN_LENGTH]


def search_tokens(*, tenant_id: int, text: str) -> list[str]:
    """The index entries of every distinct word of ``text``."""
    return list(dict.fromkeys(search_token(tenant_id=tenant_id, word=word) for word in search_words(text)))
