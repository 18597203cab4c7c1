"""The engine loop: triggers in, one transaction out, then the acknowledgements.

Everything that changes state goes through one :class:`Processor`: incoming events, due
timers, delivery outcomes and operators' commands. It takes whatever is queued (up to
``max_batch``), reads what the batch needs from the store, runs
:func:`journeyman.domain.core.apply` on it (the pure core that ``journeyman test`` runs
too: profiles found, duplicates dropped, merges, the engine, outcomes carried), writes the
changes in one :meth:`Store.commit`, and only then resolves the callers' futures. Many
events share one transaction and one fsync (group commit) without any of them waiting for
a timer to fill a batch: while one batch commits, the next one queues.

While a batch commits, the engine already runs the next one, on the state that batch
leaves (the store's, brought up to the committing batch in memory); the next commit starts
once that one is stored, and only then. A batch whose triggers need what the committing
one may change in the store and not in memory (a merge of profiles, a lookup by email or
anonymous id) waits for the commit first; a delivery outcome does not: the instance it is
for, and whether it was learned already, are brought up to the committing batch too. If a
commit fails, the batch that ran on it runs again on what the store holds.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from journeyman.domain.core import (
    BACKFILL,
    Changes,
    DeliveryResult,
    Known,
    Operate,
    Snapshot,
    TimerDue,
    Trigger,
    accounts_needed,
    apply,
    backfills_needed,
    carry,
    links,
    lookups,
    profile_of,
    profiles_needed,
    recorded_by_journeyman,
)
from journeyman.domain.engine import Engine, Versions
from journeyman.domain.experiments import Decision
from journeyman.domain.model import EventDefinition, Workspace
from journeyman.domain.reactions import REACTION_EVENTS
from journeyman.domain.state import Account, Event, Instance
from journeyman.errors import JourneymanError
from journeyman.storage.base import Store

__all__ = [
    "CommitFailure",
    "DeliveryResult",
    "HeldBack",
    "Operate",
    "Overloaded",
    "Processor",
    "Stats",
    "TimerDue",
    "Trigger",
]

log = logging.getLogger("journeyman.processor")

Clock = Callable[[], datetime]

SPLIT = 16  # the smallest half of a batch the processor runs apart (see Processor._take)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Overloaded(JourneymanError):
    """Too much is queued: the caller should retry later (HTTP 429)."""


class HeldBack(Exception):
    """A trigger not tried because an earlier trigger of its profile, in the same batch,
    failed: a profile's triggers never apply out of order. ``cause`` is that failure."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"held back behind a failed trigger of the same profile: {cause!r}")
        self.cause = cause


@dataclass(frozen=True, slots=True)
class CommitFailure:
    """A commit the store refused: its error, and when (``time.monotonic()`` seconds)."""

    reason: str
    at: float


@dataclass(slots=True)
class Stats:
    """Counters for /metrics."""

    events_accepted: int = 0
    reactions_accepted: int = 0  # of events_accepted: reactions to messages (sent, opened...)
    events_duplicate: int = 0
    batches: int = 0
    commit_seconds: float = 0.0
    last_commit_seconds: float = 0.0
    timers_fired: int = 0
    effects_queued: int = 0


class _Item:
    """A queued trigger and the future its submitter waits on; ``withdrawn`` once that
    submitter gave it up before it was run (see :meth:`Processor.submit_each`)."""

    __slots__ = ("done", "quiet", "trigger", "withdrawn")

    def __init__(self, trigger: Trigger, done: asyncio.Future[str], quiet: bool = False) -> None:
        self.trigger = trigger
        self.done = done
        self.withdrawn = False
        self.quiet = quiet  # an imported event, only kept (see submit_each)


@dataclass(slots=True)
class _Commit:
    """A batch the engine has run, being committed; ``stored`` says whether all of it was."""

    batch: Changes
    size: int  # how many triggers it holds
    stored: asyncio.Future[bool]


class Processor:
    """The single writer of journey state. Start :meth:`run` once; :meth:`submit` from anywhere."""

    def __init__(
        self,
        store: Store,
        workspace: Workspace,
        *,
        clock: Clock = utc_now,
        max_batch: int = 1000,
        max_queue: int = 20_000,
        on_commit: Callable[[Changes], None] | None = None,
    ) -> None:
        self.store = store
        self.engine = Engine(workspace)
        self.clock = clock
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.on_commit = on_commit
        self.stats = Stats()
        self._queue: collections.deque[_Item] = collections.deque()
        self._wanted = 1  # how many queued triggers make the next batch (see _gather)
        self._arrived: asyncio.Future[None] | None = None  # set once that many are queued
        self._current: asyncio.Future[None] | None = None  # the step in flight
        self._committing: _Commit | None = None  # the last batch handed to the store
        self._commit_failure: CommitFailure | None = None

    @property
    def workspace(self) -> Workspace:
        return self.engine.workspace

    def use(self, workspace: Workspace, versions: Versions | None = None) -> None:
        """Run the next batches on ``workspace`` (a batch in flight finishes on the old one)."""
        engine = Engine(workspace, versions)
        engine.paused, engine.stopped = self.engine.paused, self.engine.stopped
        engine.decisions, engine.forced = self.engine.decisions, self.engine.forced
        self.engine = engine

    def now(self) -> datetime:
        """The time on the processor's clock (a virtual one in tests)."""
        return self.clock()

    def obey(self, states: Mapping[str, str]) -> None:
        """Take the journeys' states as stored (name -> paused or stopped)."""
        self.engine.obey(states)

    def obey_decisions(self, decisions: Mapping[tuple[str, str], Decision]) -> None:
        """Take the experiments' decisions as stored ((journey, step) -> decision)."""
        self.engine.decisions.clear()
        self.engine.decisions.update(decisions)

    def set_journey_state(self, name: str, state: str) -> None:
        """Journey ``name`` is now active, paused or stopped, for the next batches."""
        self.engine.set_state(name, state)

    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def commit_failure(self) -> CommitFailure | None:
        """Why the last commit failed, or None when it was stored (or none was tried)."""
        return self._commit_failure

    async def submit(self, triggers: Sequence[Trigger], *, force: bool = False) -> list[str]:
        """Queue triggers and wait until they are committed: ``accepted``, ``duplicate``, or
        for a timer that moved its instance on, ``fired``.

        Raises :class:`Overloaded` (unless ``force``) when the queue is full, and the first
        failure if any trigger was not stored (see :meth:`submit_each`).
        """
        items = self._queue_up(triggers, force)
        if len(items) == 1:  # one event per call is the common case: no gathering
            return [await items[0].done]
        return list(await asyncio.gather(*(item.done for item in items)))

    async def submit_each(
        self,
        triggers: Sequence[Trigger],
        *,
        force: bool = False,
        withdraw: bool = False,
        quiet: bool = False,
    ) -> list[str | Exception]:
        """As :meth:`submit`, but each trigger's own answer, in order: its result once
        committed, or the exception that kept it from being stored, which is
        :class:`HeldBack` for one not tried because an earlier trigger of its profile
        failed. The others of the batch are stored all the same (see :meth:`_failed`).

        With ``withdraw``, cancelling the call withdraws the triggers not run yet: a
        worker that loses a partition leaves its batch to the new owner, and must not
        apply it afterwards, out of order with what the new owner applied meanwhile.

        With ``quiet``, the events are only kept, as an import keeps history: they set
        traits and consent, and enter, resume and exit no journey. They run in batches of
        their own, in the order they were queued with the others.
        """
        items = self._queue_up(triggers, force, quiet)
        try:
            answers = await asyncio.gather(*(item.done for item in items), return_exceptions=True)
        except asyncio.CancelledError:
            if withdraw:
                for item in items:
                    item.withdrawn = True
            raise
        results: list[str | Exception] = []
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer  # cancelled: not a trigger's failure
            results.append(answer)
        return results

    def _queue_up(
        self, triggers: Sequence[Trigger], force: bool, quiet: bool = False
    ) -> list[_Item]:
        if not force and len(self._queue) + len(triggers) > self.max_queue:
            raise Overloaded(f"{len(self._queue)} triggers are queued")
        loop = asyncio.get_running_loop()
        items = [_Item(trigger, loop.create_future(), quiet) for trigger in triggers]
        self._queue.extend(items)
        arrived = self._arrived
        if arrived is not None and len(self._queue) >= self._wanted and not arrived.done():
            arrived.set_result(None)
        return items

    async def run(self) -> None:
        """Process batches until cancelled; the batches in flight are finished by
        :meth:`drain`."""
        while True:
            await self._gather()
            self._current = asyncio.ensure_future(self._step(self._take()))
            await asyncio.shield(self._current)

    async def _gather(self) -> None:
        """Wait for a batch: one trigger, or while a batch commits, enough to run on their
        own in the meantime (half as many as it has) unless it is stored first.

        Without that, the first trigger to come after a commit would make a batch of one
        and the rest the next one, and so on, each waiting on the other.
        """
        while True:
            ahead = self._committing
            busy = ahead is not None and not ahead.stored.done()
            self._wanted = max(1, ahead.size // 2) if ahead is not None and busy else 1
            if len(self._queue) >= self._wanted:
                return
            self._arrived = asyncio.get_running_loop().create_future()
            waits: list[asyncio.Future[Any]] = [self._arrived]
            if ahead is not None and busy:
                waits.append(ahead.stored)
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._arrived = None

    def _take(self) -> list[_Item]:
        """The next batch off the queue. With many queued, about half of what is queued and
        committing: then the engine runs one batch while the other commits, rather than
        idling through every commit with every caller in one batch. Triggers their
        submitter withdrew are dropped."""
        queue = self._queue
        ahead = self._committing
        committing = ahead.size if ahead is not None and not ahead.stored.done() else 0
        limit = self.max_batch
        if len(queue) >= 2 * SPLIT:
            limit = min(limit, max(SPLIT, (len(queue) + committing + 1) // 2))
        quiet = queue[0].quiet if queue else False
        taken: list[_Item] = []
        while queue and len(taken) < limit and queue[0].quiet == quiet:  # one kind a batch
            taken.append(queue.popleft())
        return [item for item in taken if not item.withdrawn]

    async def drain(self) -> None:
        """After :meth:`run` is cancelled: finish the batches in flight, then what is queued."""
        if self._current is not None:
            await self._current
        while self._queue:
            await self._step(self._take())
        if self._committing is not None:
            await self._committing.stored

    async def _step(self, items: list[_Item]) -> None:
        """Run the engine on the items while the batch before them commits (when it may),
        then hand their batch to the store once that one is stored."""
        if not items:
            return  # all of them were withdrawn
        ahead = self._committing
        if ahead is not None and not (ahead.stored.done() or self._may_overlap(items, ahead)):
            await ahead.stored
        if ahead is not None and ahead.stored.done():
            ahead = None  # stored, or retried trigger by trigger: the store has it all
        try:
            results, batch = await self._run_engine(items, ahead.batch if ahead else None)
        except Exception as error:
            if ahead is not None:
                await ahead.stored
            self._committing = None
            await self._failed(items, error)
            return
        if ahead is not None and not await ahead.stored:
            # Some of the batch ahead was not stored, and these results rest on all of it.
            self._committing = None
            await self._process(items)
            return
        if any(item.withdrawn for item in items):
            # Withdrawn while the engine ran: the others run again without them.
            self._committing = None
            kept = [item for item in items if not item.withdrawn]
            if kept:
                await self._process(kept)
            return
        stored = asyncio.ensure_future(self._commit(items, results, batch))
        self._committing = _Commit(batch, len(items), stored)

    def _may_overlap(self, items: list[_Item], ahead: _Commit) -> bool:
        """Whether the engine may run these triggers before the batch ahead is stored:
        whether everything they read of what it changes is in its :class:`Changes`."""
        if ahead.batch.merges or ahead.batch.forgotten:
            return False
        triggers = [item.trigger for item in items]
        events = [t for t in triggers if isinstance(t, Event)]
        if any(e.type == BACKFILL for e in events):
            return False  # it reads the event log, which the batch ahead adds to
        # An event that looks its profile up in the store, or merges one, waits; but a
        # message's outcome (named by its profile's id as an anonymous id, in case that
        # visitor has signed in since) reads only anonymous ids, which the batch ahead
        # has not changed unless it holds one.
        anonymous_changed = any(k[0] == "anonymousId" for k in ahead.batch.identities)
        return not (
            any(_waits(e, anonymous_changed) for e in events)
            or lookups([e for e in events if not _outcome_of_message(e)], self.workspace.events)
        )

    async def _process(self, items: list[_Item]) -> bool:
        """Run and commit the items' triggers, with nothing ahead of them in flight;
        whether all of them were stored."""
        try:
            results, batch = await self._run_engine(items)
        except Exception as error:
            return await self._failed(items, error)
        return await self._commit(items, results, batch)

    async def _commit(self, items: list[_Item], results: list[str], batch: Changes) -> bool:
        """Store what the engine made of the items, then answer their submitters."""
        try:
            began = time.perf_counter()
            if batch:
                await self.store.commit(batch)
                self._commit_failure = None
            self._count(results, batch, time.perf_counter() - began)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"[:200]
            self._commit_failure = CommitFailure(reason, time.monotonic())
            return await self._failed(items, error)
        for item, result in zip(items, results, strict=True):
            if not item.done.done():
                item.done.set_result(result)
        if self.on_commit is not None:
            self.on_commit(batch)
        return True

    async def _failed(self, items: list[_Item], error: Exception) -> bool:
        """After a batch failed and nothing of it was stored: retry its triggers one by
        one, or fail the one; whether all of them were stored in the end."""
        if len(items) > 1:
            # One bad trigger must not fail the others: try each on its own.
            log.warning(
                "a batch of %d triggers failed (%r); retrying one by one", len(items), error
            )
            return await self._one_by_one(items, error)
        log.exception("a trigger failed; nothing of it was stored", exc_info=error)
        for item in items:
            if not item.done.done():
                item.done.set_exception(error)
        return False

    async def _one_by_one(self, items: list[_Item], error: Exception) -> bool:
        """Process each item on its own, but none after a failed one of the same profile:
        a profile's triggers never apply out of order, even when the store comes back
        half way through."""
        failed: dict[str, BaseException] = {}  # profile -> the failure that holds it back
        for item in items:
            if item.withdrawn:
                continue  # its submitter gave it up meanwhile
            profile = profile_of(item.trigger)
            if profile in failed:
                if not item.done.done():
                    item.done.set_exception(HeldBack(failed[profile]))
                continue
            if not await self._process([item]):
                done = item.done
                own = done.exception() if done.done() and not done.cancelled() else None
                failed[profile] = own or error
        return not failed

    def _count(self, results: list[str], batch: Changes, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.commit_seconds += seconds
        stats.last_commit_seconds = seconds
        stats.events_accepted += sum(not recorded_by_journeyman(e) for e in batch.events)
        stats.reactions_accepted += sum(e.name in REACTION_EVENTS for e in batch.events)
        stats.events_duplicate += results.count("duplicate")
        stats.effects_queued += len(batch.effects)
        stats.timers_fired += results.count("fired")

    async def _run_engine(
        self, items: list[_Item], ahead: Changes | None = None
    ) -> tuple[list[str], Changes]:
        """What the engine makes of the items: each one's result, and the batch to commit.

        The reads are here; the rest is :func:`journeyman.domain.core.apply`, which
        ``journeyman test`` runs too. ``ahead`` is a batch still being committed: the state
        read from the store is brought up to it (see :meth:`_may_overlap` for what it can
        hold).
        """
        now = self.clock()
        engine = self.engine  # the whole batch runs on one workspace, even if it is replaced
        definitions = engine.workspace.events
        triggers = [item.trigger for item in items]
        known = await self._known(triggers, definitions, ahead)
        snapshots = await self.store.load(profiles_needed(triggers, definitions, known.identities))
        if ahead is not None:
            _bring_up(snapshots, ahead)
        await self._find_elsewhere(triggers, snapshots, known, ahead)
        await self._accounts(triggers, snapshots, known, ahead)
        await self._logs(triggers, engine, known)
        results, changes = apply(engine, snapshots, triggers, now, known, quiet=items[0].quiet)
        for trigger, error in changes.crashes:
            log.error(
                "the engine failed on %s; it fails alone", _described(trigger), exc_info=error
            )
        return results, changes

    async def _known(
        self,
        triggers: list[Trigger],
        definitions: Mapping[str, EventDefinition],
        ahead: Changes | None,
    ) -> Known:
        """What the store knows that the triggers need: the profiles their identities name,
        the messageIds accepted before, the outcomes still to learn."""
        store = self.store
        wanted = lookups(triggers, definitions)
        identities = await store.resolve(wanted) if wanted else {}
        seen = await store.seen(
            [t.message_id for t in triggers if isinstance(t, Event) and t.message_id]
        )
        untold = await store.untold(
            [t.told for t in triggers if isinstance(t, DeliveryResult) and t.told]
        )
        if ahead is not None:
            seen.update(e.message_id for e in ahead.events if e.message_id)
            untold.difference_update(ahead.told)
        return Known(identities, seen, untold)

    async def _logs(self, triggers: list[Trigger], engine: Engine, known: Known) -> None:
        """The stored events that the batch's segment backfills read, of their profiles."""
        needed = backfills_needed(triggers, engine.workspace.segments)
        if needed:
            known.logs = {pid: await self.store.log_of(pid, n) for pid, n in needed.items()}

    async def _accounts(
        self,
        triggers: list[Trigger],
        snapshots: dict[str, Snapshot],
        known: Known,
        ahead: Changes | None,
    ) -> None:
        """The accounts the batch reads (of its profiles, and of its group calls), as
        stored and brought up to the batch still being committed."""
        wanted = accounts_needed(snapshots, triggers)
        if not wanted:
            return
        found = await self.store.accounts(wanted)
        for account_id, patch in ahead.accounts.items() if ahead is not None else ():
            if account_id in wanted:
                found[account_id] = (found.get(account_id) or Account(id=account_id)).patched(patch)
        known.accounts = found

    async def _find_elsewhere(
        self,
        triggers: list[Trigger],
        snapshots: dict[str, Snapshot],
        known: Known,
        ahead: Changes | None = None,
    ) -> None:
        """The instances that delivery outcomes are for, where the profile their effect
        names does not run them (they ended, or moved to the profile it merged into), and
        the profiles that have them now; as stored, brought up to ``ahead``."""
        elsewhere = set()
        for trigger in triggers:
            if not isinstance(trigger, DeliveryResult):
                continue
            instance_id = trigger.effect.instance_id
            running = snapshots[trigger.effect.profile_id].running
            if not any(i.id == instance_id for i in running):
                elsewhere.add(instance_id)
        # One read for all of them: a batch of outcomes of ended instances is common.
        found = await self.store.instances(elsewhere) if elsewhere else {}
        if ahead is not None:  # what the batch being committed makes of them
            found.update((i, ahead.instances[i]) for i in elsewhere if i in ahead.instances)
        if found:
            known.instances = found
            owners = {i.profile_id for i in found.values()} - snapshots.keys()
            if owners:
                loaded = await self.store.load(owners)
                if ahead is not None:
                    _bring_up(loaded, ahead)
                snapshots.update(loaded)


def _described(trigger: Trigger) -> str:
    """The trigger, as the log names it."""
    if isinstance(trigger, Event):
        return f"{trigger.type} {trigger.name!r} of profile {trigger.profile_id!r}"
    if isinstance(trigger, TimerDue | Operate):
        kind = "the timer" if isinstance(trigger, TimerDue) else f"the {trigger.command}"
        return f"{kind} of instance {trigger.instance_id!r}"
    return f"the delivery outcome of {trigger.effect.key!r}"


def _bring_up(snapshots: dict[str, Snapshot], ahead: Changes) -> None:
    """Bring snapshots read from the store up to ``ahead``, a batch not yet stored: its
    profiles, and its instances (running ones in, ended ones out, in the store's order)."""
    for profile_id, snapshot in snapshots.items():
        profile = ahead.profiles.get(profile_id)
        if profile is not None:
            snapshot.profile, snapshot.new = profile, False
    changed: dict[str, list[Instance]] = {}
    for instance in ahead.instances.values():
        if instance.profile_id in snapshots:
            changed.setdefault(instance.profile_id, []).append(instance)
    for profile_id, instances in changed.items():
        snapshot = snapshots[profile_id]
        snapshot.running = sorted(carry(snapshot.running, instances), key=lambda i: i.id)


def _outcome_of_message(event: Event) -> bool:
    """Whether the event is a message's outcome, which names its profile as its anonymous
    id (see :func:`journeyman.domain.feedback.delivery_events`)."""
    return (
        event.user_id is None
        and event.anonymous_id == event.profile_id
        and event.name in REACTION_EVENTS
    )


def _waits(event: Event, anonymous_changed: bool) -> bool:
    """Whether the event must wait for the batch ahead to be stored (see
    :meth:`Processor._may_overlap`)."""
    if links(event):
        return True
    if _outcome_of_message(event):
        return anonymous_changed
    return event.user_id is None
