"""Ingest from web pages: the browser libraries' paths, CORS and the per-address limit.

Segment's analytics.js (``@segment/analytics-next``) posts each call to ``/v1/t``,
``/v1/i``, ``/v1/p``, ``/v1/s``, ``/v1/a`` or ``/v1/g`` (the call's first letter, after
its ``apiHost``, ``api.segment.io/v1`` by default), and batches to ``/v1/b``, as
``Content-Type: text/plain`` with its key in the body's ``writeKey`` (recent versions send
it as HTTP Basic too). RudderStack's JavaScript SDK (``@rudderstack/analytics-js``) posts
to ``/v1/<type>`` (and batches to ``/v1/batch``) with ``Authorization: Basic`` and an
``AnonymousId`` header, and its beacon queue to ``/beacon/v1/batch?writeKey=<key>``.

A request with an ``Origin`` header comes from a web page. Its origin must be one the
server was told (``serve --cors-origin``); the answers to those origins, and to their
preflight ``OPTIONS``, carry ``Access-Control-Allow-Origin``; to any other origin, nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

import msgspec

__all__ = [
    "BROWSER_PATHS",
    "Buckets",
    "Cors",
    "body_key",
    "parse_origins",
    "query_key",
]

# The paths only browser libraries post to, and the call each takes (``/v1/track`` and
# the others of the HTTP API take the client key as well).
BROWSER_PATHS = {
    "/v1/t": "track",
    "/v1/i": "identify",
    "/v1/p": "page",
    "/v1/s": "screen",
    "/v1/a": "alias",
    "/v1/g": "group",
    "/v1/b": "batch",
    "/beacon/v1/batch": "batch",
}

# What a page's request may carry, besides the headers any request may: the key, the
# body's type and encoding, RudderStack's AnonymousId and Segment's retry count.
_ALLOWED_HEADERS = b"authorization, content-type, content-encoding, anonymousid, x-retry-count"
_MAX_AGE = b"600"  # seconds a browser may keep a preflight's answer

Headers = list[tuple[bytes, bytes]]


def parse_origins(values: Iterable[str]) -> frozenset[str]:
    """Origins as ``scheme://host[:port]``, each a comma-separated list of them; a
    ValueError names one that is not an origin (a path, ``*`` or no scheme)."""
    found = set()
    for value in values:
        for text in value.split(","):
            if text.strip():
                found.add(_origin(text.strip()))
    return frozenset(found)


def _origin(text: str) -> str:
    parts = urlsplit(text)
    shape = "an origin is scheme://host[:port], such as https://shop.example.com"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an origin: {shape}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} is not an origin (it has more than one): {shape}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has a port that is not a number") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


class Cors:
    """The origins whose pages may send events, and the headers their answers carry."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        self.origins = frozenset(origins)

    def headers(self, origin: str) -> Headers | None:
        """The CORS headers of an answer to a page of ``origin``; None if it is not one
        of the origins (its answer then carries none)."""
        if origin not in self.origins:
            return None
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", b"retry-after"),
            (b"vary", b"Origin"),
        ]

    def preflight(self, origin: str) -> Headers | None:
        """The headers of the answer to a preflight ``OPTIONS`` from ``origin``."""
        headers = self.headers(origin)
        if headers is None:
            return None
        return [
            *headers,
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", _ALLOWED_HEADERS),
            (b"access-control-max-age", _MAX_AGE),
        ]


class Buckets:
    """A token bucket per client address: ``burst`` calls at once, then ``rate`` a second.

    At most :data:`ADDRESSES` buckets are kept: past that, the full ones (of addresses
    quiet long enough to have nothing owed) are forgotten, and if none is, all are.
    """

    ADDRESSES = 100_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def take(self, address: str, cost: int, rate: float, burst: int) -> float:
        """Take ``cost`` tokens for ``address``: 0.0 if it had them, else the seconds until
        it will (and nothing is taken). A cost over ``burst`` (a large batch) takes a full
        bucket."""
        cost = min(cost, burst)
        now = self.clock()
        tokens, at = self.buckets.get(address, (float(burst), now))
        tokens = min(float(burst), tokens + (now - at) * rate)
        if tokens < cost:
            self.buckets[address] = (tokens, now)
            return (cost - tokens) / rate
        if address not in self.buckets and len(self.buckets) >= self.ADDRESSES:
            self._forget(now, rate, burst)
        self.buckets[address] = (tokens - cost, now)
        return 0.0

    def _forget(self, now: float, rate: float, burst: int) -> None:
        full = [a for a, (t, at) in self.buckets.items() if t + (now - at) * rate >= burst]
        for address in full:
            del self.buckets[address]
        if len(self.buckets) >= self.ADDRESSES:
            self.buckets.clear()


class _Keyed(msgspec.Struct):
    writeKey: str | None = None  # as Segment's body names it


_KEYED = msgspec.json.Decoder(_Keyed)


def body_key(body: bytes) -> str:
    """The ``writeKey`` a Segment browser library puts in the body; "" if there is none."""
    try:
        return _KEYED.decode(body).writeKey or ""
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return ""


def query_key(query: bytes) -> str:
    """The ``writeKey`` of a query string (RudderStack's beacon); "" if there is none."""
    if b"writeKey" not in query:
        return ""
    values = parse_qs(query.decode("latin-1")).get("writeKey", [])
    return values[0] if len(values) == 1 else ""
