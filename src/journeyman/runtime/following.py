"""Following the published workspace: every process runs the version published last.

A publish stores the whole workspace as one version (see :mod:`journeyman.runtime.publish`).
``journeyman serve`` and every ``journeyman worker`` look at the latest version's number
every :data:`EVERY` seconds (one cheap query) and, when it moved, load that version:
parse its files, resolve the ``${ENV}`` references of its channels from their own
environment, and run the next batches on it. So a publish reaches every process within
a second, without a restart, and no secret is ever stored in the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from journeyman.channels.base import Channel
from journeyman.domain.model import Workspace
from journeyman.errors import JourneymanError
from journeyman.storage.base import PublishedWorkspace, Store
from journeyman.workspace import load_texts

__all__ = [
    "EVERY",
    "UnloadableWorkspace",
    "empty_workspace",
    "load_published",
    "swap_channels",
    "watch",
]

log = logging.getLogger("journeyman")

EVERY = 0.5  # seconds between looks at the latest published version


class UnloadableWorkspace(JourneymanError):
    """A stored workspace version that does not load here (such as a bad ``JOURNEYMAN_*``
    environment variable): the process keeps running the version it has."""


def load_published(
    published: PublishedWorkspace, env: Mapping[str, str] | None = None, root: Path | None = None
) -> Workspace:
    """The workspace of a stored version, each journey numbered as it was published and
    bound to this version's templates (an instance sends what its version sent)."""
    loaded = load_texts(published.files, root, (), env)
    workspace = loaded.workspace
    if workspace is None:
        problems = "; ".join(str(p) for p in loaded.errors[:3])
        raise UnloadableWorkspace(f"workspace version {published.version}: {problems}")
    journeys = {
        name: dataclasses.replace(
            journey, version=published.journeys.get(name, 1), templates=workspace.templates
        )
        for name, journey in workspace.journeys.items()
    }
    return dataclasses.replace(workspace, journeys=journeys)


def empty_workspace() -> Workspace:
    """A workspace with nothing in it: what a worker runs until it has loaded one."""
    workspace = load_texts({}).workspace
    assert workspace is not None
    return workspace


def swap_channels(
    channels: dict[str, Channel],
    old: Workspace,
    new: Workspace,
    make: Callable[[Workspace], Mapping[str, Channel]] | None,
) -> list[Channel]:
    """Rebuild ``channels`` in place when the channel documents changed: the replaced
    channels, to be closed when the process stops (a delivery may still be using one)."""
    if make is None or dict(old.channels) == dict(new.channels):
        return []
    made = make(new)
    retired = [channel for name, channel in channels.items() if made.get(name) is not channel]
    channels.clear()
    channels.update(made)
    return retired


async def watch(
    store: Store,
    seen: Callable[[], int],
    take: Callable[[Workspace, int], None],
    *,
    env: Mapping[str, str] | None = None,
    root: Path | None = None,
    every: float = EVERY,
) -> None:
    """Forever: when a version newer than ``seen()`` is published, ``take`` it.

    A version that cannot run here (a channel whose ``${ENV}`` variable this process
    lacks) is reported once and skipped: the process keeps the version it runs until the
    next publish. Other failures (the database is away) are tried again."""
    refused = 0
    while True:
        await asyncio.sleep(every)
        try:
            number = await store.workspace_version()
            if number <= max(seen(), refused):
                continue
            published = await store.published_workspace(number)
            if published is not None:
                take(load_published(published, env, root), published.version)
        except JourneymanError as error:
            refused = number
            log.error("workspace version %d cannot run here: %s", number, error)
        except Exception:
            log.exception("loading the published workspace failed; trying again")
