"""``journeyman worker``: applies the events of the partitions it owns, fires timers, delivers.

Workers share one PostgreSQL database and one JetStream stream (see
:mod:`journeyman.scaleout.bus`). Each owns a fair share of the partitions
(:mod:`journeyman.scaleout.partitions`) and, for each, fetches batches from the partition's
consumer, runs them through its :class:`Processor` (the engine and one commit, which skips
a messageId already stored), and acknowledges the messages only after that commit. A
batch that cannot be committed (the database is away) is tried again until it is, while
the worker still owns the partition: nothing later of that partition is applied before it.
Before each new try the worker asks the server whether it still holds the partition's
lock; if not (or if it cannot tell), it gives the batch up unacknowledged, and the
partition's next owner gets it again before anything later. A message that fails on its
own (the rest of its batch is stored) is tried again a few times, then kept as a dead
letter (see :meth:`ScaleOutStore.add_dead_letter`), acknowledged, and the partition moves
on: one bad message never blocks a partition. A message is acknowledged only once it is
applied or its dead letter is stored; ``POST /v1/dead-letters/{id}/replay`` publishes it
again.

Every worker also claims due timers (``FOR UPDATE SKIP LOCKED`` and a lease) and hands
them to the owner of their profile's partition through the bus, and delivers the outbox,
claimed the same way. A delivery outcome the engine must learn goes to the owner as well
(see :class:`TellingDispatcher`), and so does an operator's stop or resume (published by
the API process): only the owner of a profile's partition ever changes its instances.
Workers also work scheduled runs (:mod:`journeyman.runtime.schedules`): a run is claimed
by one worker at a time (``SKIP LOCKED`` and a lease), which publishes each page's entry
events to the partitions of their profiles; a killed worker's run is claimed by another
once its lease lapses, from the last page saved.

The workspace comes from the database: a worker runs the version published last (see
:mod:`journeyman.runtime.following`), and a publish to the API reaches every worker within
a second, without a restart. Paused and stopped journeys are read again before every
batch is applied, so an event stored after a pause was answered never enters the journey.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.msg import Msg

from journeyman.channels.base import Channel
from journeyman.domain.core import Changes, Delivered
from journeyman.domain.feedback import delivery_events
from journeyman.domain.model import Journey, Workspace
from journeyman.domain.state import Effect, Event, SendMessage
from journeyman.errors import JourneymanError
from journeyman.runtime.callbacks import status_callback_step
from journeyman.runtime.dispatcher import Dispatcher, RetryPolicy
from journeyman.runtime.experiments import read_decisions
from journeyman.runtime.following import EVERY, empty_workspace, load_published, swap_channels
from journeyman.runtime.links import Links, load_links
from journeyman.runtime.processor import DeliveryResult, HeldBack, Processor, Trigger, utc_now
from journeyman.runtime.publish import Versions
from journeyman.runtime.schedules import Scheduler
from journeyman.runtime.timers import Firing, TimerLoop, backoff, sleep_until_woken
from journeyman.runtime.tracking import Tracker
from journeyman.runtime.unsubscribe import ConsentLinks
from journeyman.scaleout.bus import Bus, decode
from journeyman.scaleout.front import BUS_SETTING
from journeyman.scaleout.partitions import Ownership, fair_share
from journeyman.storage.base import DeadLetter, ScaleOutStore

__all__ = ["ClaimingTimers", "Relay", "TellingDispatcher", "Worker"]

log = logging.getLogger("journeyman.worker")

ATTEMPTS = 5  # tries of a trigger that fails on its own before its message is a dead letter
LOOK_LIMIT = 30.0  # seconds one look at the partitions may take, releases included
FETCH_WAIT = 0.5  # seconds a fetch waits for messages before it looks whether to stop


class ClaimingTimers(TimerLoop):
    """A timer loop for workers: claims due timers and sends them to their partitions.

    The worker that owns a profile's events fires its timers too, in order with them, so
    a timer never races an event of the same profile in another worker. A claim that
    could not be handed to the bus fires once its lease has passed.
    """

    def __init__(self, store: ScaleOutStore, processor: Processor, bus: Bus, **kwargs: Any):
        super().__init__(store, processor, processor.now, **kwargs)
        self.claiming = store
        self.bus = bus

    async def _round(self, firing: Firing | None) -> Firing | None:
        """Claim due timers while the last ones are being published, then publish them;
        their owners fire them. The claims are leased, so the next claim skips the ones
        still being published."""
        now = self.clock()
        if not self.bus.connected:  # claims now would wait out their lease
            if firing is not None:
                await firing.done
            await sleep_until_woken(self._wakeup, self.idle)
            return None
        due = await self.claiming.claim_due(now, self.batch)
        if firing is not None:
            await firing.done  # raises what the publish raised
        if not due:
            if firing is None:
                await self._sleep(await self.store.next_wake(), now)
            return None
        self._note_lateness(now, [i.wake_at for i in due if i.wake_at is not None])
        return Firing(set(), asyncio.ensure_future(self.bus.publish_timers(due)))


class TellingDispatcher(Dispatcher):
    """A dispatcher for workers: an outcome the engine must learn goes to the owner of its
    profile's partition, not to this worker's processor.

    Any worker delivers any outbox row, but only the owner may change the profile's
    instances. So the delivering worker settles the row itself, and in the same transaction
    keeps the outcome for the engine (``outbox.tell_at``, see
    :meth:`ScaleOutStore.settle_telling`); its :class:`Relay` then publishes it to the
    partition. The row is final from that commit on, so nothing sends it again, whatever
    happens to the bus or this worker; the outcome is in the database before the
    delivery's claim ends, so it is never lost.

    The owner applies the outcome in order with the profile's events and, in the commit
    that applies it, clears ``tell_at`` (the commit fails if it was cleared already): an
    outcome published twice, or delivered again by JetStream after a crash before the
    acknowledgement, is applied once.

    Every message sent or given up is told this way, awaited or not, so that its events
    (``message_sent``, ``message_failed``, ``message_bounced``: see
    :func:`~journeyman.domain.feedback.delivery_events`) reach the profile: the owner
    makes them from the outcome and applies them just before it, in the same commit or an
    earlier one. So they are never lost (the outcome stays kept in the database until the
    commit that applies it, which is not earlier than theirs) and never applied twice
    (their messageIds come from the message key, and an outcome applied again is dropped).
    Publishing the events to the bus from the delivering worker instead would lose them
    when the bus is away at the moment the row is settled.
    """

    def __init__(self, store: ScaleOutStore, *args: Any, **kwargs: Any) -> None:
        super().__init__(store, *args, **kwargs)
        self.shared = store
        self.lease = store.lease
        self.relay: Relay | None = None

    def _tells(self, effect: Effect, record: Delivered) -> bool:
        """Every final outcome of a message, besides what any dispatcher tells."""
        final = record.status != "retry" and isinstance(effect, SendMessage)
        return final or super()._tells(effect, record)

    async def _keep_outcomes(
        self, settled: list[Delivered], told: list[DeliveryResult], tries: int | None = None
    ) -> None:
        telling = [r.settled for r in told if r.settled is not None]
        await self._retrying(
            lambda: self.shared.settle_telling(settled, telling, self.clock()), tries
        )
        if telling and self.relay is not None:
            self.relay.wake()


class Relay:
    """Publishes kept delivery outcomes to the partitions of their profiles.

    Every worker runs one. It claims due outcomes (``FOR UPDATE SKIP LOCKED`` and a lease,
    as timers are claimed), whichever worker kept them, and publishes them. While the bus
    is away it claims nothing; an outcome it claimed but could not publish is due again at
    once, or, if this worker died, once the lease has passed; the owner's commit clears it.
    """

    def __init__(
        self,
        store: ScaleOutStore,
        bus: Bus,
        clock: Callable[[], datetime],
        *,
        batch: int = 500,
        idle: float = 1.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.batch = batch
        self.idle = idle
        self._wakeup = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        """Publish what is due now, then return from :meth:`run`."""
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            self._wakeup.clear()
            try:
                if not await self.publish_due():
                    await sleep_until_woken(self._wakeup, self.idle)
            except Exception:
                failures += 1
                log.warning("handing on delivery outcomes failed; trying again", exc_info=True)
                await asyncio.sleep(backoff(failures, self.idle))
            else:
                failures = 0
        with contextlib.suppress(Exception):
            while await self.publish_due():
                pass

    async def publish_due(self) -> int:
        """Claim due outcomes and publish them (raising what the publish raised): how many."""
        if not self.bus.connected:  # claims now would wait out their lease
            return 0
        now = self.clock()
        due = await self.store.claim_tell(now, self.batch)
        if not due:
            return 0
        outcomes = [
            DeliveryResult(_of(t.effect, t.profile_id), t.status == "sent", t.detail, told=t.id)
            for t in due
        ]
        try:
            await self.bus.publish_outcomes(outcomes)
        except Exception:
            with contextlib.suppress(Exception):
                await self.store.tell_again([t.id for t in due], now)
            raise
        return len(due)


class Worker:
    """One worker process's parts, started and stopped together."""

    def __init__(
        self,
        workspace: Workspace | None,
        store: ScaleOutStore,
        bus_url: str,
        channels: Mapping[str, Channel],
        *,
        env: Mapping[str, str],
        clock: Callable[[], datetime] = utc_now,
        retry: RetryPolicy | None = None,
        batch: int = 500,
        look: float = 1.0,
        grace: float = 15.0,
        attempts: int = ATTEMPTS,
        announce: Callable[[str], None] = print,
        make_channels: Callable[[Workspace], Mapping[str, Channel]] | None = None,
        root: Path | None = None,
    ) -> None:
        # A workspace given here (``--workspace``, for development) stands in for the
        # published one's documents; journeys still come from the database. Without one,
        # the worker runs the published workspace, and builds its channels with
        # ``make_channels`` (relative paths in channel documents start at ``root``).
        self.files = workspace
        self.make_channels = make_channels
        self.root = root
        self.store = store
        self.bus_url = bus_url
        self.channels = dict(channels)
        self.env = env
        self.links = Links("http://127.0.0.1:8000", b"")  # the public URL serve kept, at start
        self.retry = retry
        self.batch = batch  # messages fetched from one partition at a time
        self.look = look  # seconds between looks at the partitions
        self.follow = EVERY  # seconds between looks at the published workspace
        self.grace = grace
        self.attempts = attempts
        self.announce = announce
        first = workspace if workspace is not None else empty_workspace()
        self.processor = Processor(store, first, clock=clock, on_commit=self._committed)
        self.versions = Versions()
        self.bus: Bus | None = None
        self.ownership: Ownership | None = None
        self.timers: ClaimingTimers | None = None
        self.relay: Relay | None = None
        self.schedules = Scheduler(
            store, lambda: self.processor.workspace, self._publish_entries, clock
        )
        self.dispatcher = TellingDispatcher(
            store, self.processor, self.channels, clock, env=env, policy=retry
        )
        # First, so that a later step (link tracking) sees the real links, not placeholders.
        self.dispatcher.prepare.insert(0, ConsentLinks(lambda: self.links, env, self.channels))
        self.dispatcher.prepare.append(status_callback_step(lambda: self.links, self.channels))
        # Outcomes not recorded are sent again after the lease: while the database is away,
        # keep trying for some 20 seconds (the pauses grow to a second).
        self.dispatcher.record_tries = 25
        self._owned: dict[int, asyncio.Task[None]] = {}
        self._leaving: set[int] = set()
        self._published = 0  # the workspace version running
        self._refused = 0  # the last version that could not run here
        self._retired: list[Channel] = []  # channels a publish replaced, closed at stop
        self._asked = self._answered = 0  # asks for the journeys' states, and those answered
        self._reading: asyncio.Future[None] | None = None  # the read under way
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _committed(self, batch: Changes) -> None:
        if batch.effects:
            self.dispatcher.wake()
        if self.timers is not None and any(i.wake_at for i in batch.instances.values()):
            self.timers.wake()

    # lifecycle

    async def start(self) -> None:
        """Open the store, wait for ``serve --bus`` to have set the bus up, start the loops."""
        await self.store.open()
        setting = await self._wait_for(BUS_SETTING)
        self.links = await load_links(self.store, self.env)
        tracker = Tracker(lambda: self.links, self.versions, lambda: self.processor.workspace)
        self.dispatcher.prepare.append(tracker)
        bus = json.loads(setting)
        self.bus = Bus(self.bus_url, bus["stream"], bus["partitions"])
        await self.bus.connect()
        self.ownership = Ownership(self.store.partition_locks(), self.bus.partitions)
        await self.ownership.connect()
        await self._wait_for_workspace()
        await self._follow_journeys()
        self.timers = ClaimingTimers(self.store, self.processor, self.bus)
        self.relay = self.dispatcher.relay = Relay(self.store, self.bus, self.processor.now)
        loops = {
            "processor": self.processor.run(),
            "timers": self.timers.run(),
            "dispatcher": self.dispatcher.run(),
            "relay": self.relay.run(),
            "schedules": self.schedules.run(),
            "partitions": self._balance(),
            "journeys": self._watch(),
        }
        self._tasks = [asyncio.create_task(run, name=name) for name, run in loops.items()]
        for task in self._tasks:
            task.add_done_callback(_report_crash)

    async def _wait_for(self, key: str) -> str:
        shown = False
        while True:
            value = await self.store.get_setting(key)
            if value is not None:
                return value
            if not shown:
                self.announce("waiting for `journeyman serve --bus` to set up this database")
                shown = True
            await asyncio.sleep(self.look)

    async def stop(self) -> None:
        """Finish the batches in flight, give the partitions back, deliver what is in hand,
        and close: the other workers take the partitions over at their next look."""
        self._stopping.set()
        named = {task.get_name(): task for task in self._tasks}
        for name in ("partitions", "journeys", "timers", "schedules"):
            if name in named:
                named[name].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await named[name]
        await self._leave(list(self._owned))
        if self.ownership is not None:
            await self.ownership.close()
        if "dispatcher" in named:
            self.dispatcher.stop()
            await asyncio.wait([named["dispatcher"]], timeout=self.grace)
        if "relay" in named and self.relay is not None:
            self.relay.stop()  # hand on the outcomes of the last deliveries
            await asyncio.wait([named["relay"]], timeout=self.grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.processor.drain()
        for channel in [*self.channels.values(), *self._retired]:
            await channel.close()
        if self.bus is not None:
            await self.bus.close()
        await self.store.close()

    async def _publish_entries(self, events: list[Event]) -> list[str]:
        """A scheduled run's page: to the owners of its profiles' partitions."""
        assert self.bus is not None
        await self.bus.publish_events(events, self.processor.workspace.events)
        return ["accepted"] * len(events)

    # journeys

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.follow)
            try:
                await self._follow_journeys()
            except JourneymanError as error:  # reported once; the next publish may mend it
                self._refused = await self.store.workspace_version()
                log.error("workspace version %d cannot run here: %s", self._refused, error)
            except Exception:
                log.exception("reading the published workspace failed; trying again")

    async def _wait_for_workspace(self) -> None:
        shown = False
        while not await self.store.workspace_version():
            if not shown:
                self.announce("waiting for `journeyman serve` to publish a workspace")
                shown = True
            await asyncio.sleep(self.look)

    async def _follow_journeys(self) -> None:
        """Run on the workspace version published last, and obey paused journeys."""
        await self._read_states()
        number = await self.store.workspace_version()
        if number in (self._published, self._refused):
            return
        published = await self.store.published_workspace(number)
        if published is None:
            return
        workspace = load_published(published, self.env, self.root)
        if self.files is not None:  # --workspace: its documents, the published journeys
            workspace = _with_journeys(self.files, workspace.journeys)
        old = self.processor.workspace
        if self.files is None:  # channels first: one that cannot be built changes nothing
            self._retired += swap_channels(self.channels, old, workspace, self.make_channels)
            self.dispatcher.channels_changed()
        if self._published:
            self.versions.keep(old.journeys)
        await self.versions.load(self.store)
        self.versions.keep(workspace.journeys)
        self.processor.use(workspace, self.versions)
        self._published = published.version
        journeys = _versions(workspace.journeys)
        self.announce(f"workspace version {published.version}, journeys: {journeys}")

    async def _read_states(self) -> None:
        """Obey the journeys paused and stopped now, and the experiments' decisions, as
        read after this call began.

        Many partitions ask at once (before each batch): one read at a time answers every
        ask made before it began, rather than two queries for each batch. Reads never
        overlap, so the states never go back in time.
        """
        self._asked += 1
        mine = self._asked
        while self._answered < mine:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read_states_now(self._asked))
            await asyncio.shield(self._reading)  # raises what the read raised

    async def _read_states_now(self, asked: int) -> None:
        try:
            states = await self.store.journey_states()
            decisions = await read_decisions(self.store, self.processor.workspace)
            self.processor.obey(states)
            self.processor.obey_decisions(decisions)
            self._answered = asked
        finally:
            self._reading = None

    # partitions

    async def _balance(self) -> None:
        """Own a fair share of the partitions: take free ones, give extra ones back."""
        assert self.ownership is not None
        while True:
            try:
                # A look that hangs (a half-open connection) counts as a lost one.
                async with asyncio.timeout(LOOK_LIMIT):
                    if not self.ownership.connected:
                        await self.ownership.connect()
                    await self._rebalance(self.ownership)
            except (Exception, TimeoutError) as error:
                # The locks went with the connection: another worker may own these
                # partitions already, so stop at once, without acknowledging anything.
                if self._owned:
                    log.warning("lost the partition locks (%s); letting go of them", error)
                self._abandon()
                self.ownership.drop()
            await asyncio.sleep(self.look)

    async def _rebalance(self, ownership: Ownership) -> None:
        share = fair_share(ownership.partitions, await ownership.live_workers())
        for partition, task in list(self._owned.items()):
            if task.done():  # it stopped, having found its lock gone: look again
                del self._owned[partition]
                with contextlib.suppress(Exception):
                    await ownership.release(partition)
        extra = sorted(self._owned, key=self._preference)[share:]
        if extra:
            await self._leave(extra)
            self.announce(f"gave back partitions {_numbers(extra)}")
        taken = []
        for partition in sorted(range(ownership.partitions), key=self._preference):
            if len(self._owned) >= share:
                break
            if partition not in self._owned and await ownership.take(partition):
                self._owned[partition] = asyncio.create_task(
                    self._consume(partition), name=f"partition {partition}"
                )
                taken.append(partition)
        if taken:
            self.announce(f"took partitions {_numbers(taken)}; owns {_numbers(self._owned)}")

    def _preference(self, partition: int) -> int:
        """Workers look at the partitions in different orders, so they rarely contend."""
        assert self.ownership is not None
        return (partition - self.ownership.worker) % self.ownership.partitions

    async def _leave(self, partitions: list[int]) -> None:
        """Let each partition finish its batch, then release it."""
        self._leaving.update(partitions)
        tasks = [self._owned[p] for p in partitions if p in self._owned]
        if tasks:
            await asyncio.wait(tasks, timeout=self.grace)
        for partition in partitions:
            task = self._owned.pop(partition, None)
            if task is not None and not task.done():
                task.cancel()
            if self.ownership is not None and self.ownership.connected:
                with contextlib.suppress(Exception):
                    await self.ownership.release(partition)
        self._leaving.difference_update(partitions)

    def _abandon(self) -> None:
        for task in self._owned.values():
            task.cancel()
        self._owned.clear()

    async def _consume(self, partition: int) -> None:
        """Apply the partition's messages in order until told to leave it."""
        assert self.bus is not None
        failures = 0
        while partition not in self._leaving:
            if not await self._still_owns(partition):
                return  # taking the consumer would take it from the partition's new owner
            try:
                subscription = await self.bus.take(partition, max_pending=self.batch * 2)
                try:
                    await self._pump(partition, subscription)
                finally:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()
            except Exception as error:
                # Taking the consumer again starts at the first message not acknowledged,
                # so nothing is skipped whatever was lost with the connection.
                failures += 1
                log.warning("partition %d: %r; taking it again", partition, error)
                await asyncio.sleep(backoff(failures, 2.0))

    async def _pump(self, partition: int, subscription: Any) -> None:
        while partition not in self._leaving:
            try:
                messages: list[Msg] = await subscription.fetch(self.batch, timeout=FETCH_WAIT)
            except TimeoutError:  # nothing came: nats.errors.TimeoutError is one too
                continue
            if not await self._still_owns(partition):
                return  # another worker owns it now: leave its messages to that one
            if not await self._apply(partition, messages):
                return  # stopping, leaving or lost: nothing acknowledged, so it comes again
            for message in messages:
                await message.ack()

    async def _still_owns(self, partition: int, *, fresh: bool = False) -> bool:
        """Whether the server still sees this worker's lock on the partition (``fresh``:
        asked now, not answered from the last read).

        A worker learns that it lost its locks (its connection for them ended) at its next
        look, up to a second later; meanwhile another may have taken the partition. So the
        lock is checked again before each batch is applied, and before each new try of a
        batch that failed: a worker that lost it stops applying at once, rather than
        beside the new owner, out of order with it.
        """
        assert self.ownership is not None
        try:
            return partition in await self.ownership.held(fresh=fresh)
        except Exception:
            return False  # the connection is gone, and the locks with it

    async def _apply(self, partition: int, messages: list[Msg]) -> bool:
        """Commit the messages' triggers, trying again those that fail, until each one is
        stored or its message is kept as a dead letter (see :class:`_Applying`); False if
        the worker stops first, leaves the partition, or cannot confirm that it still owns
        it before a new try (the messages are not acknowledged, so JetStream delivers them
        again, to whichever worker owns the partition next, before anything later: a batch
        tried again by a worker that lost the partition could land after the new owner
        applied later messages of the same profiles).

        The journeys' states are read first: a pause answered before these messages were
        fetched holds them back (the look every second would be too late for them).

        A try that failed half way is harmless to repeat: events already stored are
        skipped by messageId, outcomes by their outbox row, a timer whose instance moved
        on does nothing, nor does a stop of an ended instance or a resume of one no
        longer held.
        """
        applying = _Applying(
            partition, messages, self.processor.now, self.attempts, self.store.unreachable
        )
        failures = 0
        while applying.pending or applying.doomed:
            if failures and not await self._may_try_again(partition):
                log.warning("partition %d: a batch is left to the partition's owner", partition)
                return False
            try:
                if applying.pending:
                    await self._read_states()
                    triggers = [applying.triggers[i] for i in applying.pending]
                    applying.answered(await self._submit(triggers))
                await self._bury(applying)
            except Exception as error:
                if self._stopping.is_set():
                    log.warning("a batch failed (%r); stopping, it is left to come again", error)
                    return False
                log.warning("partition %d: a batch failed (%r); trying again", partition, error)
            if not (applying.pending or applying.doomed):
                return True
            if self._stopping.is_set():
                return False
            failures += 1
            await sleep_until_woken(self._stopping, backoff(failures, 5.0))
        return True

    async def _submit(self, triggers: list[Trigger]) -> list[str | Exception]:
        """Hand a partition's triggers to the processor. If the partition is let go of
        meanwhile (its task cancelled: see :meth:`_abandon`), those not run yet are
        withdrawn, so that only its new owner applies them."""
        return await self.processor.submit_each(triggers, force=True, withdraw=True)

    async def _may_try_again(self, partition: int) -> bool:
        """Whether a failed batch of the partition may be tried again here: the worker
        neither stops nor leaves the partition, and the server says it still holds its lock."""
        if self._stopping.is_set() or partition in self._leaving:
            return False
        return await self._still_owns(partition, fresh=True)

    async def _bury(self, applying: _Applying) -> None:
        """Keep the messages that failed too often as dead letters, and let them go.

        Writing a dead letter is what proves the database reachable: while it is away,
        the write fails and the messages are tried again, as long as it takes. A message
        whose triggers succeed at the try right after its burial (the database came back
        just then) is applied after all, and its dead letter is dropped again.
        """
        buried: dict[int, int] = {}  # message index -> dead letter id
        positions: list[int] = []
        failure: Exception | None = None
        try:
            for index in sorted(applying.doomed):
                letter = applying.letter(index)
                buried[index] = await self.store.add_dead_letter(letter)
                positions += applying.let_go(index)
                log.error(
                    "partition %d: a message failed %d times; kept as dead letter %d: %s",
                    applying.partition,
                    letter.attempts,
                    buried[index],
                    letter.error,
                )
        except Exception as error:
            failure = error  # the database is away again: the rest are tried again
        if positions:
            await self._unbury(applying, buried, positions)
        if failure is not None:
            raise failure

    async def _unbury(
        self, applying: _Applying, buried: dict[int, int], positions: list[int]
    ) -> None:
        """Try the buried messages' triggers once more, the store being reachable now:
        the dead letter of a message all of whose triggers are stored now is dropped."""
        triggers = [applying.triggers[p] for p in positions]
        answers = await self._submit(triggers)
        failed = {
            applying.message_of[p] for p, a in zip(positions, answers, strict=True) if _failure(a)
        }
        for index, letter_id in buried.items():
            if index not in failed and index not in applying.undecodable:
                await self.store.delete_dead_letter(letter_id)
                log.warning(
                    "partition %d: dead letter %d was applied after all; dropped",
                    applying.partition,
                    letter_id,
                )

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)


class _Applying:
    """One fetched batch of a partition's messages on its way to the store.

    Each trigger (a message may carry several: up to 200 due timers) is tried until it is
    stored. One that fails on its own ``attempts`` times dooms its message: the message is
    kept as a dead letter, as it came, and the partition moves on. A failure that says
    the database cannot be reached (the connection is gone, the server shuts down) does
    not count: it would fail any message. Nor does a trigger held back behind a failed
    one of its profile (see :class:`HeldBack`): once the one before it is buried, it is
    tried on its own. A message that is no trigger at all is doomed at once.
    """

    def __init__(
        self,
        partition: int,
        messages: list[Msg],
        clock: Callable[[], datetime],
        attempts: int,
        unreachable: Callable[[BaseException], bool],
    ) -> None:
        self.partition = partition
        self.unreachable = unreachable  # whether an error says the database is away
        self.messages = messages
        self.clock = clock
        self.attempts = attempts
        self.triggers: list[Trigger] = []
        self.message_of: list[int] = []  # by trigger position: the index of its message
        self.tries: dict[int, int] = {}  # by trigger position: own failures
        self.errors: dict[int, str] = {}  # by message index: the last failure
        self.first: dict[int, datetime] = {}  # by message index: the first failure
        self.undecodable: set[int] = set()
        self.buried: set[int] = set()
        for index, message in enumerate(messages):
            try:
                found = _with_reactions(decode(message), message, clock)
            except Exception as error:
                log.warning("partition %d: a message that is no trigger (%r)", partition, error)
                self._failed(index, f"not a message journeyman can read: {_described(error)}")
                self.undecodable.add(index)
                continue
            self.triggers.extend(found)
            self.message_of.extend([index] * len(found))
        self.pending = list(range(len(self.triggers)))
        self.doomed: set[int] = set(self.undecodable)

    def answered(self, answers: list[str | Exception]) -> None:
        """Take the answers to a try of the pending triggers."""
        still = []
        for position, answer in zip(self.pending, answers, strict=True):
            if not _failure(answer):
                continue
            still.append(position)
            if isinstance(answer, HeldBack):
                continue
            assert isinstance(answer, Exception)
            index = self.message_of[position]
            self._failed(index, _described(answer))
            if not self.unreachable(answer):  # the database being away is no fault of its own
                self.tries[position] = self.tries.get(position, 0) + 1
        self.pending = still
        # Doomed: what still fails after its attempts. A message whose triggers were all
        # stored at last (the database was away a while) is not, whatever it went through.
        self.doomed = (self.undecodable - self.buried) | {
            self.message_of[p] for p in still if self.tries.get(p, 0) >= self.attempts
        }

    def _failed(self, index: int, error: str) -> None:
        self.first.setdefault(index, self.clock())
        self.errors[index] = error

    def letter(self, index: int) -> DeadLetter:
        message = self.messages[index]
        tried = [self.tries.get(p, 0) for p, i in enumerate(self.message_of) if i == index]
        return DeadLetter(
            partition=self.partition,
            headers=dict(message.headers or {}),
            body=bytes(message.data),
            error=self.errors[index],
            attempts=max(tried, default=1),
            first_failed_at=self.first[index],
            last_failed_at=self.clock(),
        )

    def let_go(self, index: int) -> list[int]:
        """Take a buried message's triggers out of the tries: the positions of those that
        were still pending."""
        self.doomed.discard(index)
        self.buried.add(index)
        gone = [p for p in self.pending if self.message_of[p] == index]
        self.pending = [p for p in self.pending if self.message_of[p] != index]
        return gone


def _failure(answer: object) -> bool:
    return isinstance(answer, Exception)


def _described(error: BaseException) -> str:
    """An error as a dead letter keeps it: its kind and message, without NUL characters
    (no database keeps them) and not endless."""
    text = f"{type(error).__name__}: {error}".replace("\x00", "\\u0000")
    return text if len(text) <= 2000 else text[:2000] + "..."


def _with_reactions(
    found: list[Trigger], message: Msg, clock: Callable[[], datetime]
) -> list[Trigger]:
    """The triggers of a message, a delivery outcome's events ahead of it (see
    :class:`TellingDispatcher`), dated when the outcome was published (the same if
    JetStream delivers it again)."""
    if len(found) != 1 or not isinstance(found[0], DeliveryResult):
        return found
    outcome = found[0]
    try:
        at = message.metadata.timestamp
    except Exception:  # not from a stream: a message kept apart, or made by a test
        at = clock()
    return [*delivery_events(outcome.effect, outcome.ok, outcome.detail, at), outcome]


def _of(effect: Effect, profile_id: str) -> Effect:
    """The effect, for the profile that has its instance now (after a merge, the known one:
    its partition's owner is the one to apply the outcome)."""
    if effect.profile_id == profile_id:
        return effect
    return msgspec.structs.replace(effect, profile_id=profile_id)


def _numbers(partitions: Any) -> str:
    return ", ".join(str(p) for p in sorted(partitions)) or "none"


def _with_journeys(files: Workspace, journeys: Mapping[str, Journey]) -> Workspace:
    """The ``--workspace`` folder's documents with the published journeys, which send the
    folder's templates."""
    bound = {n: dataclasses.replace(j, templates=files.templates) for n, j in journeys.items()}
    return dataclasses.replace(files, journeys=bound)


def _versions(journeys: Mapping[str, Journey]) -> str:
    return ", ".join(f"{name} v{j.version}" for name, j in sorted(journeys.items())) or "none"


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the %s loop stopped", task.get_name(), exc_info=task.exception())
