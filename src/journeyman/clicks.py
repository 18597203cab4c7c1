"""The keyless links that tracked email points at: ``GET /c/{token}`` and ``GET /o/{token}``.

A click verifies its token (message key and link number, signed with the deployment's
secret), finds the message in the outbox and link number ``i`` in its HTML as sent,
records ``message_clicked`` (durably: the event is committed, or stored in JetStream,
before the answer), then answers a 302 to that link's address, exactly as written in the
message. A token that is forged, altered, cut short or for a message or link that does not
exist gets a 404 and records nothing: the address a click leads to only ever comes from a
message journeyman sent, so this is never an open redirect.

The open pixel records ``message_opened`` (``machine: true`` for a mail proxy's fetch, see
:data:`journeyman.domain.tracking.PREFETCHERS`) and answers a 1x1 transparent GIF that
no cache keeps. A bad token gets the same GIF with a 404: the image still draws, and
nothing is recorded.

A ``HEAD`` request answers as a ``GET`` would, and records nothing (link checkers send one).

Every open and click of every message passes here, so, like ingest, :class:`TrackingLinks`
answers straight off the ASGI scope in front of the API: no routing, no request or response
objects. Any other method, and any other path, goes on to the API (a 405, a 404).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from journeyman.domain.state import SendMessage
from journeyman.runtime.processor import Overloaded
from journeyman.runtime.service import Runtime
from journeyman.runtime.tracking import (
    CLICK,
    CLICK_PATH,
    OPEN,
    OPEN_PATH,
    click_event,
    clicked_url,
    open_event,
)

__all__ = ["PIXEL", "TrackingLinks"]

log = logging.getLogger("journeyman.api")

#: The open pixel: a 1x1 transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_CACHE = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]
_RETRY = [*_NO_CACHE, (b"retry-after", b"1")]
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_GIF = (b"content-type", b"image/gif")
_NOT_FOUND = b"no such link: it may have been altered or cut short"
_LATER = b"the click could not be recorded now; try again"
# What a Location header keeps as it is: the characters of a URL (as Starlette's redirect).
_URL_SAFE = ":/%#?=@[]!$&'()*+,;"

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


class TrackingLinks:
    """``GET`` and ``HEAD`` of ``/c/{token}`` and ``/o/{token}`` as bare ASGI, in front of
    ``app``; ``unavailable`` says whether a failure to record is the store's or the bus's
    for the moment (a 503), not a fault (a 500)."""

    def __init__(
        self, runtime: Runtime, unavailable: Callable[[BaseException], bool], app: ASGIApp
    ) -> None:
        self.runtime = runtime
        self.unavailable = unavailable
        self.app = app
        self.routes = {CLICK_PATH: self._click, OPEN_PATH: self._open}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        start, _, token = path.rpartition("/")
        route = self.routes.get(start) if token else None
        if route is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        status, headers, body = await route(scope, token)
        length = (b"content-length", str(len(body)).encode())
        await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
        await send({"type": "http.response.body", "body": body})

    async def _click(self, scope: Scope, token: str) -> Answer:
        try:
            named = await self._message(CLICK, token, 2)
            url = clicked_url(named[0], named[1][1], self.runtime.links.base) if named else None
            if named is None or url is None:
                return 404, [_TEXT, *_NO_CACHE], _NOT_FOUND
            if scope["method"] == "GET":  # durably recorded before the answer
                message, index, now = named[0], named[1][1], self.runtime.processor.now()
                secret = self.runtime.links.secret
                event = click_event(message, url, index, _agent(scope), now, secret)
                await self.runtime.accept([event])
        except Exception as error:
            if not self._for_now(error):
                raise
            return 503, [_TEXT, *_RETRY], _LATER
        return 302, [(b"location", quote(url, safe=_URL_SAFE).encode()), *_NO_CACHE], b""

    async def _open(self, scope: Scope, token: str) -> Answer:
        try:
            named = await self._message(OPEN, token, 1)
            if named is None:
                return 404, [_GIF, *_NO_CACHE], PIXEL
            if scope["method"] == "GET":
                now = self.runtime.processor.now()
                event = open_event(named[0], _agent(scope), now, self.runtime.links.secret)
                await self.runtime.accept([event])
        except Exception as error:
            if not self._for_now(error):
                raise
            return 503, [_GIF, *_RETRY], PIXEL
        return 200, [_GIF, *_NO_CACHE], PIXEL

    async def _message(
        self, purpose: str, token: str, fields: int
    ) -> tuple[SendMessage, tuple[str, ...]] | None:
        """The message a token names, and the token's fields; None for a bad token or a
        message that does not exist."""
        found = self.runtime.links.read(purpose, token)
        if found is None or len(found) != fields:
            return None
        message = await self.runtime.reads.sent_message(found[0])
        return (message, found) if message is not None else None

    def _for_now(self, error: Exception) -> bool:
        """Whether ``error`` says the store or the bus is away or full for the moment (a
        503, nothing recorded), not that journeyman is at fault (a 500)."""
        return isinstance(error, Overloaded) or self.unavailable(error)


def _agent(scope: Scope) -> str:
    """The request's ``User-Agent`` (its first, if it came more than once), or ""."""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            return str(value.decode("latin-1"))
    return ""
