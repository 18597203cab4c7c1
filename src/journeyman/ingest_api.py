"""Ingest over HTTP: ``POST /v1/track`` and the other calls, as bare ASGI in front of the API.

A call with the write or admin key and no ``Origin`` is read straight off the ASGI scope
(:class:`Ingest`); a call from a web page, or with its key in the body or the query, is
held to what :mod:`journeyman.browsers` and the workspace's ``browser:`` settings
(:mod:`journeyman.domain.browser`) allow.
"""

from __future__ import annotations

import base64
import hmac
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from journeyman.browsers import BROWSER_PATHS, Buckets, Cors, body_key, query_key
from journeyman.domain.browser import NotForBrowsers, check_browser_call, from_browser
from journeyman.domain.ingest import (
    Call,
    InvalidEvent,
    decode_batch,
    decode_call,
    decode_item,
    read_call,
)
from journeyman.domain.state import Event
from journeyman.runtime.processor import HeldBack, Overloaded
from journeyman.runtime.service import Runtime
from journeyman.storage import cannot_write_now
from journeyman.web.auth import Network, client_address
from journeyman.wire import (
    Answer,
    Disconnected,
    Problem,
    answer_of,
    ingest_error,
    plain,
    read_body,
    sdk_fields,
)

__all__ = [
    "CALL_PATHS",
    "KEY_CHALLENGE",
    "KEY_PROBLEM",
    "RETRY",
    "Ingest",
    "IngestApi",
    "Keys",
    "authorised",
    "given_key",
    "unavailable",
]

log = logging.getLogger("journeyman.api")

SINGLE_LIMIT = 32 * 1024  # bytes of one call, as Segment allows
BATCH_LIMIT = 512 * 1024
BATCH_EVENTS = 500
IngestHandler = Callable[[bytes], Awaitable[Answer]]  # takes the body as sent
ClientHandler = Callable[[bytes, str], Awaitable[Answer]]  # the body, the client's address


@dataclass(frozen=True, slots=True)
class Keys:
    write: str
    admin: str
    client: str = ""  # public, for web pages: sends only what the workspace lets browsers


class _Route(NamedTuple):
    """How an ingest path takes a call: with a server key, with the client key."""

    server: IngestHandler
    client: ClientHandler
    limit: int  # bytes of the body


class Ingest:
    """``POST /v1/track``, ``/v1/identify`` (and the other calls) and ``/v1/batch`` as bare
    ASGI, in front of ``app``.

    Every event passes here, so ingest reads the key and the body straight off the ASGI
    scope and answers with two sends: no routing, no request or response objects, which
    cost a third of the CPU an event took. Every other path goes on to ``app``.
    """

    def __init__(self, api: IngestApi, app: ASGIApp) -> None:
        self.app = app
        self.api = api
        paths = {f"/v1/{kind}": kind for kind in (*CALL_PATHS, "batch")} | BROWSER_PATHS
        self.paths = {path: api.route(kind) for path, kind in paths.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.paths.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            status, body, headers = await self.api.ingest(scope, receive, route)
        except Disconnected:
            return  # nobody is left to answer; nothing was stored
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Page(NamedTuple):
    """How ingest takes a web page's call: the handler, and the CORS headers its answer
    carries."""

    handler: IngestHandler
    cors: list[tuple[bytes, bytes]]


class IngestApi:
    """Takes ingest calls: reads, checks and commits them, and counts those refused."""

    def __init__(
        self, runtime: Runtime, keys: Keys, proxies: tuple[Network, ...], cors: Cors
    ) -> None:
        self.runtime = runtime
        self.key_bytes = (keys.write.encode(), keys.admin.encode(), keys.client.encode())
        self.proxies = proxies
        self.cors = cors
        self.buckets = Buckets()
        self.rejected = 0

    async def ingest(self, scope: Scope, receive: Receive, route: _Route) -> Answer:
        """One ingest call: the status, the JSON body and extra headers of the answer."""
        authorization, length, encoding, origin = "", None, "", None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"content-encoding":
                encoding = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
        if scope["method"] != "POST":
            return self._not_post(scope["method"], origin)
        role = self.role(given_key(authorization))
        handler, cors = route.server, None
        if role != "server" or origin is not None:  # a page's call, or no server key
            page = self._from_page(scope, route, role, origin, bool(authorization))
            if not isinstance(page, _Page):
                return page
            handler, cors = page
        body = b""
        try:
            body = await read_body(receive, length, route.limit, encoding)
            answer = await handler(body)
        except Problem as problem:
            answer = self._refusal(problem)
        except Disconnected:
            raise
        except Exception:
            # A fault in journeyman, not in the call nor in the storage: it must show.
            log.exception("%s failed for a fault in journeyman", scope["path"])
            self.rejected += 1
            self.runtime.tail.rejected(plain(body), _FAULT["error"], self._now())
            answer = answer_of(500, ingest_error(_FAULT))
        if cors:
            return answer[0], answer[1], answer[2] + cors
        return answer

    def _refusal(self, problem: Problem) -> Answer:
        """The answer to a refused call, counted and shown in the event tail."""
        if problem.status == 401:  # no call of anyone's: not one to count or show
            return answer_of(401, ingest_error(problem.body), problem.headers)
        self.rejected += 1
        status = "unavailable" if problem.status in (429, 503) else "rejected"
        error, at = problem.body["error"], self._now()
        self.runtime.tail.rejected(problem.call, error, at, status=status)
        return answer_of(problem.status, ingest_error(problem.body), problem.headers)

    def _from_page(
        self, scope: Scope, route: _Route, role: str | None, origin: str | None, keyed: bool
    ) -> _Page | Answer:
        """How to take a call from a web page (it has an ``Origin``), with the client key,
        or with its key in the body (``writeKey``, as Segment's browser library sends it)
        or the query (RudderStack's beacon); or the answer, before the body is read. A page
        of an origin not allowed gets no CORS headers."""
        cors = self.cors.headers(origin) if origin is not None else []
        if cors is None:  # shown in the event tail: why a site's calls do not arrive
            refused = _origin_problem(origin or "")
            self.rejected += 1
            self.runtime.tail.rejected(None, refused["error"], self._now())
            return answer_of(403, ingest_error(refused))
        if role is None and keyed:  # a key sent in the header that is no key
            status, body, headers = answer_of(401, ingest_error(KEY_PROBLEM), KEY_CHALLENGE)
            return status, body, headers + cors
        address = self._address(scope)

        async def handle(body: bytes) -> Answer:
            found = role or self.role(body_key(body) or query_key(scope["query_string"]))
            if found is None:
                raise Problem(401, "Authorization", "key", _BODY_KEY_HELP, KEY_CHALLENGE)
            if found == "client":
                return await route.client(body, address)
            if origin is not None:
                raise Problem(403, "Authorization", "secret", _SECRET_HELP)
            return await route.server(body)

        return _Page(handle, cors)

    def _not_post(self, method: str, origin: str | None) -> Answer:
        """A preflight ``OPTIONS`` from a page, or a method ingest does not take."""
        if method == "OPTIONS" and origin is not None:
            headers = self.cors.preflight(origin)
            if headers is None:
                return answer_of(403, ingest_error(_origin_problem(origin)))
            return 204, b"", headers
        problem = Problem(405, "method", "enum", "use POST", {"Allow": "POST"})
        return answer_of(problem.status, ingest_error(problem.body), problem.headers)

    def role(self, given: str) -> str | None:
        """ "server" for the write or admin key, "client" for the client key, else None."""
        if not given:
            return None
        key = given.encode()  # bytes: compare_digest refuses text that is not ASCII
        write, admin, client = self.key_bytes
        if hmac.compare_digest(key, write) or hmac.compare_digest(key, admin):
            return "server"
        if client and hmac.compare_digest(key, client):
            return "client"
        return None

    def _address(self, scope: Scope) -> str:
        """The client's address, as the rate limit counts it (behind trusted proxies, as
        their X-Forwarded-For says)."""
        peer = scope.get("client")
        address = str(peer[0]) if peer else ""
        if not self.proxies:
            return address
        hops = [v.decode("latin-1") for n, v in scope["headers"] if n == b"x-forwarded-for"]
        return client_address(address, ", ".join(hops) or None, self.proxies)

    def _check_rate(self, address: str, cost: int) -> None:
        """429 with Retry-After when ``address`` sent more than the browser rate allows."""
        policy = self.runtime.workspace.settings.browser
        wait = self.buckets.take(address, cost, policy.rate, policy.burst)
        if wait:
            message = f"this address sent more than {policy.rate:g} calls a second; retry later"
            retry = {"Retry-After": str(max(1, math.ceil(wait)))}
            raise Problem(429, "body", "rate", message, retry)

    async def _commit(self, events: list[Event], body: bytes, now: datetime) -> None:
        try:
            statuses = await self.runtime.accept(events)
        except Overloaded:
            message = "too many events are queued; retry shortly"
            problem = Problem(429, "body", "overload", message, RETRY)
        except Exception as error:
            if not unavailable(error):
                raise
            message = "the events could not be stored; nothing was kept, retry"
            problem = Problem(503, "body", "storage", message, RETRY)
        else:
            self.runtime.tail.accepted(events, statuses, now)
            return
        problem.call = plain(body)
        raise problem

    def _now(self) -> datetime:
        return self.runtime.processor.now()

    # ingest

    def route(self, kind: str) -> _Route:
        """How the path of calls of ``kind`` (``track``, ..., ``batch``) takes them."""
        if kind == "batch":
            return _Route(self.batch, self.client_batch, BATCH_LIMIT)
        return _Route(self.single(kind), self.single(kind, client=True), SINGLE_LIMIT)

    def single(self, kind: str, *, client: bool = False) -> Any:
        """The handler of one call of ``kind`` (``track``, ``identify``, ``page``, ...);
        ``client``: one sent with the client key, from ``address``."""

        async def handle(body: bytes, address: str = "") -> Answer:
            if client:
                self._check_rate(address, 1)
            now = self._now()
            try:
                call = decode_call(body, kind)
                if client:
                    call = from_browser(call, self.runtime.workspace.events)
                event = self._read(call, now)
                if client:
                    self._check_browser(event)
            except InvalidEvent as error:
                raise _refused(error, body) from None
            if client and await self._customers([event]):
                raise _refused(_posing(event), body)
            await self._commit([event], body, now)
            return _ACCEPTED_ONE

        return handle

    async def _customers(self, events: list[Event]) -> set[str]:
        """The anonymous ids of ``events`` (sent with the client key) that name a
        customer's profile rather than a visitor's.

        A call with only an anonymous id goes to the profile the server linked that id to
        (an identify with both ids), else to the profile of that very id: a userId's, or an
        email's, as well as a visitor's, for profiles share one space of ids. So an id that
        is an email, or whose profile was ever named by anything but that anonymous id
        (its latest events show it), is a customer's, and a page may not send as it."""
        if self.runtime.workspace.settings.browser.trusted_user_id:
            return set()
        ids = {e.anonymous_id for e in events if e.user_id is None and e.anonymous_id}
        if not ids:
            return set()
        try:
            found = await self.runtime.store.resolve(
                [(kind, value) for value in ids for kind in ("anonymousId", "email")]
            )
            customers = {value for kind, value in found if kind == "email"}
            linked = {value for kind, value in found if kind == "anonymousId"}
            for value in ids - customers - linked:
                history = await self.runtime.reads.history(value, limit=_LOOK_BACK)
                if any(_not_a_visit(stored.event, value) for stored in history):
                    customers.add(value)
        except Exception as error:
            if not unavailable(error):
                raise
            message = "the profiles could not be read; nothing was kept, retry"
            raise Problem(503, "body", "storage", message, RETRY) from None
        return customers

    def _check_browser(self, event: Event) -> None:
        workspace = self.runtime.workspace
        check_browser_call(event, workspace.events, workspace.settings.browser)

    def _read(self, call: Call, now: datetime) -> Event:
        workspace = self.runtime.workspace
        return read_call(call, workspace.events, now, workspace.views)

    def _read_items(
        self, items: list[msgspec.Raw], client: bool
    ) -> tuple[list[tuple[int, Event]], list[tuple[int, InvalidEvent]]]:
        """The calls of a batch read, each by its index, and those refused, with why."""
        kept: list[tuple[int, Event]] = []
        refused: list[tuple[int, InvalidEvent]] = []
        for index, item in enumerate(items):
            try:
                _check_call_size(item)
                call = decode_item(item)
                if client:
                    call = from_browser(call, self.runtime.workspace.events)
                event = self._read(call, self._now())
                if client:
                    self._check_browser(event)
                kept.append((index, event))
            except InvalidEvent as error:
                refused.append((index, error))
        return kept, refused

    async def client_batch(self, body: bytes, address: str) -> Answer:
        return await self.batch(body, address, client=True)

    async def batch(self, body: bytes, address: str = "", *, client: bool = False) -> Answer:
        try:
            items = decode_batch(body)
        except InvalidEvent as error:
            raise Problem(400, error.field, error.rule, error.message) from None
        if len(items) > BATCH_EVENTS:
            raise Problem(400, "batch", "size", f"'batch' holds at most {BATCH_EVENTS} calls")
        if client:
            self._check_rate(address, max(1, len(items)))
        kept, refused = self._read_items(items, client)
        if client:
            customers = await self._customers([event for _, event in kept])
            refused += [(i, _posing(e)) for i, e in kept if e.anonymous_id in customers]
            kept = [(i, e) for i, e in kept if e.anonymous_id not in customers]
        rejected = []
        for index, why in sorted(refused, key=lambda pair: pair[0]):
            reason = why.as_dict()
            rejected.append({"index": index, **reason})
            self.runtime.tail.rejected(plain(items[index]), reason, self._now(), index=index)
        events = [event for _, event in kept]
        self.rejected += len(rejected)
        if not events:
            first = rejected[0] if rejected else {"rule": "required", "message": "no calls"}
            message = f"no call of the batch was kept: {first['message']}"
            forbidden = all(r["rule"] == NotForBrowsers.RULE for r in rejected)
            status = 403 if rejected and forbidden else 400
            return answer_of(
                status, {"accepted": 0, "rejected": rejected, **sdk_fields(first, message)}
            )
        await self._commit(events, body, self._now())
        # 200, not 202: RudderStack's Python library takes nothing else as success.
        return answer_of(200, {"accepted": len(events), "rejected": rejected})


RETRY = {"Retry-After": "1"}
_KEY_HELP = "send the key as 'Authorization: Bearer <key>' or as the HTTP Basic user name"
KEY_PROBLEM = {"error": {"field": "Authorization", "rule": "key", "message": _KEY_HELP}}
KEY_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="journeyman"'}
_BODY_KEY_HELP = f"{_KEY_HELP}, or in the body's 'writeKey'"
_SECRET_HELP = (
    "the write and admin keys are secret and a web page is no place for them: "
    "a page sends with the client key"
)
_FAULT_HELP = "journeyman failed on this call, for a fault of its own; the server log says why"
_FAULT = {"error": {"field": "body", "rule": "internal", "message": _FAULT_HELP}}


# The calls that have a path of their own, /v1/<call>.
CALL_PATHS = ("track", "identify", "page", "screen", "alias", "group")


def given_key(header: str) -> str:
    """The key an Authorization header carries (Bearer, or the Basic user name); ""."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip()).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return ""
    return ""


def _origin_problem(origin: str) -> dict[str, Any]:
    shown = origin[:100]
    message = f"pages of {shown!r} may not send here (serve --cors-origin lists those that may)"
    return {"error": {"field": "Origin", "rule": "cors", "message": message}}


def authorised(header: str, wanted: str, admin: str) -> bool:
    """Whether the Authorization header carries ``wanted`` (or the admin key)."""
    given = given_key(header)
    if not given:
        return False
    # The admin key may do what the write key does. Bytes: compare_digest refuses text
    # that is not ASCII, and a key sent is whatever the client put there.
    key = given.encode()
    return hmac.compare_digest(key, wanted.encode()) or hmac.compare_digest(key, admin.encode())


# Compact JSON is at most this many times as long as what was sent: only numbers grow, and
# the most a number grows is 1e15 (4 characters) to 1000000000000000.0 (18).
_GROWTH = 5


def _check_call_size(call: msgspec.Raw) -> None:
    """A call in a batch is held to the size of a single call (as compact JSON)."""
    if len(call) * _GROWTH <= SINGLE_LIMIT:
        return  # it cannot be over
    size = len(msgspec.json.encode(msgspec.json.decode(call)))
    if size > SINGLE_LIMIT:
        raise InvalidEvent(
            "body", "size", f"the call is {size} bytes, over {SINGLE_LIMIT // 1024} KiB"
        )


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the store or the bus cannot take events now (unreachable,
    full, locked, too slow), so the same call may well be stored later: a 503. Any other
    failure is a fault in journeyman."""
    while isinstance(error, HeldBack):
        error = error.cause
    if cannot_write_now(error):
        return True
    # Imported here: the embedded server has no bus, and this runs only on a failure.
    from journeyman.scaleout.bus import BusUnavailable

    return isinstance(error, BusUnavailable)


# The latest events of a profile that tell a visitor's from a customer's.
_LOOK_BACK = 50


def _not_a_visit(event: Event, anonymous_id: str) -> bool:
    """Whether ``event`` named its profile otherwise than by ``anonymous_id`` alone."""
    return event.user_id is not None or event.anonymous_id != anonymous_id


def _posing(event: Event) -> NotForBrowsers:
    message = (
        "the 'anonymousId' names a customer's profile (a userId or an email); "
        "a page names its visitor by an anonymous id of its own"
    )
    return NotForBrowsers("anonymousId", message)


def _refused(error: InvalidEvent, body: bytes) -> Problem:
    status = 403 if isinstance(error, NotForBrowsers) else 400
    problem = Problem(status, error.field, error.rule, error.message)
    if error.rule != "json":
        problem.call = plain(body)
    return problem


_ACCEPTED_ONE = answer_of(202, {"accepted": 1})
