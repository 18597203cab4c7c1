"""Real servers on 127.0.0.1 for tests: an HTTP server and an SMTP server.

Each runs in its own thread, so that tests can drive a client with ``asyncio.run`` while
the server answers, exactly as a provider in another process would. Use them as context
managers (the fixtures in the tests do): they listen on a port the system picks, record
what they receive, and answer what the test scripts.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypeVar

from aiosmtpd.smtp import SMTP, Envelope, Session

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


@dataclass(frozen=True)
class Request:
    """One request the HTTP server received."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class HttpServer:
    """Records every request; answers with ``replies`` in turn, then with the last one."""

    replies: list[Reply] = field(default_factory=lambda: [Reply()])
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._released = threading.Event()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler_class())
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
