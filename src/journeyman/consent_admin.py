"""Operators read and change a profile's consent through the admin API (admin key).

- ``GET /v1/profiles/{id}/consent``: each topic (subscribed or not, by the profile's
  choice or the topic's default), each channel, unsubscribed from all, the suppression
  list, and the audit: who changed what, when (see :mod:`journeyman.web.consent_view`).
- ``PATCH /v1/profiles/{id}/consent`` ``{"topics": {name: bool}, "channels": {name:
  bool}, "unsubscribed": bool, "by": "..."}``: records ``unsubscribed`` /
  ``resubscribed`` events with ``source: operator`` and ``by``.
- ``POST /v1/profiles/{id}/suppressions`` ``{"address", "reason", "by"}``: records
  ``address_suppressed``; ``DELETE /v1/profiles/{id}/suppressions/{address}?by=...``
  records ``address_unsuppressed``.

A change is a consent event like those of the one-click link or a bounce, taken in as
ingest takes events (committed by ``serve``, or stored in JetStream for the workers), so
it shows in the history, can drive journeys, and is applied alike everywhere. What would
change nothing records nothing (``200``, ``recorded: []``); what records anything answers
``202``. A bad body changes nothing and gets a 4xx naming the field and the rule.

A profile id may hold ``/``. These paths are told apart on the path as sent: their last
segments (``consent``, ``suppressions``, ``suppressions/{address}``) must be written as
such, and everything between ``/v1/profiles/`` and them is the id, percent-decoded. So
``/v1/profiles/a/b/consent`` is the consent of ``a/b``, and a profile whose id ends in
``/consent`` is read at ``GET /v1/profiles/{id}`` with that slash sent as ``%2F``.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from journeyman.domain import consent
from journeyman.domain.model import CHANNELS
from journeyman.domain.state import Event, Profile
from journeyman.runtime.service import Runtime
from journeyman.web.consent_view import consent_of
from journeyman.wire import Problem, json_response, store_change

__all__ = ["changed_by", "consent_admin_routes", "known_fields", "object_body"]

log = logging.getLogger("journeyman.api")

Handler = Callable[[Request], Awaitable[Response]]

BODY_LIMIT = 16 * 1024  # bytes of a change's body
TEXT_LIMIT = 200  # characters of `by` and `reason`
ADDRESS_LIMIT = 320  # characters of an address (the longest email address)
SOURCE = "operator"
_PREFIX = "/v1/profiles/"


def consent_admin_routes(
    runtime: Runtime, guard: Callable[[Handler], Handler], unavailable: Callable[[Any], bool]
) -> list[Route]:
    """The routes, each behind ``guard`` (the admin key); ``unavailable`` says whether a
    failure to store is a 503. They go before ``/v1/profiles/{id}``, which would take
    their paths as ids."""
    admin = _ConsentAdmin(runtime, unavailable)
    return [
        _ProfileRoute(("consent",), guard(admin.read), ["GET"]),
        _ProfileRoute(("consent",), guard(admin.change), ["PATCH"]),
        _ProfileRoute(("suppressions",), guard(admin.suppress), ["POST"]),
        _ProfileRoute(("suppressions", None), guard(admin.unsuppress), ["DELETE"]),
    ]


class _ProfileRoute(Route):
    """``/v1/profiles/{id}/<tail>``, matched on the path as sent (see the module): a
    ``None`` in ``tail`` is the ``address`` segment."""

    def __init__(self, tail: tuple[str | None, ...], endpoint: Handler, methods: list[str]):
        shown = "/".join("{address}" if part is None else part for part in tail)
        super().__init__(f"{_PREFIX}{{profile_id:path}}/{shown}", endpoint, methods=methods)
        self.tail = tail

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        params = _split(scope, self.tail) if scope["type"] == "http" else None
        if params is None:
            return Match.NONE, {}
        params = {**scope.get("path_params", {}), **params}
        child = {"endpoint": self.endpoint, "path_params": params}
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child
        return Match.FULL, child


def _split(scope: Scope, tail: tuple[str | None, ...]) -> dict[str, str] | None:
    """The profile id (and address) of a path ending in ``tail``, or None."""
    raw = scope.get("raw_path")
    # Some clients put the query in raw_path; ASGI servers do not.
    path = raw.split(b"?", 1)[0].decode("latin-1") if raw else scope["path"]
    if not path.startswith(_PREFIX):
        return None
    parts = path[len(_PREFIX) :].split("/")
    if len(parts) <= len(tail):
        return None
    ending = parts[-len(tail) :]
    params = {}
    for wanted, part in zip(tail, ending, strict=True):
        if wanted is None:
            params["address"] = unquote(part)
        elif part != wanted:
            return None
    params["profile_id"] = unquote("/".join(parts[: -len(tail)]))
    return params if params["profile_id"] else None


class _ConsentAdmin:
    def __init__(self, runtime: Runtime, unavailable: Callable[[Any], bool]) -> None:
        self.runtime = runtime
        self.unavailable = unavailable
        self.read = self._read
        self.change = self._change
        self.suppress = self._suppress
        self.unsuppress = self._unsuppress

    async def _read(self, request: Request) -> Response:
        profile = await self._profile(request)
        return json_response(await consent_of(self.runtime, profile))

    async def _change(self, request: Request) -> Response:
        profile = await self._profile(request)
        body = await object_body(request)
        known_fields(body, ("topics", "channels", "unsubscribed", "by"))
        by = changed_by(body.get("by"))
        workspace = self.runtime.workspace
        topics = _choices(body, "topics", workspace.subscriptions, "topic")
        channels = _choices(body, "channels", _channels(self.runtime), "channel")
        everything = body.get("unsubscribed")
        if everything is not None and not isinstance(everything, bool):
            raise Problem(400, "unsubscribed", "type", "'unsubscribed' must be true or false")
        if not (topics or channels or everything is not None):
            message = "give at least one of 'topics', 'channels' or 'unsubscribed'"
            raise Problem(400, "body", "required", message)
        wanted = [_wish(value, topic=name) for name, value in topics.items()]
        wanted += [_wish(value, channel=name) for name, value in channels.items()]
        if everything is not None:
            wanted.append(_wish(not everything))
        return await self._record(self._new(profile, wanted, by))

    async def _suppress(self, request: Request) -> Response:
        profile = await self._profile(request)
        body = await object_body(request)
        known_fields(body, ("address", "reason", "by"))
        by = changed_by(body.get("by"))
        address = _address(body.get("address"))
        reason = body.get("reason", "operator")
        _text(reason, "reason")
        what = {"address": address, "reason": reason.strip() or "operator"}
        return await self._record(self._new(profile, [("address_suppressed", what)], by))

    async def _unsuppress(self, request: Request) -> Response:
        profile = await self._profile(request)
        address = _address(request.path_params["address"])
        given = request.query_params.getlist("by")
        if len(given) > 1:
            raise Problem(400, "by", "repeated", f"'by' is given {len(given)} times; give it once")
        by = changed_by(given[0] if given else None)
        if consent.address_key(address) not in profile.suppressed:
            raise Problem(404, "address", "exists", f"{address!r} is not suppressed")
        what = {"address": address}
        return await self._record(self._new(profile, [("address_unsuppressed", what)], by))

    def _new(
        self, profile: Profile, wanted: list[tuple[str, dict[str, Any]]], by: str
    ) -> list[Event]:
        """The events of ``wanted`` that change something, in turn."""
        now, topics = self.runtime.processor.now(), self.runtime.workspace.subscriptions
        events, current = [], profile
        for name, where in wanted:
            topic = where.get("topic")
            if topic and consent.topic_wanted(current.traits, topic, topics) == (
                name == "resubscribed"
            ):
                continue  # already so, by choice or by the topic's default
            properties = {**where, "source": SOURCE, "by": by}
            event = Event(name=name, profile_id=profile.id, timestamp=now, properties=properties)
            after = consent.apply(current, event)
            if after is not None:
                events.append(event)
                current = after
        return events

    async def _record(self, events: list[Event]) -> Response:
        if events:
            await self._accept(events)
        recorded = [
            {"at": e.timestamp, "event": e.name, **(consent.change(e) or {})} for e in events
        ]
        return json_response({"recorded": recorded}, 202 if events else 200)

    async def _accept(self, events: list[Event]) -> None:
        statuses = await store_change(
            self.runtime.accept, events, self.unavailable, "a consent change"
        )
        # Shown with the API's ingest on the console's events page.
        self.runtime.tail.accepted(events, statuses, self.runtime.processor.now())

    async def _profile(self, request: Request) -> Profile:
        profile_id = request.path_params["profile_id"]
        # No id holds a NUL (ingest refuses one), and PostgreSQL cannot be asked for one.
        found = None if "\x00" in profile_id else await self.runtime.reads.profile(profile_id)
        if found is None:
            raise Problem(404, "profile_id", "exists", f"no profile {profile_id[:200]!r}")
        return found


def _wish(wanted: bool, **where: str) -> tuple[str, dict[str, Any]]:
    return ("resubscribed" if wanted else "unsubscribed", where)


def _channels(runtime: Runtime) -> set[str]:
    """The channels a profile may be given or refused consent for."""
    workspace = runtime.workspace
    return {*CHANNELS, *workspace.channels, *consent.consent_channels(workspace)}


async def object_body(request: Request) -> dict[str, Any]:
    """The body as a JSON object: 413 over :data:`BODY_LIMIT`, 400 if not one."""
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > BODY_LIMIT:
                raise Problem(413, "body", "size", f"the body is over {BODY_LIMIT // 1024} KiB")
    except ClientDisconnect:
        raise Problem(400, "body", "incomplete", "the body did not arrive whole") from None
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise Problem(400, "body", "json", f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise Problem(400, "body", "json", "the body nests too deeply") from None
    if not isinstance(data, dict):
        raise Problem(400, "body", "type", "the body must be a JSON object")
    return data


def known_fields(body: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    for name in body:
        if name not in fields:
            allowed = ", ".join(fields)
            raise Problem(400, _shown(name), "unknown", f"unknown field; the fields are {allowed}")


def _choices(
    body: Mapping[str, Any], field: str, known: Mapping[str, Any] | set[str], what: str
) -> dict[str, bool]:
    """``body[field]``: {name: true | false} of names in ``known``."""
    given = body.get(field, {})
    if not isinstance(given, dict):
        raise Problem(400, field, "type", f"'{field}' must map {what} names to true or false")
    for name, value in given.items():
        where = f"{field}.{_shown(name)}"
        if name not in known:
            names = ", ".join(sorted(known)) or "none"
            raise Problem(400, where, "exists", f"no {what} {_shown(name)!r}; known: {names}")
        if not isinstance(value, bool):
            raise Problem(400, where, "type", f"'{where}' must be true or false")
    return given


def changed_by(value: Any) -> str:
    """Who makes the change: required, as the audit shows it."""
    if value is None:
        raise Problem(400, "by", "required", "'by' must say who makes the change (an email)")
    text = _text(value, "by").strip()
    if not text:
        raise Problem(400, "by", "required", "'by' must say who makes the change (an email)")
    return text


def _address(value: Any) -> str:
    if value is None:
        raise Problem(400, "address", "required", "'address' is required")
    text = _text(value, "address", ADDRESS_LIMIT).strip()
    if not text:
        raise Problem(400, "address", "required", "'address' must not be empty")
    return text


def _text(value: Any, field: str, limit: int = TEXT_LIMIT) -> str:
    """A short line of text: no control characters (NUL included), at most ``limit``."""
    if not isinstance(value, str):
        raise Problem(400, field, "type", f"'{field}' must be a string")
    if len(value) > limit:
        raise Problem(400, field, "length", f"'{field}' is over {limit} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        message = f"'{field}' must not hold control characters (a NUL, a line break, ...)"
        raise Problem(400, field, "characters", message)
    return value


def _shown(name: str) -> str:
    """A name from the body, short and printable, to name it in an error."""
    cut = name[:60]
    return "".join(c if c.isprintable() else "?" for c in cut)
