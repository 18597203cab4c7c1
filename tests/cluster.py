"""Real parts of a scale-out deployment for tests: NATS, workers, and a PostgreSQL proxy.

- :func:`nats_stream` names a JetStream stream of a test's own on the machine's NATS
  server (``JOURNEYMAN_TEST_NATS``, default ``nats://127.0.0.1:4222``) and deletes it
  afterwards.
- :class:`NatsServer` runs a ``nats-server`` of a test's own, on a free port, for tests
  that stop and restart it (by its PID; never the machine's shared server).
- :class:`BusServer` is ``journeyman serve --bus``; :class:`WorkerProcess` is
  ``journeyman worker``; both child processes, stopped with SIGTERM or killed by PID.
- :class:`TcpProxy` stands between workers and PostgreSQL, so a test can cut their
  connections and let them back without touching the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient

from tests.servers import LOOPBACK, Journeyman, child_env, free_port, spawn
from tests.waiting import wait_until

NATS_URL = os.environ.get("JOURNEYMAN_TEST_NATS", "nats://127.0.0.1:4222")
NATS_BINARY = shutil.which("nats-server") or "/usr/sbin/nats-server"


def nats_missing() -> str | None:
    """Why the shared NATS server cannot be used here, or None."""
    host, _, port = NATS_URL.removeprefix("nats://").partition(":")
    try:
        with socket.create_connection((host, int(port or 4222)), timeout=2):
            return None
    except OSError as error:
        return f"no NATS server at {NATS_URL} ($JOURNEYMAN_TEST_NATS): {error}"


async def delete_stream(url: str, stream: str) -> None:
    async with asyncio.timeout(10):  # a test's own server may be gone already
        connection = await _connect(url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await connection.jetstream().delete_stream(stream)
    finally:
        await connection.close()


async def stream_messages(url: str, stream: str) -> int:
    """How many messages the stream holds (not yet acknowledged by a worker)."""
    async with asyncio.timeout(10):
        connection = await _connect(url)
    try:
        info = await connection.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await connection.close()


async def _connect(url: str) -> NatsClient:
    return await nats.connect(
        url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0
    )


@contextmanager
def nats_stream(url: str = NATS_URL) -> Iterator[str]:
    """A stream name of the test's own, deleted afterwards whatever happened."""
    name = f"JMTEST_{secrets.token_hex(5).upper()}"
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(delete_stream(url, name))


class NatsServer:
    """``nats-server -js`` of the test's own: :meth:`kill` and :meth:`start` it at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [NATS_BINARY, "-js", "-a", LOOPBACK, "-p", str(self.port)]
        command += ["-sd", str(self.folder / "store")]
        with (self.folder / "nats.log").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self._answers, "nats-server to listen", timeout=20)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class BusServer(Journeyman):
    """``journeyman serve --bus URL --stream NAME --partitions N``."""

    def __init__(
        self,
        workspace: Path,
        db: str,
        folder: Path,
        bus: str,
        stream: str,
        partitions: int = 8,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workspace, db, folder, env)
        self.bus, self.stream, self.partitions = bus, stream, partitions

    def command(self) -> list[str]:
        extra = ["--bus", self.bus, "--stream", self.stream, "--partitions", str(self.partitions)]
        return [*super().command(), *extra]


class WorkerProcess:
    """``journeyman worker`` in a child process, with its output in a log file of its own."""

    def __init__(
        self,
        name: str,
        workspace: Path,
        db: str,
        bus: str,
        folder: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.env = child_env(env or {})
        self.command = [sys.executable, "-m", "journeyman", "worker", "--workspace"]
        self.command += [str(workspace), "--db", db, "--bus", bus]
        self.folder = folder
        self.log = folder / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> Self:
        self.process = spawn(self.command, self.log, self.env, self.folder, append=True)
        wait_until(lambda: "running" in self.output or self._ended(), f"worker {self.name}")
        assert not self._ended(), f"worker {self.name} did not start:\n{self.output}"
        return self

    def _ended(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code once it has stopped."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def serve_with_worker(
    stack: ExitStack,
    workspace: Path,
    db: str,
    folder: Path,
    partitions: int = 2,
    env: Mapping[str, str] | None = None,
) -> BusServer:
    """``serve --bus`` on a stream of the test's own and one ``journeyman worker``, both
    started, both stopped (and the stream deleted) with ``stack``. Without NATS the test
    fails: CI starts it, so its absence is a failure, not a skip."""
    reason = nats_missing()
    if reason is not None:
        pytest.fail(reason)
    stream = stack.enter_context(nats_stream(NATS_URL))
    api = BusServer(workspace, db, folder, NATS_URL, stream, partitions, env)
    stack.enter_context(api).start()
    stack.enter_context(
        WorkerProcess("1", workspace, db, NATS_URL, folder, dict(env or {}))
    ).start()
    return api


class TcpProxy:
    """A TCP proxy on loopback, in its own thread: :meth:`cut` drops every connection and
    refuses new ones until :meth:`restore`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def cut(self) -> None:
        self._call(self._close())

    def restore(self) -> None:
        self._call(self._listen())

    def _call(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._pipe, LOOPBACK, self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _shut(self) -> None:
        """Close, and end the pipes still running, so that the loop stops with no task."""
        await self._close()
        pipes = asyncio.all_tasks() - {asyncio.current_task()}
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            _copy(reader, up_writer), _copy(up_reader, writer), return_exceptions=True
        )
        self._writers.difference_update((writer, up_writer))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.transport.abort()


def elapsed(since: float) -> float:
    return time.monotonic() - since
