"""The parts of a chaos run (``chaos.py``): an SMTP sink, journeyman processes that are
killed and started again, the HTTP load, and reads of the run's database.

Everything listens on and connects to 127.0.0.1 only. The child processes are started as
the test suite starts its own (``tests/servers.py``): the same environment, keys and logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import nats.js.errors
from aiosmtpd.smtp import SMTP, Envelope, Session
from tests.servers import LOOPBACK, WRITE_KEY, spawn

POSTGRES = os.environ.get("JOURNEYMAN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
NATS = os.environ.get("JOURNEYMAN_BENCH_NATS", "nats://127.0.0.1:4222")
GIVE_UP = 20.0  # seconds a client keeps sending a call again before it gives up


# ---------------------------------------------------------------- the SMTP sink


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    message_id: str
    key: str
    at: float  # time.monotonic() when its DATA was accepted


class Sink:
    """An SMTP server on 127.0.0.1 in a thread of its own that accepts and records all mail."""

    def __init__(self) -> None:
        self.received: list[Mail] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> Sink:
        self._thread.start()
        self._server = self._call(
            self._loop.create_server(
                lambda: SMTP(self, hostname="localhost", loop=self._loop), LOOPBACK, 0
            )
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _call(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self.received)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        mail = Mail(
            str(message["To"]),
            str(message["Subject"]),
            str(message["Message-ID"]),
            str(message["X-Journeyman-Key"]),
            time.monotonic(),
        )
        with self._lock:
            self.received.append(mail)
        return "250 2.0.0 OK: queued"


# ---------------------------------------------------------------- processes


class Child:
    """One journeyman process (``serve`` or ``worker``), started again after each kill."""

    def __init__(
        self, name: str, args: list[str], folder: Path, env: dict[str, str], port: int = 0
    ) -> None:
        self.name = name
        self.command = [sys.executable, "-m", "journeyman", *args]
        self.folder = folder
        self.env = env
        self.port = port  # the HTTP port of a serve; 0 for a worker
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}-{self.starts}.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, timeout: float = 60.0) -> None:
        for _ in range(3):  # the port of a serve just killed may take a moment to free
            self.starts += 1
            # A session of its own: a Ctrl-C at the terminal reaches this run only,
            # which then stops its children itself.
            self.process = spawn(self.command, self.log, self.env, self.folder, own_session=True)
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                if self.ready():
                    return
                time.sleep(0.05)
            if self.process.poll() is None:
                self.kill()
            if "address already in use" not in self.output().lower():
                break
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} did not start:\n{self.output()[-3000:]}")

    def ready(self) -> bool:
        if not self.port:
            return ": running" in self.output()
        try:
            with httpx.Client(timeout=2, trust_env=False) as probe:
                return probe.get(f"http://{LOOPBACK}:{self.port}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it takes longer than ``timeout``."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


# ---------------------------------------------------------------- the load


@dataclass
class Load:
    """``signed_up`` events of fresh profiles at ``rate`` per second over HTTP, from a
    thread of its own, until :meth:`stop`. Event ``n`` is ``userId`` ``<prefix>-<n>`` and
    has that as its ``messageId``; a call that gets no answer, 503 or 429 is sent again
    with the same ``messageId`` every half second, for up to :data:`GIVE_UP` seconds."""

    url: str
    prefix: str
    rate: float
    connections: int
    acked: set[int] = field(default_factory=set)  # answered 2xx
    refused: Counter[int] = field(default_factory=Counter)  # n -> a 4xx that is no 429
    unanswered: set[int] = field(default_factory=set)  # never acknowledged
    retried: int = 0
    sent: int = 0

    def __post_init__(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def user(self, n: int) -> str:
        return f"{self.prefix}-{n:06}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Send no more events; return once every call has its outcome."""
        self._stopping.set()
        self._thread.join(60)

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {WRITE_KEY}"}
        limits = httpx.Limits(max_connections=self.connections)
        async with httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=10, trust_env=False, limits=limits
        ) as client:
            slots = asyncio.Semaphore(self.connections)
            calls: set[asyncio.Task[None]] = set()
            began = time.monotonic()
            while not self._stopping.is_set():
                await asyncio.sleep(max(0.0, began + self.sent / self.rate - time.monotonic()))
                await slots.acquire()
                call = asyncio.create_task(self._post(client, self.sent, slots))
                calls.add(call)
                call.add_done_callback(calls.discard)
                self.sent += 1
            await asyncio.gather(*calls)

    async def _post(self, client: httpx.AsyncClient, n: int, slots: asyncio.Semaphore) -> None:
        user = self.user(n)
        body = {
            "userId": user,
            "messageId": user,
            "event": "signed_up",
            "properties": {"email": f"{user}@example.com"},
        }
        deadline = time.monotonic() + GIVE_UP
        try:
            while True:
                try:
                    answer = await client.post("/v1/track", json=body)
                except httpx.TransportError:
                    status = 0
                else:
                    status = answer.status_code
                if 200 <= status < 300:
                    self.acked.add(n)
                    return
                if status and status not in (429, 503):
                    self.refused[status] += 1
                    break
                if time.monotonic() > deadline:
                    break
                self.retried += 1
                await asyncio.sleep(0.5)
            self.unanswered.add(n)
        finally:
            slots.release()


# ---------------------------------------------------------------- the database


class Database:
    """Reads of the run's database, whichever backend it is."""

    def __init__(self, url: str) -> None:
        self.url = url

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite:///"):
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
                return [tuple(row) for row in db.execute(query)]
        return asyncio.run(self._pg_rows(query))

    async def _pg_rows(self, query: str) -> list[tuple[Any, ...]]:
        db = await asyncpg.connect(self.url, timeout=10)
        try:
            return [tuple(row) for row in await db.fetch(query)]
        finally:
            await db.close()

    def count(self, query: str) -> int:
        return int(self.rows(query)[0][0])


async def admin(statement: str) -> None:
    db = await asyncpg.connect(f"{POSTGRES}/postgres", timeout=10)
    try:
        await db.execute(statement)
    finally:
        await db.close()


async def delete_stream(stream: str) -> None:
    connection = await nats.connect(NATS, connect_timeout=5, allow_reconnect=False)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await connection.jetstream().delete_stream(stream)
    finally:
        await connection.close()
