"""``realtime.protocol``: parsing client frames and building server envelopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from realtime.protocol import (
    PROTOCOL_VERSION,
    CloseCode,
    ErrorCode,
    ProtocolError,
    ack,
    encode,
    envelope,
    error,
    parse_client_frame,
)


def test_parse_reads_the_envelope():
    message = parse_client_frame('{"type": "chat.send", "id": "c1", "room": "r", "content": {"text": "hi"}}')

    assert (message.type, message.id, message.room, message.content) == ("chat.send", "c1", "r", {"text": "hi"})


@pytest.mark.parametrize("text", ["{", "[]", '"ping"', "null"])
def test_parse_refuses_non_objects_as_bad_json(text):
    with pytest.raises(ProtocolError) as refused:
        parse_client_frame(text)
    assert refused.value.code == ErrorCode.BAD_JSON


@pytest.mark.parametrize(
    ("frame", "answerable_id"),
    [
        ({"id": 3}, 3),
        ({"type": "", "id": "a"}, "a"),
        ({"type": "ping", "room": 5, "id": "b"}, "b"),
        ({"type": "ping", "content": "x", "id": "c"}, "c"),
        ({"type": "ping", "id": True}, None),
        ({"type": "ping", "id": "x" * 65}, None),
    ],
)
def test_parse_refuses_bad_envelopes_keeping_a_readable_id(frame, answerable_id):
    with pytest.raises(ProtocolError) as refused:
        parse_client_frame(json.dumps(frame))
    assert refused.value.code == ErrorCode.INVALID
    assert refused.value.details.get("id") == answerable_id


def test_envelope_omits_absent_fields_and_stamps_utc():
    frame = envelope("chat.message", {"text": "hi"}, room="r1", seq=4)

    assert set(frame) == {"type", "room", "seq", "content", "timestamp"}
    assert frame["timestamp"].endswith("Z")
    stamped = datetime.fromisoformat(frame["timestamp"])
    assert abs((stamped - datetime.now(tz=UTC)).total_seconds()) < 2


def test_ack_and_error_carry_the_id():
    assert ack("c1")["id"] == "c1"
    refused = error(ErrorCode.FORBIDDEN, "No.", frame_id=9, details={"room": "r"})
    assert (refused["type"], refused["id"], refused["code"], refused["message"]) == ("error", 9, "forbidden", "No.")
    assert refused["content"] == {"room": "r"}
    assert json.loads(encode(refused)) == refused


def test_error_codes_are_the_documented_closed_list():
    assert {code.value for code in ErrorCode} == {
        "bad_json",
        "unknown_type",
        "invalid",
        "forbidden",
        "not_found",
        "rate_limited",
        "too_large",
        "conflict",
        "resync_required",
        "moderated",
        "unauthenticated",
        "internal",
    }


def test_docs_describe_every_code_and_the_version():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()

    assert f"**Protocol version: {PROTOCOL_VERSION}**" in doc
    for code in ErrorCode:
        assert f"| `{code.value}` |" in doc, code
    for close_code in CloseCode:
        assert f"| {close_code.value} |" in doc, close_code
