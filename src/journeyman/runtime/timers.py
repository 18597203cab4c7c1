"""The timer loop: waiting instances whose wake-up time has come go to the processor.

Every wait is stored as an absolute wake-up time before the instance waits, so after a
crash or a restart this loop finds every timer that came due meanwhile and fires it, late
but once; a wait still in the future keeps its time.

One timer that cannot be fired (its commit fails, whatever the reason) is held back, for
longer each time it fails again, while the others fire on time; only when every timer of
a round fails (the database is away) does the whole loop pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from journeyman.runtime.processor import Processor, TimerDue
from journeyman.storage.base import Store

__all__ = ["Firing", "TimerLoop", "backoff", "sleep_until_woken"]

log = logging.getLogger("journeyman.timers")

HOLD_LONGEST = 60.0  # seconds the longest a timer that keeps failing is held back


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
        # Instances whose timers failed to fire: how often in a row, and not before when.
        self._held: dict[str, tuple[int, datetime]] = {}

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
        asked = self.batch + len(self._firing) + len(self._held)
        found = await self.store.due(now, asked)
        if len(found) < asked:  # every due timer is in hand: forget those no longer due
            self._held = {i.id: self._held[i.id] for i in found if i.id in self._held}
        due = [i for i in found if i.id not in self._firing and not self._holds(i.id, now)]
        due = due[: self.batch]
        fired = None
        if due:
            self._note_lateness(now, [i.wake_at for i in due if i.wake_at is not None])
            triggers = [TimerDue(i.id, i.profile_id) for i in due]
            fired = Firing({i.id for i in due}, asyncio.ensure_future(self._fire(triggers)))
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
            await self._sleep(self._past_holds(await self.store.next_wake(), now), now)
        return fired

    def _past_holds(self, next_wake: datetime | None, now: datetime) -> datetime | None:
        """When to look again: a timer due now but not fired is held back, so not before
        the first hold ends (or a wake-up), rather than at once, again and again."""
        if next_wake is None or next_wake > now or not self._held:
            return next_wake
        return min(until for _, until in self._held.values())

    async def _fire(self, triggers: list[TimerDue]) -> None:
        """Fire the timers (each on its own submit, but in the processor's one batch), and
        hold back those that failed. Raise if all of several failed: then the fault is
        hardly theirs (the database is away), and the loop pauses as a whole."""
        results = await asyncio.gather(
            *(self.processor.submit([t], force=True) for t in triggers), return_exceptions=True
        )
        failed = [
            (t, r) for t, r in zip(triggers, results, strict=True) if isinstance(r, Exception)
        ]
        for trigger, result in zip(triggers, results, strict=True):
            if not isinstance(result, BaseException):
                self._held.pop(trigger.instance_id, None)
        if len(failed) > 1 and len(failed) == len(triggers):
            raise failed[0][1]
        now = self.clock()
        for trigger, error in failed:
            tries = self._held.get(trigger.instance_id, (0, now))[0] + 1
            pause = backoff(tries, HOLD_LONGEST)
            self._held[trigger.instance_id] = (tries, now + timedelta(seconds=pause))
            log.warning(
                "the timer of instance %r failed to fire (%r); trying it again in %.2fs",
                trigger.instance_id,
                error,
                pause,
            )

    def _holds(self, instance_id: str, now: datetime) -> bool:
        held = self._held.get(instance_id)
        return held is not None and now < held[1]

    async def _sleep(self, next_wake: datetime | None, now: datetime) -> None:
        delay = self.idle
        if next_wake is not None:
            delay = min(delay, max(0.0, (next_wake - now).total_seconds()))
        await sleep_until_woken(self._wakeup, delay)

    def _note_lateness(self, now: datetime, wakes: list[datetime]) -> None:
        self.lateness.extend((now - wake).total_seconds() for wake in wakes)
        del self.lateness[:-10_000]
