"""What the API's HTTP answers and request bodies are made of, apart from any endpoint.

A :class:`Problem` is an error answer with a JSON body naming the field and the rule; an
ingest error's body adds ``code`` and ``message`` where the analytics libraries read
them (:func:`ingest_error`). :func:`read_body` reads a body in chunks within a size
limit, inflating gzip or deflate as it arrives. :func:`store_change` stores what an admin
endpoint changes, or says why not as a Problem a client can retry on.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from starlette.responses import Response
from starlette.types import Receive

from journeyman.web.paths import whole_number

__all__ = [
    "Answer",
    "Disconnected",
    "Problem",
    "answer_of",
    "decoded",
    "ingest_error",
    "json_response",
    "plain",
    "read_body",
    "sdk_fields",
    "store_change",
]

log = logging.getLogger("journeyman.api")
_T = TypeVar("_T")

Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers


class Problem(Exception):
    """An HTTP error with a JSON body naming the field and the rule."""

    def __init__(
        self,
        status: int,
        field: str,
        rule: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.call: Any = None  # the rejected call's decoded body, when there was one
        self.status = status
        self.body = {"error": {"field": field, "rule": rule, "message": message}}
        self.headers = headers


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(data), status, headers, media_type="application/json")


async def store_change(
    accept: Callable[[list[_T]], Awaitable[list[str]]],
    events: list[_T],
    unavailable: Callable[[BaseException], bool],
    what: str,
) -> list[str]:
    """``accept(events)``'s statuses; 429 when too much is queued, 503 when the store or
    the bus is away (``unavailable``), both with Retry-After and nothing changed. Any
    other failure is a fault, raised as it is."""
    from journeyman.runtime.processor import Overloaded  # the runtime builds on this module

    retry = {"Retry-After": "1"}
    try:
        return await accept(events)
    except Overloaded:
        message = "too many events are queued; nothing changed, retry shortly"
        raise Problem(429, "body", "overload", message, retry) from None
    except Exception as error:
        if not unavailable(error):
            raise
        log.warning("%s could not be stored: %r", what, error)
        message = "the change could not be stored; nothing changed, retry"
        raise Problem(503, "body", "storage", message, retry) from None


class Disconnected(Exception):
    """The client went away before its whole body arrived."""


def sdk_fields(error: dict[str, Any], message: str) -> dict[str, str]:
    """``code`` and ``message`` at the top of an ingest error's body: what the Segment and
    RudderStack libraries read from it. Without them RudderStack's Python library fails on
    the body and sends the same call again, ten times, even when retrying cannot help."""
    return {"code": str(error.get("rule", "")), "message": message}


def ingest_error(body: dict[str, Any]) -> dict[str, Any]:
    """An ingest error's body: ``{"error": {field, rule, message}}``, with ``code`` and
    ``message`` beside it for the analytics libraries (see :func:`_sdk`)."""
    error = body["error"]
    return {**body, **sdk_fields(error, f"{error['field']}: {error['message']}")}


async def read_body(receive: Receive, length: str | None, limit: int, encoding: str = "") -> bytes:
    """The body, read in chunks that stop at ``limit``; with ``encoding`` (a
    Content-Encoding: gzip or deflate), inflated as it arrives, ``limit`` bounding both
    what is sent and what it inflates to, so a small body that would inflate to gigabytes
    is refused after ``limit`` bytes of output."""
    inflate = inflater(encoding)
    size = whole_number(length) if length is not None else None
    if size is not None and size > limit:
        raise _too_large(limit)
    # A chunked body has no length to check first.
    chunks, received, inflated, more = [], 0, 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        more = message.get("more_body", False)
        if inflate is not None:
            chunk = inflate_chunk(inflate, chunk, limit - inflated, last=not more)
            inflated += len(chunk)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def inflater(encoding: str) -> Any:
    """A decompressor for a Content-Encoding, None for none; 415 for one not supported."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if name == "deflate":  # zlib-wrapped, as HTTP says, or raw, as some clients send
        return _Deflate()
    raise Problem(
        415,
        "Content-Encoding",
        "enum",
        f"Content-Encoding {encoding[:40]!r} is not supported: send gzip, deflate or none",
    )


def inflate_chunk(inflate: Any, chunk: bytes, room: int, *, last: bool) -> bytes:
    """``chunk`` inflated; 413 once the output would pass ``room``, 400 if it is not
    what its Content-Encoding says."""
    try:
        out: bytes = inflate.decompress(chunk, room + 1)
        if len(out) > room or inflate.unconsumed_tail:
            raise _too_large_inflated(room)
        if last:
            out += inflate.flush()
            if not inflate.eof:
                raise zlib.error("the compressed body ends early")
    except zlib.error as error:
        raise Problem(
            400, "body", "encoding", f"the body is not valid for its Content-Encoding: {error}"
        ) from None
    if len(out) > room:
        raise _too_large_inflated(room)
    return out


class _Deflate:
    """HTTP's ``deflate``: zlib-wrapped, or raw deflate, told apart by the first byte."""

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        out: bytes = self._inner.decompress(data, max_length)
        return out

    def flush(self) -> bytes:
        return b"" if self._inner is None else bytes(self._inner.flush())

    @property
    def unconsumed_tail(self) -> bytes:
        return b"" if self._inner is None else bytes(self._inner.unconsumed_tail)

    @property
    def eof(self) -> bool:
        return self._inner is not None and bool(self._inner.eof)


def decoded(body: bytes) -> Any:
    """The body as JSON data, or a 400 saying why it is not JSON."""
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise Problem(400, "body", "json", f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise Problem(400, "body", "json", "the body nests too deeply") from None


def plain(body: bytes) -> Any:
    """The body as plain JSON data, for the event tail to show; None if it is no JSON."""
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def _too_large(limit: int) -> Problem:
    return Problem(413, "body", "size", f"the body is over {limit // 1024} KiB")


def _too_large_inflated(room: int) -> Problem:
    return Problem(413, "body", "size", "the body inflates to more than the size limit")


def answer_of(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, msgspec.json.encode(body), extra
