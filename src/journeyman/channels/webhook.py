"""Messages as signed HTTP POSTs: the ``webhook`` channel, and ``push`` through a gateway.

```yaml
kind: channel
name: webhook                  # or push, to hand push notifications to your push gateway
type: webhook
url: https://hooks.example.com/journeyman
secret: "${WEBHOOK_SECRET}"    # signs every request; always an environment variable
timeout: 10                    # seconds (or a duration such as 10s), default 10
rate: 50                       # messages per second, default unlimited
allow: [10.0.0.0/8]            # non-public addresses it may call (none by default)
```

The webhook connects only to public addresses, unless ``allow`` names the address, its
network or the url's host name (see :mod:`journeyman.channels.network`); a refused
address is a ``failed`` delivery. Redirects are not followed.

Every message is one ``POST`` with a JSON body::

    {"key": "...", "journey": "welcome", "step": "hello", "profile_id": "u1",
     "template": "hello_push", "channel": "push", "to": "<push token>",
     "content": {"title": "...", "body": "..."}, "at": "2026-01-05T00:00:21Z"}

and these headers:

- ``Idempotency-Key``: the message's idempotency key, the same on every retry of one
  send; deduplicate on it.
- ``X-Journeyman-Timestamp``: when this attempt was made, in seconds since the Unix epoch.
- ``X-Journeyman-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed with the secret,
  of the timestamp, a ``.`` and the raw body.

A receiver verifies a request by computing the same HMAC over the timestamp header, a dot
and the body exactly as received (before any JSON parsing), comparing in constant time,
and refusing timestamps more than a few minutes old, which stops an intercepted request
from being replayed later::

    import hashlib, hmac, time

    def verify(secret: str, body: bytes, timestamp: str, signature: str) -> bool:
        signed = timestamp.encode() + b"." + body
        expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 300
        return fresh and hmac.compare_digest(expected, signature)

(:func:`verify_signature` is this function.) Outcomes: a 2xx answer is ``sent``; 408, 429,
5xx, a timeout or a network error is ``retry``; any other answer (3xx, 4xx) is ``failed``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from journeyman.channels.base import (
    Channel,
    ConfigReader,
    Delivery,
    delivery_for_http_status,
    http_client,
    http_request,
    response_detail,
)
from journeyman.domain.actions import Allow
from journeyman.domain.state import SendMessage

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "sign",
    "verify_signature",
    "webhook_body",
]

SIGNATURE_HEADER = "X-Journeyman-Signature"
TIMESTAMP_HEADER = "X-Journeyman-Timestamp"
KEYS = ("url", "secret", "timeout", "allow")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Journeyman-Signature`` value for ``body`` sent at ``timestamp``."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """Whether a received webhook is genuine and fresh (``tolerance`` seconds)."""
    if not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def webhook_body(message: SendMessage) -> bytes:
    """The JSON body of the POST for ``message``."""
    fields: dict[str, Any] = {
        "key": message.key,
        "journey": message.journey,
        "step": message.step,
        "profile_id": message.profile_id,
        "template": message.template,
        "channel": message.channel,
        "to": message.to,
        "content": message.content,
        "at": message.at,
    }
    return msgspec.json.encode(fields)


class WebhookChannel(Channel):
    def __init__(
        self,
        name: str,
        *,
        url: str,
        secret: str,
        timeout: float = 10.0,
        rate: float | None = None,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
        allow: Allow | None = None,
    ) -> None:
        self.name = name
        self.rate = rate
        self.url = url
        self._secret = secret
        self._clock = clock
        self._owns_client = client is None
        self._client = client or http_client(timeout, allow)

    async def send(self, message: SendMessage) -> Delivery:
        body = webhook_body(message)
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.key,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        response = await http_request(self._client, "POST", self.url, content=body, headers=headers)
        if isinstance(response, Delivery):
            return response
        return delivery_for_http_status(response.status_code, response_detail(response))

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def from_config(reader: ConfigReader, name: str) -> WebhookChannel:
    return WebhookChannel(
        name,
        url=reader.url("url"),
        secret=reader.secret("secret", "WEBHOOK_SECRET"),
        timeout=reader.seconds("timeout", 10.0),
        rate=reader.rate(),
        allow=reader.allow(),
    )
