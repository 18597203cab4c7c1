"""The editor's drafts of journeys and templates over HTTP: keep a draft, check it, save
it to the workspace folder, publish it.

Every route exists twice with the same handler: under ``/v1`` for the admin API (the
admin key; who makes a change is the body's or the query's ``by``) and under
``/editor/api`` for the console (the session's user; writes need the session's CSRF
token in ``X-CSRF-Token``). Paths after the prefix:

- ``GET /journeys/{name}/draft``: the stored draft, else one made from the workspace
  folder's file (``?new=1``: a new journey's);
- ``PUT /journeys/{name}/draft`` ``{"document", "revision", "by"}``: store it, if
  ``revision`` is still the stored draft's (409 with theirs and a diff otherwise);
- ``DELETE /journeys/{name}/draft``: discard it;
- ``POST /journeys/{name}/draft/check`` ``{"document"}``: its text, diff and problems;
- ``POST /journeys/{name}/draft/save`` ``{"revision", "by"}``: write it to the folder;
- ``POST /journeys/{name}/draft/publish`` ``{"revision", "by"}``: write it, publish the
  folder, drop the draft;
- ``GET /editor/schema``: the fields of journeys, steps and templates, and names to
  complete.

Templates have the same routes under ``/templates/{name}/draft``. A draft is the
journey's (or template's) document (JSON, the shape of its YAML); its text is that
document merged into the folder's file as it is now (:mod:`journeyman.drafts`), so its
diff is what saving would change. Both kinds are kept in one store, a template's under
the key ``template:<name>``. Creating, editing, discarding, saving and publishing a draft
are kept in the audit, under the journey's name or the template's key.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from journeyman.domain.checks import STANDARD_TRAITS
from journeyman.domain.model import Workspace
from journeyman.drafts import (
    DraftError,
    EditedFile,
    Kind,
    edit_document,
    find_document,
    form_schema,
    journey_data,
    located,
    new_journey,
    new_template,
    unified_diff,
)
from journeyman.runtime.audit import AUDIT_SHOWN, Who
from journeyman.runtime.publish import Source
from journeyman.runtime.service import Runtime
from journeyman.storage.base import AuditEntry
from journeyman.storage.drafts import DraftStore, StoredDraft
from journeyman.trying_api import in_worker, journey_name
from journeyman.wire import Problem, decoded, json_response, read_body
from journeyman.workspace import load_texts, load_workspace, workspace_files

__all__ = ["TEMPLATE_KEY", "draft_routes"]

Handler = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Handler], Handler]

BODY_LIMIT = 1024 * 1024  # a journey's or a template's document, and a little more
BY_LENGTH = 100  # the longest name of who makes a change
DEPTH = 32  # how deep a journey's document may nest: far more than any journey needs
# How many values (keys' values and list items, at any depth) a document may hold: a
# journey of a thousand steps holds a few thousand; merging many more into the file
# would keep a thread busy for seconds.
VALUES = 20_000


TEMPLATE_KEY = "template:"  # a template's draft and audit are kept under this + its name


@dataclass(frozen=True, slots=True)
class _Kind:
    """What differs between the drafts of journeys and of templates."""

    kind: Kind
    folder: str  # where a new one's file goes, and the path's word: journeys, templates
    new: Callable[[str], dict[str, Any]]
    prefix: str  # of its key in the store and the audit

    def key(self, name: str) -> str:
        return self.prefix + name

    def new_file(self, name: str) -> str:
        return f"{self.folder}/{name}.yaml"


_KINDS = (
    _Kind("journey", "journeys", new_journey, ""),
    _Kind("template", "templates", new_template, TEMPLATE_KEY),
)


def draft_routes(runtime: Runtime, guard: Guard, prefix: str) -> list[Route]:
    """The draft endpoints of journeys and templates under ``prefix`` (``/v1`` or
    ``/editor/api``), behind ``guard``."""
    routes = []
    for kind in _KINDS:
        drafts = _Drafts(runtime, kind)
        path = f"{prefix}/{kind.folder}/{{name}}/draft"
        routes += [
            Route(path, guard(drafts.get), methods=["GET"]),
            Route(path, guard(drafts.put), methods=["PUT"]),
            Route(path, guard(drafts.discard), methods=["DELETE"]),
            Route(f"{path}/check", guard(drafts.check), methods=["POST"]),
            Route(f"{path}/save", guard(drafts.save), methods=["POST"]),
            Route(f"{path}/publish", guard(drafts.publish), methods=["POST"]),
        ]
    schema = _Drafts(runtime, _KINDS[0]).schema
    return [*routes, Route(f"{prefix}/editor/schema", guard(schema), methods=["GET"])]


@dataclass(slots=True)
class _Folder:
    """The workspace folder's files as they are now, and where each document is."""

    root: Path
    texts: dict[str, str]

    def file_of(self, kind: Kind, name: str) -> str | None:
        for file, text in self.texts.items():
            if find_document(text, file, kind, name) is not None:
                return file
        return None


@dataclass(slots=True)
class _Draft:
    """A draft as answered: stored or not, with its text in the folder's file."""

    kind: Kind
    name: str
    file: str
    document: dict[str, Any]
    stored: StoredDraft | None
    before: str  # the file's text now
    edited: EditedFile

    def problems(self, folder: _Folder, env: Any) -> list[dict[str, Any]]:
        texts = {**folder.texts, self.file: self.edited.text}
        loaded = load_texts(texts, folder.root, env=env)
        mine = [p for p in loaded.problems if p.file == self.file or p.is_error]
        return located(mine, self.edited.document, self.edited.text)

    def errors(self, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for p in problems if p["severity"] == "error" and p["file"] == self.file]

    def as_json(self, problems: list[dict[str, Any]]) -> dict[str, Any]:
        stored = self.stored
        return {
            self.kind: self.name,
            "stored": stored is not None,
            "revision": stored.revision if stored else None,
            "by": stored.by if stored else None,
            "at": _iso(stored.at) if stored else None,
            "file": self.file,
            "document": self.document,
            "text": self.edited.text,
            "diff": unified_diff(self.before, self.edited.text, self.file),
            "problems": problems,
        }


class _Drafts:
    def __init__(self, runtime: Runtime, kind: _Kind) -> None:
        self.runtime = runtime
        self.kind = kind

    # endpoints

    async def get(self, request: Request) -> Response:
        name = _name(request, self.kind.kind)
        folder = await in_worker(self._folder)
        stored = await self._store().draft(self.kind.key(name))
        if stored is not None:
            draft = await in_worker(self._draft, folder, name, stored.document, stored.file, stored)
        else:
            fresh = request.query_params.get("new") in ("1", "true")
            draft = await in_worker(self._from_folder, folder, name, fresh)
        found = await in_worker(self._answer, folder, draft)
        entries = await self.runtime.reads.audit(self.kind.key(name), AUDIT_SHOWN)
        found["audit"] = [entry.as_dict() for entry in entries]
        return json_response(found)

    async def put(self, request: Request) -> Response:
        name = _name(request, self.kind.kind)
        body = await _body(request, ("document", "revision", "by"))
        who = _who(request, body)
        document = _document(body.get("document"), self.kind.kind, name)
        revision = _revision(body)
        folder, store = await in_worker(self._folder), self._store()
        stored = await store.draft(self.kind.key(name))
        file = stored.file if stored else self._file(folder, name)
        draft = await in_worker(self._draft, folder, name, document, file, None)
        now = self.runtime.clock()
        key = self.kind.key(name)
        saved = StoredDraft(key, secrets.token_hex(8), who.by, now, file, document)
        if not await store.save_draft(saved, revision):
            await self._conflict(folder, name, draft, revision)
        await self._audit(who, "draft" if revision is None else "edit", name)
        draft.stored = saved
        return json_response(await in_worker(self._answer, folder, draft))

    async def discard(self, request: Request) -> Response:
        name = _name(request, self.kind.kind)
        body = await _body(request, ("by",), optional=True)
        who = _who(request, body)
        if await self._store().discard_draft(self.kind.key(name)):
            await self._audit(who, "discard", name)
        return Response(status_code=204)

    async def check(self, request: Request) -> Response:
        name = _name(request, self.kind.kind)
        body = await _body(request, ("document", "by"))
        document = _document(body.get("document"), self.kind.kind, name)
        folder = await in_worker(self._folder)
        stored = await self._store().draft(self.kind.key(name))
        file = stored.file if stored else self._file(folder, name)
        draft = await in_worker(self._draft, folder, name, document, file, None)
        found = await in_worker(self._answer, folder, draft)
        return json_response({key: found[key] for key in ("text", "diff", "problems")})

    async def save(self, request: Request) -> Response:
        name = _name(request, self.kind.kind)
        body = await _body(request, ("revision", "by"))
        who = _who(request, body)
        folder = await in_worker(self._folder)
        draft = await self._current(folder, name, _revision(body))
        if draft is not None:
            await in_worker(self._write, folder, draft)
            await self._audit(who, "save", name)
        file = draft.file if draft else folder.file_of(self.kind.kind, name)
        return json_response({"file": file, "saved": True})

    async def publish(self, request: Request) -> Response:
        name = _name(request, self.kind.kind)
        body = await _body(request, ("revision", "by"))
        who = _who(request, body)
        folder = await in_worker(self._folder)
        draft = await self._current(folder, name, _revision(body))
        if draft is not None and await in_worker(self._write, folder, draft):
            await self._audit(who, "save", name)
        workspace = await in_worker(self._sound_folder)
        source: Source = "console" if who.via == "console" else "api"
        plan = await self.runtime.publish(workspace, source=source, by=who.by)
        if self.kind.prefix and plan.workspace is not None:  # a journey's is the runtime's
            await self._audit(who, "publish", name, plan.workspace)
        if draft is not None and draft.stored is not None:
            await self._store().discard_draft(self.kind.key(name), draft.stored.revision)
        return json_response({"plan": plan.as_dict(), "workspace": plan.workspace})

    async def schema(self, request: Request) -> Response:
        workspace = self.runtime.workspace
        if self.runtime.root is not None:
            folder = await in_worker(self._folder)
            loaded = await in_worker(load_texts, folder.texts, folder.root, (), self.runtime.env)
            workspace = loaded.workspace or workspace
        return json_response(form_schema(_completions(workspace)))

    # the parts

    def _answer(self, folder: _Folder, draft: _Draft) -> dict[str, Any]:
        return draft.as_json(draft.problems(folder, self.runtime.env))

    def _store(self) -> DraftStore:
        store = self.runtime.store
        if not isinstance(store, DraftStore):
            raise Problem(501, "store", "drafts", "this store keeps no drafts")
        return store

    def _folder(self) -> _Folder:
        root = self.runtime.root
        if root is None:
            message = "this server was not started from a workspace folder (serve --workspace)"
            raise Problem(409, "workspace", "folder", message)
        texts = {}
        for path in workspace_files(root):
            try:
                texts[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # validate names it; the editor edits the others
        return _Folder(root, texts)

    def _file(self, folder: _Folder, name: str) -> str:
        """The file the document is in, else the file a new one goes in."""
        return folder.file_of(self.kind.kind, name) or self.kind.new_file(name)

    def _draft(
        self,
        folder: _Folder,
        name: str,
        document: dict[str, Any],
        file: str,
        stored: StoredDraft | None,
    ) -> _Draft:
        before = folder.texts.get(file, "")
        try:
            edited = edit_document(before, file, self.kind.kind, name, document)
        except DraftError as error:
            raise Problem(422, "file", "yaml", f"{file}: {error}") from None
        return _Draft(self.kind.kind, name, file, document, stored, before, edited)

    def _from_folder(self, folder: _Folder, name: str, fresh: bool) -> _Draft:
        kind = self.kind.kind
        file = folder.file_of(kind, name)
        if file is not None:
            found = find_document(folder.texts[file], file, kind, name)
            assert found is not None
            return self._draft(folder, name, journey_data(found), file, None)
        if not fresh:
            message = f"no {kind} named {name!r} in the workspace folder (?new=1 starts one)"
            raise Problem(404, "name", "exists", message)
        return self._draft(folder, name, self.kind.new(name), self.kind.new_file(name), None)

    async def _current(self, folder: _Folder, name: str, revision: str | None) -> _Draft | None:
        """The stored draft, if ``revision`` is its revision (None: no draft is stored,
        nothing to write); 409 otherwise, 422 if it has errors."""
        kind = self.kind
        stored = await self._store().draft(kind.key(name))
        if stored is None and revision is None:
            if folder.file_of(kind.kind, name) is None:
                message = f"no draft and no {kind.kind} named {name!r}"
                raise Problem(404, "name", "exists", message)
            return None
        if stored is None or stored.revision != revision:
            mine = stored.document if stored else kind.new(name)
            file = stored.file if stored else kind.new_file(name)
            draft = await in_worker(self._draft, folder, name, mine, file, None)
            await self._conflict(folder, name, draft, revision)
        assert stored is not None
        draft = await in_worker(self._draft, folder, name, stored.document, stored.file, stored)
        problems = await in_worker(draft.problems, folder, self.runtime.env)
        errors = draft.errors(problems)
        if errors:
            message = f"the draft has {len(errors)} error(s)"
            raise _refused(422, "document", "valid", message, problems=errors)
        return draft

    async def _conflict(
        self, folder: _Folder, name: str, mine: _Draft, revision: str | None
    ) -> None:
        """409: the stored draft is not at ``revision``; theirs and a diff of yours to it."""
        stored = await self._store().draft(self.kind.key(name))
        if stored is not None:
            theirs = await in_worker(
                self._draft, folder, name, stored.document, stored.file, stored
            )
            when = _iso(stored.at)
            message = f"{stored.by} saved this draft at {when} since you opened it"
        else:
            theirs = await in_worker(self._from_folder, folder, name, True)
            message = "the draft was discarded or published since you opened it"
        raise _refused(
            409,
            "revision",
            "current",
            message,
            theirs=await in_worker(self._answer, folder, theirs),
            diff=await in_worker(unified_diff, mine.edited.text, theirs.edited.text, mine.file),
        )

    def _write(self, folder: _Folder, draft: _Draft) -> bool:
        """Write the draft's text to its file, inside the folder only, all or nothing;
        whether that changed the file."""
        if folder.texts.get(draft.file) == draft.edited.text:
            return False
        root = folder.root.resolve()
        target = (root / draft.file).resolve()
        if root not in target.parents:
            raise Problem(422, "file", "inside", f"{draft.file} is not inside the workspace folder")
        if draft.file not in folder.texts and (target.exists() or target.is_symlink()):
            # There, but not read as UTF-8 text: writing would replace what we never saw.
            message = f"{draft.file} is in the folder but cannot be read as UTF-8 text"
            raise Problem(409, "file", "readable", message)
        try:
            _replace(target, draft.edited.text)
        except OSError as error:  # a folder that is a file, a full disk, no permission
            message = f"{draft.file} cannot be written: {error.strerror or error}"
            raise Problem(409, "file", "writable", message) from None
        folder.texts[draft.file] = draft.edited.text
        return True

    def _sound_folder(self) -> Workspace:
        """The folder as the console's Publish reads it: every file, or its errors."""
        root = self._folder().root
        loaded = load_workspace(root, self.runtime.env)
        if loaded.workspace is None:
            problems = [p.as_dict() for p in loaded.errors]
            raise _refused(
                422, "workspace", "valid", "the workspace folder has errors", problems=problems
            )
        return loaded.workspace

    async def _audit(self, who: Who, command: str, name: str, version: int | None = None) -> None:
        at, key = self.runtime.clock(), self.kind.key(name)
        entry = AuditEntry(at, who.by, who.via, command, key, workspace_version=version)
        await self.runtime.store.add_audit([entry])


def _replace(target: Path, text: str) -> None:
    """Make ``target``'s text ``text``, all or nothing, keeping its permissions."""
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".draft-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, mode)  # as the file was (mkstemp's is 0600)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _refused(status: int, field: str, rule: str, message: str, **extra: Any) -> Problem:
    """A Problem whose body says more beside the error (problems, their draft)."""
    problem = Problem(status, field, rule, message)
    cast(dict[str, Any], problem.body).update(extra)
    return problem


def _name(request: Request, kind: Kind) -> str:
    return journey_name(request, kind)


async def _body(
    request: Request, fields: tuple[str, ...], optional: bool = False
) -> dict[str, Any]:
    if optional and request.headers.get("content-length") in (None, "0"):
        return {}
    body = await _object(request)
    for key in body:
        if key not in fields:
            message = f"unknown field {key[:40]!r}; the fields are {', '.join(fields)}"
            raise Problem(422, key[:40], "unknown", message)
    return body


async def _object(request: Request) -> dict[str, Any]:
    """The body as a JSON object: 413 over :data:`BODY_LIMIT`, 400 if it is not one."""
    length = request.headers.get("content-length")
    data = decoded(await read_body(request.receive, length, BODY_LIMIT))
    if not isinstance(data, dict):
        raise Problem(400, "body", "type", "the body must be a JSON object")
    return data


def _who(request: Request, body: dict[str, Any]) -> Who:
    """The console's user, else the body's or the query's ``by`` (required)."""
    user = getattr(request.state, "user", None)
    if isinstance(user, str) and user:
        return Who(user, "console")
    given = body.get("by", request.query_params.get("by"))
    if not isinstance(given, str) or not given.strip():
        raise Problem(422, "by", "required", "'by' must say who makes the change")
    if len(given) > BY_LENGTH or any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in given):
        message = f"'by' must be one line of at most {BY_LENGTH} characters"
        raise Problem(422, "by", "length", message)
    return Who(given.strip(), "api")


def _revision(body: dict[str, Any]) -> str | None:
    revision = body.get("revision")
    if revision is not None and not isinstance(revision, str):
        raise Problem(422, "revision", "type", "'revision' must be the draft's revision or null")
    return revision


def _document(value: Any, kind: Kind, name: str) -> dict[str, Any]:
    """The body's ``document``: the ``kind`` ``name``'s document, as an object."""
    if value is None:
        raise Problem(422, "document", "required", f"'document' must be the {kind}'s document")
    if not isinstance(value, dict):
        raise Problem(422, "document", "type", "'document' must be an object")
    if value.get("kind") != kind:
        raise Problem(422, "document.kind", "value", f"'document.kind' must be {kind}")
    if value.get("name") != name:
        message = f"'document.name' must be {name!r}, the {kind} of the path"
        raise Problem(422, "document.name", "value", message)
    # No backend keeps a NUL, and no journey needs one.
    if b"\\u0000" in msgspec.json.encode(value):
        raise Problem(422, "document", "text", "'document' must not hold NUL characters")
    depth, values = _measure(value)
    if depth > DEPTH:
        message = f"'document' nests more than {DEPTH} levels deep"
        raise Problem(422, "document", "depth", message)
    if values > VALUES:
        message = f"'document' holds more than {VALUES} values: split the journey"
        raise Problem(422, "document", "size", message)
    return value


def _measure(value: Any) -> tuple[int, int]:
    """How deep ``value`` nests, and how many values it holds at any depth."""
    depth, count, level = 0, 0, [value]
    while level:
        depth += 1
        inner = [v for item in level for v in _inside(item)]
        count += len(inner)
        level = [v for v in inner if isinstance(v, dict | list)]
        if depth > DEPTH:  # deeper still does not matter: stop before walking it
            break
    return depth, count


def _inside(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        return value.values()
    return value if isinstance(value, list) else ()


def _completions(workspace: Workspace) -> dict[str, Any]:
    return {
        "events": sorted(workspace.events),
        "traits": sorted(STANDARD_TRAITS | workspace.settings.traits),
        "templates": sorted(workspace.templates),
        "segments": sorted(workspace.segments),
        "actions": sorted(workspace.actions),
        "journeys": sorted(workspace.journeys),
        "steps": {name: list(j.steps) for name, j in sorted(workspace.journeys.items())},
    }


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
