"""What a file really is, from its first bytes (magic numbers), not from what
the client says.

Chat attachments are checked here before they are stored
(``chat.services.attachments``): the sniffed type must be in
``CHAT_ATTACHMENT_ALLOWED_TYPES`` and agree with the type the client declared.
Only the types this module can recognise can be allowed (``chat.checks``
refuses others at startup). SVG and HTML are deliberately absent: both are
documents a browser would run scripts from.

Pure Python, no libmagic: the handful of formats chat accepts have fixed
signatures, and a small table is easier to review than a database of them.
docs/api.md, "Attachments", lists the types for clients.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Every type ``sniff`` can answer with.
SNIFFABLE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "audio/flac",
        "audio/mp4",
        "video/mp4",
        "application/pdf",
        "text/plain",
    }
)

# Other spellings clients send for the same types (browsers and OSes disagree).
TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "application/x-pdf": "application/pdf",
    "application/ogg": "audio/ogg",
    # Text formats are stored and served as plain text: declaring them is no lie.
    "text/markdown": "text/plain",
    "text/csv": "text/plain",
}

# What a client sends when it does not know: no claim to check.
UNKNOWN_DECLARATIONS = frozenset({"", "application/octet-stream", "binary/octet-stream"})

# Brands of an ISO base media file ("ftyp" box) that are audio-only.
_AUDIO_MP4_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ")

# Control characters, except those plain text uses (tab, newline, form feed, carriage return).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _is_mp3_frame(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a version that is not reserved,
    layer I, II or III (layer bits 00 are AAC's ADTS, not MP3), a real bitrate
    (not "free" or "bad") and a sampling rate that is not reserved. The last two
    keep a UTF-16 byte-order mark (FF FE) from passing for one."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0b11, (head[1] >> 1) & 0b11
    bitrate, sampling = head[2] >> 4, (head[2] >> 2) & 0b11
    return version != 0b01 and layer != 0b00 and bitrate not in (0b0000, 0b1111) and sampling != 0b11


def _is_text(data: bytes) -> bool:
    """UTF-8 (a BOM allowed) without NULs or control characters other than whitespace."""
    if not data:
        return False
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return _CONTROL_CHARACTERS.search(text) is None


def _mp4_type(head: bytes) -> str | None:
    """An ISO base media file ("ftyp" box first): audio-only brands are audio/mp4."""
    if head[4:8] != b"ftyp":
        return None
    return "audio/mp4" if head[8:12] in _AUDIO_MP4_BRANDS else "video/mp4"


# (test on the first 16 bytes, type), in order: the first that matches wins.
_SIGNATURES: tuple[tuple[Callable[[bytes], bool], str], ...] = (
    (lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), "image/png"),
    (lambda head: head.startswith(b"\xff\xd8\xff"), "image/jpeg"),
    (lambda head: head.startswith((b"GIF87a", b"GIF89a")), "image/gif"),
    (lambda head: head.startswith(b"RIFF") and head[8:12] == b"WEBP", "image/webp"),
    (lambda head: head.startswith(b"RIFF") and head[8:12] == b"WAVE", "audio/wav"),
    (lambda head: head.startswith(b"%PDF-"), "application/pdf"),
    (lambda head: head.startswith(b"OggS"), "audio/ogg"),
    (lambda head: head.startswith(b"fLaC"), "audio/flac"),
    (lambda head: head.startswith(b"ID3") or _is_mp3_frame(head), "audio/mpeg"),
)


def sniff(data: bytes) -> str | None:
    """The media type of ``data`` (the whole file: text is checked to the end),
    or None when it is none of ``SNIFFABLE_TYPES``."""
    head = data[:16]
    for matches, media_type in _SIGNATURES:
        if matches(head):
            return media_type
    mp4 = _mp4_type(head)
    if mp4 is not None:
        return mp4
    return "text/plain" if _is_text(data) else None


def declared_type(value: str | None) -> str:
    """A client's Content-Type reduced to a comparable media type: parameters
    dropped, lower case, aliases resolved ("image/JPG; x=y" → "image/jpeg")."""
    media_type = (value or "").split(";", 1)[0].strip().lower()
    return TYPE_ALIASES.get(media_type, media_type)


def declaration_matches(declared: str | None, sniffed: str) -> bool:
    """Whether the client's declared type is consistent with the sniffed one;
    a client that declares nothing (or octet-stream) claims nothing."""
    media_type = declared_type(declared)
    return media_type in UNKNOWN_DECLARATIONS or media_type == sniffed
