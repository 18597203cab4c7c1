"""``journeyman worker``: one worker process, until SIGTERM or SIGINT.

A worker needs only the database and the bus: it runs the workspace published last (see
:mod:`journeyman.runtime.following`). See :mod:`journeyman.scaleout.worker` for what a
worker does. On a stop signal it finishes
its batches, gives its partitions back and exits; the other workers take them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from journeyman.channels.base import Channel
from journeyman.domain.model import Workspace
from journeyman.runtime.following import empty_workspace
from journeyman.runtime.service import build_channels
from journeyman.scaleout.worker import Worker
from journeyman.server import SettingError, data_dir, retry_policy
from journeyman.storage import open_shared_store, shown_url
from journeyman.storage.base import LEASE

__all__ = ["WorkerOptions", "claim_lease", "work"]


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    workspace_dir: Path | None  # --workspace, for development: run this folder's documents
    storage: str
    bus: str
    batch: int = 500


def claim_lease(env: Mapping[str, str]) -> timedelta:
    """How long a claimed timer or delivery is this worker's alone: ``JOURNEYMAN_LEASE``
    seconds, two minutes by default. A dead worker's claims are taken up after it; it
    must be longer than any delivery round takes, or a slow send could go out twice."""
    text = env.get("JOURNEYMAN_LEASE")
    if text is None:
        return LEASE
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise SettingError(f"JOURNEYMAN_LEASE must be a number of seconds above 0, not {text!r}")
    return timedelta(seconds=seconds)


async def work(
    workspace: Workspace | None,
    options: WorkerOptions,
    *,
    env: Mapping[str, str] | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    env = os.environ if env is None else env
    store = open_shared_store(options.storage, "a worker")
    store.lease = claim_lease(env)
    # Relative paths in channel documents start at --workspace, else where the worker runs.
    root = options.workspace_dir or Path.cwd()
    fallback = data_dir(options.storage)

    def make_channels(published: Workspace) -> dict[str, Channel]:
        return build_channels(published, env, root=root, fallback_dir=fallback)

    channels = make_channels(workspace if workspace is not None else empty_workspace())
    worker = Worker(
        workspace,
        store,
        options.bus,
        channels,
        env=env,
        retry=retry_policy(env),
        batch=options.batch,
        announce=announce,
        make_channels=make_channels,
        root=root,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not await _started(worker, stop):
        announce("journeyman worker stopped before it started")
        return
    announce(
        f"journeyman worker on {shown_url(options.storage)} and {options.bus}, "
        f"stream {worker.bus.stream if worker.bus else '?'}: running"
    )
    try:
        await stop.wait()
    finally:
        announce("journeyman worker stopping: finishing its batches")
        await worker.stop()
        announce("journeyman worker stopped")


async def _started(worker: Worker, stop: asyncio.Event) -> bool:
    """Start the worker, unless a stop signal comes first (it may wait for ``serve``)."""
    starting = asyncio.ensure_future(worker.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if starting.done():
        starting.result()  # raises what the start raised
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    await worker.store.close()
    return False
