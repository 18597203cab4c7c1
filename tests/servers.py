"""Real servers on 127.0.0.1 for tests: an HTTP server and an SMTP server.

Each runs in its own thread, so that tests can drive a client with ``asyncio.run`` while
the server answers, exactly as a provider in another process would. Use them as context
managers (the fixtures in the tests do): they listen on a port the system picks, record
what they receive, and answer what the test scripts.

:class:`Journeyman` runs ``python -m journeyman serve`` itself as a child process, the
way an operator runs it, for end-to-end tests over HTTP.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.waiting import wait_until

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on (the system just handed it out and took it back)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Reply:
    """What the HTTP server answers to one request."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    hang: bool = False  # never answer (until the server stops): the client must time out
    delay: float = 0.0  # seconds to wait before answering: a slow provider


@dataclass(frozen=True)
class Request:
    """One request the HTTP server received."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class _BurstServer(ThreadingHTTPServer):
    # Many workers' dispatchers connect at once: let the connections wait to be accepted,
    # as a provider's would, rather than have the kernel drop them (the default is 5).
    request_queue_size = 256


@dataclass
class HttpServer:
    """Records every request; answers with ``replies`` in turn, then with the last one."""

    replies: list[Reply] = field(default_factory=lambda: [Reply()])
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._released = threading.Event()
        self._server = _BurstServer((LOOPBACK, 0), self._handler_class())
        # A short poll interval keeps shutdown, and so each test's teardown, quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def reply(self, *replies: Reply) -> None:
        self.replies = list(replies)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next_reply(self) -> Reply:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._record_and_answer()

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

            def _record_and_answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                server.requests.append(Request(self.command, self.path, headers, body))
                reply = server._next_reply()
                if reply.hang:
                    server._released.wait()
                    return
                if reply.delay:
                    server._released.wait(reply.delay)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler


@dataclass(frozen=True)
class Mail:
    """One email the SMTP server accepted."""

    sender: str
    recipients: list[str]
    message: EmailMessage


class SmtpServer:
    """An aiosmtpd server in its own thread and event loop.

    It answers ``rcpt_reply`` to each RCPT TO and ``data_reply`` to the DATA of each
    email, and keeps the emails it accepts (a ``250`` reply) in ``received``.
    """

    def __init__(self) -> None:
        self.rcpt_reply = "250 OK"
        self.data_reply = "250 2.0.0 OK: queued"
        self.received: list[Mail] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> Self:
        self._thread.start()
        self._server = self._run(self._start())
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _start(self) -> asyncio.Server:
        return await self._loop.create_server(
            lambda: SMTP(self, hostname="localhost", loop=self._loop), LOOPBACK, 0
        )

    async def _stop(self) -> None:
        # In the server's own loop: asyncio servers are not safe to close from another thread.
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply.startswith("250"):
            raw = envelope.original_content or b""
            message = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(Mail(envelope.mail_from or "", envelope.rcpt_tos, message))
        return self.data_reply


WRITE_KEY = "test-write-key"
ADMIN_KEY = "test-admin-key"


class Journeyman:
    """``python -m journeyman serve`` in a child process, on a loopback port it picks.

    :meth:`start` returns once ``/healthz`` answers at the port the banner names;
    :meth:`stop` sends SIGTERM and :meth:`kill` SIGKILL. The server's keys are
    :data:`WRITE_KEY` and :data:`ADMIN_KEY`. ``db`` is the storage URL (a test's
    ``store_url``); the server runs in ``folder``, where each start writes its output to a
    log file of its own; :attr:`output` reads the latest. Leaving the ``with`` block kills
    a server still up.
    """

    def __init__(
        self, workspace: Path, db: str, folder: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.workspace = workspace
        self.db = db
        self.folder = folder
        self.env = child_env(env or {})
        self.port = 0
        self.log = folder / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "journeyman",
            "serve",
            "--workspace",
            str(self.workspace),
            "--db",
            self.db,
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
        ]

    def client(self, key: str = ADMIN_KEY) -> httpx.Client:
        """A client of this server that sends ``key`` (the admin key may ingest too)."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
            trust_env=False,  # never through a proxy: loopback only
        )

    def start(self, timeout: float = 20.0) -> Self:
        """Start, and wait until it answers; a restart keeps the port if it is still free."""
        for port in dict.fromkeys((self.port, 0)):  # 0: the server takes any free port
            if self._launch(port, timeout):
                return self
            if "address already in use" not in self.output.lower():
                break
        raise AssertionError(f"journeyman serve did not start:\n{self.output}")

    def _launch(self, port: int, timeout: float) -> bool:
        self._starts += 1
        self.port = port
        self.log = self.folder / f"serve-{self._starts}.log"
        self.process = process = spawn(self.command(), self.log, self.env, self.folder)
        try:
            wait_until(
                lambda: process.poll() is not None or self._answers(), "serve to answer", timeout
            )
        except AssertionError:
            self.kill()
            return False
        return process.poll() is None  # it answers, rather than ended

    def _answers(self) -> bool:
        """Whether the server said where it listens, and answers there."""
        if not self.port:
            found = re.search(r" at http://[^:]+:(\d+)", self.output)
            if found is None:
                return False
            self.port = int(found.group(1))
        with httpx.Client(base_url=self.url, timeout=2, trust_env=False) as probe:
            try:
                return probe.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then the exit code once the server has stopped."""
        process = self._running()
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the process ends at once, whatever it was doing."""
        process = self._running()
        process.kill()
        process.wait(10)

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"journeyman serve is not running:\n{self.output}")
        return self.process

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


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without journeyman settings or proxies, with the keys
    :data:`WRITE_KEY` and :data:`ADMIN_KEY`, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("JOURNEYMAN_") and not name.lower().endswith("_proxy")
    }
    env |= {
        "PYTHONUNBUFFERED": "1",
        "JOURNEYMAN_WRITE_KEY": WRITE_KEY,
        "JOURNEYMAN_ADMIN_KEY": ADMIN_KEY,
    }
    return env | dict(extra)


def spawn(
    command: list[str],
    log: Path,
    env: Mapping[str, str],
    folder: Path,
    *,
    append: bool = False,
    own_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in ``folder`` with its output (stdout and stderr) in ``log``.

    ``append`` keeps what an earlier start wrote to the log; ``own_session`` puts the
    child in a session of its own, so that a Ctrl-C at the terminal does not reach it.
    """
    with log.open("ab" if append else "wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
            start_new_session=own_session,
        )
