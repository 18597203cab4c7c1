"""The keyless routes that tracked email points at: ``GET /c/{token}`` and ``GET /o/{token}``.

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
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

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

__all__ = ["PIXEL", "tracking_routes"]

log = logging.getLogger("journeyman.api")

#: The open pixel: a 1x1 transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
_RETRY = {**_NO_CACHE, "Retry-After": "1"}
_NOT_FOUND = "no such link: it may have been altered or cut short"
_LATER = "the click could not be recorded now; try again"


def tracking_routes(runtime: Runtime, unavailable: Callable[[BaseException], bool]) -> list[Route]:
    """The click and open routes over ``runtime``; ``unavailable`` says whether a failure
    to record is the store's or the bus's for the moment (a 503), not a fault (a 500)."""
    routes = _Routes(runtime, unavailable)
    return [
        Route(CLICK_PATH + "/{token}", routes.click, methods=["GET"]),
        Route(OPEN_PATH + "/{token}", routes.open, methods=["GET"]),
    ]


class _Routes:
    def __init__(self, runtime: Runtime, unavailable: Callable[[BaseException], bool]) -> None:
        self.runtime = runtime
        self.unavailable = unavailable

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

    async def click(self, request: Request) -> Response:
        try:
            return await self._click(request)
        except Exception as error:
            if not self._for_now(error):
                raise
            return PlainTextResponse(_LATER, 503, headers=_RETRY)

    async def open(self, request: Request) -> Response:
        try:
            return await self._open(request)
        except Exception as error:
            if not self._for_now(error):
                raise
            return _pixel(503, _RETRY)

    def _for_now(self, error: Exception) -> bool:
        """Whether ``error`` says the store or the bus is away or full for the moment (a
        503, nothing recorded), not that journeyman is at fault (a 500)."""
        return isinstance(error, Overloaded) or self.unavailable(error)

    async def _click(self, request: Request) -> Response:
        named = await self._message(CLICK, request.path_params["token"], 2)
        url = clicked_url(named[0], named[1][1], self.runtime.links.base) if named else None
        if named is None or url is None:
            return PlainTextResponse(_NOT_FOUND, 404, headers=_NO_CACHE)
        if request.method == "GET":  # durably recorded before the answer
            message, index, now = named[0], named[1][1], self.runtime.processor.now()
            secret = self.runtime.links.secret
            event = click_event(message, url, index, _agent(request), now, secret)
            await self.runtime.accept([event])
        return RedirectResponse(url, 302, headers=_NO_CACHE)

    async def _open(self, request: Request) -> Response:
        named = await self._message(OPEN, request.path_params["token"], 1)
        if named is None:
            return _pixel(404)
        if request.method == "GET":
            now = self.runtime.processor.now()
            event = open_event(named[0], _agent(request), now, self.runtime.links.secret)
            await self.runtime.accept([event])
        return _pixel(200)


def _agent(request: Request) -> str:
    return request.headers.get("user-agent", "")


def _pixel(status: int, headers: dict[str, str] = _NO_CACHE) -> Response:
    return Response(PIXEL, status, headers=headers, media_type="image/gif")
