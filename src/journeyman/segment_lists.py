"""Static lists: operators add profiles to a segment written ``list: true``, and take them out
(admin key).

- ``POST /v1/segments/{name}/members`` ``{"members": [{"userId": "u1"}, {"email":
  "ann@example.com"}]}`` (1 to :data:`MEMBERS_LIMIT` at once): each profile joins the list;
  one named by email is the profile that has that email (or a new one keyed by it, as an
  event named by email makes).
- ``DELETE /v1/segments/{name}/members/{id}``: the profile ``id`` leaves the list.

Each change is taken in as ingest takes events (committed by ``serve``, or stored in
JetStream for the workers) and applied by the one core: a profile that joins or leaves
gets ``segment_entered`` or ``segment_exited``, which journeys enter on (``entry: {segment:
NAME}``) and exit on, and segments that read ``in_segment(NAME)`` follow. Adding a member
twice, or removing one that is not in, changes nothing. A bad body changes nothing and
gets a 4xx naming the field and the rule; ``journeyman import segment`` sends files here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman.domain.core import list_change
from journeyman.domain.ingest import NAME_LIMIT
from journeyman.domain.state import Event
from journeyman.runtime.service import Runtime
from journeyman.wire import Problem, json_response, store_change

__all__ = ["MEMBERS_LIMIT", "segment_list_routes"]

log = logging.getLogger("journeyman.api")

Handler = Callable[[Request], Awaitable[Response]]

MEMBERS_LIMIT = 1000  # members of one request
BODY_LIMIT = 1024 * 1024  # bytes of one request's body


def segment_list_routes(
    runtime: Runtime, guard: Callable[[Handler], Handler], unavailable: Callable[[Any], bool]
) -> list[Route]:
    """The routes, each behind ``guard`` (the admin key); ``unavailable`` says whether a
    failure to store is a 503."""
    lists = _Lists(runtime, unavailable)
    return [
        Route("/v1/segments/{name}/members", guard(lists.add), methods=["POST"]),
        Route(
            "/v1/segments/{name}/members/{profile_id:path}",
            guard(lists.remove),
            methods=["DELETE"],
        ),
    ]


class _Lists:
    def __init__(self, runtime: Runtime, unavailable: Callable[[Any], bool]) -> None:
        self.runtime = runtime
        self.unavailable = unavailable
        self.add = self._add
        self.remove = self._remove

    async def _add(self, request: Request) -> Response:
        name = self._list(request)
        members = read_members(await _body(request))
        now = self.runtime.processor.now()
        events = [list_change(name, True, now, user_id, email) for user_id, email in members]
        await self._accept(events)
        return json_response({"accepted": len(events)}, 202)

    async def _remove(self, request: Request) -> Response:
        name = self._list(request)
        profile_id = request.path_params["profile_id"]
        _check_id(profile_id, "id")
        await self._accept([list_change(name, False, self.runtime.processor.now(), profile_id)])
        return json_response({"accepted": 1}, 202)

    def _list(self, request: Request) -> str:
        name = str(request.path_params["name"])
        segment = self.runtime.workspace.segments.get(name)
        if segment is None:
            raise Problem(404, "name", "exists", f"no segment {name[:200]!r}")
        if not segment.listed:
            message = f"segment {name!r} is no list: its condition decides who is in it"
            raise Problem(409, "name", "list", message)
        return name

    async def _accept(self, events: list[Event]) -> None:
        await store_change(self.runtime.accept, events, self.unavailable, "a list change")


async def _body(request: Request) -> Any:
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise Problem(400, "body", "json", "the body did not arrive whole") from None
    if len(raw) > BODY_LIMIT:
        message = f"the body is larger than {BODY_LIMIT} bytes: send fewer members at once"
        raise Problem(413, "body", "size", message)
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise Problem(400, "body", "json", "the body must be JSON") from None


def read_members(body: Any) -> list[tuple[str, str]]:
    """(userId, "") or ("", email) of each member of ``{"members": [...]}``; raises
    :class:`_Refused` naming the first bad field."""
    if not isinstance(body, dict) or set(body) != {"members"}:
        raise Problem(400, "body", "shape", 'the body must be {"members": [...]}')
    items = body["members"]
    if not isinstance(items, list) or not 1 <= len(items) <= MEMBERS_LIMIT:
        message = f"'members' must be a list of 1 to {MEMBERS_LIMIT} members"
        raise Problem(400, "members", "size", message)
    return [_member(item, f"members[{index}]") for index, item in enumerate(items)]


def _member(item: Any, field: str) -> tuple[str, str]:
    if not isinstance(item, dict) or len(item) != 1 or not set(item) <= {"userId", "email"}:
        message = f'{field} must be {{"userId": ...}} or {{"email": ...}}'
        raise Problem(400, field, "shape", message)
    if "userId" in item:
        return _check_id(item["userId"], f"{field}.userId"), ""
    email = _check_id(item["email"], f"{field}.email")
    if "@" not in email:
        raise Problem(400, f"{field}.email", "email", f"{field}.email is no email address")
    return "", email


def _check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Problem(400, field, "type", f"{field} must be non-empty text")
    if len(value) > NAME_LIMIT:
        message = f"{field} is longer than {NAME_LIMIT} characters"
        raise Problem(400, field, "length", message)
    if "\x00" in value:
        raise Problem(400, field, "characters", f"{field} holds a NUL character (U+0000)")
    return value
