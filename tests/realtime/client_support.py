"""Servers for the client tests: a daphne that can be stopped and started again
on the same port, a TCP proxy that can swallow the server's frames and cut
connections, and a token provider that records how it was called."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from channels.db import database_sync_to_async

from tests.conftest import ROOT, free_port, stop_process, subprocess_env, wait_for_port

from .conftest import access_token


class RestartableDaphne:
    """A daphne process bound to one port for the whole test, restartable at will."""

    def __init__(self, log_dir: Path, *, name: str = "daphne", **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_dir = log_dir
        self._name = name
        self._env = env
        self._proc: subprocess.Popen | None = None
        self._runs = 0

    def start(self) -> None:
        self._runs += 1
        log = self._log_dir / f"{self._name}-{self._runs}.log"
        with open(log, "wb") as out:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "spotify_agent.asgi:application",
                ],
                cwd=ROOT,
                env=subprocess_env(**self._env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, self._proc)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"daphne did not start:\n{log.read_text()[-4000:]}") from None

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None


class Proxy:
    """A TCP relay in front of daphne. ``mute()`` swallows what the server sends
    from then on (an ack lost in transit); ``cut()`` drops every connection."""

    def __init__(self, upstream_port: int):
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.muted = False
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def mute(self) -> None:
        self.muted = True

    def cut(self) -> None:
        self.muted = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, server_writer}
        await asyncio.gather(
            self._pipe(client_reader, server_writer, downstream=False),
            self._pipe(server_reader, client_writer, downstream=True),
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if downstream and self.muted:
                    continue
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


class RecordingTokens:
    """Genuine access tokens of ``user``; records each call's ``force``.

    ``first`` replaces the first token (an expired one, to provoke 4401);
    ``lifetime`` shortens every token (to make the client refresh on the socket)."""

    def __init__(self, user, *, first: str | None = None, lifetime: timedelta | None = None):
        self._user = user
        self._first = first
        self._lifetime = lifetime
        self.calls: list[bool] = []

    async def __call__(self, *, force: bool = False) -> str:
        self.calls.append(force)
        if self._first is not None:
            token, self._first = self._first, None
            return token
        return await database_sync_to_async(access_token)(self._user, lifetime=self._lifetime)
