"""The scheduler: makes the runs of scheduled journeys when their moment comes, and works
them, a page of members at a time, at the run's rate.

``journeyman serve`` runs one; with a bus, every ``journeyman worker`` does (and ``serve
--bus`` none). When a journey's schedule names a moment that has come, it stores a run for
it (the run's id is the journey and the moment, so two processes make one run). Then it
claims a run whose
lease has passed (:meth:`~journeyman.storage.runs.RunStore.claim_run`) and pages through
its audience in profile id order: each member is given the entry event of the run
(:func:`~journeyman.domain.schedules.entry_event`), taken in as ingest takes events
(committed by ``serve``; stored in JetStream for the partition's owner by a worker),
and only then is the page's last id saved as the run's cursor, with the lease renewed.

A process killed mid-page leaves its lease to lapse (:data:`RUN_LEASE`); the next claim
goes on from the cursor and gives that page again: its entry events carry the same
messageIds, so those already taken in are duplicates, and nobody is entered twice by one
run, nor skipped. A cancel (``POST /v1/journeys/{name}/runs/{id}/cancel``) marks the run;
the page in flight is the last.

A schedule is first seen when the scheduler first reads the journey (its moment is kept
in the settings as ``schedule:JOURNEY``): runs are for moments after that. Moments missed
while no process ran make one run, for the latest of them.

A ``timezone: profile`` schedule makes no runs of entries: each member's own clock enters
them (:func:`~journeyman.domain.schedules.wind_local`, in the engine). When it is first
seen, one run (:func:`~journeyman.domain.schedules.clocks_run_id`, at :data:`CLOCKS_RATE`)
gives the members there already an event that only sets their clocks; members who come
later get theirs with their first event.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from journeyman.domain.model import Journey, Workspace
from journeyman.domain.schedules import (
    Schedule,
    clocks_run_id,
    entry_event,
    next_run,
    run_id,
)
from journeyman.domain.state import Event
from journeyman.runtime.paging import PagedWork
from journeyman.storage.base import Store
from journeyman.storage.runs import Run, RunStore

__all__ = ["CLOCKS_RATE", "PAGE", "RUN_LEASE", "Scheduler"]

log = logging.getLogger("journeyman.schedules")

PAGE = 1000  # members read at a time (at most one second's worth at the run's rate)
RUN_LEASE = timedelta(seconds=10)  # a run is one process's while it saves pages within this
CLOCKS_RATE = 5000.0  # profiles a second whose clocks the first run of `timezone: profile` sets
_MISSED = 10_000  # moments looked through at most when catching up after a pause


class Scheduler(PagedWork):
    what = "scheduled run"

    def __init__(
        self,
        store: Store,
        workspace: Callable[[], Workspace],
        accept: Callable[[list[Event]], Awaitable[list[str]]],
        clock: Callable[[], datetime],
        *,
        idle: float = 1.0,
    ) -> None:
        self.store = store
        self.runs: RunStore | None = store if isinstance(store, RunStore) else None
        self.workspace = workspace
        self.accept = accept
        self.clock = clock
        self.idle = idle
        # Who holds a run, as its row says: the host and process, so an operator (and a
        # test) can tell which process works it.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    async def tick(self) -> None:
        """Make the runs that are due, and work every run that needs it."""
        if self.runs is None:
            return
        workspace = self.workspace()
        for journey in workspace.scheduled():
            await self._make_run(self.runs, journey, workspace)
        while (run := await self._claim(self.runs)) is not None:
            await self._work(self.runs, run)

    async def _claim(self, runs: RunStore) -> Run | None:
        now = self.clock()
        return await runs.claim_run(self.owner, now, now + RUN_LEASE)

    async def _make_run(self, runs: RunStore, journey: Journey, workspace: Workspace) -> None:
        schedule = journey.entry_schedule
        assert schedule is not None
        now = self.clock()
        key = f"schedule:{journey.name}:{schedule.source}:{schedule.timezone}"
        seen = await self.store.get_setting(key)
        if seen is None:
            await self.store.set_setting(key, now.isoformat())
            if schedule.per_profile:  # the members there already: their clocks, once
                await self._add(runs, journey, clocks_run_id(journey.name, now), now, CLOCKS_RATE)
            return
        if schedule.per_profile:
            return  # each member's own clock enters them (domain.schedules.wind_local)
        latest = _latest_due(schedule, datetime.fromisoformat(seen), now, workspace)
        if latest is None:
            return
        await self._add(runs, journey, run_id(journey.name, latest), latest, schedule.rate)
        await self.store.set_setting(key, latest.isoformat())

    async def _add(
        self, runs: RunStore, journey: Journey, run_id: str, due: datetime, rate: float
    ) -> None:
        now = self.clock()
        total = await runs.audience_size(journey.entry_segment)
        segment = journey.entry_segment
        run = Run(run_id, journey.name, segment, due, "running", "", 0, total, rate, now, now)
        if await runs.add_run(run):
            log.info("scheduled run %s of %d profiles", run.id, total)

    async def _work(self, runs: RunStore, run: Run) -> None:
        """Page through the run's audience from its cursor, at its rate."""
        cursor, entered = run.cursor, run.entered
        size = max(1, min(PAGE, int(run.rate)))
        started, base = time.monotonic(), entered
        while ids := await runs.audience(run.segment, cursor, size):
            events = await self._entries(run, ids)
            if events:
                await self.take(events)
            cursor, entered = ids[-1], entered + len(events)
            now = self.clock()
            if not await runs.run_progress(run, self.owner, cursor, entered, now, now + RUN_LEASE):
                return  # cancelled, or taken over after this process stalled
            ahead = (entered - base) / run.rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await runs.finish_run(run, self.owner, self.clock())
        log.info("scheduled run %s done: %d entered", run.id, entered)

    async def _entries(self, run: Run, ids: list[str]) -> list[Event]:
        now = self.clock()
        return [entry_event(run.journey, run.id, profile_id, now) for profile_id in ids]


def _latest_due(
    schedule: Schedule, seen: datetime, now: datetime, workspace: Workspace
) -> datetime | None:
    """The latest moment after ``seen`` and up to ``now`` the schedule names, if any."""
    zone = workspace.settings.timezone
    latest = None
    moment = next_run(schedule, seen, zone)
    for _ in range(_MISSED):
        if moment is None or moment > now:
            break
        latest, moment = moment, next_run(schedule, moment, zone)
    return latest
