"""Publishing a workspace: journey versions, and the plan that says what changes.

A journey whose document changed becomes a new version; instances already running
finish on the version they entered, new entries use the new one. :func:`make_plan` is the
pure part (what is new, changed, unchanged, removed); :class:`Versions` keeps every
version that running instances still need, compiled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from journeyman.domain.model import Journey, Workspace
from journeyman.domain.parse import compile_journey
from journeyman.storage.base import PublishedJourney, Store

__all__ = ["Plan", "Versions", "make_plan", "publish"]


@dataclass(slots=True)
class Plan:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)  # journey -> its version now

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """The plan as a person reads it, one journey a line."""
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
        return found


def make_plan(workspace: Workspace, published: Mapping[str, PublishedJourney]) -> Plan:
    """What publishing ``workspace`` over the ``published`` latest versions would do."""
    plan = Plan()
    for name, journey in sorted(workspace.journeys.items()):
        latest = published.get(name)
        if latest is None:
            plan.new.append(name)
            plan.versions[name] = 1
        elif latest.digest != journey.digest:
            plan.changed.append(name)
            plan.versions[name] = latest.version + 1
        else:
            plan.unchanged.append(name)
            plan.versions[name] = latest.version
    plan.removed = sorted(set(published) - set(workspace.journeys))
    return plan


def versioned(workspace: Workspace, plan: Plan) -> Workspace:
    """The workspace with each journey numbered as the plan says."""
    journeys = {
        name: dataclasses.replace(journey, version=plan.versions[name])
        for name, journey in workspace.journeys.items()
    }
    return dataclasses.replace(workspace, journeys=journeys)


async def publish(
    store: Store, workspace: Workspace, *, dry_run: bool = False
) -> tuple[Workspace, Plan]:
    """Store the new versions and return the workspace numbered accordingly."""
    plan = make_plan(workspace, await store.published())
    if not dry_run:
        await store.publish(
            [
                PublishedJourney(name, plan.versions[name], j.digest, dict(j.document))
                for name, j in workspace.journeys.items()
                if name in plan.new or name in plan.changed
            ]
        )
    return versioned(workspace, plan), plan


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
        """Compile the stored versions that running instances are on."""
        for name, version in await store.versions_in_use():
            if (name, version) in self._journeys:
                continue
            document = await store.journey_document(name, version)
            journey = compile_journey(document, f"{name} v{version}") if document else None
            if journey is not None:
                self._journeys[(name, version)] = dataclasses.replace(journey, version=version)
