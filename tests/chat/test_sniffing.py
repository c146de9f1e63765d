"""The content sniffer behind attachment checks, and the cleaning of uploaded filenames."""

from __future__ import annotations

import pytest

from chat.constants import ATTACHMENT_NAME_MAX_LENGTH
from chat.services.attachments import attachment_name_clean
from chat.sniffing import SNIFFABLE_TYPES, declaration_matches, declared_type, sniff

# The first bytes of one real file of each type (a valid header, then padding).
SAMPLES = {
    "image/png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32,
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32,
    "image/gif": b"GIF89a\x01\x00\x01\x00" + b"\x00" * 32,
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32,
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32,
    "application/pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"\x00" * 32,
    "audio/ogg": b"OggS\x00\x02" + b"\x00" * 32,
    "audio/flac": b"fLaC\x00\x00\x00\x22" + b"\x00" * 32,
    "audio/mpeg": b"ID3\x04\x00\x00" + b"\x00" * 32,
    "audio/mp4": b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + b"\x00" * 32,
    "video/mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00" + b"\x00" * 32,
    "text/plain": "Paroles: «la vie en rose» ♪\r\n\ttab\n".encode(),
}


def test_every_sniffable_type_has_a_sample():
    assert set(SAMPLES) == SNIFFABLE_TYPES


@pytest.mark.parametrize(("media_type", "data"), SAMPLES.items())
def test_each_signature_is_recognised(media_type, data):
    assert sniff(data) == media_type


def test_an_mp3_without_id3_is_recognised_by_its_frame_header():
    # MPEG-1 layer III, 128 kbit/s, 44.1 kHz.
    assert sniff(b"\xff\xfb\x90\x64" + b"\x00" * 64) == "audio/mpeg"
    # AAC's ADTS header shares the sync bits but has layer 00: not MP3.
    assert sniff(b"\xff\xf1\x50\x80" + b"\x00" * 64) is None


@pytest.mark.parametrize(
    "data",
    [
        b"MZ\x90\x00\x03\x00\x00\x00",  # a Windows executable
        b"\x7fELF\x02\x01\x01\x00",  # a Linux one
        b"PK\x03\x04\x14\x00",  # a zip
        b"plain text\x00with a NUL",
        b"text then \x1b[31m an escape",
        b"\xff\xfe\x00\x00 not UTF-8",
        b"",
    ],
)
def test_anything_else_is_unknown(data):
    assert sniff(data) is None


def test_html_and_svg_are_only_ever_plain_text():
    # Served as text/plain attachments, a script in them never runs.
    assert sniff(b"<html><script>alert(1)</script></html>") == "text/plain"
    assert sniff(b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>') == "text/plain"


def test_declared_types_are_normalised_and_compared():
    assert declared_type("Image/JPG; charset=binary") == "image/jpeg"
    assert declaration_matches("audio/mp3", "audio/mpeg")
    assert declaration_matches("text/markdown", "text/plain")
    # Declaring nothing, or "some bytes", claims nothing.
    assert declaration_matches(None, "image/png")
    assert declaration_matches("application/octet-stream", "image/png")
    assert not declaration_matches("image/png", "application/pdf")
    assert not declaration_matches("text/html", "text/plain")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\bob\\Desktop\\mix.mp3", "mix.mp3"),
        ("..", "attachment"),
        ("", "attachment"),
        (None, "attachment"),
        (".env", "env"),
        ('a"b<c>|d?.txt', "abcd.txt"),
        ("new\nline\x00.pdf", "newline.pdf"),
        ("zero\u200bwidth\u202eexe.txt", "zerowidthexe.txt"),
        ("  spaced    out  .png ", "spaced out .png"),
        ("cafe\u0301.jpg", "café.jpg"),
    ],
)
def test_filenames_are_cleaned_to_metadata(given, kept):
    assert attachment_name_clean(given) == kept


def test_long_filenames_keep_their_extension():
    name = attachment_name_clean("x" * 500 + ".flac")

    assert len(name) == ATTACHMENT_NAME_MAX_LENGTH and name.endswith("x.flac")
