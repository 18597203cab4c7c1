"""What the scheduler and the backfiller share: a loop that keeps working their leased
rows (see :mod:`journeyman.storage.leases`), and pages handed to ingest that wait while
ingest is full or the bus is away, and are never dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from journeyman.domain.state import Event

__all__ = ["PagedWork"]

log = logging.getLogger("journeyman.paging")

RETRY = 1.0  # seconds before a page that could not be taken in is tried again


class PagedWork:
    """A loop that calls :meth:`tick` every ``idle`` seconds, and :meth:`take` for its
    pages; ``what`` names the work in the log."""

    what = "work"
    idle = 1.0
    accept: Callable[[list[Event]], Awaitable[list[str]]]

    async def tick(self) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a %s failed; it is taken up again", self.what)
            await asyncio.sleep(self.idle)

    async def take(self, events: list[Event]) -> None:
        """Take the page in; while ingest is full (or the bus away), wait and try again."""
        while True:
            try:
                await self.accept(events)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("a %s page waits: %s", self.what, error)
                await asyncio.sleep(RETRY)
