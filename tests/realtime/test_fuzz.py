"""Random frames against a live hub: no input makes the consumer fail or leak.

Hypothesis throws text (JSON-shaped or not), binary frames and well-formed
envelopes of every registered type with random content at an authenticated
socket on a real daphne. After each batch the socket must still answer a probe
``ping``, every frame received must be a documented one, no error may be
``internal`` and nothing may look like a traceback. (``auth`` frames are left
out: a refused credential closes the socket with 4401 by design.)
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from realtime.protocol import ErrorCode
from realtime.registry import registry

from .conftest import access_token, bearer, ws_url

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# ``auth`` is left out: a refused credential on an open socket closes it with
# 4401 by design (docs/protocol.md), which test_session covers.
_TYPES = st.sampled_from(
    [*(t for t in registry.message_types() if t != "auth"), "nope", "", "chat.", "room.join.extra"]
)
_ENVELOPES = st.fixed_dictionaries(
    {"type": _TYPES},
    optional={
        "id": st.one_of(st.text(max_size=80), st.integers(), st.none(), _JSON),
        "room": st.one_of(st.text(max_size=20), st.integers(min_value=-5, max_value=10**12), _JSON),
        "content": _JSON,
    },
).map(json.dumps)
_FRAMES = st.one_of(
    _ENVELOPES,
    _JSON.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=64),
    st.just("<script>alert(1)</script>"),
)
_KNOWN_TYPES = {"ack", "error", "pong", "hello", "chat.history", "system", "presence"}


async def _exchange(url: str, token: str, frames: list[str | bytes]) -> list[dict]:
    async with connect(url, additional_headers=bearer(token), ping_interval=None, open_timeout=5) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello["type"] == "hello"
        for frame in frames:
            await ws.send(frame)
        await ws.send(json.dumps({"type": "ping", "id": "probe"}))
        received = []
        async with asyncio.timeout(5):
            while True:
                raw = await ws.recv()
                assert isinstance(raw, str) and "Traceback" not in raw
                frame = json.loads(raw)
                received.append(frame)
                if frame.get("id") == "probe":
                    return received


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(_FRAMES, min_size=1, max_size=5))
def test_random_frames_get_documented_answers_and_leave_the_socket_usable(live_server_url, user, frames):
    token = access_token(user)
    received = asyncio.run(_exchange(ws_url(live_server_url), token, frames))

    probe = received[-1]
    assert probe["type"] == "pong" or probe.get("code") == ErrorCode.RATE_LIMITED, probe
    for frame in received:
        assert frame["type"] in _KNOWN_TYPES or "." in frame["type"], frame
        if frame["type"] == "error":
            assert frame["code"] in set(ErrorCode) - {ErrorCode.INTERNAL}, frame
