"""The timer loop: waiting instances whose wake-up time has come go to the processor.

Every wait is stored as an absolute wake-up time before the instance waits, so after a
crash or a restart this loop finds every timer that came due meanwhile and fires it, late
but once; a wait still in the future keeps its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from journeyman.runtime.processor import Processor, TimerDue
from journeyman.storage.base import Store

__all__ = ["Firing", "TimerLoop", "backoff", "sleep_until_woken"]

log = logging.getLogger("journeyman.timers")


async def sleep_until_woken(wakeup: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``wakeup`` is set.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11, ``wait_for`` loses a
    cancellation that arrives as the event is set, and the loop would never stop.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wakeup.wait()


def backoff(failures: int, longest: float) -> float:
    """Seconds to pause after ``failures`` failed rounds in a row: 50 ms, doubling, capped."""
    return min(longest, 0.05 * 2.0 ** min(failures - 1, 16))


@dataclass(frozen=True, slots=True)
class Firing:
    """Timers handed to the processor, and the future of their commit."""

    ids: set[str]
    done: asyncio.Future[Any]


class TimerLoop:
    """Claims due instances in batches of ``batch`` and feeds them to the processor."""

    def __init__(
        self,
        store: Store,
        processor: Processor,
        clock: Callable[[], datetime],
        *,
        batch: int = 1000,
        idle: float = 1.0,
    ) -> None:
        self.store = store
        self.processor = processor
        self.clock = clock
        self.batch = batch
        self.idle = idle  # the longest it sleeps without looking, in seconds
        self.lateness: list[float] = []  # seconds late of recent timers, for /metrics
        self._wakeup = asyncio.Event()
        self._firing: set[str] = set()  # instances whose timers are being fired now

    def wake(self) -> None:
        """Look again now: an instance may wait for a time earlier than the loop knows."""
        self._wakeup.set()

    async def run(self) -> None:
        failures = 0
        firing: Firing | None = None
        try:
            while True:
                self._wakeup.clear()
                try:
                    firing = await self._round(firing)
                except Exception:
                    # Nothing of a failed round was stored, so its timers are still due. The
                    # fault may not even be theirs (another trigger in the same commit): try
                    # again shortly rather than stop every wait until the next restart.
                    firing, self._firing = None, set()
                    failures += 1
                    log.exception("firing due timers failed; trying again")
                    await asyncio.sleep(backoff(failures, self.idle))
                else:
                    failures = 0
        finally:
            if firing is not None and not firing.done.done():
                firing.done.cancel()

    async def _round(self, firing: Firing | None) -> Firing | None:
        """Read the next due timers while the last ones fire, and fire them at once (the
        processor runs them while the last ones commit); then wait for the last ones.
        With nothing due and nothing firing, sleep until the next one is (or a wake-up).

        The timers still firing are read again (their commit has not happened yet), so
        they are asked for on top of the batch and left out.
        """
        now = self.clock()
        due = await self.store.due(now, self.batch + len(self._firing))
        due = [i for i in due if i.id not in self._firing]
        fired = None
        if due:
            self._note_lateness(now, [i.wake_at for i in due if i.wake_at is not None])
            triggers = [TimerDue(i.id, i.profile_id) for i in due]
            fired = Firing(
                {i.id for i in due},
                asyncio.ensure_future(self.processor.submit(triggers, force=True)),
            )
            self._firing |= fired.ids
        if firing is not None:
            try:
                await firing.done  # raises what the commit raised
            except Exception:
                if fired is not None:  # let the new ones finish, whatever becomes of them
                    await asyncio.gather(fired.done, return_exceptions=True)
                raise
            finally:
                self._firing -= firing.ids
        elif fired is None:
            await self._sleep(await self.store.next_wake(), now)
        return fired

    async def _sleep(self, next_wake: datetime | None, now: datetime) -> None:
        delay = self.idle
        if next_wake is not None:
            delay = min(delay, max(0.0, (next_wake - now).total_seconds()))
        await sleep_until_woken(self._wakeup, delay)

    def _note_lateness(self, now: datetime, wakes: list[datetime]) -> None:
        self.lateness.extend((now - wake).total_seconds() for wake in wakes)
        del self.lateness[:-10_000]
