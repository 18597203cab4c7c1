"""One running journeyman: the store, the processor, the timer loop and the dispatcher.

:class:`Runtime` starts and stops them together. ``journeyman serve`` puts the HTTP API in
front of it; tests drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from journeyman.channels.base import Channel
from journeyman.channels.config import channel_from_config
from journeyman.channels.file import FileChannel
from journeyman.domain.model import CHANNELS, Workspace
from journeyman.runtime.dispatcher import Dispatcher, RetryPolicy
from journeyman.runtime.processor import Processor, utc_now
from journeyman.runtime.timers import TimerLoop
from journeyman.storage.base import Batch, Store

__all__ = ["Runtime", "build_channels"]

log = logging.getLogger("journeyman")


def build_channels(
    workspace: Workspace,
    env: Mapping[str, str],
    *,
    root: Path,
    fallback_dir: Path,
    overrides: Mapping[str, Channel] | None = None,
) -> dict[str, Channel]:
    """Every channel the workspace configures; the others write to files in development.

    ``overrides`` (such as the built-in mail catcher for email) win over both.
    """
    channels: dict[str, Channel] = {
        name: channel_from_config(config, env, root=root)
        for name, config in workspace.channels.items()
    }
    for name in CHANNELS:
        if name not in channels:
            channels[name] = FileChannel(name, fallback_dir / f"{name}-messages.jsonl")
    channels.update(overrides or {})
    return channels


class Runtime:
    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        channels: Mapping[str, Channel],
        *,
        env: Mapping[str, str],
        clock: Callable[[], datetime] = utc_now,
        retry: RetryPolicy | None = None,
        idle: float = 1.0,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.processor = Processor(store, workspace, clock=clock, on_commit=self._committed)
        self.timers = TimerLoop(store, self.processor, clock, idle=idle)
        self.dispatcher = Dispatcher(
            store, self.processor, self.channels, clock, env=env, policy=retry, idle=idle
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def workspace(self) -> Workspace:
        return self.processor.workspace

    def _committed(self, batch: Batch) -> None:
        if batch.effects:
            self.dispatcher.wake()
        if any(i.wake_at is not None for i in batch.instances.values()):
            self.timers.wake()

    async def start(self) -> None:
        await self.store.open()
        self._tasks = [
            asyncio.create_task(self.processor.run(), name="processor"),
            asyncio.create_task(self.timers.run(), name="timers"),
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        """Finish the batch in flight and what is queued, then close everything."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.processor.drain()
        for channel in self.channels.values():
            await channel.close()
        await self.store.close()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the %s loop stopped", task.get_name(), exc_info=task.exception())
