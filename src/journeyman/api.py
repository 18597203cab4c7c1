"""The HTTP API: Segment-shaped ingest, and admin reads over a running :class:`Runtime`.

Ingest (write key): ``POST /v1/track``, ``/v1/identify``, ``/v1/page``, ``/v1/screen``,
``/v1/alias``, ``/v1/group``, ``/v1/batch``. A 202 means the
events are committed to disk. Admin (admin key): journeys, profiles (and their consent,
:mod:`journeyman.consent_admin`) and the message log.
``GET /openapi.json`` describes every endpoint; ``GET /healthz`` (liveness), ``GET /readyz``
(readiness) and ``GET /metrics`` need no key.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import logging
import statistics
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from journeyman.clicks import tracking_routes
from journeyman.consent_admin import consent_admin_routes
from journeyman.consent_api import consent_routes
from journeyman.domain.ingest import (
    Call,
    InvalidEvent,
    decode_batch,
    decode_call,
    decode_item,
    read_call,
)
from journeyman.domain.model import Journey, Step
from journeyman.domain.state import Event
from journeyman.hooks import feedback_routes
from journeyman.openapi import SPEC, docs_page
from journeyman.runtime.processor import HeldBack, Overloaded
from journeyman.runtime.service import Runtime
from journeyman.segment_lists import segment_list_routes
from journeyman.storage import cannot_write_now
from journeyman.web import ConsoleSettings, console, views
from journeyman.web.paths import LARGEST, exact, whole_number
from journeyman.workspace import load_texts

__all__ = ["Keys", "create_app"]

log = logging.getLogger("journeyman.api")

SINGLE_LIMIT = 32 * 1024  # bytes of one call, as Segment allows
BATCH_LIMIT = 512 * 1024
BATCH_EVENTS = 500
WORKSPACE_LIMIT = 8 * 1024 * 1024
READY_TIMEOUT = 5.0  # seconds the store has to answer /readyz's read
FAILURE_SECONDS = 60.0  # how long a failed commit makes /healthz degraded and /readyz 503

Handler = Callable[[Request], Awaitable[Response]]
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers
IngestHandler = Callable[[bytes], Awaitable[Answer]]  # takes the body as sent


@dataclass(frozen=True, slots=True)
class Keys:
    write: str
    admin: str


class _Problem(Exception):
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


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(data), status, headers, media_type="application/json")


def create_app(
    runtime: Runtime, keys: Keys, console_settings: ConsoleSettings | None = None
) -> ASGIApp:
    """The API at ``/v1/``, and the web console at ``/`` (see :mod:`journeyman.web`)."""
    settings = console_settings or ConsoleSettings()
    api = _Api(runtime, keys, settings)
    routes: list[Route | Mount] = [
        Route("/v1/journeys", api.guard(api.journeys), methods=["GET"]),
        Route("/v1/journeys/{name}", api.guard(api.journey), methods=["GET"]),
        Route(
            "/v1/journeys/{name}/{command:str}",
            api.guard(api.operate),
            methods=["POST"],
        ),
        Route("/v1/workspace", api.guard(api.workspace), methods=["PUT"]),
        # Before /v1/profiles/{id}, which would take their paths for ids.
        *consent_admin_routes(runtime, api.guard, _unavailable),
        Route("/v1/profiles/{profile_id:path}", api.guard(api.profile), methods=["GET"]),
        Route("/v1/segments", api.guard(api.segments), methods=["GET"]),
        Route("/v1/segments/{name}/members", api.guard(api.segment_members), methods=["GET"]),
        *segment_list_routes(runtime, api.guard, _unavailable),
        Route("/v1/messages", api.guard(api.messages), methods=["GET"]),
        Route("/v1/events", api.guard(api.events), methods=["GET"]),
        Route("/v1/dead-letters", api.guard(api.dead_letters), methods=["GET"]),
        Route(
            "/v1/dead-letters/{id:digits}",
            api.guard(api.delete_dead_letter),
            methods=["DELETE"],
        ),
        Route(
            "/v1/dead-letters/{id:digits}/replay",
            api.guard(api.replay_dead_letter),
            methods=["POST"],
        ),
        *tracking_routes(runtime, _unavailable),
        Route("/healthz", api.health, methods=["GET"]),
        Route("/readyz", api.ready, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/docs", api.docs, methods=["GET"]),
        *consent_routes(runtime, _unavailable),
        *_console_api(api),
        *feedback_routes(runtime, _unavailable),
        console(runtime, keys.admin, settings),
    ]
    exact(routes)
    app = Starlette(routes=routes, exception_handlers={HTTPException: _no_route})
    return _Ingest(api, app)


class _Ingest:
    """``POST /v1/track``, ``/v1/identify`` (and the other calls) and ``/v1/batch`` as bare
    ASGI, in front of ``app``.

    Every event passes here, so ingest reads the key and the body straight off the ASGI
    scope and answers with two sends: no routing, no request or response objects, which
    cost a third of the CPU an event took. Every other path goes on to ``app``.
    """

    def __init__(self, api: _Api, app: ASGIApp) -> None:
        self.app = app
        self.api = api
        self.paths: dict[str, tuple[IngestHandler, int]] = {
            f"/v1/{kind}": (api.single(kind), SINGLE_LIMIT) for kind in CALL_PATHS
        }
        self.paths["/v1/batch"] = (api.batch, BATCH_LIMIT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.paths.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            status, body, headers = await self.api.ingest(scope, receive, *route)
        except _Disconnected:
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


class _Disconnected(Exception):
    """The client went away before its whole body arrived."""


def _console_api(api: _Api) -> list[Route]:
    """The admin endpoints that answer what the console's pages show."""
    return [
        Route(
            "/v1/journeys/{name}/steps/{step}",
            api.guard(api.journey_step),
            methods=["GET"],
        ),
        Route(
            "/v1/journeys/{name}/versions/{version:digits}",
            api.guard(api.journey_version),
            methods=["GET"],
        ),
        Route("/v1/profiles", api.guard(api.profiles), methods=["GET"]),
        Route("/v1/workspace", api.guard(api.workspace_status), methods=["GET"]),
        Route("/v1/mail", api.guard(api.mail), methods=["GET"]),
    ]


class _Api:
    def __init__(self, runtime: Runtime, keys: Keys, settings: ConsoleSettings) -> None:
        self.runtime = runtime
        self.keys = keys
        self.mail_file = settings.mail_file
        self.rejected = 0

    # plumbing

    def guard(self, handler: Handler) -> Handler:
        """Require the admin key, and turn a _Problem into its JSON answer."""

        async def guarded(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            if not _authorised(header, self.keys.admin, self.keys.admin):
                return _json(_KEY_PROBLEM, 401, _KEY_CHALLENGE)
            try:
                return await handler(request)
            except _Problem as problem:
                return _json(problem.body, problem.status, problem.headers)
            except _Disconnected:
                return Response(status_code=400)  # gone before its body came: nobody reads it

        return guarded

    async def ingest(
        self, scope: Scope, receive: Receive, handler: IngestHandler, limit: int
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """One ingest call: the status, the JSON body and extra headers of the answer."""
        if scope["method"] != "POST":
            problem = _Problem(405, "method", "enum", "use POST", {"Allow": "POST"})
            return _answer(problem.status, _ingest_error(problem.body), problem.headers)
        authorization, length, encoding = "", None, ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"content-encoding":
                encoding = value.decode("latin-1")
        if not _authorised(authorization, self.keys.write, self.keys.admin):
            return _answer(401, _ingest_error(_KEY_PROBLEM), _KEY_CHALLENGE)
        body = b""
        try:
            body = await _read_body(receive, length, limit, encoding)
            return await handler(body)
        except _Problem as problem:
            self.rejected += 1
            status = "unavailable" if problem.status in (429, 503) else "rejected"
            error, at = problem.body["error"], self._now()
            self.runtime.tail.rejected(problem.call, error, at, status=status)
            return _answer(problem.status, _ingest_error(problem.body), problem.headers)
        except _Disconnected:
            raise
        except Exception:
            # A fault in journeyman, not in the call nor in the storage: it must show.
            log.exception("%s failed for a fault in journeyman", scope["path"])
            self.rejected += 1
            self.runtime.tail.rejected(_plain(body), _FAULT["error"], self._now())
            return _answer(500, _ingest_error(_FAULT))

    async def _commit(self, events: list[Event], body: bytes, now: datetime) -> None:
        try:
            statuses = await self.runtime.accept(events)
        except Overloaded:
            message = "too many events are queued; retry shortly"
            problem = _Problem(429, "body", "overload", message, _RETRY)
        except Exception as error:
            if not _unavailable(error):
                raise
            message = "the events could not be stored; nothing was kept, retry"
            problem = _Problem(503, "body", "storage", message, _RETRY)
        else:
            self.runtime.tail.accepted(events, statuses, now)
            return
        problem.call = _plain(body)
        raise problem

    def _now(self) -> datetime:
        return self.runtime.processor.now()

    # ingest

    def single(self, kind: str) -> IngestHandler:
        """The handler of one call of ``kind`` (``track``, ``identify``, ``page``, ...)."""

        async def handle(body: bytes) -> Answer:
            now = self._now()
            try:
                event = self._read(decode_call(body, kind), now)
            except InvalidEvent as error:
                raise _refused(error, body) from None
            await self._commit([event], body, now)
            return _ACCEPTED_ONE

        return handle

    def _read(self, call: Call, now: datetime) -> Event:
        workspace = self.runtime.workspace
        return read_call(call, workspace.events, now, workspace.views)

    async def batch(self, body: bytes) -> Answer:
        try:
            items = decode_batch(body)
        except InvalidEvent as error:
            raise _Problem(400, error.field, error.rule, error.message) from None
        if len(items) > BATCH_EVENTS:
            raise _Problem(400, "batch", "size", f"'batch' holds at most {BATCH_EVENTS} calls")
        events, rejected = [], []
        for index, item in enumerate(items):
            try:
                _check_call_size(item)
                events.append(self._read(decode_item(item), self._now()))
            except InvalidEvent as error:
                rejected.append({"index": index, **error.as_dict()})
                self.runtime.tail.rejected(_plain(item), error.as_dict(), self._now(), index=index)
        self.rejected += len(rejected)
        if not events:
            first = rejected[0] if rejected else {"rule": "required", "message": "no calls"}
            message = f"no call of the batch was kept: {first['message']}"
            return _answer(400, {"accepted": 0, "rejected": rejected, **_sdk(first, message)})
        await self._commit(events, body, self._now())
        # 200, not 202: RudderStack's Python library takes nothing else as success.
        return _answer(200, {"accepted": len(events), "rejected": rejected})

    # admin

    async def journeys(self, request: Request) -> Response:
        found = await views.journeys_overview(self.runtime, self._now())
        return _json({"journeys": found})

    async def journey(self, request: Request) -> Response:
        """GET /v1/journeys/{name}?version=N|all: counts of one version (the latest by
        default), or of every version on the latest one's steps."""
        found = await self._journey(request)
        version = _params(request, "version").get("version", "")
        if version not in ("", "all"):
            number = whole_number(version)
            if number is None:
                raise _Problem(400, "version", "type", "'version' must be a number or 'all'")
            # No store keeps a version after the latest (nor can it be asked for a number
            # that large).
            older = None
            if number <= found.version:
                older = await views.version_of(self.runtime, found, number)
            if older is None:
                raise _Problem(404, "version", "exists", f"{found.name} has no version {version}")
            found = older
        summary = _journey_summary(found, await self.runtime.store.journey_states())
        if found.name not in self.runtime.workspace.journeys:
            summary["state"] = "removed"
        counted = None if version == "all" else found.version
        counts = await self.runtime.reads.step_counts(found.name, counted)
        summary["counts_version"] = "all" if counted is None else counted
        summary["entered"] = counts.get("", {}).get("entered", 0)
        summary["not_entered"] = counts.get("", {}).get("not_entered", 0)
        summary["steps"] = [_step_summary(s, counts.get(s.id, {})) for s in found.steps.values()]
        summary["definition"] = found.document
        return _json(summary)

    async def _journey(self, request: Request) -> Journey:
        """The workspace's journey, or the last version of one removed from it."""
        name = request.path_params["name"]
        found = await views.find_journey(self.runtime, name)
        if found is None:
            raise _Problem(404, "name", "exists", f"no journey named {name!r}")
        return found[0]

    async def operate(self, request: Request) -> Response:
        """POST /v1/journeys/{name}/pause | resume | stop."""
        journey = await self._journey(request)
        command = request.path_params["command"]
        if command == "pause":
            await self.runtime.pause_journey(journey.name)
            return _json({"journey": journey.name, "state": "paused"})
        if command == "resume":
            held = await self._instances_told(self.runtime.resume_journey(journey.name))
            return _json({"journey": journey.name, "state": "active", "resumed": held})
        if command == "stop":
            stopped = await self._instances_told(self.runtime.stop_journey(journey.name))
            return _json({"journey": journey.name, "state": "stopped", "stopped": stopped})
        raise _Problem(404, "command", "enum", "the command must be pause, resume or stop")

    async def _instances_told(self, giving: Awaitable[int]) -> int:
        """How many instances a stop or resume reached; 429 or 503 if it could not reach
        them all (giving it again is safe: an instance takes it once)."""
        try:
            return await giving
        except Overloaded:
            message = "too much is queued to give the command to every instance; retry shortly"
            raise _Problem(429, "command", "overload", message, _RETRY) from None
        except Exception:
            log.exception("a journey command failed")
            message = "the command could not be given to every instance; retry"
            raise _Problem(503, "command", "storage", message, _RETRY) from None

    async def workspace(self, request: Request) -> Response:
        """PUT /v1/workspace {files: {name: yaml}}: validate and publish (or only plan)."""
        dry_run = _params(request, "dry_run").get("dry_run", "false")
        if dry_run not in _FLAGS:
            raise _Problem(400, "dry_run", "enum", "'dry_run' must be true, false, 1 or 0")
        length = request.headers.get("content-length")
        body = _decoded(await _read_body(request.receive, length, WORKSPACE_LIMIT))
        files = body.get("files") if isinstance(body, dict) else None
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise _Problem(400, "files", "type", "'files' must map file names to their text")
        loaded = load_texts(files, self.runtime.root)
        problems = [p.as_dict() for p in loaded.problems]
        if loaded.workspace is None:
            return _json({"published": False, "problems": problems}, 422)
        planned = _FLAGS[dry_run]
        plan = await self.runtime.publish(loaded.workspace, dry_run=planned)
        return _json({"published": not planned, "plan": plan.as_dict(), "problems": problems})

    async def profile(self, request: Request) -> Response:
        profile_id = request.path_params["profile_id"]
        # No id holds a NUL (ingest refuses one), and PostgreSQL cannot be asked for one.
        shown = None if "\x00" in profile_id else await views.profile_view(self.runtime, profile_id)
        if shown is None:
            raise _Problem(404, "profile_id", "exists", f"no profile {profile_id!r}")
        return _json(shown)

    async def segments(self, request: Request) -> Response:
        """GET /v1/segments: every segment's definition and how many profiles it has."""
        sizes = await self.runtime.reads.segment_sizes()
        shown = [
            {
                "name": segment.name,
                "description": segment.description,
                "when": None if segment.listed else segment.when.source,
                "list": segment.listed,
                "size": sizes.get(segment.name, 0),
            }
            for segment in self.runtime.workspace.segments.values()
        ]
        return _json({"segments": sorted(shown, key=lambda s: s["name"])})

    async def segment_members(self, request: Request) -> Response:
        """GET /v1/segments/{name}/members?after=&limit=: a page of members, by profile id."""
        name = request.path_params["name"]
        if name not in self.runtime.workspace.segments:
            raise _Problem(404, "name", "exists", f"no segment {name!r}")
        query = _params(request, "after", "limit")
        limit, after = _limit(query.get("limit", "100")), query.get("after", "")
        if "\x00" in after:
            raise _Problem(400, "after", "value", "'after' must be a profile id, without NUL")
        rows = await self.runtime.reads.segment_members(name, after, limit)
        members = [{"profile_id": profile_id, "since": since} for profile_id, since in rows]
        following = members[-1]["profile_id"] if len(members) == limit else None
        return _json({"segment": name, "members": members, "next": following})

    async def messages(self, request: Request) -> Response:
        query = _params(request, "limit", "profile", "journey", "status")
        limit = _limit(query.get("limit", "100"))
        filters = {name: query.get(name) for name in ("profile", "journey", "status")}
        if any("\x00" in value for value in filters.values() if value is not None):
            return _json({"messages": []})  # no message has one: none is stored
        rows = await self.runtime.reads.messages(**filters, limit=limit)
        return _json({"messages": [dataclasses.asdict(row) for row in rows]})

    async def events(self, request: Request) -> Response:
        query = _params(request, "limit", "after", "status", "event", "profile")
        limit, after = _limit(query.get("limit", "100")), whole_number(query.get("after", "0"))
        if after is None:
            raise _Problem(400, "after", "type", "'after' must be a whole number (an entry's seq)")
        status = query.get("status")
        if status is not None and status not in _TAIL_STATUSES:
            allowed = ", ".join(_TAIL_STATUSES)
            raise _Problem(400, "status", "enum", f"'status' must be one of {allowed}")
        entries = self.runtime.tail.entries(
            after=after,
            name=query.get("event"),
            profile=query.get("profile"),
            status=status,
            limit=limit,
        )
        return _json({"events": await views.explain(self.runtime, entries)})

    # admin: dead letters

    async def dead_letters(self, request: Request) -> Response:
        """GET /v1/dead-letters?limit=: the messages workers could not apply, newest first."""
        limit = _limit(_params(request, "limit").get("limit", "100"))
        return _json(await views.dead_letters(self.runtime, limit))

    async def delete_dead_letter(self, request: Request) -> Response:
        """DELETE /v1/dead-letters/{id}: give a message up for good."""
        letter_id = request.path_params["id"]
        if letter_id > LARGEST or not await self.runtime.reads.delete_dead_letter(letter_id):
            raise _no_dead_letter(letter_id)
        return _json({"id": letter_id, "deleted": True})

    async def replay_dead_letter(self, request: Request) -> Response:
        """POST /v1/dead-letters/{id}/replay: send the message on again, then forget it."""
        letter_id = request.path_params["id"]
        letter = None if letter_id > LARGEST else await self.runtime.reads.dead_letter(letter_id)
        if letter is None:
            raise _no_dead_letter(letter_id)
        try:
            answer = await views.replay_dead_letter(self.runtime, letter)
        except views.ReplayFailed as failed:
            if failed.retry:
                raise _Problem(503, "id", "unavailable", failed.message, _RETRY) from None
            raise _Problem(409, "id", "replay", failed.message) from None
        return _json(answer, 202 if answer["replayed"] == "published" else 200)

    # admin: what the console shows

    async def journey_step(self, request: Request) -> Response:
        """One step of a journey: definition, latest records, template preview."""
        journey, step = await self._journey(request), request.path_params["step"]
        if step != "entry" and step not in journey.steps:
            raise _Problem(404, "step", "exists", f"no step {step!r} in {journey.name}")
        wanted = "__entry__" if step == "entry" else step
        return _json(await views.step_detail(self.runtime, journey, wanted, self._now()))

    async def journey_version(self, request: Request) -> Response:
        """A published version's document; ``?against=N`` adds a diff from version N."""
        journey, version = await self._journey(request), request.path_params["version"]
        given = _params(request, "against").get("against", "")
        against = whole_number(given) if given else 0
        if against is None:
            raise _Problem(400, "against", "type", "'against' must be a version number")
        found = None
        if version <= journey.version:  # no store keeps a later one (nor a number that large)
            found = await views.journey_versions(
                self.runtime, journey, version, against if against <= journey.version else None
            )
        if found is None or found["document"] is None:
            raise _Problem(404, "version", "exists", f"{journey.name} has no version {version}")
        return _json(found)

    async def profiles(self, request: Request) -> Response:
        """GET /v1/profiles?q=: the profiles a userId, anonymousId or email leads to."""
        query = _params(request, "q").get("q", "")
        return _json({"query": query, "profiles": await views.profile_search(self.runtime, query)})

    async def workspace_status(self, request: Request) -> Response:
        return _json(await views.workspace_status(self.runtime))

    async def mail(self, request: Request) -> Response:
        """The mail catcher's emails, newest first (none when the catcher is off)."""
        mails = views.caught_mail(self.mail_file)
        return _json({"catcher": self.mail_file is not None, "mail": mails})

    # open

    async def health(self, request: Request) -> Response:
        """Liveness: the process answers (always 200), and whether storage is failing."""
        failure = self._commit_failure()
        return _json(
            {
                "status": "degraded" if failure else "ok",
                "storage": f"failing: {failure}" if failure else "ok",
                "backlog": self.runtime.processor.backlog,
            }
        )

    async def ready(self, request: Request) -> Response:
        """Readiness: the last commits were stored and the store answers a read; 503 with
        the reason when not."""
        failure = self._commit_failure()
        if failure is None:
            try:
                await asyncio.wait_for(self.runtime.store.get_setting("ready"), READY_TIMEOUT)
            except Exception as error:
                failure = f"the store does not answer: {type(error).__name__}: {error}"[:300]
        if failure:
            return _json({"status": "unready", "storage": f"failing: {failure}"}, 503, _RETRY)
        return _json({"status": "ready", "storage": "ok"})

    def _commit_failure(self) -> str | None:
        """Why the last commit failed, if it did lately; an old failure with nothing tried
        since may be over (the disk freed), and traffic must come back to find out."""
        failure = self.runtime.processor.commit_failure
        if failure is None or time.monotonic() - failure.at > FAILURE_SECONDS:
            return None
        return failure.reason

    async def metrics(self, request: Request) -> Response:
        counts = await self.runtime.reads.instance_counts()
        dead, _ = await self.runtime.reads.dead_letters(limit=1)
        text = _metrics(self.runtime, self.rejected, counts)
        return PlainTextResponse(
            f"{text}# TYPE journeyman_dead_letters gauge\njourneyman_dead_letters {dead}\n"
        )

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(SPEC)


_RETRY = {"Retry-After": "1"}
_FLAGS = {"true": True, "1": True, "false": False, "0": False}
_TAIL_STATUSES = ("accepted", "duplicate", "rejected", "unavailable")
_DOCS_PAGE = docs_page()
_KEY_HELP = "send the key as 'Authorization: Bearer <key>' or as the HTTP Basic user name"
_KEY_PROBLEM = {"error": {"field": "Authorization", "rule": "key", "message": _KEY_HELP}}
_KEY_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="journeyman"'}
_FAULT_HELP = "journeyman failed on this call, for a fault of its own; the server log says why"
_FAULT = {"error": {"field": "body", "rule": "internal", "message": _FAULT_HELP}}


# The calls that have a path of their own, /v1/<call>.
CALL_PATHS = ("track", "identify", "page", "screen", "alias", "group")


def _sdk(error: dict[str, Any], message: str) -> dict[str, str]:
    """``code`` and ``message`` at the top of an ingest error's body: what the Segment and
    RudderStack libraries read from it. Without them RudderStack's Python library fails on
    the body and sends the same call again, ten times, even when retrying cannot help."""
    return {"code": str(error.get("rule", "")), "message": message}


def _ingest_error(body: dict[str, Any]) -> dict[str, Any]:
    """An ingest error's body: ``{"error": {field, rule, message}}``, with ``code`` and
    ``message`` beside it for the analytics libraries (see :func:`_sdk`)."""
    error = body["error"]
    return {**body, **_sdk(error, f"{error['field']}: {error['message']}")}


async def _read_body(receive: Receive, length: str | None, limit: int, encoding: str = "") -> bytes:
    """The body, read in chunks that stop at ``limit``; with ``encoding`` (a
    Content-Encoding: gzip or deflate), inflated as it arrives, ``limit`` bounding both
    what is sent and what it inflates to, so a small body that would inflate to gigabytes
    is refused after ``limit`` bytes of output."""
    inflate = _inflater(encoding)
    size = whole_number(length) if length is not None else None
    if size is not None and size > limit:
        raise _too_large(limit)
    # A chunked body has no length to check first.
    chunks, received, inflated, more = [], 0, 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        more = message.get("more_body", False)
        if inflate is not None:
            chunk = _inflate_chunk(inflate, chunk, limit - inflated, last=not more)
            inflated += len(chunk)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _inflater(encoding: str) -> Any:
    """A decompressor for a Content-Encoding, None for none; 415 for one not supported."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if name == "deflate":  # zlib-wrapped, as HTTP says, or raw, as some clients send
        return _Deflate()
    raise _Problem(
        415,
        "Content-Encoding",
        "enum",
        f"Content-Encoding {encoding[:40]!r} is not supported: send gzip, deflate or none",
    )


def _inflate_chunk(inflate: Any, chunk: bytes, room: int, *, last: bool) -> bytes:
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
        raise _Problem(
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


def _decoded(body: bytes) -> Any:
    """The body as JSON data, or a 400 saying why it is not JSON."""
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise _Problem(400, "body", "json", f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise _Problem(400, "body", "json", "the body nests too deeply") from None


def _plain(body: bytes) -> Any:
    """The body as plain JSON data, for the event tail to show; None if it is no JSON."""
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


def _params(request: Request, *names: str) -> dict[str, str]:
    """The query parameters ``names`` an endpoint reads, those given: each at most once,
    since which of two values counts would be a guess."""
    query = request.query_params
    found = {}
    for name in names:
        values = query.getlist(name)
        if len(values) > 1:
            message = f"'{name}' is given {len(values)} times; give it once"
            raise _Problem(400, name, "repeated", message)
        if values:
            found[name] = values[0]
    return found


def _limit(text: str) -> int:
    limit = whole_number(text)
    if limit is None or not 0 < limit <= 1000:
        raise _Problem(400, "limit", "range", "'limit' must be a whole number from 1 to 1000")
    return limit


async def _no_route(request: Request, error: Exception) -> Response:
    """No route took the request: under /v1/, a JSON error as every API answer has;
    elsewhere (the console), Starlette's own plain answer."""
    assert isinstance(error, HTTPException)
    path = request.url.path
    if path != "/v1" and not path.startswith("/v1/"):
        return PlainTextResponse(error.detail, error.status_code, dict(error.headers or {}))
    if error.status_code == 405:
        body = {"field": "method", "rule": "enum", "message": f"{request.method} is not allowed"}
    else:
        body = {"field": "path", "rule": "exists", "message": f"no endpoint {path!r}"}
    return _json({"error": body}, error.status_code, dict(error.headers or {}))


def _no_dead_letter(letter_id: int) -> _Problem:
    return _Problem(404, "id", "exists", f"no dead letter {letter_id}")


def _too_large(limit: int) -> _Problem:
    return _Problem(413, "body", "size", f"the body is over {limit // 1024} KiB")


def _too_large_inflated(room: int) -> _Problem:
    return _Problem(413, "body", "size", "the body inflates to more than the size limit")


def _answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return status, msgspec.json.encode(body), extra


def _authorised(header: str, wanted: str, admin: str) -> bool:
    """Whether the Authorization header carries ``wanted`` (or the admin key)."""
    scheme, _, value = header.partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip()).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return False
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


def _unavailable(error: BaseException) -> bool:
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


def _refused(error: InvalidEvent, body: bytes) -> _Problem:
    problem = _Problem(400, error.field, error.rule, error.message)
    if error.rule != "json":
        problem.call = _plain(body)
    return problem


def _step_summary(step: Step, counts: dict[str, int]) -> dict[str, Any]:
    summary = {"id": step.id, "type": step.kind, "next": step.next, "counts": counts}
    reactions = views.engagement(step, counts)
    if reactions is not None:
        summary["engagement"] = reactions
    return summary


def _journey_summary(journey: Journey, states: dict[str, str]) -> dict[str, Any]:
    return {
        "name": journey.name,
        "version": journey.version,
        "state": states.get(journey.name, "active"),
        "entry": journey.entry_event,
        "steps_count": len(journey.steps),
    }


def _metrics(runtime: Runtime, rejected: int, instances: dict[tuple[str, str], int]) -> str:
    stats = runtime.processor.stats
    lines = [
        "# TYPE journeyman_events_accepted_total counter",
        f"journeyman_events_accepted_total {stats.events_accepted}",
        "# TYPE journeyman_reaction_events_total counter",
        f"journeyman_reaction_events_total {stats.reactions_accepted}",
        "# TYPE journeyman_events_duplicate_total counter",
        f"journeyman_events_duplicate_total {stats.events_duplicate}",
        "# TYPE journeyman_events_rejected_total counter",
        f"journeyman_events_rejected_total {rejected}",
        "# TYPE journeyman_batches_total counter",
        f"journeyman_batches_total {stats.batches}",
        "# TYPE journeyman_batch_commit_seconds_total counter",
        f"journeyman_batch_commit_seconds_total {stats.commit_seconds:.6f}",
        "# TYPE journeyman_timers_fired_total counter",
        f"journeyman_timers_fired_total {stats.timers_fired}",
        "# TYPE journeyman_backlog gauge",
        f"journeyman_backlog {runtime.processor.backlog}",
    ]
    lateness = runtime.timers.lateness
    if lateness:
        lines += [
            "# TYPE journeyman_timer_lag_seconds gauge",
            f'journeyman_timer_lag_seconds{{quantile="0.5"}} {statistics.median(lateness):.6f}',
            f'journeyman_timer_lag_seconds{{quantile="1"}} {max(lateness):.6f}',
        ]
    lines.append("# TYPE journeyman_instances gauge")
    for (journey, status), count in sorted(instances.items()):
        lines.append(f'journeyman_instances{{journey="{journey}",status="{status}"}} {count}')
    lines.append("# TYPE journeyman_deliveries_total counter")
    for (channel, status), count in sorted(runtime.dispatcher.counts.items()):
        lines.append(
            f'journeyman_deliveries_total{{channel="{channel}",status="{status}"}} {count}'
        )
    return "\n".join(lines) + "\n"


_ACCEPTED_ONE = _answer(202, {"accepted": 1})
