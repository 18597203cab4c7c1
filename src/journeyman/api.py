"""The HTTP API: Segment-shaped ingest, and admin reads over a running :class:`Runtime`.

Ingest (write key): ``POST /v1/track``, ``/v1/identify``, ``/v1/page``, ``/v1/screen``,
``/v1/alias``, ``/v1/group``, ``/v1/batch`` (:mod:`journeyman.ingest_api`). A 202 means the
events are committed to disk. Web pages send with the client key, to the same paths and to
the browser libraries' own (:mod:`journeyman.browsers`), from the origins CORS allows, as
the workspace's ``browser:`` settings let them (:mod:`journeyman.domain.browser`).
Admin (admin key): journeys, profiles (and their consent, :mod:`journeyman.consent_admin`),
segments, imports (:mod:`journeyman.import_api`) and the message log.
``GET /openapi.json`` describes every endpoint; ``GET /healthz`` (liveness), ``GET /readyz``
(readiness) and ``GET /metrics`` need no key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import statistics
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from journeyman.browsers import Cors
from journeyman.clicks import TrackingLinks
from journeyman.consent_admin import consent_admin_routes
from journeyman.consent_api import consent_routes
from journeyman.domain.model import Journey, Step
from journeyman.drafts_api import draft_routes
from journeyman.experiments_api import experiment_routes
from journeyman.hooks import feedback_routes
from journeyman.ingest_api import (
    KEY_CHALLENGE,
    KEY_PROBLEM,
    RETRY,
    Ingest,
    IngestApi,
    Keys,
    authorised,
    given_key,
    unavailable,
)
from journeyman.openapi import SPEC, docs_page
from journeyman.report import report_csv
from journeyman.runtime.audit import Who
from journeyman.runtime.processor import Overloaded
from journeyman.runtime.service import Runtime
from journeyman.schedule_api import run_routes, runs_of
from journeyman.segment_api import segment_routes
from journeyman.segment_lists import segment_list_routes
from journeyman.trying_api import try_routes
from journeyman.web import ConsoleSettings, console, views
from journeyman.web.paths import LARGEST, exact, whole_number
from journeyman.web.report_view import read_query, report_of
from journeyman.wire import (
    Disconnected,
    Problem,
    decoded,
    read_body,
)
from journeyman.workspace import load_texts

__all__ = ["Keys", "create_app"]

log = logging.getLogger("journeyman.api")

WORKSPACE_LIMIT = 8 * 1024 * 1024
COMMAND_LIMIT = 4 * 1024  # a pause, resume or stop's body: {"by": ...} at most
BY_LENGTH = 100  # the longest name of who gave a call
READY_TIMEOUT = 5.0  # seconds the store has to answer /readyz's read
FAILURE_SECONDS = 60.0  # how long a failed commit makes /healthz degraded and /readyz 503

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(data), status, headers, media_type="application/json")


def create_app(
    runtime: Runtime,
    keys: Keys,
    console_settings: ConsoleSettings | None = None,
    origins: Iterable[str] = (),
) -> ASGIApp:
    """The API at ``/v1/``, and the web console at ``/`` (see :mod:`journeyman.web`);
    pages of ``origins`` (``scheme://host[:port]``) may send events with the client key."""
    from journeyman.import_api import import_routes  # it builds on this module's helpers

    settings = console_settings or ConsoleSettings()
    ingest = IngestApi(runtime, keys, settings.trusted_proxies, Cors(origins))
    api = _Api(runtime, keys, settings, ingest)
    routes: list[Route | Mount] = [
        Route("/v1/journeys", api.guard(api.journeys), methods=["GET"]),
        Route("/v1/journeys/{name}", api.guard(api.journey), methods=["GET"]),
        Route("/v1/journeys/{name}/report", api.guard(api.report), methods=["GET"]),
        Route("/v1/journeys/{name}/report.csv", api.guard(api.report_csv), methods=["GET"]),
        *experiment_routes(runtime, api.guard, unavailable),
        *try_routes(runtime, api.guard, "/v1"),
        *draft_routes(runtime, api.guard, "/v1"),
        Route(
            "/v1/journeys/{name}/{command:str}",
            api.guard(api.operate),
            methods=["POST"],
        ),
        Route("/v1/workspace", api.guard(api.workspace), methods=["PUT"]),
        # Before /v1/profiles/{id}, which would take their paths for ids.
        *consent_admin_routes(runtime, api.guard, unavailable),
        Route("/v1/profiles/{profile_id:path}", api.guard(api.profile), methods=["GET"]),
        Route("/v1/segments", api.guard(api.segments), methods=["GET"]),
        Route("/v1/segments/{name}/members", api.guard(api.segment_members), methods=["GET"]),
        *segment_routes(runtime, api.guard),
        *segment_list_routes(runtime, api.guard, unavailable),
        *run_routes(runtime, api.guard),
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
        Route("/healthz", api.health, methods=["GET"]),
        Route("/readyz", api.ready, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/docs", api.docs, methods=["GET"]),
        *consent_routes(runtime, unavailable),
        *_console_api(api),
        *import_routes(runtime, api.guard),
        *feedback_routes(runtime, unavailable),
        console(runtime, keys.admin, settings),
    ]
    exact(routes)
    app = Starlette(routes=routes, exception_handlers={HTTPException: _no_route})
    return Ingest(ingest, TrackingLinks(runtime, unavailable, app))


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
    def __init__(
        self, runtime: Runtime, keys: Keys, settings: ConsoleSettings, ingest: IngestApi
    ) -> None:
        self.runtime = runtime
        self.keys = keys
        self.ingest = ingest
        self.mail_file = settings.mail_file

    # plumbing

    def _now(self) -> datetime:
        return self.runtime.processor.now()

    def guard(self, handler: Handler) -> Handler:
        """Require the admin key, and turn a Problem into its JSON answer."""

        async def guarded(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            if not authorised(header, self.keys.admin, self.keys.admin):
                if self.ingest.role(given_key(header)) == "client":
                    return _json(_CLIENT_READS, 403)
                return _json(KEY_PROBLEM, 401, KEY_CHALLENGE)
            try:
                return await handler(request)
            except Problem as problem:
                return _json(problem.body, problem.status, problem.headers)
            except Disconnected:
                return Response(status_code=400)  # gone before its body came: nobody reads it

        return guarded

    # admin

    async def journeys(self, request: Request) -> Response:
        found = await views.journeys_overview(self.runtime, self._now())
        return _json({"journeys": found})

    async def journey(self, request: Request) -> Response:
        """GET /v1/journeys/{name}?version=N|all: counts of one version (the latest by
        default), or of every version on the latest one's steps."""
        found, version = await self._journey_version(request)
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
        summary["audit"] = await views.journey_audit(self.runtime, found.name)
        summary["runs"] = await runs_of(self.runtime, found.name)
        return _json(summary)

    async def report(self, request: Request) -> Response:
        """GET /v1/journeys/{name}/report?version=N|all&from=&to=&timezone=&format=json|csv:
        entries, ends, goals and lift against the holdout, steps and conversion over time,
        from the report counters (journeyman.report); days in ``timezone`` (UTC)."""
        given = _params(request, "version", "from", "to", "timezone", "format")
        form = given.get("format", "json")
        if form not in ("json", "csv"):
            raise Problem(400, "format", "enum", "'format' must be json or csv")
        found = await report_of(
            self.runtime, await read_query(self.runtime, await self._journey(request), given)
        )
        if form == "csv":
            return _csv(found)
        return _json(found)

    async def report_csv(self, request: Request) -> Response:
        """GET /v1/journeys/{name}/report.csv: the report as CSV (journeyman.report)."""
        given = _params(request, "version", "from", "to", "timezone")
        query = await read_query(self.runtime, await self._journey(request), given)
        return _csv(await report_of(self.runtime, query))

    async def _journey_version(self, request: Request) -> tuple[Journey, str]:
        """The journey at the version ``?version=`` names (the latest if none, or for
        ``all``), and what was asked: a number, ``all`` or ``""``."""
        found = await self._journey(request)
        version = _params(request, "version").get("version", "")
        if version not in ("", "all"):
            number = whole_number(version)
            if number is None:
                raise Problem(400, "version", "type", "'version' must be a number or 'all'")
            # No store keeps a version after the latest (nor can it be asked for a number
            # that large).
            older = None
            if number <= found.version:
                older = await views.version_of(self.runtime, found, number)
            if older is None:
                raise Problem(404, "version", "exists", f"{found.name} has no version {version}")
            found = older
        return found, version

    async def _journey(self, request: Request) -> Journey:
        """The workspace's journey, or the last version of one removed from it."""
        name = request.path_params["name"]
        found = await views.find_journey(self.runtime, name)
        if found is None:
            raise Problem(404, "name", "exists", f"no journey named {name!r}")
        return found[0]

    async def operate(self, request: Request) -> Response:
        """POST /v1/journeys/{name}/pause | resume | stop, with an optional body
        ``{"by": "who"}`` kept in the audit (else ``api``)."""
        journey = await self._journey(request)
        command = request.path_params["command"]
        if command not in ("pause", "resume", "stop"):
            raise Problem(404, "command", "enum", "the command must be pause, resume or stop")
        length = request.headers.get("content-length")
        body = await read_body(request.receive, length, COMMAND_LIMIT)
        who = Who(_by(decoded(body) if body.strip() else {}), "api")
        if command == "pause":
            await self.runtime.pause_journey(journey.name, who)
            return _json({"journey": journey.name, "state": "paused"})
        if command == "resume":
            held = await self._instances_told(self.runtime.resume_journey(journey.name, who))
            return _json({"journey": journey.name, "state": "active", "resumed": held})
        stopped = await self._instances_told(self.runtime.stop_journey(journey.name, who))
        return _json({"journey": journey.name, "state": "stopped", "stopped": stopped})

    async def _instances_told(self, giving: Awaitable[int]) -> int:
        """How many instances a stop or resume reached; 429 or 503 if it could not reach
        them all (giving it again is safe: an instance takes it once)."""
        try:
            return await giving
        except Overloaded:
            message = "too much is queued to give the command to every instance; retry shortly"
            raise Problem(429, "command", "overload", message, RETRY) from None
        except Exception:
            log.exception("a journey command failed")
            message = "the command could not be given to every instance; retry"
            raise Problem(503, "command", "storage", message, RETRY) from None

    async def workspace(self, request: Request) -> Response:
        """PUT /v1/workspace {files: {name: yaml}}: validate and publish (or only plan)."""
        dry_run = _params(request, "dry_run").get("dry_run", "false")
        if dry_run not in _FLAGS:
            raise Problem(400, "dry_run", "enum", "'dry_run' must be true, false, 1 or 0")
        length = request.headers.get("content-length")
        body = decoded(await read_body(request.receive, length, WORKSPACE_LIMIT))
        files = body.get("files") if isinstance(body, dict) else None
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise Problem(400, "files", "type", "'files' must map file names to their text")
        by = _by(body)
        loaded = load_texts(files, self.runtime.root)
        problems = [p.as_dict() for p in loaded.problems]
        if loaded.workspace is None:
            return _json({"published": False, "problems": problems}, 422)
        planned = _FLAGS[dry_run]
        plan = await self.runtime.publish(loaded.workspace, dry_run=planned, by=by)
        return _json({"published": not planned, "plan": plan.as_dict(), "problems": problems})

    async def profile(self, request: Request) -> Response:
        profile_id = request.path_params["profile_id"]
        # No id holds a NUL (ingest refuses one), and PostgreSQL cannot be asked for one.
        shown = None if "\x00" in profile_id else await views.profile_view(self.runtime, profile_id)
        if shown is None:
            raise Problem(404, "profile_id", "exists", f"no profile {profile_id!r}")
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
            raise Problem(404, "name", "exists", f"no segment {name!r}")
        query = _params(request, "after", "limit")
        limit, after = _limit(query.get("limit", "100")), query.get("after", "")
        if "\x00" in after:
            raise Problem(400, "after", "value", "'after' must be a profile id, without NUL")
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
            raise Problem(400, "after", "type", "'after' must be a whole number (an entry's seq)")
        status = query.get("status")
        if status is not None and status not in _TAIL_STATUSES:
            allowed = ", ".join(_TAIL_STATUSES)
            raise Problem(400, "status", "enum", f"'status' must be one of {allowed}")
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
                raise Problem(503, "id", "unavailable", failed.message, RETRY) from None
            raise Problem(409, "id", "replay", failed.message) from None
        return _json(answer, 202 if answer["replayed"] == "published" else 200)

    # admin: what the console shows

    async def journey_step(self, request: Request) -> Response:
        """One step of a journey: definition, latest records, template preview."""
        journey, step = await self._journey(request), request.path_params["step"]
        if step != "entry" and step not in journey.steps:
            raise Problem(404, "step", "exists", f"no step {step!r} in {journey.name}")
        wanted = "__entry__" if step == "entry" else step
        return _json(await views.step_detail(self.runtime, journey, wanted, self._now()))

    async def journey_version(self, request: Request) -> Response:
        """A published version's document; ``?against=N`` adds a diff from version N."""
        journey, version = await self._journey(request), request.path_params["version"]
        given = _params(request, "against").get("against", "")
        against = whole_number(given) if given else 0
        if against is None:
            raise Problem(400, "against", "type", "'against' must be a version number")
        found = None
        if version <= journey.version:  # no store keeps a later one (nor a number that large)
            found = await views.journey_versions(
                self.runtime, journey, version, against if against <= journey.version else None
            )
        if found is None or found["document"] is None:
            raise Problem(404, "version", "exists", f"{journey.name} has no version {version}")
        return _json(found)

    async def profiles(self, request: Request) -> Response:
        """GET /v1/profiles?q=&after=&limit=: a page of the profiles a search finds."""
        params = _params(request, "q", "after", "limit")
        limit = _limit(params.get("limit", "100"))
        query, after = params.get("q", ""), params.get("after", "")
        return _json(await views.profile_page(self.runtime, query, after, limit))

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
            return _json({"status": "unready", "storage": f"failing: {failure}"}, 503, RETRY)
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
        text = _metrics(self.runtime, self.ingest.rejected, counts)
        goals = await self._goal_metrics()
        return PlainTextResponse(
            f"{text}# TYPE journeyman_dead_letters gauge\njourneyman_dead_letters {dead}\n{goals}"
        )

    async def _goal_metrics(self) -> str:
        """Goal conversions of every journey's versions, from the report counters."""
        lines = ["# TYPE journeyman_goal_conversions_total counter"]
        for journey in sorted(self.runtime.workspace.journeys.values(), key=lambda j: j.name):
            if not journey.goals:
                continue
            reached = {goal.name: 0 for goal in journey.goals}
            for counter in await self.runtime.reads.counters(journey.name):
                if counter.metric == "reached" and counter.goal in reached:
                    reached[counter.goal] += counter.n
            lines += [
                f'journeyman_goal_conversions_total{{journey="{journey.name}",goal="{goal}"}} {n}'
                for goal, n in reached.items()
            ]
        return "\n".join(lines) + "\n"

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(SPEC)


_CLIENT_READ_HELP = "the client key only sends events; reading needs the admin key"
_CLIENT_READS = {"error": {"field": "Authorization", "rule": "scope", "message": _CLIENT_READ_HELP}}
_FLAGS = {"true": True, "1": True, "false": False, "0": False}
_TAIL_STATUSES = ("accepted", "duplicate", "rejected", "unavailable")
_DOCS_PAGE = docs_page()


def _csv(report: dict[str, Any]) -> Response:
    filename = f"{report['journey']}-report.csv"  # a journey's name is letters, digits, _ and -
    disposition = f'attachment; filename="{filename}"'
    headers = {"Content-Disposition": disposition}
    return Response(report_csv(report), headers=headers, media_type="text/csv; charset=utf-8")


def _params(request: Request, *names: str) -> dict[str, str]:
    """The query parameters ``names`` an endpoint reads, those given: each at most once,
    since which of two values counts would be a guess."""
    query = request.query_params
    found = {}
    for name in names:
        values = query.getlist(name)
        if len(values) > 1:
            message = f"'{name}' is given {len(values)} times; give it once"
            raise Problem(400, name, "repeated", message)
        if values:
            found[name] = values[0]
    return found


def _by(body: Any) -> str:
    """Who an API call says gave it (its ``by``), kept in the audit; ``api`` if none."""
    if not isinstance(body, dict):
        raise Problem(400, "body", "type", "the body must be a JSON object")
    by = body.get("by", "api")
    if not isinstance(by, str):
        raise Problem(400, "by", "type", "'by' must be a string: who gives the call")
    if len(by) > BY_LENGTH:
        raise Problem(400, "by", "length", f"'by' is over {BY_LENGTH} characters")
    # As an operator's consent change checks its 'by': no NUL, line break or lone surrogate.
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in by):
        message = "'by' must not hold control characters (a NUL, a line break, ...)"
        raise Problem(400, "by", "characters", message)
    if not by.strip():
        raise Problem(400, "by", "required", "'by' must say who gives the call")
    return by.strip()


def _limit(text: str) -> int:
    limit = whole_number(text)
    if limit is None or not 0 < limit <= 1000:
        raise Problem(400, "limit", "range", "'limit' must be a whole number from 1 to 1000")
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


def _no_dead_letter(letter_id: int) -> Problem:
    return Problem(404, "id", "exists", f"no dead letter {letter_id}")


def _step_summary(step: Step, counts: dict[str, int]) -> dict[str, Any]:
    summary = {
        "id": step.id,
        "type": step.kind,
        "next": step.next,
        "numbers": views.node_counts(step, counts),  # as the console's box and panel say
        "counts": counts,
    }
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
