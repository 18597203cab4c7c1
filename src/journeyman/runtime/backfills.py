"""Segment backfills: a segment that is new, or whose ``when`` changed, is computed for
every stored profile from what the store already holds, not only at each profile's next
event.

Each process that takes ingest (``serve``, and ``serve --bus``) runs one
:class:`Backfiller`. When the workspace it runs has a segment whose ``when`` it has not
backfilled yet (the digest of each segment's ``when`` is kept in the settings as
``backfill:SEGMENT``), it stores a backfill for it (its id is the segment and the digest,
so two processes make one; a newer one supersedes a running one of the same segment).
Then it claims a backfill whose lease has passed and pages through the profiles in id
order, never holding more than a page: each profile is given a backfill trigger
(:func:`~journeyman.domain.core.backfill_trigger`), taken in as ingest takes events
(committed by ``serve``; stored in JetStream for the owner of the profile's partition with
``--bus``, so that only that worker changes the profile), and only then is the page's last
id saved as the cursor, with the lease renewed. The trigger makes the history of the
events the segment reads again from the profile's stored events, and evaluates the
segment (see :meth:`~journeyman.domain.engine.Engine.on_backfill`).

A process killed mid-page leaves its lease to lapse (:data:`LEASE`); the next claim goes on
from the cursor and gives that page again, which changes nothing the second time.
``POST /v1/segments/{name}/backfill`` (and ``journeyman segments backfill``) starts one
again by hand, for instance after an import of old events.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from journeyman.domain.core import backfill_trigger
from journeyman.domain.model import Workspace
from journeyman.domain.segments import digest
from journeyman.domain.state import Event
from journeyman.runtime.paging import PagedWork
from journeyman.storage.backfills import Backfill, BackfillStore
from journeyman.storage.base import Store
from journeyman.storage.codec import ms

__all__ = ["LEASE", "PAGE", "Backfiller"]

log = logging.getLogger("journeyman.backfills")

PAGE = 500  # profiles handed over at a time
LEASE = timedelta(seconds=10)  # a backfill is one process's while it saves pages within this


class Backfiller(PagedWork):
    """Starts the backfills a workspace needs, and works them a page at a time.

    ``settle`` is how long a new backfill waits before it is worked: on a bus, the time
    the workers take to run the workspace that has the segment."""

    what = "segment backfill"

    def __init__(
        self,
        store: Store,
        workspace: Callable[[], Workspace],
        accept: Callable[[list[Event]], Awaitable[list[str]]],
        clock: Callable[[], datetime],
        *,
        idle: float = 1.0,
        settle: timedelta = timedelta(0),
    ) -> None:
        self.store = store
        self.backfills: BackfillStore | None = store if isinstance(store, BackfillStore) else None
        self.workspace = workspace
        self.accept = accept
        self.clock = clock
        self.idle = idle
        self.settle = settle
        self.owner = secrets.token_hex(8)
        self._planned: dict[str, str] = {}  # segment -> the digest known to be backfilled

    async def tick(self) -> None:
        """Start the backfills the workspace needs, and work every one that needs it."""
        if self.backfills is None:
            return
        await self.plan(self.workspace())
        while (backfill := await self._claim(self.backfills)) is not None:
            await self._work(self.backfills, backfill)

    async def plan(self, workspace: Workspace) -> None:
        """A backfill for each segment whose ``when`` was not backfilled yet."""
        for name, segment in workspace.segments.items():
            if segment.listed:
                continue  # a list's members come only from its uploads
            found = digest(segment)
            if self._planned.get(name) == found:
                continue
            key = f"backfill:{name}"
            if await self.store.get_setting(key) != found:
                await self.start(name, found)
                await self.store.set_setting(key, found)
            self._planned[name] = found

    async def start(self, segment: str, found: str, *, again: bool = False) -> Backfill | None:
        """Store a backfill of ``segment`` (digest ``found``) over every profile; ``again``
        for one asked for by hand, even if that ``when`` was backfilled before."""
        if self.backfills is None:
            return None
        now = self.clock()
        backfill_id = f"{segment}:{found}" + (f":{ms(now)}" if again else "")
        total = await self.backfills.profile_count()
        backfill = Backfill(backfill_id, segment, found, "running", "", 0, total, now, now)
        if await self.backfills.add_backfill(backfill):
            log.info("backfill %s of %d profiles", backfill_id, total)
        return backfill

    async def _claim(self, backfills: BackfillStore) -> Backfill | None:
        now = self.clock()
        return await backfills.claim_backfill(self.owner, now, now + LEASE, now - self.settle)

    async def _work(self, backfills: BackfillStore, backfill: Backfill) -> None:
        """Page through the profiles from the backfill's cursor."""
        cursor, done = backfill.cursor, backfill.done
        while ids := await backfills.profile_ids(cursor, PAGE):
            now = self.clock()
            await self.take([backfill_trigger(pid, [backfill.segment], now) for pid in ids])
            cursor, done = ids[-1], done + len(ids)
            now = self.clock()
            if not await backfills.backfill_progress(
                backfill, self.owner, cursor, done, now, now + LEASE
            ):
                return  # superseded, or taken over after this process stalled
        await backfills.finish_backfill(backfill, self.owner, self.clock())
        log.info("backfill %s done: %d profiles", backfill.id, done)
