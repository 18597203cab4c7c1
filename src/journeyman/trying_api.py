"""Trying a draft before it is published, over HTTP (see :mod:`journeyman.trying`).

- ``POST {prefix}/journeys/{name}/draft/tests`` ``{"document"?}``: the workspace's journey
  tests, run with the document as journey ``name``.
- ``POST {prefix}/journeys/{name}/draft/try`` ``{"profile", "document"?, "until"?}``: a
  stored profile's traits and events replayed through the draft on a virtual clock.
- ``POST {prefix}/preview`` ``{"template" | "name", "profile"?}``: a template rendered for
  a stored profile or a sample one.
- ``POST {prefix}/check`` ``{"kind", "text", "field"?}``: what ``journeyman validate``
  says of an expression or a Liquid text.

The workspace is the server's folder (``serve --workspace``) as it is on disk now, or the
published one when the server has no folder. Without a ``document``, the journey is the
stored draft's (when the routes are given a way to read it, ``stored``), else the
workspace's own. Nothing here sends a message or writes to the store. A bad body changes
nothing and gets a 4xx naming the field and the rule.

The work runs on the editor's own threads (:func:`in_worker`, at most :data:`WORKERS` at
once, so the rest of the server never waits for it), and within a time: the tests
:data:`~journeyman.trying.TEST_SECONDS` together, a try
:data:`~journeyman.trying.TRY_SECONDS`, a preview
:data:`~journeyman.trying.PREVIEW_SECONDS`; past it, a 422 with the rule ``time``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman import trying
from journeyman.domain import model as m
from journeyman.domain.problems import Problem as WorkspaceProblem
from journeyman.errors import WorkspaceNotFound
from journeyman.runtime.service import Runtime
from journeyman.storage.base import StoredEvent
from journeyman.storage.drafts import DraftStore
from journeyman.wire import Problem, decoded, json_response, read_body
from journeyman.workspace import Loaded

__all__ = [
    "BODY_LIMIT",
    "CHECK_LENGTH",
    "NAME_LENGTH",
    "REPLAY_EVENTS",
    "WORKERS",
    "StoredDraft",
    "in_worker",
    "journey_name",
    "try_routes",
]

T = TypeVar("T")

Handler = Callable[[Request], Awaitable[Response]]
# The document of journey ``name``'s stored draft, or None when it has none.
StoredDraft = Callable[[str], Awaitable[Mapping[str, Any] | None]]

BODY_LIMIT = 1024 * 1024  # a journey or template document, with room to spare
REPLAY_EVENTS = 1000  # the latest stored events of a profile that a try replays
ID_LENGTH = 1000  # the longest profile id a try or preview looks up
CHECK_LENGTH = 256 * 1024  # the longest text /check compiles: far over any email's HTML
NAME_LENGTH = 100  # the longest journey name in a path
WORKERS = 2  # the editor's threads: what it computes never takes the server's own
QUEUE = 16  # jobs running or waiting for them; past that, a 503 rather than a long wait
_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")

_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="journeyman-editor")
_queued = 0  # jobs given to the pool and not done (only the event loop's thread counts)


async def in_worker(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` on one of the editor's threads; a :class:`~journeyman.trying.TooSlow`
    it raises is a 422 naming what took too long (rule ``time``), a
    :class:`~journeyman.trying.TooLong` one naming the profile tried (rule ``trace``).
    With :data:`QUEUE` jobs already running or waiting, a 503 (rule ``busy``) with
    ``Retry-After``."""
    global _queued
    if _queued >= QUEUE:
        message = f"the editor is busy with {_queued} requests: try again in a few seconds"
        raise Problem(503, "editor", "busy", message, {"Retry-After": "5"})
    loop = asyncio.get_running_loop()
    _queued += 1
    try:
        return await loop.run_in_executor(_POOL, functools.partial(func, *args))
    except trying.TooSlow as error:
        field, advice = _SLOW.get(error.what, ("body", "ask for less"))
        raise Problem(422, field, "time", f"{error}: {advice}") from None
    except trying.TooLong as error:
        advice = "a journey that loops makes them without end: try it until now"
        raise Problem(422, "profile", "trace", f"the try stopped: {error}; {advice}") from None
    finally:
        _queued -= 1


def journey_name(request: Request, kind: str = "journey") -> str:
    """The path's journey (or other ``kind``'s) name: 422 (``name``, ``pattern``) unless
    letters, digits, ``_`` ``-`` and ``.`` (not first), at most :data:`NAME_LENGTH` of them."""
    name: str = request.path_params["name"]
    if not (
        0 < len(name) <= NAME_LENGTH and name[0] != "." and set(name) <= _NAME_CHARACTERS
    ) or name.startswith("-"):
        message = (
            f"a {kind}'s name is letters, digits, _ - and . (not first), at most {NAME_LENGTH}"
        )
        raise Problem(422, "name", "pattern", message)
    return name


# What took too long: the field of the request it is about, and what to do.
_TESTS, _TRY, _PREVIEW = "the workspace's tests", "trying the profile", "the preview"
_SLOW = {
    _TESTS: ("tests", "a journey that waits in a loop runs forever: give its test an `until`"),
    _TRY: ("profile", "a journey that waits in a loop never ends: try it until now"),
    _PREVIEW: ("template", "the template's loops and filters do too much"),
}


def try_routes(
    runtime: Runtime,
    guard: Callable[[Handler], Handler],
    prefix: str,
    stored: StoredDraft | None = None,
) -> list[Route]:
    """The routes under ``prefix`` (``/v1`` for the API, ``/editor/api`` for the console),
    each behind ``guard``; ``stored`` reads a journey's stored draft."""
    api = _Trying(runtime, stored if stored is not None else _stored_drafts(runtime))
    return [
        Route(f"{prefix}/journeys/{{name}}/draft/tests", guard(api.tests), methods=["POST"]),
        Route(f"{prefix}/journeys/{{name}}/draft/try", guard(api.try_profile), methods=["POST"]),
        Route(f"{prefix}/preview", guard(api.preview), methods=["POST"]),
        Route(f"{prefix}/check", guard(api.check), methods=["POST"]),
    ]


def _stored_drafts(runtime: Runtime) -> StoredDraft | None:
    """How to read a journey's stored draft from the runtime's store, if it keeps drafts."""
    store = runtime.store
    if not isinstance(store, DraftStore):
        return None

    async def stored(name: str) -> Mapping[str, Any] | None:
        found = await store.draft(name)
        return found.document if found is not None else None

    return stored


class _Trying:
    def __init__(self, runtime: Runtime, stored: StoredDraft | None) -> None:
        self.runtime = runtime
        self.stored = stored

    async def tests(self, request: Request) -> Response:
        name = journey_name(request)
        body = await _body(request, ("document", "by"))
        workspace = await self._workspace(name, body.get("document"))
        deadline = trying.Deadline(trying.TEST_SECONDS, _TESTS)
        answer = await in_worker(trying.test_results, workspace, name, deadline)
        return json_response(answer)

    async def try_profile(self, request: Request) -> Response:
        name = journey_name(request)
        body = await _body(request, ("profile", "document", "until", "by"))
        until = body.get("until", "now")
        if until not in ("now", "end"):
            raise Problem(422, "until", "enum", "'until' must be now or end")
        profile_id = _profile_id(body.get("profile"), required=True)
        assert profile_id is not None
        document = body.get("document")
        if document is not None:  # the body's rules first, then what the store holds
            _journey_document(document, name)
        given = await self._replay(profile_id)
        workspace = await self._workspace(name, document)
        now = self.runtime.processor.now()
        deadline = trying.Deadline(trying.TRY_SECONDS, _TRY)
        until_ = cast(Literal["now", "end"], until)
        answer = await in_worker(trying.replay, workspace, name, given, now, until_, deadline)
        return json_response(answer)

    async def preview(self, request: Request) -> Response:
        body = await _body(request, ("template", "name", "profile", "by"))
        template = self._template(body)
        profile_id = _profile_id(body.get("profile"), required=False)
        account: dict[str, Any] = {}
        if profile_id is None:
            profile = trying.sample_profile(self.runtime.workspace.settings.traits)
        else:
            stored = await self._profile(profile_id)
            profile = stored.view()
            found = await self.runtime.reads.account(stored.account) if stored.account else None
            account = found.view() if found is not None else {}
        now = self.runtime.processor.now()
        deadline = trying.Deadline(trying.PREVIEW_SECONDS, _PREVIEW)
        answer = await in_worker(trying.preview, template, profile, now, account, deadline)
        return json_response(answer)

    async def check(self, request: Request) -> Response:
        body = await _body(request, ("kind", "text", "field", "by"))
        kind = body.get("kind")
        if kind not in ("expression", "liquid"):
            raise Problem(422, "kind", "enum", "'kind' must be expression or liquid")
        text, field = body.get("text"), body.get("field", "")
        if not isinstance(text, str):
            raise Problem(422, "text", "type", "'text' must be a string: the text to check")
        if not isinstance(field, str):
            raise Problem(422, "field", "type", "'field' must be a string: the field's name")
        if len(text) > CHECK_LENGTH:
            message = f"'text' is over {CHECK_LENGTH // 1024} KiB: check a shorter text"
            raise Problem(422, "text", "length", message)
        problems = await in_worker(trying.check_text, kind, text, field[:NAME_LENGTH])
        return json_response({"problems": problems})

    # the workspace with the draft

    async def _workspace(self, name: str, document: Any) -> m.Workspace:
        """The workspace with ``document`` (else the stored draft's, else its own) as
        journey ``name``: 404 when there is no such journey, 422 when it has errors."""
        if document is None and self.stored is not None:
            document = await self.stored(name)
        if document is not None:
            _journey_document(document, name)
        loaded = await in_worker(self._load, name, document)
        if loaded.workspace is None:
            message = "the workspace has errors with this draft"
            raise _with_problems(Problem(422, "document", "valid", message), loaded.problems)
        if name not in loaded.workspace.journeys:
            raise Problem(404, "name", "exists", f"no journey named {name!r}")
        return loaded.workspace

    def _load(self, name: str, document: Mapping[str, Any] | None) -> Loaded:
        runtime = self.runtime
        if runtime.root is not None:
            try:
                texts, problems = trying.folder_texts(runtime.root)
            except WorkspaceNotFound as error:  # the folder went away since serve started
                raise Problem(503, "workspace", "exists", str(error)) from None
        else:
            texts, problems = dict(runtime.workspace.sources), []
        env = runtime.dispatcher.env
        return trying.load_with(texts, problems, runtime.root, env, name, document)

    # stored profiles

    async def _profile(self, profile_id: str) -> Any:
        # No id holds a NUL or a lone surrogate (ingest refuses them), and PostgreSQL
        # cannot be asked for one.
        found = await self.runtime.reads.profile(profile_id) if _storable(profile_id) else None
        if found is None:
            raise Problem(404, "profile", "exists", f"no profile {profile_id[:200]!r}")
        return found

    async def _replay(self, profile_id: str) -> trying.Replay:
        reads = self.runtime.reads
        profile = await self._profile(profile_id)
        history: list[StoredEvent] = await reads.history(profile.id, REPLAY_EVENTS)
        account = await reads.account(profile.account) if profile.account else None
        return trying.Replay(
            profile=profile,
            identities=await reads.identities_of(profile.id),
            events=[(stored.event, stored.received_at) for stored in history],
            account=account,
        )

    # templates

    def _template(self, body: dict[str, Any]) -> m.MessageTemplate:
        document, name = body.get("template"), body.get("name")
        if (document is None) == (name is None):
            message = "give either 'template' (a template document) or 'name' (a template's)"
            raise Problem(422, "template", "one-of", message)
        if name is not None:
            found = self.runtime.workspace.templates.get(name) if isinstance(name, str) else None
            if found is None:
                raise Problem(404, "name", "exists", f"no template named {str(name)[:200]!r}")
            return found
        if not isinstance(document, dict):
            raise Problem(422, "template", "type", "'template' must be a template document")
        template, problems = trying.read_template(document)
        if template is None:
            raise _with_problems(
                Problem(422, "template", "valid", "the template has errors"), problems
            )
        return template


async def _body(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The body: a JSON object of the keys ``allowed``; an empty body is ``{}``."""
    length = request.headers.get("content-length")
    raw = await read_body(request.receive, length, BODY_LIMIT)
    body = decoded(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise Problem(422, "body", "type", "the body must be a JSON object")
    for key in body:
        if key not in allowed:
            message = f"unknown field {key[:100]!r}: the body takes {', '.join(allowed)}"
            raise Problem(422, key[:100], "unknown", message)
    if "by" in body and not isinstance(body["by"], str):  # null included: leave it out
        raise Problem(422, "by", "type", "'by' must be a string: who asks")
    return body


def _journey_document(document: Any, name: str) -> None:
    """422 unless ``document`` is journey ``name``'s document."""
    if not isinstance(document, dict):
        raise Problem(422, "document", "type", "'document' must be a journey document (an object)")
    if document.get("kind") != "journey":
        kind = repr(document.get("kind"))[:100]
        message = f"'document' must be a journey document (kind: journey), not kind {kind}"
        raise Problem(422, "document", "kind", message)
    if document.get("name") != name:
        other = repr(document.get("name"))[:100]
        message = f"'document' must be the journey {name!r}, not {other}"
        raise Problem(422, "document", "name", message)


def _with_problems(problem: Problem, problems: Iterable[WorkspaceProblem]) -> Problem:
    """``problem``, its body listing ``problems`` as ``journeyman validate`` prints them."""
    body: dict[str, Any] = problem.body
    body["problems"] = [p.as_dict() for p in problems]
    return problem


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _profile_id(value: Any, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise Problem(422, "profile", "type", "'profile' must be a profile's id (a string)")
    if len(value) > ID_LENGTH:
        raise Problem(422, "profile", "length", f"'profile' is over {ID_LENGTH} characters")
    return value
