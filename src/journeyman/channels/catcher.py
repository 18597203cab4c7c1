"""The built-in mail catcher: a local SMTP server that keeps every email it receives.

For development and demos: ``journeyman serve`` can run it next to the engine so that
journeys send real emails over SMTP without any of them leaving the machine. Point the
``email`` channel at it:

```yaml
kind: channel
name: email
type: catcher
host: 127.0.0.1                # default
port: 1025                     # default
from: "journeyman <journeyman@localhost>"   # default
```

The ``catcher`` type is the ``smtp`` channel with neither TLS nor authentication. The
catcher writes each email it receives as one JSON line (``from``, ``to``, ``subject``,
``text``, ``html``, ``message_id``, ``key``, ``received``) to its file, which
:meth:`MailCatcher.read` (and ``journeyman mail``) lists.

In Python::

    async with MailCatcher("mail.jsonl", port=0) as catcher:   # 0: any free port
        print(catcher.port)
        ...
    MailCatcher.read("mail.jsonl")
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

import msgspec
from aiosmtpd.smtp import SMTP, Envelope, Session

from journeyman.channels.base import ConfigReader
from journeyman.channels.file import LineWriter
from journeyman.channels.smtp import SmtpChannel, sender_from_config

__all__ = ["CaughtMail", "MailCatcher"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1025
DEFAULT_SENDER = "journeyman <journeyman@localhost>"
KEYS = ("host", "port", "from")


class CaughtMail(msgspec.Struct, frozen=True, kw_only=True):
    """One email the catcher received."""

    sender: str = msgspec.field(name="from")  # the envelope sender
    to: list[str]  # the envelope recipients
    subject: str
    text: str | None
    html: str | None
    message_id: str | None
    key: str | None  # the X-Journeyman-Key header: the send's idempotency key
    received: datetime


def parse_mail(raw: bytes, sender: str, recipients: list[str], received: datetime) -> CaughtMail:
    # SMTP carries CRLF line ends; the stored text should read like the text that was sent.
    mail = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    return CaughtMail(
        sender=sender,
        to=recipients,
        subject=str(mail.get("Subject", "")),
        text=_part(mail, "plain"),
        html=_part(mail, "html"),
        message_id=_header(mail, "Message-ID"),
        key=_header(mail, "X-Journeyman-Key"),
        received=received,
    )


def _part(mail: EmailMessage, subtype: str) -> str | None:
    part = mail.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    return str(part.get_content())


def _header(mail: EmailMessage, name: str) -> str | None:
    value = mail.get(name)
    return None if value is None else str(value)


class MailCatcher:
    """An SMTP server on ``host:port`` that stores every email in ``path``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = Path(path)
        self.host = host
        self._port = port
        self._clock = clock
        self._writer = LineWriter(self.path)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port it listens on: the one the system chose, when started with port 0."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # A fixed hostname spares a DNS lookup of this machine's name per connection.
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="localhost", enable_SMTPUTF8=True, loop=loop),
            self.host,
            self._port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._writer.close()

    async def __aenter__(self) -> MailCatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd's hook for a received email: keep it, then accept it."""
        raw = envelope.original_content or b""
        mail = parse_mail(raw, envelope.mail_from or "", list(envelope.rcpt_tos), self._clock())
        try:
            await self._writer.write(msgspec.json.encode(mail) + b"\n")
        except OSError as error:
            return f"451 Requested action aborted: cannot store the email ({error})"
        return "250 Message accepted for delivery"

    def mails(self) -> list[CaughtMail]:
        return self.read(self.path)

    @staticmethod
    def read(path: str | os.PathLike[str]) -> list[CaughtMail]:
        """Every email caught into ``path``, oldest first; none if there is no file."""
        try:
            lines = Path(path).read_bytes().splitlines()
        except FileNotFoundError:
            return []
        decoder = msgspec.json.Decoder(CaughtMail)
        mails = []
        for line in lines:
            try:
                mails.append(decoder.decode(line))
            except msgspec.DecodeError:
                continue  # a line cut short by a crash; the others still count
        return mails


def from_config(reader: ConfigReader, name: str) -> SmtpChannel:
    return SmtpChannel(
        name,
        host=reader.text("host", DEFAULT_HOST),
        port=reader.port("port", DEFAULT_PORT),
        sender=sender_from_config(reader, DEFAULT_SENDER),
        security="none",
        rate=reader.rate(),
        local_hostname="localhost",
    )
