"""The outbox dispatcher: delivers committed messages and calls, retrying what fails.

A message is a row committed with the state change that produced it. The dispatcher
claims due rows, hands each to its channel (or makes the HTTP call), and records the
outcome. A transient failure is retried with exponential backoff and jitter, with the same
idempotency key, until ``attempts`` run out; a permanent failure is final. Whenever the
engine must know the outcome (the step has ``on_error``, or the delivery failed) and for
every message sent or given up (its ``message_sent`` / ``message_failed`` events go to the
profile, see :mod:`journeyman.domain.feedback`), the outcome goes back through the
processor, in the same transaction as the outbox update (a worker of a scale-out
deployment hands it to the owner of the profile instead: see
:class:`journeyman.scaleout.worker.TellingDispatcher`).

Each outcome is recorded as soon as its provider answers, not when the whole claim is
delivered, and a send keeps its slot until its outcome is written: a crash can repeat only
the sends in flight at that instant, answered or not (at most ``concurrency``, each with its
idempotency key). Outcomes that arrive while the last ones
are being written go in the next write together (see :class:`_Outcomes`), so a burst of
answers costs a write or two, not one each. One outcome the store refuses does not keep
the others unrecorded.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from journeyman.channels.base import Channel, Delivery, RateLimiter
from journeyman.channels.calls import make_call
from journeyman.domain.core import Delivered
from journeyman.domain.feedback import delivery_events
from journeyman.domain.state import CallAction, Event, SendMessage
from journeyman.runtime.processor import DeliveryResult, Processor, Trigger
from journeyman.runtime.timers import backoff, sleep_until_woken
from journeyman.storage.base import LEASE, OutboxItem, Store

__all__ = ["Dispatcher", "RetryPolicy"]

log = logging.getLogger("journeyman.dispatcher")

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

_NOT_TRIED = Delivery("retry", "not tried")

# Tries to record one round's outcomes. An outcome not recorded leaves its row claimed, so
# the message goes out again once the lease runs out.
RECORD_TRIES = 5


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a transient failure again: base * 2^attempt, capped, with jitter."""

    attempts: int = 8
    base: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(hours=1)

    def delay(self, attempt: int, draw: float) -> timedelta:
        """The wait before attempt ``attempt + 1``; ``draw`` in [0, 1) spreads retries."""
        longest: timedelta = min(self.cap, self.base * (2**attempt))
        return longest * (0.5 + draw / 2)

    def gives_up(self, attempts_made: int) -> bool:
        return attempts_made >= self.attempts


class Dispatcher:
    def __init__(
        self,
        store: Store,
        processor: Processor,
        channels: Mapping[str, Channel],
        clock: Callable[[], datetime],
        *,
        env: Mapping[str, str],
        policy: RetryPolicy | None = None,
        batch: int = 200,
        concurrency: int = 50,
        idle: float = 1.0,
        lease: timedelta = LEASE,
    ) -> None:
        self.store = store
        # A claimed row is this process's alone for the store's lease; a send that has not
        # started when three quarters of it have passed is left for a later claim, so a
        # slow round never sends a row another process may have claimed meanwhile.
        self.lease = lease
        self.processor = processor
        self.channels = channels
        self.clock = clock
        self.env = env
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.idle = idle
        self.counts: dict[tuple[str, str], int] = {}  # (channel, status) -> deliveries
        self._limits = _limits(channels)
        self._slots = asyncio.Semaphore(concurrency)
        self._random = random.Random()
        self._wakeup = asyncio.Event()
        self._retries: list[datetime] = []  # when the retries scheduled here come due
        self._stopping = False
        self.record_tries = RECORD_TRIES
        # Each message passes through these, in order, just before its channel sends it:
        # what only the sending process knows (its public URL, the signing secret) is
        # added here, never stored with the message.
        self.prepare: list[Callable[[SendMessage], SendMessage]] = []
        # The events of messages sent, by outbox row, until the row is settled.
        self._events: dict[int, list[Event]] = {}

    def channels_changed(self) -> None:
        """The channels were rebuilt in place (a publish changed them): take their limits."""
        self._limits = _limits(self.channels)

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        """Claim nothing more: :meth:`run` returns once the deliveries in flight are recorded.

        A delivery cut off half way would stay claimed until its lease runs out, and might
        reach the provider twice.
        """
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        failures = 0
        in_flight: asyncio.Future[None] | None = None
        try:
            while not self._stopping:
                self._wakeup.clear()
                try:
                    in_flight = await self._round(in_flight)
                except Exception:
                    # A store that failed for a moment must not stop every delivery for good.
                    in_flight = None
                    failures += 1
                    log.exception("delivering the outbox failed; trying again")
                    await asyncio.sleep(backoff(failures, self.idle))
                else:
                    failures = 0
            if in_flight is not None:
                await in_flight
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()

    async def _round(self, in_flight: asyncio.Future[None] | None) -> asyncio.Future[None] | None:
        """Claim what is due while the last claim is being delivered; start delivering it.

        One delivery is in flight at a time, beside the next claim; with nothing due and
        nothing in flight, sleep until a retry comes due (or a wake-up).
        """
        claimed_at = self.clock()
        items = await self.store.claim(claimed_at, self.batch)
        if in_flight is not None:
            await in_flight  # raises what the delivery raised
        if items:
            until = claimed_at + self.lease * 3 / 4
            return asyncio.ensure_future(self.deliver(items, until))
        if in_flight is None:
            await sleep_until_woken(self._wakeup, self._pause(claimed_at))
        return None

    def _pause(self, claimed_at: datetime) -> float:
        """Seconds to sleep: ``idle`` at most, less if a retry comes due sooner.

        A retry backs off by the policy's delay, which may well be shorter than ``idle``.
        """
        while self._retries and self._retries[0] <= claimed_at:
            heapq.heappop(self._retries)  # the claim made at claimed_at has taken it
        if not self._retries:
            return self.idle
        return max(0.0, min(self.idle, (self._retries[0] - self.clock()).total_seconds()))

    async def deliver(self, items: list[OutboxItem], until: datetime | None = None) -> None:
        """Deliver the items, recording each outcome as soon as its provider answers.

        A send not started by ``until`` (the items' claim is near its end) is not made: the
        row stays as it is, and goes out once claimed again.
        """
        outcomes = _Outcomes(self._keep)

        def answered(index: int, delivery: Delivery) -> asyncio.Future[None]:
            item = items[index]
            record = self._record(item, delivery)
            effect = item.effect
            channel = effect.channel if isinstance(effect, SendMessage) else "http"
            key = (channel, record.status)
            self.counts[key] = self.counts.get(key, 0) + 1
            if self._tells(effect, record):
                ok = record.status == "sent"
                return outcomes.tell(DeliveryResult(effect, ok, record.detail, record))
            if record.status == "sent":
                self._events[record.id] = delivery_events(effect, True, "", record.at)
            return outcomes.settle(record)

        try:
            await self._attempt_all(items, answered, until)
        finally:
            await outcomes.written()

    def _tells(self, effect: SendMessage | CallAction, record: Delivered) -> bool:
        """Whether the outcome goes to the processor: a failure given up, and a delivery
        the instance waits for."""
        return record.status == "failed" or (record.status == "sent" and effect.awaited)

    async def _attempt_all(
        self,
        items: list[OutboxItem],
        answered: Callable[[int, Delivery], Awaitable[None]],
        until: datetime | None = None,
    ) -> None:
        """Deliver every item, telling ``answered`` each one's outcome (by its index) as it
        comes. Sends to a channel that batches, with no rate limit, go to it together;
        everything else goes one by one, ``concurrency`` at a time.

        A send keeps its slot until ``answered`` says its outcome is written: answered
        sends whose outcomes wait for a slow write would otherwise free their slots for
        more sends, and a crash would repeat all of them. So a crash repeats at most
        ``concurrency`` sends (answered, or under way)."""
        groups: dict[str, list[int]] = {}
        singles: list[int] = []
        for index, item in enumerate(items):
            effect = item.effect
            name = effect.channel if isinstance(effect, SendMessage) else ""
            channel = self.channels.get(name)
            if channel is not None and channel.batches and name not in self._limits:
                groups.setdefault(name, []).append(index)
            else:
                singles.append(index)

        async def together(name: str, indexes: list[int]) -> None:
            if _late(self.clock, until):
                return
            messages = [items[i].effect for i in indexes]
            found = await self._send_many(self.channels[name], messages)  # type: ignore[arg-type]
            for index, delivery in zip(indexes, found, strict=True):
                answered(index, delivery)

        async def alone(index: int) -> None:
            async with self._slots:
                delivery = await self._attempt(items[index], until)
                if delivery is not None:
                    await answered(index, delivery)

        await asyncio.gather(
            *(together(name, indexes) for name, indexes in groups.items()),
            *(alone(index) for index in singles),
        )

    async def _send_many(self, channel: Channel, messages: list[SendMessage]) -> list[Delivery]:
        try:
            found = await channel.send_many([self._prepared(m) for m in messages])
            if len(found) != len(messages):
                raise ValueError(f"{len(found)} outcomes for {len(messages)} messages")
            return found
        except Exception as error:  # a channel bug must not stop the dispatcher
            log.exception(
                "delivering %d messages to %s failed unexpectedly", len(messages), channel.name
            )
            return [Delivery("retry", f"unexpected error: {error!r}")] * len(messages)

    async def _keep(self, settled: list[Delivered], told: list[DeliveryResult]) -> None:
        """Record outcomes together; if that fails for good, each alone, once: one outcome
        the store refuses must not leave the others unrecorded (their messages would go out
        again). Raises if every one of them failed."""
        try:
            await self._keep_outcomes(settled, told)
        except Exception:
            singles: list[tuple[list[Delivered], list[DeliveryResult]]] = [
                *(([s], []) for s in settled),
                *(([], [t]) for t in told),
            ]
            if len(singles) < 2:
                raise
            refused: list[tuple[str, Exception]] = []
            for one, other in singles:
                try:
                    await self._keep_outcomes(one, other, tries=1)
                except Exception as failure:
                    what = other[0].effect.key if other else f"outbox row {one[0].id}"
                    refused.append((what, failure))
            if len(refused) == len(singles):
                raise
            for what, cause in refused:  # still claimed: it goes out again after its lease
                log.error("the delivery outcome of %s could not be recorded: %r", what, cause)

    async def _keep_outcomes(
        self, settled: list[Delivered], told: list[DeliveryResult], tries: int | None = None
    ) -> None:
        """Settle the outbox rows; outcomes the engine must learn go through the processor,
        which settles their rows in the commit that applies them. Tries ``tries`` times
        (default :attr:`record_tries`).

        The events of the messages sent (``message_sent``) are stored before their rows
        are settled, sharing the processor's commits with everything else: an event is
        never lost, and one stored before a crash kept its row from being settled comes
        again with the same messageId when the message is sent again, and is dropped as a
        duplicate."""
        if settled:
            events = [e for s in settled for e in self._events.get(s.id, ())]
            if events:
                await self._retrying(lambda: self.processor.submit(events, force=True), tries)
            await self._retrying(lambda: self.store.settle(settled), tries)
            for record in settled:
                self._events.pop(record.id, None)
        if told:
            await self._tell(told, tries or self.record_tries)

    async def _tell(self, told: list[DeliveryResult], tries: int) -> None:
        """Hand the outcomes to the processor, each on its own submit (they share its
        commits all the same), trying again only those that failed: one applied already
        must not be applied twice.

        A message's outcome goes with its events (``message_sent``, ``message_failed``,
        see :func:`delivery_events`), ahead of it on the same submit: they are stored in
        the commit that settles the row, or (the batch split between them) an earlier
        one, never a later one, and are applied once (see :meth:`_keep_outcomes`)."""
        left = told
        for attempt in range(1, tries + 1):
            results = await asyncio.gather(
                *(self.processor.submit(_with_events(r), force=True) for r in left),
                return_exceptions=True,
            )
            errors = [e for e in results if isinstance(e, Exception)]
            left = [r for r, e in zip(left, results, strict=True) if isinstance(e, Exception)]
            if not left:
                return
            if attempt == tries or self._stopping:
                raise errors[0]
            log.warning(
                "recording %d delivery outcomes failed (%r); trying again", len(left), errors[0]
            )
            await asyncio.sleep(backoff(attempt, self.idle))

    async def _retrying(
        self, record: Callable[[], Awaitable[object]], tries: int | None = None
    ) -> None:
        """Record outcomes, trying again after a failure: it may not even be these
        outcomes' fault, since other triggers share the processor's commit. A dispatcher
        that is stopping does not try again: the rows it could not settle stay claimed
        until their lease runs out, and go out again then, with the same idempotency key."""
        tries = tries or self.record_tries
        for attempt in range(1, tries + 1):
            try:
                await record()
                return
            except Exception:
                if attempt == tries or self._stopping:
                    raise
                log.warning("recording delivery outcomes failed; trying again", exc_info=True)
                await asyncio.sleep(backoff(attempt, self.idle))

    def _variables(self, action: str) -> frozenset[str]:
        """The ``${NAME}`` references written in the action's definition."""
        found = self.processor.workspace.actions.get(action)
        if found is None:
            return frozenset()
        sources = [found.url.source, *(h.source for h in found.headers.values())]
        if found.body is not None:
            sources.append(found.body.source)
        return frozenset(name for text in sources for name in _REFERENCE.findall(text))

    async def _attempt(self, item: OutboxItem, until: datetime | None = None) -> Delivery | None:
        """The outcome of one send, or None if it was not made (see :meth:`deliver`); the
        caller holds a slot."""
        effect = item.effect
        if _late(self.clock, until):
            return None
        try:
            if not isinstance(effect, SendMessage):
                action = self.processor.workspace.actions.get(effect.action)
                allow = action.allow if action is not None else None
                only = self._variables(effect.action)
                return await make_call(effect, self.env, only=only, allow=allow)
            channel = self.channels.get(effect.channel)
            if channel is None:
                return Delivery("failed", f"no channel named {effect.channel} is configured")
            limit = self._limits.get(effect.channel)
            if limit is not None:
                await limit.acquire()
                if _late(self.clock, until):
                    return None
            return await channel.send(self._prepared(effect))
        except Exception as error:  # a channel bug must not stop the dispatcher
            log.exception("delivering %s failed unexpectedly", effect.key)
            return Delivery("retry", f"unexpected error: {error!r}")

    def _prepared(self, message: SendMessage) -> SendMessage:
        """The message as its channel sends it: through every :attr:`prepare` step, whether
        it goes alone or in a batch."""
        for step in self.prepare:
            message = step(message)
        return message

    def _record(self, item: OutboxItem, delivery: Delivery) -> Delivered:
        now = self.clock()
        made = item.attempts + 1
        if delivery.status != "retry":
            return Delivered(item.id, delivery.status, delivery.detail, now)
        if self.policy.gives_up(made):
            return Delivered(
                item.id, "failed", f"gave up after {made} attempts: {delivery.detail}", now
            )
        retry_at = now + self.policy.delay(item.attempts, self._random.random())
        heapq.heappush(self._retries, retry_at)
        return Delivered(item.id, "retry", delivery.detail, now, retry_at)


class _Outcomes:
    """Delivery outcomes on their way to the store: each one is written as soon as the
    write before it is done, together with whatever else has arrived meanwhile.

    So no outcome waits for sends still in flight, and answers that come in a burst share
    a write. A write that fails does not stop the ones after it; :meth:`written` raises
    the first failure once every outcome has had its write.
    """

    def __init__(self, keep: Callable[[list[Delivered], list[DeliveryResult]], Awaitable[None]]):
        self._keep = keep
        self._settled: list[Delivered] = []
        self._told: list[DeliveryResult] = []
        self._done: list[asyncio.Future[None]] = []  # one per outcome not yet written
        self._writing: asyncio.Future[None] | None = None
        self._error: Exception | None = None

    def settle(self, record: Delivered) -> asyncio.Future[None]:
        """Write ``record`` soon; the future is done once its write is over (stored, or
        failed: :meth:`written` raises the failure)."""
        self._settled.append(record)
        return self._write_soon()

    def tell(self, result: DeliveryResult) -> asyncio.Future[None]:
        """As :meth:`settle`, for an outcome the engine must learn."""
        self._told.append(result)
        return self._write_soon()

    def _write_soon(self) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        self._done.append(done)
        # The write starts at the event loop's next turn: answers that come in the same
        # turn (a batch of them) are written together.
        if self._writing is None or self._writing.done():
            self._writing = asyncio.ensure_future(self._write())
        return done

    async def _write(self) -> None:
        while self._settled or self._told:
            settled, told, done = self._settled, self._told, self._done
            self._settled, self._told, self._done = [], [], []
            try:
                await self._keep(settled, told)
            except Exception as error:
                self._error = self._error or error
            for future in done:
                if not future.done():  # its sender may have been cancelled
                    future.set_result(None)

    async def written(self) -> None:
        """Wait until every outcome so far has been written; raise the first failure."""
        if self._writing is not None:
            await asyncio.shield(self._writing)
        if self._error is not None:
            raise self._error


def _with_events(result: DeliveryResult) -> list[Trigger]:
    """The outcome's events, then the outcome."""
    at = result.settled.at if result.settled is not None else result.effect.at
    return [*delivery_events(result.effect, result.ok, result.detail, at), result]


def _limits(channels: Mapping[str, Channel]) -> dict[str, RateLimiter]:
    return {
        name: RateLimiter(ch.rate, burst=max(1, int(ch.rate)))
        for name, ch in channels.items()
        if ch.rate
    }


def _late(clock: Callable[[], datetime], until: datetime | None) -> bool:
    """Whether a claim delivered until ``until`` is too near its end to start a send."""
    return until is not None and clock() >= until
