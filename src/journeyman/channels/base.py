"""The interface every delivery channel implements, and what channels share.

A channel takes one rendered :class:`~journeyman.domain.state.SendMessage` and hands it
to a provider. It answers with a :class:`Delivery` and never raises for provider or
network trouble, so the outbox dispatcher only ever looks at one value:

- ``sent``: the provider accepted the message.
- ``retry``: a transient failure (a timeout, a refused connection, SMTP 4xx, HTTP 408,
  429 or 5xx); the dispatcher tries again later with the same idempotency key.
- ``failed``: a permanent failure (SMTP 5xx, any other HTTP 4xx, no address); the
  instance goes down its ``on_error`` path if it has one.

Secrets in channel documents and actions are written as ``${ENV_VAR}`` and read from the
environment; :func:`substitute` fills them in.

HTTP requests go through :func:`http_client`: straight to the host (no proxy, no
redirects), and only to public addresses or those the ``allow`` list names (see
:mod:`journeyman.channels.network`). A refused address is a ``failed`` delivery.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from journeyman.channels.network import RefusedAddress, guarded_transport
from journeyman.domain.actions import Allow, AllowError, fill
from journeyman.domain.reader import describe, did_you_mean
from journeyman.domain.state import SendMessage
from journeyman.domain.times import TimeFormatError, parse_duration
from journeyman.errors import JourneymanError

__all__ = [
    "Channel",
    "ChannelConfigError",
    "ConfigReader",
    "Delivery",
    "MissingVariable",
    "RateLimiter",
    "delivery_for_http_status",
    "substitute",
]

Status = Literal["sent", "retry", "failed"]

# How much of a provider's answer goes into the message log: enough to read the error.
DETAIL_LIMIT = 500
USER_AGENT = "journeyman"

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one attempt to deliver one message."""

    status: Status
    detail: str = ""  # the provider's answer or the error, for the message log
    provider_id: str | None = None  # the provider's id for the message, if it gives one


class Channel(ABC):
    """A provider behind one channel name (``email``, ``sms``, ``push``, ``webhook``)."""

    name: str
    rate: float | None  # messages per second allowed; None = unlimited
    #: The secret a provider signs its feedback with (see :mod:`journeyman.hooks`), if any.
    feedback_secret: str | None = None

    @abstractmethod
    async def send(self, message: SendMessage) -> Delivery:
        """Deliver ``message``; provider and network errors become a :class:`Delivery`."""

    #: Whether :meth:`send_many` does better than one :meth:`send` per message.
    batches: bool = False

    async def send_many(self, messages: Sequence[SendMessage]) -> list[Delivery]:
        """Deliver several messages at once, one outcome each, in order."""
        return list(await asyncio.gather(*(self.send(m) for m in messages)))

    async def close(self) -> None:  # noqa: B027 - a channel may hold nothing to release
        """Release connections; the channel is not used afterwards."""


class ChannelConfigError(JourneymanError, ValueError):
    """A ``kind: channel`` document that cannot be used; names the field and the rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MissingVariable(JourneymanError, LookupError):
    """A ``${NAME}`` reference to an environment variable that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(f"environment variable {name} is not set")
        self.name = name


def substitute(
    text: str,
    env: Mapping[str, str],
    only: Collection[str] | None = None,
    *,
    escaped: bool = False,
) -> str:
    """Replace every ``${NAME}`` in ``text`` with ``env[NAME]``; raises MissingVariable.

    With ``only``, other references stay as written. With ``escaped``, ``text`` is the
    stored text of a call (see :mod:`journeyman.domain.actions`), where ``$$`` stands for
    ``$``: a rendered value can never form a reference there.
    """

    def value(name: str) -> str:
        if only is not None and name not in only:
            return f"${{{name}}}"
        if name not in env:
            raise MissingVariable(name)
        return env[name]

    if escaped:
        return fill(text, value)
    return _REFERENCE.sub(lambda match: value(match.group(1)), text)


def delivery_for_http_status(code: int, detail: str, provider_id: str | None = None) -> Delivery:
    """2xx is sent; 408, 429 and 5xx are worth retrying; anything else is permanent.

    3xx counts as permanent: redirects are not followed, since re-posting a message to
    another address is not something a provider should decide for us.
    """
    if 200 <= code < 300:
        return Delivery("sent", detail, provider_id)
    if code in (408, 429) or code >= 500:
        return Delivery("retry", detail)
    return Delivery("failed", detail)


def clip(text: str) -> str:
    """One line of at most DETAIL_LIMIT characters, for the message log."""
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def error_detail(error: BaseException) -> str:
    """The error's class and message (timeouts often have no message of their own)."""
    text = str(error)
    return clip(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def http_client(timeout: float, allow: Allow | None = None, **options: Any) -> httpx.AsyncClient:
    """A client that connects only to public addresses and those ``allow`` names, and
    follows no redirect (re-sending a message elsewhere is not the provider's call)."""
    return httpx.AsyncClient(
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
        transport=guarded_transport(allow or Allow()),
        follow_redirects=False,
        **options,
    )


async def http_request(
    client: httpx.AsyncClient, method: str, url: str, **options: Any
) -> httpx.Response | Delivery:
    """The provider's response, or the Delivery that a failure to get one amounts to."""
    try:
        return await client.request(method, url, **options)
    except RefusedAddress as error:
        return Delivery("failed", clip(f"{error}; nothing was sent"))
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as error:
        # The request itself is malformed (a bad URL or header): sending it again won't help.
        return Delivery("failed", error_detail(error))
    except httpx.TransportError as error:
        return Delivery("retry", error_detail(error))
    except ValueError as error:
        # httpx refuses header values it cannot encode before anything is sent.
        return Delivery("failed", clip(f"cannot make the request: {error}"))


def response_detail(response: httpx.Response) -> str:
    """The status line and the start of the body, which is where providers explain."""
    return clip(f"{response.status_code} {response.reason_phrase}: {response.text}")


class RateLimiter:
    """Paces sends to at most ``rate`` per second, letting ``burst`` go at once after a lull.

    Each acquisition takes the next free slot, ``1 / rate`` seconds after the previous
    one (a token bucket, kept as the time of the next slot so that no fractions of tokens
    pile up). Waiters are served in arrival order (``asyncio.Lock`` is fair), so a send
    queues behind earlier ones and is never dropped. ``clock`` and ``sleep`` are
    injectable so that tests run on virtual time.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._interval = 1 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf  # the earliest time the next send may go
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until one more message may go out."""
        async with self._lock:
            now = self._clock()
            # After a lull, up to `burst` slots in the past are still free to use.
            slot = max(self._next, now - (self.burst - 1) * self._interval)
            if slot > now:
                await self._sleep(slot - now)
            self._next = slot + self._interval


_COMMON_KEYS = ("kind", "name", "type", "description", "rate")


class ConfigReader:
    """Reads one channel document's fields; the first problem raises ChannelConfigError."""

    def __init__(
        self, config: Mapping[str, Any], env: Mapping[str, str], root: Path | None = None
    ) -> None:
        self.config = config
        self.env = env
        self.root = root  # where relative paths start: the workspace folder

    def check_keys(self, allowed: Collection[str]) -> None:
        """Refuse keys that no channel of this type reads (typos, mostly)."""
        known = (*_COMMON_KEYS, *allowed)
        for key in self.config:
            if key not in known:
                hint = did_you_mean(str(key), known)
                raise ChannelConfigError(str(key), f"unknown key{hint}")

    def text(self, key: str, default: str | None = None) -> str:
        """A non-empty string, required unless there is a default."""
        value = self.optional_text(key)
        if value is not None:
            return value
        if default is None:
            raise ChannelConfigError(key, "is required")
        return default

    def optional_text(self, key: str) -> str | None:
        """A non-empty string or nothing; ``${NAME}`` references in it are filled in."""
        value = self.config.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ChannelConfigError(key, f"must be a non-empty string, not {describe(value)}")
        return self._resolve(key, value)

    def secret(self, key: str, example: str) -> str:
        """A secret, which must come from the environment as ``${NAME}``."""
        value = self.config.get(key)
        if value is None:
            raise ChannelConfigError(key, f"is required: write it as ${{{example}}}")
        if not isinstance(value, str) or not _WHOLE_REFERENCE.fullmatch(value):
            raise ChannelConfigError(
                key,
                f"must be an environment variable reference such as ${{{example}}}, "
                "not the secret itself: secrets never go into workspace files",
            )
        resolved = self._resolve(key, value)
        if not resolved:
            raise ChannelConfigError(key, f"environment variable {value[2:-1]} is empty")
        return resolved

    def seconds(self, key: str, default: float) -> float:
        """A positive number of seconds, or a duration such as ``10s``."""
        value = self.config.get(key, default)
        if isinstance(value, str):
            try:
                value = parse_duration(value).total_seconds()
            except TimeFormatError as error:
                raise ChannelConfigError(key, str(error)) from None
            except OverflowError as error:
                raise ChannelConfigError(key, str(error)) from None
        return self._positive(key, value, "a number of seconds or a duration such as 10s")

    def rate(self) -> float | None:
        value = self.config.get("rate")
        if value is None:
            return None
        return self._positive("rate", value, "a number of messages per second")

    def port(self, key: str, default: int) -> int:
        value = self.config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ChannelConfigError(key, f"must be a port number from 1 to 65535, not {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.config.get(key, default)
        if value not in choices:
            listed = ", ".join(choices)
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            raise ChannelConfigError(key, f"must be one of {listed}, not {value!r}{hint}")
        return str(value)

    def url(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default)
        if not value.startswith(("http://", "https://")):
            raise ChannelConfigError(key, f"must be an http:// or https:// URL, not {value!r}")
        return value

    def is_reference(self, key: str) -> bool:
        """Whether the field is written as one ``${NAME}`` reference to the environment."""
        value = self.config.get(key)
        return isinstance(value, str) and _WHOLE_REFERENCE.fullmatch(value) is not None

    def allow(self) -> Allow:
        """The non-public addresses and host names the channel may call (``allow``)."""
        try:
            return Allow.parse(self.config.get("allow"))
        except AllowError as error:
            raise ChannelConfigError("allow", str(error)) from None

    def _positive(self, key: str, value: object, what: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value < math.inf
        ):
            raise ChannelConfigError(key, f"must be {what} above 0, not {value!r}")
        return float(value)

    def _resolve(self, key: str, value: str) -> str:
        try:
            return substitute(value, self.env)
        except MissingVariable as missing:
            raise ChannelConfigError(key, str(missing)) from None
