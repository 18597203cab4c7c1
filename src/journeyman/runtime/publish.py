"""Publishing a workspace: one stored version of the whole workspace, journey versions,
and the plan that says what changes.

A publish stores every document (journeys, templates, actions, channels, event
definitions, rules, settings) as one workspace version, as written: ``${ENV}`` references
stay references, and each process resolves them when it loads the version (see
:mod:`journeyman.runtime.following`). A journey is versioned with the templates it sends:
when its document or one of those templates changed, it becomes a new version. Instances
already running finish on the version they entered, with that version's templates; new
entries use the new one. :func:`make_plan` is the pure part (what is new, changed,
unchanged, removed); :class:`Versions` keeps every version that running instances still
need, compiled.

Each publish also records where it came from (serve's folder at start, the console, or
the API) and, for a publish of the folder, a digest of the folder: :func:`kept_at_start`
uses it so that a restart never undoes a newer publish made through the API while the
folder has not changed since it was last published.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from journeyman.domain.documents import read_documents
from journeyman.domain.model import Journey, Send, Workspace
from journeyman.domain.parse import compile_journey, digest
from journeyman.errors import JourneymanError
from journeyman.runtime.audit import Who, publish_entries
from journeyman.runtime.following import load_published
from journeyman.storage.base import PublishedJourney, PublishedWorkspace, Store

__all__ = [
    "Kept",
    "Origin",
    "Plan",
    "Source",
    "Versions",
    "document_digests",
    "kept_at_start",
    "make_plan",
    "origin",
    "publish",
]

# Where a publish came from: serve publishing its folder at start, the console publishing
# the server's folder, or PUT /v1/workspace (which `journeyman publish` calls).
Source = Literal["serve", "console", "api"]
FROM_FOLDER: tuple[Source, ...] = ("serve", "console")
# {"version": N, "digest": D}: the server's folder was last published as version N, and
# read as D then.
FOLDER_SETTING = "workspace_folder"
ORIGIN_SETTING = "workspace_origin:{}"  # a version's {"from": source, "at": ISO time}


@dataclass(slots=True)
class Plan:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)  # journey -> its version now
    # The other documents that are new, changed or removed: "template welcome" -> "changed"
    documents: dict[str, str] = field(default_factory=dict)
    workspace: int = 0  # the workspace version the processes run now (or would)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """The plan as a person reads it, one journey or document a line."""
        found = []
        for label, names in (
            ("new", self.new),
            ("changed", self.changed),
            ("unchanged", self.unchanged),
            ("removed", self.removed),
        ):
            for name in names:
                version = f" (v{self.versions[name]})" if name in self.versions else ""
                found.append(f"  {label:<9} {name}{version}")
        for document, label in sorted(self.documents.items()):
            found.append(f"  {label:<9} {document}")
        if not (self.new or self.changed or self.removed or self.documents):
            found.append("  nothing changes: every document is as published")
        return found


def document_digests(files: Mapping[str, str]) -> dict[str, str]:
    """``"kind name"`` (``"rules"`` for a document without a name) -> a digest of what the
    document says, for every document but journey tests."""
    found = {}
    for file, text in files.items():
        for document in read_documents(text, file)[0]:
            data = document.data
            if isinstance(data, dict) and data.get("kind") != "test":
                key = f"{data.get('kind')} {data.get('name') or ''}".strip()
                found[key] = digest(data)
    return found


def stored_files(files: Mapping[str, str]) -> dict[str, str]:
    """The files a publish stores: all but those that hold journey tests only."""
    kept = {}
    for file, text in files.items():
        kinds = {
            d.data.get("kind") if isinstance(d.data, dict) else None
            for d in read_documents(text, file)[0]
        }
        if kinds != {"test"}:
            kept[file] = text
    return kept


def journey_digest(journey: Journey, documents: Mapping[str, str]) -> str:
    """What a journey version is: its document and the templates it sends."""
    sent = sorted({s.template for s in journey.steps.values() if isinstance(s, Send)})
    if not sent:
        return journey.digest
    return digest([journey.digest, *(f"{t}={documents.get(f'template {t}')}" for t in sent)])


def make_plan(
    workspace: Workspace,
    published: Mapping[str, PublishedJourney],
    latest: PublishedWorkspace | None = None,
) -> Plan:
    """What publishing ``workspace`` over the ``published`` latest journey versions and
    the ``latest`` workspace version would do."""
    plan = Plan()
    documents = document_digests(workspace.sources)
    for name, journey in sorted(workspace.journeys.items()):
        before, now = published.get(name), journey_digest(journey, documents)
        if before is None:
            plan.new.append(name)
            plan.versions[name] = 1
        elif before.digest != now:
            plan.changed.append(name)
            plan.versions[name] = before.version + 1
        else:
            plan.unchanged.append(name)
            plan.versions[name] = before.version
    # Removed: the journeys the latest version runs that the workspace no longer has (a
    # journey removed by an earlier version is not removed again).
    running = set(latest.journeys) if latest is not None else set(published)
    plan.removed = sorted(running - set(workspace.journeys))
    previous = document_digests(latest.files) if latest is not None else {}
    for key in sorted(set(documents) | set(previous)):
        if key.startswith("journey "):
            continue
        if key not in previous:
            plan.documents[key] = "new"
        elif key not in documents:
            plan.documents[key] = "removed"
        elif documents[key] != previous[key]:
            plan.documents[key] = "changed"
    changed = latest is None or latest.digest != digest(documents)
    plan.workspace = (latest.version if latest else 0) + changed
    return plan


def versioned(workspace: Workspace, plan: Plan) -> Workspace:
    """The workspace with each journey numbered as the plan says, and bound to the
    workspace's templates."""
    documents = document_digests(workspace.sources)
    journeys = {
        name: dataclasses.replace(
            journey,
            version=plan.versions[name],
            digest=journey_digest(journey, documents),
            templates=workspace.templates,
        )
        for name, journey in workspace.journeys.items()
    }
    return dataclasses.replace(workspace, journeys=journeys)


async def publish(
    store: Store,
    workspace: Workspace,
    *,
    dry_run: bool = False,
    source: Source = "api",
    now: datetime | None = None,
    by: str = "",
) -> tuple[Workspace, Plan]:
    """Store the new journey versions and the workspace version; return the workspace
    numbered accordingly. ``source`` and ``now`` are recorded with a new version, and in
    the audit with ``by`` (who published; the source's name if none is given)."""
    latest = await store.published_workspace()
    plan = make_plan(workspace, await store.published(), latest)
    numbered = versioned(workspace, plan)
    if dry_run:
        return numbered, plan
    await store.publish(
        [
            PublishedJourney(name, plan.versions[name], j.digest, dict(j.document))
            for name, j in numbered.journeys.items()
            if name in plan.new or name in plan.changed
        ]
    )
    whole = folder_digest(workspace)
    if latest is None or plan.workspace != latest.version:
        files = stored_files(workspace.sources)
        stored = PublishedWorkspace(0, whole, files, dict(plan.versions))
        plan.workspace = await store.publish_workspace(stored)
        when = now or datetime.now(UTC)
        origin = json.dumps({"from": source, "at": when.isoformat(timespec="seconds")})
        await store.set_setting(ORIGIN_SETTING.format(plan.workspace), origin)
        await store.add_audit(publish_entries(plan, Who(by or source, source), when))
    if source in FROM_FOLDER:
        folder = json.dumps({"version": plan.workspace, "digest": whole})
        await store.set_setting(FOLDER_SETTING, folder)
    return numbered, plan


def folder_digest(workspace: Workspace) -> str:
    """What a workspace version's ``digest`` is: one digest of all its documents."""
    return digest(document_digests(workspace.sources))


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a workspace version came from, and when it was published."""

    source: Source
    at: str  # ISO 8601

    def describe(self) -> str:
        where = {
            "serve": "from the server's folder at start",
            "console": "from the console",
            "api": "through the API (PUT /v1/workspace, as journeyman publish does)",
        }[self.source]
        at = self.at.replace("T", " ").replace("+00:00", " UTC")
        return f"published {where} at {at}"


async def origin(store: Store, version: int) -> Origin | None:
    """Where workspace version ``version`` came from (None: not recorded)."""
    found = _setting(await store.get_setting(ORIGIN_SETTING.format(version)))
    source, at = found.get("from"), found.get("at")
    if source not in ("serve", "console", "api") or not isinstance(at, str):
        return None
    return Origin(source, at)


@dataclass(frozen=True, slots=True)
class Kept:
    """At start, serve runs the latest version rather than publishing its folder: the
    folder has not changed since it was published as ``folder_version``, and a newer
    version came from elsewhere."""

    published: PublishedWorkspace  # the latest version, which runs
    origin: Origin | None
    folder_version: int


async def kept_at_start(store: Store, workspace: Workspace) -> Kept | None:
    """What serve runs at start instead of publishing ``workspace``, its folder: None
    when the folder is to be published (there is no version yet, the folder is the latest
    version, or it changed since it was last published)."""
    latest = await store.published_workspace()
    whole = folder_digest(workspace)
    if latest is None or latest.digest == whole:
        return None
    since = await _folder_version(store, latest, whole)
    if since is None:
        return None
    return Kept(latest, await origin(store, latest.version), since)


async def _folder_version(store: Store, latest: PublishedWorkspace, whole: str) -> int | None:
    """The version the folder was last published as, if it has not changed since."""
    text = await store.get_setting(FOLDER_SETTING)
    if text is not None:
        found = _setting(text)
        version = found.get("version")
        return version if found.get("digest") == whole and isinstance(version, int) else None
    # Versions published before folders were recorded: the newest one equal to the folder.
    for number in range(latest.version - 1, 0, -1):
        older = await store.published_workspace(number)
        if older is not None and older.digest == whole:
            return number
    return None


def _setting(text: str | None) -> dict[str, object]:
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class Versions:
    """Every journey version the engine may need, compiled: the engine's ``versions``."""

    def __init__(self) -> None:
        self._journeys: dict[tuple[str, int], Journey] = {}

    def __call__(self, name: str, version: int) -> Journey | None:
        return self._journeys.get((name, version))

    def keep(self, journeys: Mapping[str, Journey]) -> None:
        for journey in journeys.values():
            self._journeys[(journey.name, journey.version)] = journey

    async def load(self, store: Store) -> None:
        """Compile the stored versions that running instances are on, each with the
        templates of the workspace version it was published in."""
        missing = [key for key in await store.versions_in_use() if key not in self._journeys]
        if not missing:
            return
        published_in = await store.workspace_journeys()
        loaded: dict[int, Workspace] = {}
        for name, version in missing:
            found = [n for n, journeys in published_in.items() if journeys.get(name) == version]
            journey = await self._from_workspace(store, min(found), name, loaded) if found else None
            if journey is None:  # published before workspaces were stored whole
                document = await store.journey_document(name, version)
                journey = compile_journey(document, f"{name} v{version}") if document else None
            if journey is not None:
                self._journeys[(name, version)] = dataclasses.replace(journey, version=version)

    @staticmethod
    async def _from_workspace(
        store: Store, number: int, name: str, loaded: dict[int, Workspace]
    ) -> Journey | None:
        if number not in loaded:
            published = await store.published_workspace(number)
            if published is None:
                return None
            try:
                loaded[number] = load_published(published)
            except JourneymanError:
                return None
        return loaded[number].journeys.get(name)
