"""The console's editors: journeys at ``/journeys/{name}/edit`` and ``/journeys/new``,
templates at ``/templates/{name}/edit``, listed at ``/templates``.

The page is a shell: its script (``static/editor.js``) loads the journey's draft and the
editor schema from the draft endpoints under ``/editor/api`` (session cookie, and the
page's CSRF token in the ``X-CSRF-Token`` header for writes), draws the journey as the
journey page does, and sends every edit back as the whole document. The YAML file stays
the truth: the server merges the document into it, keeps comments and formatting, and
answers the diff the editor shows. The template editor (``static/template_editor.js``)
does the same with a template's draft, beside a preview rendered as it is typed. What
both scripts share (the /editor/api calls, the status line, diffs) is ``static/editing.js``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from journeyman.domain.reader import NAME
from journeyman.web.auth import Session

if TYPE_CHECKING:
    from journeyman.web.pages import _Console

__all__ = ["editor_routes"]


def editor_routes(console: _Console) -> list[Route]:
    """The editor's routes: ``/journeys/new`` before ``/journeys/{name}`` (which would take
    it for a journey's page) and ``/journeys/{name}/edit`` before the journey commands."""
    editor = _Editor(console)
    return [
        Route("/journeys/new", console.page(editor.new), methods=["GET"]),
        Route("/journeys/{name}/edit", console.page(editor.edit), methods=["GET"]),
        Route("/templates", console.page(editor.templates), methods=["GET"]),
        Route("/templates/{name}/edit", console.page(editor.template), methods=["GET"]),
    ]


class _Editor:
    def __init__(self, console: _Console) -> None:
        self.console = console

    async def new(self, request: Request, session: Session) -> Response:
        """Ask for the new journey's name, then open the editor on it."""
        if "new" in self.console.runtime.workspace.journeys:  # a journey named "new": its page
            request.scope["path_params"] = {"name": "new"}
            return await self.console.journey(request, session)
        name = request.query_params.get("name", "").strip()
        error = ""
        if name:
            if NAME.fullmatch(name):
                fresh = "" if name in self.console.runtime.workspace.journeys else "?new=1"
                return RedirectResponse(f"/journeys/{quote(name)}/edit{fresh}", 303)
            error = (
                "A journey's name is letters, digits, '_' and '-', starting with a letter "
                f"or '_', not {name!r}."
            )
        context = {"asking": True, "name": name, "error": error}
        status = 400 if error else 200
        return self.console.render(request, session, "editor.html", context, status)

    async def edit(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        if not NAME.fullmatch(name):
            return self.console._not_found(request, session, "no such journey")
        context = {
            "asking": False,
            "name": name,
            "fresh": request.query_params.get("new") == "1",
            "published": name in self.console.runtime.workspace.journeys,
        }
        return self.console.render(request, session, "editor.html", context)

    async def template(self, request: Request, session: Session) -> Response:
        """A template beside its preview; ``?journey=`` names the journey it was opened
        from (a way back), ``?new=1`` starts a new template."""
        name = request.path_params["name"]
        if not NAME.fullmatch(name):
            return self.console._not_found(request, session, "no such template")
        journey = request.query_params.get("journey", "")
        context = {
            "name": name,
            "fresh": request.query_params.get("new") == "1",
            "published": name in self.console.runtime.workspace.templates,
            "journey": journey if NAME.fullmatch(journey) else "",
        }
        return self.console.render(request, session, "template_editor.html", context)

    async def templates(self, request: Request, session: Session) -> Response:
        """The published templates, each a link to its editor; ``?name=`` starts one."""
        from journeyman.web.pages import _data, _wants_json  # pages imports this module

        published = self.console.runtime.workspace.templates
        name = request.query_params.get("name", "").strip()
        error = ""
        if name:
            if NAME.fullmatch(name):
                fresh = "" if name in published else "?new=1"
                return RedirectResponse(f"/templates/{quote(name)}/edit{fresh}", 303)
            error = (
                "A template's name is letters, digits, '_' and '-', starting with a letter "
                f"or '_', not {name!r}."
            )
        found = [
            {
                "name": t.name,
                "channel": t.channel,
                "topic": t.topic,
                "transactional": t.transactional,
                "file": t.origin.file,
            }
            for t in sorted(published.values(), key=lambda t: t.name)
        ]
        if _wants_json(request):
            return _data({"templates": found})
        context = {"templates": found, "name": name, "error": error}
        return self.console.render(
            request, session, "templates.html", context, 400 if error else 200
        )
