"""The console's routes: login, the pages, and the forms that pause, stop and publish.

Every page needs a session (a signed cookie from the login); every POST also needs the
session's CSRF token, checked before anything else runs. A page asked for JSON (with
``Accept: application/json``) answers the data it would render: that is what the
page's own JavaScript polls for live numbers.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import msgspec
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from journeyman.domain.times import TimeFormatError, parse_zone
from journeyman.drafts_api import draft_routes
from journeyman.runtime.audit import Who
from journeyman.runtime.processor import Overloaded
from journeyman.runtime.service import Runtime
from journeyman.schedule_api import runs_of
from journeyman.trying_api import try_routes
from journeyman.web import segments_view, views, zones
from journeyman.web.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    EndedSessions,
    LoginThrottle,
    Network,
    Session,
    Sessions,
    client_address,
)
from journeyman.web.editor import editor_routes
from journeyman.web.layout import ENTRY, lay_out
from journeyman.web.paths import LARGEST, exact, whole_number
from journeyman.web.report_page import report_routes
from journeyman.wire import Disconnected, Problem

__all__ = ["ConsoleSettings", "console"]

log = logging.getLogger("journeyman.console")

FORM_LIMIT = 64 * 1024
LIVE_SECONDS = 3  # how often the journey graph and the live tail refresh
LIST_SECONDS = 10  # the journeys list: it counts every journey's records, so less often
COMMANDS = {
    "pause": "Pause",
    "resume": "Resume",
    "stop": "Stop",
}
# The page's own scripts and styles only; inline styles for the email preview, which
# runs in a sandboxed frame without scripts.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Page = Callable[[Request, Session], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    users: Mapping[str, str] = field(default_factory=dict)  # name -> password
    mail_file: Path | None = None  # the mail catcher's file, when serve runs it
    # Reverse proxies whose X-Forwarded-For names the client (for the login throttle).
    trusted_proxies: tuple[Network, ...] = ()


def console(runtime: Runtime, admin_key: str, settings: ConsoleSettings | None = None) -> Mount:
    """The console's routes, to mount at ``/`` after the API's; the admin key logs in."""
    pages = _Console(runtime, admin_key, settings or ConsoleSettings())
    static = StaticFiles(directory=Path(__file__).parent / "static")
    routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/login", pages.login_page, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.form(pages.logout), methods=["POST"]),
        Route("/journeys", pages.page(pages.journeys), methods=["GET"]),
        *editor_routes(pages),  # before {name} and {command}, which would take "new", "edit"
        Route("/journeys/{name}", pages.page(pages.journey), methods=["GET"]),
        *report_routes(pages),  # before {command}, which would take "report" for one
        *draft_routes(runtime, pages.json_guard, "/editor/api"),
        *try_routes(runtime, pages.json_guard, "/editor/api"),  # the editor's tests and tries
        Route("/journeys/{name}/{command}", pages.page(pages.confirm), methods=["GET"]),
        Route("/journeys/{name}/{command}", pages.form(pages.operate), methods=["POST"]),
        Route("/profiles", pages.page(pages.profiles), methods=["GET"]),
        Route("/profiles/{profile_id:path}", pages.page(pages.profile), methods=["GET"]),
        Route("/events", pages.page(pages.events), methods=["GET"]),
        Route("/dead-letters/{id:digits}/replay", pages.form(pages.replay), methods=["POST"]),
        Route("/messages", pages.page(pages.messages), methods=["GET"]),
        Route("/segments", pages.page(pages.segments), methods=["GET"]),
        Route("/segments/{name}", pages.page(pages.segment), methods=["GET"]),
        Route("/workspace", pages.page(pages.workspace), methods=["GET"]),
        Route("/workspace", pages.form(pages.publish), methods=["POST"]),
        Route("/settings", pages.page(pages.settings_page), methods=["GET"]),
        Route("/settings", pages.form(pages.choose_zone), methods=["POST"]),
        Mount("/static", app=static, name="static"),
    ]
    mount = Mount("", routes=routes)
    exact([mount])
    return mount


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("journeyman.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = zones.when
    env.filters["percent"] = lambda v: "–" if v is None else f"{v:.0%}"
    env.filters["number"] = lambda v: f"{v:,}"
    env.filters["json"] = lambda v: msgspec.json.encode(v).decode()
    # One path segment: a profile id may hold '/', '?', '#', '%' or spaces.
    env.filters["segment"] = lambda v: quote(str(v), safe="")
    env.globals["step_numbers"] = views.STEP_NUMBERS
    env.globals["outcomes_shown"] = views.outcomes_shown
    env.globals["live_seconds"] = LIVE_SECONDS
    env.globals["list_seconds"] = LIST_SECONDS
    return env


class _Console:
    def __init__(self, runtime: Runtime, admin_key: str, settings: ConsoleSettings) -> None:
        self.runtime = runtime
        self.sessions = Sessions(admin_key, settings.users)
        self.limit = LoginThrottle()
        self.ended = EndedSessions(runtime.store)
        self.settings = settings
        self.env = _environment()

    # plumbing

    def page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """A page for logged-in users; others go to the login."""

        async def guarded(request: Request) -> Response:
            session = await self._session(request)
            if session is None:
                if _wants_json(request):
                    return _data({"error": {"field": "session", "rule": "login"}}, 401)
                # The path as sent (still quoted): a profile id may hold '?' or '/'.
                path = request.scope.get("raw_path") or request.url.path.encode()
                query = f"?{request.url.query}" if request.url.query else ""
                target = quote(path.decode("latin-1") + query, safe="")
                return RedirectResponse(f"/login?next={target}", 303)
            return await handler(request, session)

        return guarded

    def form(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """A state-changing POST: a session and its CSRF token, or nothing happens."""

        async def guarded(request: Request) -> Response:
            session = await self._session(request)
            if session is None:
                return self._refuse(request, 401, "You are not logged in.")
            fields = await _form(request)
            if fields is None or not self.sessions.csrf_ok(session, fields.get("csrf")):
                return self._refuse(request, 403, "The form has expired: reload the page.")
            request.state.fields = fields
            return await handler(request, session)

        return guarded

    def json_guard(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A JSON endpoint of the console's own scripts (the editor's): a session, and for
        anything but a read the session's CSRF token in the ``X-CSRF-Token`` header.
        Answers 401 and 403 as JSON; the handler finds the user in ``request.state.user``."""

        async def guarded(request: Request) -> Response:
            session = await self._session(request)
            if session is None:
                message = "You are not logged in: log in again."
                return _data(
                    {"error": {"field": "session", "rule": "login", "message": message}}, 401
                )
            token = request.headers.get("x-csrf-token")
            if request.method not in ("GET", "HEAD") and not self.sessions.csrf_ok(session, token):
                message = "The page has expired: reload it (X-CSRF-Token is not this session's)."
                error = {"field": "X-CSRF-Token", "rule": "csrf", "message": message}
                return _data({"error": error}, 403)
            request.state.user = session.user
            try:
                return await handler(request)
            except Problem as problem:
                return _data(problem.body, problem.status, problem.headers)
            except Disconnected:
                return Response(status_code=400)  # gone before its body came: nobody reads it

        return guarded

    async def _session(self, request: Request) -> Session | None:
        """The request's session: a signed, unexpired cookie whose session was not ended."""
        session = self.sessions.read(request.cookies.get(SESSION_COOKIE))
        if session is None or await self.ended.ended(session):
            return None
        return session

    def _refuse(self, request: Request, status: int, message: str) -> Response:
        return self.render(request, None, "error.html", {"message": message}, status)

    def render(
        self,
        request: Request,
        session: Session | None,
        template: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> Response:
        zone = zones.read_zone(request.cookies.get(zones.ZONE_COOKIE))
        page = self.env.get_template(template).render(
            **context,
            user=session.user if session else None,
            csrf=self.sessions.csrf(session) if session else "",
            path=request.url.path,
            zone=zone,
            zone_label=zones.zone_label(zone, self._now()),
        )
        return HTMLResponse(page, status, headers=SECURITY_HEADERS)

    def _now(self) -> datetime:
        return self.runtime.processor.now()

    # login

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/journeys", 303)

    async def login_page(self, request: Request, error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(16)
        context = {"token": token, "next": _next(request.query_params.get("next")), "error": error}
        response = self.render(request, None, "login.html", context, status)
        response.set_cookie(LOGIN_COOKIE, token, max_age=900, httponly=True, samesite="strict")
        return response

    async def login(self, request: Request) -> Response:
        fields = await _form(request) or {}
        token = request.cookies.get(LOGIN_COOKIE)
        if not token or not secrets.compare_digest(token, fields.get("csrf", "")):
            return await self.login_page(request, "The form has expired: try again.", 403)
        peer = request.client.host if request.client else ""
        # Proxies append to the header, or add one of their own: read them all, in order.
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        client = client_address(peer, forwarded, self.settings.trusted_proxies)
        name = fields.get("user", "").strip()
        if not self.limit.allowed(name, client):
            message = "Too many failed logins from here: wait a few minutes, then try again."
            return await self.login_page(request, message, 429)
        user = self.sessions.check_login(name, fields.get("key", ""))
        if user is None:
            self.limit.failed(name, client)
            return await self.login_page(request, "That user name or key is wrong.", 401)
        response = RedirectResponse(_next(fields.get("next")), 303)
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.new(user),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(LOGIN_COOKIE)
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        try:
            await self.ended.end(session)
        except Exception:
            # Refused here all the same; other console processes may take it for a while.
            log.exception("the logout of %r could not be stored", session.user)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
        return response

    # journeys

    async def journeys(self, request: Request, session: Session) -> Response:
        found = await views.journeys_overview(self.runtime, self._now())
        if _wants_json(request):
            return _data({"journeys": found})
        return self.render(request, session, "journeys.html", {"journeys": found})

    async def journey(self, request: Request, session: Session) -> Response:
        """A journey's graph with live counts. It shows one version (``?version=N``; the
        latest by default, or the version of the instance whose path it draws), counted
        for that version alone, or for every version with ``?version=all``."""
        found = await views.find_journey(self.runtime, request.path_params["name"])
        if found is None:
            return self._not_found(request, session, "no such journey")
        latest, removed = found
        query = request.query_params
        trail = await views.instance_path(self.runtime, query.get("instance", ""))
        if trail is not None and trail["journey"] != latest.name:
            trail = None
        every = trail is None and query.get("version") == "all"
        wanted = _int(query.get("version"), latest.version, 1, latest.version)
        shown = await views.version_of(self.runtime, latest, trail["version"] if trail else wanted)
        if shown is None:
            return self._not_found(request, session, "no such version")
        counts = await views.journey_counts(
            self.runtime, shown, None if every else shown.version, removed
        )
        if _wants_json(request):
            return _data(counts)
        chosen = query.get("step") or ENTRY
        if chosen != ENTRY and chosen not in shown.steps:
            chosen = ENTRY
        scope = {"version": "all"} if every else {}
        if shown.version != latest.version:
            scope = {"version": str(shown.version)}
        keep = scope | ({"instance": trail["id"]} if trail else {})
        against = _int(query.get("against"), 0, 0, latest.version) or None
        context = {
            "journey": latest,
            "shown": shown,
            "every": every,
            "counts": counts,
            "picture": lay_out(shown),
            "detail": await views.step_detail(
                self.runtime, shown, chosen, self._now(), None if every else shown.version
            ),
            "chosen": chosen,
            "trail": trail,
            "versions": await views.journey_versions(self.runtime, latest, shown.version, against),
            "live_query": f"?{urlencode(scope)}" if scope else "",
            "keep": f"&{urlencode(keep)}" if keep else "",
            "done": query.get("done", ""),
            "failed": _failure(query.get("failed", "")),
            "audit": await views.journey_audit(self.runtime, latest.name),
            "runs": await runs_of(self.runtime, latest.name),
        }
        return self.render(request, session, "journey.html", context)

    async def confirm(self, request: Request, session: Session) -> Response:
        name, command = request.path_params["name"], request.path_params["command"]
        if not await self._known(name) or command not in COMMANDS:
            return self._not_found(request, session, "no such journey or command")
        affected = await self._affected(name, command)
        context = {"name": name, "command": command, "label": COMMANDS[command]}
        context["affected"] = affected
        return self.render(request, session, "confirm.html", context)

    async def _known(self, name: str) -> bool:
        """A journey of the workspace, or one removed from it that was published."""
        return (
            name in self.runtime.workspace.journeys or name in await self.runtime.store.published()
        )

    async def _affected(self, name: str, command: str) -> int:
        """How many instances the command would touch: running ones, or held ones."""
        if command == "resume":
            running = await self.runtime.store.running_of(name, 100_000)
            return sum(1 for i in running if i.waiting == "paused")
        counts = await self.runtime.reads.instance_counts()
        return counts.get((name, "waiting"), 0)

    async def operate(self, request: Request, session: Session) -> Response:
        name, command = request.path_params["name"], request.path_params["command"]
        if not await self._known(name) or command not in COMMANDS:
            return self._not_found(request, session, "no such journey or command")
        count, who = 0, Who(session.user, "console")
        try:
            if command == "pause":
                await self.runtime.pause_journey(name, who)
            elif command == "resume":
                count = await self.runtime.resume_journey(name, who)
            else:
                count = await self.runtime.stop_journey(name, who)
        except Overloaded:
            return RedirectResponse(f"/journeys/{quote(name)}?failed={command}:busy", 303)
        except Exception:
            log.exception("the console's %s of %s failed", command, name)
            return RedirectResponse(f"/journeys/{quote(name)}?failed={command}:unavailable", 303)
        return RedirectResponse(f"/journeys/{quote(name)}?done={command}:{count}", 303)

    # profiles

    async def profiles(self, request: Request, session: Session) -> Response:
        query = request.query_params.get("q", "")
        after = request.query_params.get("after", "")
        page = await views.profile_page(self.runtime, query, after, PROFILES_SHOWN)
        if _wants_json(request):
            return _data(page)
        found = page["profiles"]
        if query.strip() and not after and len(found) == 1:
            return RedirectResponse(f"/profiles/{quote(found[0], safe='')}", 303)
        rows = []
        for profile_id in found:
            stored = await self.runtime.reads.profile(profile_id)
            traits = stored.traits if stored is not None else {}
            rows.append({"id": profile_id, "email": traits.get("email"), "name": _name(traits)})
        context = {"query": query, "found": rows, "next": page["next"], "after": after}
        return self.render(request, session, "profiles.html", context)

    async def profile(self, request: Request, session: Session) -> Response:
        profile_id = request.path_params["profile_id"]
        data = await views.profile_view(self.runtime, profile_id, messages=True)
        if data is None:
            # An anonymous profile merged into a known one: the known one holds it all.
            owner = (await views.profile_owners(self.runtime, [profile_id])).get(profile_id)
            if owner is not None and owner != profile_id:
                target = f"/profiles/{quote(owner, safe='')}?merged={quote(profile_id, safe='')}"
                return RedirectResponse(target, 303)
            return self._not_found(request, session, "no such profile")
        if _wants_json(request):
            return _data(data)
        merged = request.query_params.get("merged", "")
        if merged not in data["identities"].get("anonymousId", []):
            merged = ""  # said only of an id that does lead here
        context = {"profile": data, "merged": merged}
        return self.render(request, session, "profile.html", context)

    # segments

    async def segments(self, request: Request, session: Session) -> Response:
        data = await segments_view.segments_page(self.runtime)
        if _wants_json(request):
            return _data(data)
        return self.render(request, session, "segments.html", data)

    async def segment(self, request: Request, session: Session) -> Response:
        data = await segments_view.segment_page(self.runtime, request.path_params["name"])
        if data is None:
            return self._not_found(request, session, "no such segment")
        if _wants_json(request):
            return _data(data)
        chart = segments_view.size_chart_of(data)
        return self.render(request, session, "segment.html", {"segment": data, "chart": chart})

    # events, messages, workspace

    async def events(self, request: Request, session: Session) -> Response:
        query = request.query_params
        status = query.get("status") or None
        found = await views.event_tail(
            self.runtime,
            name=query.get("event") or None,
            profile=query.get("profile") or None,
            status=status if status in _STATUSES else None,
        )
        dead = await views.dead_letters(self.runtime, DEAD_LETTERS_SHOWN)
        if _wants_json(request):
            return _data({"events": found, **dead})
        context = {"events": found, "filters": _filters(query), "statuses": _STATUSES, **dead}
        context["replayed"] = _int(query.get("replayed"), 0, 0, 2**62)
        failed, _, why = query.get("failed", "").partition(":")
        letter = whole_number(failed)
        if letter is not None and why in ("retry", "again", "gone"):
            context["failed"] = {"id": letter, "why": why}
        return self.render(request, session, "events.html", context)

    async def replay(self, request: Request, session: Session) -> Response:
        """Send a dead letter's message on again (see ``POST /v1/dead-letters/{id}/replay``)."""
        letter_id = request.path_params["id"]
        letter = None if letter_id > LARGEST else await self.runtime.reads.dead_letter(letter_id)
        if letter is None:
            return RedirectResponse(f"/events?failed={letter_id}:gone", 303)
        try:
            await views.replay_dead_letter(self.runtime, letter)
        except views.ReplayFailed as failed:
            why = "retry" if failed.retry else "again"
            return RedirectResponse(f"/events?failed={letter_id}:{why}", 303)
        return RedirectResponse(f"/events?replayed={letter_id}", 303)

    async def messages(self, request: Request, session: Session) -> Response:
        query = request.query_params
        filters = {name: query.get(name) or None for name in ("profile", "journey", "status")}
        found = []
        # No message holds a NUL (ingest refuses one), and PostgreSQL cannot be asked for one.
        if not any("\x00" in value for value in filters.values() if value is not None):
            rows = await self.runtime.reads.messages(**filters, limit=200)
            found = [msgspec.to_builtins(row) for row in rows]
        mail = views.caught_mail(self.settings.mail_file)
        if _wants_json(request):
            return _data({"messages": found, "caught_mail": mail})
        context = {
            "messages": found,
            "mail": mail,
            "catcher": self.settings.mail_file is not None,
            "filters": dict(query),
        }
        return self.render(request, session, "messages.html", context)

    async def workspace(self, request: Request, session: Session) -> Response:
        status = await views.workspace_status(self.runtime)
        if _wants_json(request):
            return _data(status)
        context = {"status": status, "done": request.query_params.get("done", "")}
        return self.render(request, session, "workspace.html", context)

    async def publish(self, request: Request, session: Session) -> Response:
        """Publish the workspace folder as it is on disk now, if it has no errors."""
        loaded = views.load_folder(self.runtime)
        if loaded is None or loaded.workspace is None:
            status = await views.workspace_status(self.runtime)
            return self.render(request, session, "workspace.html", {"status": status}, 422)
        plan = await self.runtime.publish(loaded.workspace, source="console", by=session.user)
        done = f"published: {len(plan.new)} new, {len(plan.changed)} changed"
        if plan.removed:
            done += f", {len(plan.removed)} removed ({', '.join(plan.removed)})"
        done += f", {len(plan.documents)} other documents (workspace version {plan.workspace})"
        return RedirectResponse(f"/workspace?done={quote(done)}", 303)

    # settings: the time zone times are shown in

    async def settings_page(
        self, request: Request, session: Session, error: str = "", status: int = 200
    ) -> Response:
        zone = zones.read_zone(request.cookies.get(zones.ZONE_COOKIE))
        context = {
            "zones": zones.zone_names(),
            "chosen": getattr(zone, "key", "UTC"),
            "now": self._now(),
            "error": error,
            "done": request.query_params.get("done") == "timezone",
        }
        if _wants_json(request):
            return _data({"timezone": context["chosen"], "zones": context["zones"]}, status)
        return self.render(request, session, "settings.html", context, status)

    async def choose_zone(self, request: Request, session: Session) -> Response:
        """Keep the zone a person picked in a cookie; a name that is no zone changes nothing."""
        name = request.state.fields.get("timezone", "")
        try:
            zone = parse_zone(name)
        except TimeFormatError as error:
            return await self.settings_page(request, session, f"timezone: {error}", 400)
        response = RedirectResponse("/settings?done=timezone", 303)
        response.set_cookie(
            zones.ZONE_COOKIE,
            zone.key,
            max_age=zones.ZONE_SECONDS,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def _not_found(self, request: Request, session: Session, message: str) -> Response:
        if _wants_json(request):
            return _data({"error": {"field": "path", "rule": "exists", "message": message}}, 404)
        return self.render(request, session, "error.html", {"message": message.capitalize()}, 404)


PROFILES_SHOWN = 50  # a page of the profiles list


def _name(traits: Mapping[str, Any]) -> str:
    """A profile's name, as its traits give it."""
    parts = [traits.get("firstName"), traits.get("lastName")]
    name = " ".join(p for p in parts if isinstance(p, str) and p)
    given = traits.get("name")
    return name or (given if isinstance(given, str) else "")


_STATUSES = ("accepted", "duplicate", "rejected", "unavailable")
DEAD_LETTERS_SHOWN = 50
_NOT_FILTERS = ("replayed", "failed")


def _filters(query: Mapping[str, str]) -> dict[str, str]:
    """The tail's filters of the query (not what a replay's redirect adds to it)."""
    return {k: v for k, v in query.items() if k not in _NOT_FILTERS}


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _data(data: Any, status: int = 200, extra: Mapping[str, str] | None = None) -> Response:
    headers = {"Cache-Control": "no-store", "Vary": "Accept", **(extra or {})}
    return Response(msgspec.json.encode(data), status, headers, media_type="application/json")


async def _form(request: Request) -> dict[str, str] | None:
    """The fields of a urlencoded form, or None if it is too large or not a form."""
    if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
        return None
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_LIMIT:
                return None
    except ClientDisconnect:
        return None  # gone before the whole form came: nobody reads the answer
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    return {name: values[0] for name, values in parsed.items()}


def _next(target: str | None) -> str:
    """Where to go after the login: a path on this site only."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/journeys"
    return target


def _int(text: str | None, default: int, low: int, high: int) -> int:
    number = whole_number(text) if text is not None else None
    if number is None:
        return default
    return min(max(number, low), high)


def _failure(text: str) -> str:
    """A journey command that failed, as the redirect after it says (``stop:busy``), or ""
    for anything else."""
    command, _, why = text.partition(":")
    return text if command in COMMANDS and why in ("busy", "unavailable") else ""
