"""One running journeyman: the store, the processor, the timer loop and the dispatcher.

:class:`Runtime` starts and stops them together. ``journeyman serve`` puts the HTTP API in
front of it; tests drive it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from journeyman.channels.base import Channel
from journeyman.channels.config import channel_from_config
from journeyman.channels.file import FileChannel
from journeyman.domain import model as m
from journeyman.domain.core import Changes
from journeyman.domain.experiments import Decision, How
from journeyman.domain.model import CHANNELS, Workspace
from journeyman.domain.state import Event
from journeyman.runtime.audit import API, Who
from journeyman.runtime.backfills import Backfiller
from journeyman.runtime.callbacks import status_callback_step
from journeyman.runtime.dispatcher import Dispatcher, RetryPolicy
from journeyman.runtime.experiments import CHECK_EVERY, check, decide, read_decisions
from journeyman.runtime.following import UnloadableWorkspace, load_published, swap_channels, watch
from journeyman.runtime.import_jobs import ImportJobs
from journeyman.runtime.links import Links, load_links
from journeyman.runtime.processor import Operate, Processor, utc_now
from journeyman.runtime.publish import Kept, Plan, Source, Versions, kept_at_start, publish
from journeyman.runtime.schedules import Scheduler
from journeyman.runtime.tail import EventTail
from journeyman.runtime.timers import TimerLoop
from journeyman.runtime.tracking import Tracker
from journeyman.runtime.unsubscribe import ConsentLinks
from journeyman.storage.base import AuditEntry, Database, ReadModel, Store

__all__ = ["Runtime", "build_channels"]

log = logging.getLogger("journeyman")

COMMAND_PAGE = 1000  # running instances read at a time by a stop or a resume


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
        store: Database,
        channels: Mapping[str, Channel],
        *,
        env: Mapping[str, str],
        clock: Callable[[], datetime] = utc_now,
        retry: RetryPolicy | None = None,
        idle: float = 1.0,
        root: Path | None = None,
        grace: float = 15.0,
        make_channels: Callable[[Workspace], Mapping[str, Channel]] | None = None,
    ) -> None:
        # One database, seen through two ports: the engine's loops and the operations
        # below use the first, the API and the console read through the second.
        self.store: Store = store
        self.reads: ReadModel = store
        self.env = env
        # Links in messages (clicks, unsubscribe), made at start: the public URL is the
        # one given, else JOURNEYMAN_PUBLIC_URL, else the address serve listens on.
        self.public_url: str | None = None
        self.listening: str | None = None
        self.links = Links("http://127.0.0.1:8000", b"")  # until start
        self.root = root  # where relative paths of published channel documents start
        self.channels = dict(channels)
        self.clock = clock
        self.processor = Processor(store, workspace, clock=clock, on_commit=self._committed)
        self.timers = TimerLoop(store, self.processor, clock, idle=idle)
        self.schedules = Scheduler(store, lambda: self.workspace, self.accept, clock, idle=idle)
        self.backfills = Backfiller(store, lambda: self.workspace, self.accept, clock, idle=idle)
        self.dispatcher = Dispatcher(
            store, self.processor, self.channels, clock, env=env, policy=retry, idle=idle
        )
        # First, so that a later step (link tracking) sees the real links, not placeholders.
        self.dispatcher.prepare.insert(0, ConsentLinks(lambda: self.links, env, self.channels))
        self.dispatcher.prepare.append(status_callback_step(lambda: self.links, self.channels))
        self.grace = grace  # seconds that deliveries in flight get to finish at stop
        self._tasks: list[asyncio.Task[None]] = []
        self.versions = Versions()
        self.imports = ImportJobs(store, lambda: self.processor)
        self.plan = Plan()
        self.tail = EventTail()  # the last ingest outcomes, rejected calls included
        self.make_channels = make_channels  # the channels of a workspace a publish brings
        self.version = 0  # the workspace version running
        # At start the workspace given is published, unless a newer version came from
        # elsewhere (the API) and the workspace is unchanged since it was last published:
        # then that version runs, and ``kept`` says so. ``always_publish`` publishes anyway.
        self.always_publish = False
        self.kept: Kept | None = None
        self.published_at_start = False  # whether the start made a new version
        self._retired: list[Channel] = []  # channels a publish replaced, closed at stop
        self.check_every = CHECK_EVERY  # seconds between the experiments' winner checks

    @property
    def workspace(self) -> Workspace:
        return self.processor.workspace

    def _committed(self, batch: Changes) -> None:
        if batch.effects:
            self.dispatcher.wake()
        if any(i.wake_at is not None for i in batch.instances.values()):
            self.timers.wake()

    async def start(self) -> None:
        """Open the store, publish the workspace, and start the loops."""
        await self.store.open()
        self.links = await load_links(
            self.store, self.env, option=self.public_url, listening=self.listening, keep=True
        )
        self.dispatcher.prepare.append(
            Tracker(lambda: self.links, self.versions, lambda: self.workspace)
        )
        await self._start_version()
        await self.imports.recover()
        self.processor.obey(await self.store.journey_states())
        self.processor.obey_decisions(await read_decisions(self.store, self.workspace))
        await self.versions.load(self.store)
        follow = watch(self.store, lambda: self.version, self._take, env=self.env, root=self.root)
        # The experiments' winners are decided here, in serve, and nowhere else.
        loops = [*self._loops(), ("workspace", follow), ("experiments", self._experiments())]
        self._tasks = [asyncio.create_task(run, name=name) for name, run in loops]
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def _start_version(self) -> None:
        """Publish the workspace given, or run the newer version that a restart must not
        undo (see :func:`~journeyman.runtime.publish.kept_at_start`)."""
        kept = None if self.always_publish else await kept_at_start(self.store, self.workspace)
        if kept is None:
            before = await self.store.workspace_version()
            self.plan = await self.publish(self.workspace, source="serve")
            self.published_at_start = self.plan.workspace > before
            return
        try:
            latest = load_published(kept.published, self.env, self.root)
        except UnloadableWorkspace as error:
            raise UnloadableWorkspace(
                f"{error}. It is newer than the folder, which was not published; to publish"
                " the folder instead, start with --publish"
            ) from None
        self.kept = kept
        self.plan = Plan(workspace=kept.published.version)
        self._use(latest, kept.published.version)

    def _loops(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The loops :meth:`start` runs, by name."""
        return [
            ("processor", self.processor.run()),
            ("timers", self.timers.run()),
            ("dispatcher", self.dispatcher.run()),
            ("schedules", self.schedules.run()),
            ("backfills", self.backfills.run()),
        ]

    async def accept(self, events: list[Event]) -> list[str]:
        """Take ingested events: here, commit them (``accepted`` or ``duplicate`` each).

        Raises :class:`~journeyman.runtime.processor.Overloaded` when too much waits, and
        whatever else kept them from being stored.
        """
        return await self.processor.submit(events)

    async def stop(self) -> None:
        """Finish the deliveries and the batch in flight and what is queued, then close.

        Deliveries still going after ``grace`` seconds are cut short; they stay claimed,
        and are tried again once their lease runs out.
        """
        await self.imports.stop()
        await self._finish_deliveries()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.processor.drain()
        for channel in [*self.channels.values(), *self._retired]:
            await channel.close()
        await self.store.close()

    async def _finish_deliveries(self) -> None:
        """Let the dispatcher record what it is delivering, while the processor still runs.

        The outcome of a delivery with ``on_error`` goes through the processor, so the
        processor stops only after this.
        """
        running = [t for t in self._tasks if t.get_name() == "dispatcher" and not t.done()]
        if running:
            self.dispatcher.stop()
            await asyncio.wait(running, timeout=self.grace)

    # operating journeys

    async def publish(
        self, workspace: Workspace, *, dry_run: bool = False, source: Source = "api", by: str = ""
    ) -> Plan:
        """Publish ``workspace``: changed journeys get a new version; running instances
        finish on the version they entered. With ``dry_run``, only the plan. ``source``
        (the API, the console, serve at start) is recorded with a new version, and in the
        audit with ``by``, who published (the source's name if none is given)."""
        now = self.clock()
        numbered, plan = await publish(
            self.store, workspace, dry_run=dry_run, source=source, now=now, by=by
        )
        if not dry_run:
            self._use(numbered, plan.workspace)
        return plan

    def _take(self, workspace: Workspace, version: int) -> None:
        """A version another process published: run it, unless a newer one runs already."""
        if version > self.version:
            self._use(workspace, version)
            log.info("running workspace version %d", version)

    def _use(self, workspace: Workspace, version: int) -> None:
        """Run the next batches on ``workspace``; instances keep their versions."""
        old = self.processor.workspace
        # Channels first: a channel that cannot be built here leaves everything as it was.
        self._retired += swap_channels(self.channels, old, workspace, self.make_channels)
        self.dispatcher.channels_changed()
        if self.version:  # the journeys of the version running (before: not yet numbered)
            self.versions.keep(old.journeys)
        self.versions.keep(workspace.journeys)
        self.processor.use(workspace, self.versions)
        self.version = version

    async def _experiments(self) -> None:
        """Check the experiments' winner policies every ``check_every`` seconds (see
        :mod:`journeyman.runtime.experiments`), and apply what is stored."""
        while True:
            try:
                await check(self.store, self.reads, self.workspace, self.clock())
                self.processor.obey_decisions(await read_decisions(self.store, self.workspace))
            except Exception:
                log.exception("checking the experiments failed; trying again")
            await asyncio.sleep(self.check_every)

    async def decide_experiment(
        self, journey: m.Journey, step: m.Experiment, variant: str, how: How, by: str
    ) -> Decision:
        """An operator's winner (``chosen``) or stop: stored, and applied here at once
        (workers apply it when they next read the journeys' states)."""
        decision = await decide(
            self.store, self.reads, journey, step, variant, how, by, self.clock()
        )
        self.processor.engine.decisions[(journey.name, step.id)] = decision
        return decision

    async def pause_journey(self, name: str, who: Who = API) -> None:
        """No new entries; running instances hold before their next step."""
        self.processor.set_journey_state(name, "paused")
        await self.store.set_journey_state(name, "paused")
        await self._audit(who, "pause", name)

    async def resume_journey(self, name: str, who: Who = API) -> int:
        """Take entries again and run every held instance on; how many were held."""
        self.processor.set_journey_state(name, "active")
        await self.store.set_journey_state(name, "active")
        held = await self._command(name, "resume")
        await self._audit(who, "resume", name, held)
        return held

    async def _audit(self, who: Who, command: str, name: str, count: int | None = None) -> None:
        """Keep who gave ``command`` to journey ``name``, now (once it is done: one that
        failed part way is kept when it is given again and completes)."""
        entry = AuditEntry(self.clock(), who.by, who.via, command, name, count)
        await self.store.add_audit([entry])

    async def stop_journey(self, name: str, who: Who = API) -> int:
        """End every running instance as ``stopped`` and take no new entries: how many ran
        when the stop began, or entered before it took effect.

        An instance that moves on while the stop runs ends at its next step (the engine
        knows the journey is stopped), maybe before the stop finds it: it is counted all
        the same, as the instances running are read once before the journey stops.
        """
        running = await self._running_ids(name)
        self.processor.set_journey_state(name, "stopped")
        await self.store.set_journey_state(name, "stopped")
        stopped = await self._command(name, "stop", running)
        await self._audit(who, "stop", name, stopped)
        return stopped

    async def _running_ids(self, name: str) -> set[str]:
        found: set[str] = set()
        after = ""
        while page := await self.store.running_of(name, COMMAND_PAGE, after):
            after = page[-1].id
            found.update(i.id for i in page)
        return found

    async def _command(
        self, name: str, command: Literal["resume", "stop"], running: set[str] | None = None
    ) -> int:
        """Give the command to every running instance of the journey (a resume to the held
        ones): how many, counting the ``running`` ones read before, whether they still run
        or not. Pages through them by id, then looks again for any that the last batches
        of events brought in meanwhile."""
        done: set[str] = set()
        while True:
            given, after = 0, ""
            while page := await self.store.running_of(name, COMMAND_PAGE, after):
                after = page[-1].id
                todo = [
                    Operate(i.id, i.profile_id, command, i.seq if command == "resume" else None)
                    for i in page
                    if i.id not in done and (command == "stop" or i.waiting == "paused")
                ]
                if todo:
                    await self._operate(todo)
                    done.update(o.instance_id for o in todo)
                    given += len(todo)
            if not given:
                return len(done | running) if running else len(done)

    async def _operate(self, commands: list[Operate]) -> None:
        """Apply the commands (here, through the processor, the only writer)."""
        await self.processor.submit(commands, force=True)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the %s loop stopped", task.get_name(), exc_info=task.exception())
