"""``python -m realtime.client``: a terminal chat, a playlist editor, a DJ session demo and a connectivity check.

    python -m realtime.client ping --url http://127.0.0.1:8000 --username alice
    python -m realtime.client chat --url http://127.0.0.1:8000 --username alice --room 3 [--resume-file alice.seq]
    python -m realtime.client playlist --url http://127.0.0.1:8000 --username alice --playlist 1
    python -m realtime.client dj-demo --url http://127.0.0.1:8000 [--host alice --listeners bob carol]

The password comes from ``--password``, else the ``HUB_PASSWORD`` environment
variable, else a prompt. ``chat`` prints each message as ``[seq] user: body``
and sends every line read from stdin; with ``--resume-file`` the last seq seen
is kept there, so a restarted client replays exactly what it missed. Status
lines start with ``*`` and go to stderr.

``playlist`` prints the playlist, then every revision as it is committed
(``rev N by user: ops``) and the list after it; it reads edit commands from
stdin: ``add <track id> [index]`` (default: at the end), ``rm <index>``,
``mv <index> <new index>``, ``title <text>``, ``revert <revision>``, ``list``.
Indexes are the positions printed; edits made meanwhile by others are merged
by the server.

``dj-demo`` (``realtime.client.demo``) hosts a DJ session for two listeners
whose clocks are set wrong on purpose, prints how far each one hears the track
from where the server says it is, and exits 1 if one strays past ``--bound-ms``
(50) or the queue does not advance on its own. Every account uses the one
password.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .demo import DEFAULT_BOUND_MS, dj_demo
from .hub import CLIENT_CONNECTED, CLIENT_DISCONNECTED, CLIENT_RESUMED, CLIENT_ROOM_LOST, HubClient, HubClosed, HubError
from .playlist import PlaylistSession
from .tokens import AuthenticationFailed, PasswordTokenProvider

# How long ``chat`` waits, after the end of its input, for its last message to come back.
_ECHO_WAIT = 5.0


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _status(line: str) -> None:
    sys.stderr.write(f"* {line}\n")
    sys.stderr.flush()


def _read_resume(path: Path | None) -> int | None:
    if path is None or not path.exists():
        return None
    text = path.read_text().strip()
    return int(text) if text.isdigit() else None


def _write_resume(path: Path, seq: int) -> None:
    # Write then rename: a crash mid-write must not leave a truncated number.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{seq}\n")
    tmp.replace(path)


def _format_message(frame: dict[str, Any]) -> str:
    message = frame.get("content", {}).get("message", {})
    sender = (message.get("sender") or {}).get("username", "?")
    body = "(deleted)" if message.get("deleted") else message.get("body", "")
    return f"[{frame.get('seq')}] {sender}: {body}"


def _client(args: argparse.Namespace) -> HubClient:
    password = args.password or os.environ.get("HUB_PASSWORD") or getpass.getpass(f"Password for {args.username}: ")
    provider = PasswordTokenProvider(args.url, username=args.username, password=password)
    return HubClient(args.url, token_provider=provider)


async def _ping(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        hello = client.hello["content"]
        started = time.monotonic()
        pong = await client.ping()
        elapsed = (time.monotonic() - started) * 1000
        _out(
            f"connected to {client.url} as {hello['user']['username']} ({hello['tenant']}); "
            f"pong in {elapsed:.1f} ms, server time {pong['server_time']}"
        )
    return 0


async def _wait_until(done: Callable[[], bool]) -> None:
    """Wait for ``done()`` (what was sent has come back), ``_ECHO_WAIT`` seconds at most."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_ECHO_WAIT):
            while not done():
                await asyncio.sleep(0.05)


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class _Printed:
    """The seq of the last message printed (and saved to the resume file)."""

    seq = 0


async def _print_events(client: HubClient, room: str, resume_file: Path | None, printed: _Printed) -> None:
    async for frame in client.events():
        kind = frame.get("type")
        if kind == "chat.message" and frame.get("room") == room:
            _out(_format_message(frame))
            if resume_file is not None:
                _write_resume(resume_file, frame["seq"])
            printed.seq = frame["seq"]
        elif kind == CLIENT_RESUMED and not frame["content"]["recovered"]:
            ranges = ", ".join(f"{start}-{end}" for start, end in frame["content"]["missing"])
            _status(f"messages {ranges} are no longer stored")
        elif kind == CLIENT_DISCONNECTED:
            _status(f"disconnected ({frame['content']['code']}); retrying in {frame['content']['retry_in']} s")
        elif kind == CLIENT_CONNECTED:
            _status("connected")
        elif kind == CLIENT_ROOM_LOST:
            _status(f"left room {frame['room']}: {frame['content']['message']}")
        elif kind == "error":
            _status(f"error {frame.get('code')}: {frame.get('message')}")


async def _send_lines(client: HubClient, room: str) -> int | None:
    """Send each stdin line; return the seq of the last one stored."""
    last_sent: int | None = None
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return last_sent
        body = line.rstrip("\n")
        if not body.strip():
            continue
        try:
            last_sent = (await client.send_message(room, body))["seq"]
        except HubError as exc:
            _status(f"not sent ({exc.code}): {exc.message}")
        except TimeoutError:
            _status("not sent: no answer from the server")


async def _chat(args: argparse.Namespace) -> int:
    room = str(args.room)
    resume_file = Path(args.resume_file) if args.resume_file else None
    async with _client(args) as client:
        joined = await client.join(room, last_seq=_read_resume(resume_file))
        _status(f"joined room {room}; type a line and press Enter to send, Ctrl-D to quit")
        printed = _Printed()
        printer = asyncio.create_task(_print_events(client, room, resume_file, printed))
        try:
            last_sent = await _send_lines(client, room)
            # At the end of input, stay until the replay and the last line sent
            # have come back from the room (printed and saved), for a few seconds at most.
            target = max(last_sent or 0, joined.get("last_seq") or 0)
            await _wait_until(lambda: printed.seq >= target)
        finally:
            await _stop(printer)
    return 0


async def _print_playlist(client: HubClient, session: PlaylistSession) -> None:
    async for frame in client.events():
        changed = await session.handle(frame)
        kind = frame.get("type")
        if changed and kind == "playlist.changed":
            content = frame["content"]
            author = (content.get("actor") or {}).get("username", "?")
            ops = ", ".join(op["op"] for op in content.get("ops", []))
            _out(f"rev {frame['seq']} by {author}: {ops}")
            for line in session.describe()[1:]:
                _out(line)
        elif kind == "playlist.overridden":
            _status(f"your edit was overridden by revision {frame['content']['revision']}")
        elif kind == "playlist.access_revoked":
            _status("you no longer have access to this playlist")
        elif kind == CLIENT_DISCONNECTED:
            _status(f"disconnected ({frame['content']['code']}); retrying in {frame['content']['retry_in']} s")
        elif kind == "error":
            _status(f"error {frame.get('code')}: {frame.get('message')}")


def _playlist_command(session: PlaylistSession, word: str, rest: str) -> dict[str, Any]:
    """The op (or ``{"revert": revision}``) an edit command asks for."""
    args = rest.split()
    items = session.state.items if session.state is not None else []
    if word == "add":
        return {"op": "insert", "track": int(args[0]), "index": int(args[1]) if len(args) > 1 else len(items)}
    if word == "rm":
        return {"op": "remove", "item_id": items[int(args[0])]["item_id"]}
    if word == "mv":
        return {"op": "move", "item_id": items[int(args[0])]["item_id"], "index": int(args[1])}
    if word == "title":
        return {"op": "update", "title": rest}
    if word == "revert":
        return {"revert": int(args[0])}
    raise ValueError(f"unknown command {word!r}")


async def _edit_lines(session: PlaylistSession) -> int:
    """Run each stdin command; return the newest revision an edit produced."""
    newest = session.revision or 0
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return newest
        word, _, rest = line.strip().partition(" ")
        if word in ("", "list"):
            for printed in session.describe() if word else ():
                _out(printed)
            continue
        try:
            command = _playlist_command(session, word, rest)
            answer = await (session.revert(command["revert"]) if "revert" in command else session.edit(command))
        except (ValueError, IndexError) as exc:
            _status(f"not understood: {exc}")
            continue
        except HubError as exc:
            _status(f"not applied ({exc.code}): {exc.message}")
            continue
        except TimeoutError:
            _status("not applied: no answer from the server")
            continue
        for dropped in answer.get("dropped", []):
            _status(f"dropped: item {dropped['item_id']} was removed by someone else")
        newest = max(newest, answer.get("revision") or 0)


async def _playlist(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        session = PlaylistSession(client, args.playlist)
        await session.open()
        for line in session.describe():
            _out(line)
        _status("commands: add <track> [index] | rm <index> | mv <index> <to> | title <text> | revert <rev> | list")
        printer = asyncio.create_task(_print_playlist(client, session))
        try:
            newest = await _edit_lines(session)
            # At the end of input, stay until our last edit has come back.
            await _wait_until(lambda: (session.revision or 0) >= newest)
        finally:
            await _stop(printer)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realtime.client", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in (
        ("ping", "connect, ping once and exit"),
        ("chat", "chat in one room from the terminal"),
        ("playlist", "edit one playlist from the terminal, live"),
    ):
        command = commands.add_parser(name, help=summary)
        command.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default: %(default)s)")
        command.add_argument("--username", required=True)
        command.add_argument("--password", help="default: $HUB_PASSWORD, else a prompt")
        if name == "chat":
            command.add_argument("--room", required=True, help="the room id")
            command.add_argument("--resume-file", help="file keeping the last seq seen, to resume after a restart")
        if name == "playlist":
            command.add_argument("--playlist", required=True, type=int, help="the playlist id")
    demo = commands.add_parser("dj-demo", help="a DJ session with two listeners, their positions measured")
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default: %(default)s)")
    demo.add_argument("--host", default="alice", help="the DJ (default: %(default)s)")
    demo.add_argument("--listeners", nargs=2, default=["bob", "carol"], help="two listeners (default: bob carol)")
    demo.add_argument("--password", help="every account's password; default: $HUB_PASSWORD, else a prompt")
    demo.add_argument("--bound-ms", type=float, default=DEFAULT_BOUND_MS, help="agreement bound (default: 50)")
    return parser


async def _dj_demo(args: argparse.Namespace) -> int:
    password = args.password or os.environ.get("HUB_PASSWORD") or getpass.getpass("Password of the demo accounts: ")
    report = await dj_demo(
        args.url,
        password=password,
        host=args.host,
        listeners=tuple(args.listeners),
        bound_ms=args.bound_ms,
        out=_out,
    )
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run = {"ping": _ping, "chat": _chat, "playlist": _playlist, "dj-demo": _dj_demo}[args.command]
    try:
        return asyncio.run(run(args))
    except (AuthenticationFailed, HubClosed, HubError) as exc:
        _status(str(exc))
        return 1
    except TimeoutError:
        _status(f"could not connect to {args.url}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
