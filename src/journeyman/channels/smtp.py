"""Email through any SMTP server (your own relay, Amazon SES, Postmark, Mailgun, ...).

```yaml
kind: channel
name: email
type: smtp
host: smtp.example.com
port: 587                      # default: 587 with starttls, 465 with tls, 25 with none
from: "Example <hello@example.com>"
security: starttls             # starttls (default) | tls | none
username: "${SMTP_USER}"       # optional, together with password
password: "${SMTP_PASSWORD}"   # always an environment variable, never the password itself
timeout: 10                    # seconds (or a duration such as 10s), default 10
rate: 20                       # messages per second, default unlimited
feedback_secret: "${ESP_WEBHOOK_SECRET}"  # optional: signs POST /hooks/email/{name}
```

Each message is a proper MIME email: ``multipart/alternative`` when the template has both
``text`` and ``html``, a single part otherwise. Its ``Message-ID`` is derived from the
message's idempotency key (``<first 32 hex digits of sha256(key)@sender's domain>``), so
every retry of one send carries the same Message-ID and receivers and providers that
deduplicate on it see one email; the key itself travels in ``X-Journeyman-Key``.

Outcomes: a 2xx reply is ``sent`` (its Message-ID is the ``provider_id``); an SMTP 4xx
reply, a refused or dropped connection and a timeout are ``retry``; an SMTP 5xx reply, a
server certificate that does not verify, a missing feature (such as STARTTLS) and a
message without one usable address (none, several, or one with a line break that would
add headers) are ``failed``. A 5xx reply to the recipient (``RCPT TO``), or any 5xx reply
with an enhanced status ``5.1.x`` (bad mailbox), is also a hard bounce: the profile gets
``message_bounced`` (``bounce: hard``) besides ``message_failed``. A 4xx reply is never a
bounce, even when the dispatcher gives up on it. Each message uses its own connection.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr
from typing import Literal, cast

import aiosmtplib

from journeyman.channels.base import (
    Channel,
    ChannelConfigError,
    ConfigReader,
    Delivery,
    clip,
    error_detail,
)
from journeyman.domain.feedback import HARD_BOUNCE
from journeyman.domain.state import SendMessage

__all__ = ["SmtpChannel", "address_problem", "build_email", "message_id"]

Security = Literal["starttls", "tls", "none"]
SECURITY: tuple[Security, ...] = ("starttls", "tls", "none")
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}
KEYS = ("host", "port", "from", "security", "username", "password", "timeout", "feedback_secret")

_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
_BAD_MAILBOX = re.compile(r"\s*5\.1\.\d{1,3}\b")


def message_id(key: str, sender: str) -> str:
    """The Message-ID header for the send with idempotency key ``key``."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if not _DOMAIN.fullmatch(domain):
        domain = "journeyman"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def address_problem(to: str) -> str:
    """Why ``to`` is not one email address, or "".

    The address comes from a profile or a rendered template: a line break in it would add
    headers, a comma recipients. A subject needs no such check: it is made one line.
    """
    if not to.isprintable():
        return f"the address {to!r} holds a line break or another control character"
    addresses = getaddresses([to])
    if len(addresses) != 1 or "@" not in addresses[0][1]:
        return f"the address {to!r} is not one email address"
    return ""


def build_email(message: SendMessage, sender: str) -> EmailMessage:
    """The MIME email for ``message``; raises ValueError for an unusable address."""
    content = message.content
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to or ""
    # A subject rendered from a multi-line template would otherwise be refused as a header.
    mail["Subject"] = " ".join(content.get("subject", "").split())
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = message_id(message.key, sender)
    mail["X-Journeyman-Key"] = message.key
    for name, value in message.headers.items():
        mail[name] = value  # the email package refuses a line break in either
    text, html = content.get("text"), content.get("html")
    if html and text:
        mail.set_content(text)
        mail.add_alternative(html, subtype="html")
    elif html:
        mail.set_content(html, subtype="html")
    else:
        mail.set_content(text or "")
    return mail


class SmtpChannel(Channel):
    def __init__(
        self,
        name: str,
        *,
        host: str,
        sender: str,
        port: int | None = None,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        rate: float | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.name = name
        self.rate = rate
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.sender = sender
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.local_hostname = local_hostname

    async def send(self, message: SendMessage) -> Delivery:
        if not message.to:
            return Delivery("failed", "the message has no email address to send to")
        problem = address_problem(message.to)
        if problem:
            return Delivery("failed", clip(problem))
        try:
            mail = build_email(message, self.sender)
        except (ValueError, TypeError) as error:
            return Delivery("failed", f"cannot build the email: {error}")
        try:
            _, reply = await aiosmtplib.send(
                mail,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                timeout=self.timeout,
                use_tls=self.security == "tls",
                start_tls=self.security == "starttls",
                local_hostname=self.local_hostname,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            return _for_error(error)
        return Delivery("sent", clip(reply), mail["Message-ID"])


_TRANSIENT = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    OSError,
)


def _for_error(error: Exception) -> Delivery:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        refused = error.recipients[0]
        return _for_code(refused.code, refused.message, recipient=True)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return _for_code(error.code, error.message)
    for problem in (error, error.__cause__):
        if isinstance(problem, ssl.SSLCertVerificationError):
            # Not the server we meant to reach, or a broken setup: no retry fixes either.
            return Delivery("failed", error_detail(problem))
    if isinstance(error, _TRANSIENT):
        # Refused and dropped connections and timeouts: the server may be back soon.
        return Delivery("retry", error_detail(error))
    # The server lacks something this channel needs (STARTTLS, AUTH, SMTPUTF8): sending
    # again will not help, and sending without it (in clear text) is not an option.
    return Delivery("failed", error_detail(error))


def _for_code(code: int, text: str, *, recipient: bool = False) -> Delivery:
    """SMTP says it itself: 5xx is permanent, anything else may work next time. A 5xx
    answer to the recipient (RCPT TO), or one whose enhanced status is 5.1.x (a bad
    mailbox, RFC 3463) at any stage, is a hard bounce: the address itself is refused."""
    reply = f"{code} {text}"
    if not 500 <= code < 600:
        return Delivery("retry", clip(reply))
    if recipient or _BAD_MAILBOX.match(text):
        return Delivery("failed", clip(HARD_BOUNCE + reply))
    return Delivery("failed", clip(reply))


def from_config(reader: ConfigReader, name: str) -> SmtpChannel:
    security = cast(Security, reader.choice("security", SECURITY, "starttls"))
    username, password = _credentials(reader)
    channel = SmtpChannel(
        name,
        host=reader.text("host"),
        port=reader.port("port", DEFAULT_PORTS[security]),
        sender=sender_from_config(reader),
        security=security,
        username=username,
        password=password,
        timeout=reader.seconds("timeout", 10.0),
        rate=reader.rate(),
    )
    if reader.config.get("feedback_secret") is not None:
        channel.feedback_secret = reader.secret("feedback_secret", "ESP_WEBHOOK_SECRET")
    return channel


def sender_from_config(reader: ConfigReader, default: str | None = None) -> str:
    sender = reader.text("from", default)
    if "@" not in parseaddr(sender)[1]:
        raise ChannelConfigError(
            "from",
            f"must be an email address such as 'Example <hello@example.com>', not {sender!r}",
        )
    return sender


def _credentials(reader: ConfigReader) -> tuple[str | None, str | None]:
    """A user name and password, both or neither: one alone is surely a mistake."""
    username = reader.optional_text("username")
    given = reader.config.get("password") is not None
    if given != (username is not None):
        field, other = ("username", "password") if given else ("password", "username")
        raise ChannelConfigError(field, f"is required when '{other}' is given")
    password = reader.secret("password", "SMTP_PASSWORD") if given else None
    return username, password
