"""The engine loop: triggers in, one transaction out, then the acknowledgements.

Everything that changes state goes through one :class:`Processor`: incoming events, due
timers and delivery outcomes. It takes whatever is queued (up to ``max_batch``), runs the
engine for each trigger in order, writes everything in one :meth:`Store.commit`, and only
then resolves the callers' futures. Many events share one transaction and one fsync (group
commit) without any of them waiting for a timer to fill a batch: while one batch commits,
the next one queues.

While a batch commits, the engine already runs the next one, on the state that batch
leaves (the store's, brought up to the committing batch in memory); the next commit starts
once that one is stored, and only then. A batch whose triggers need what the committing
one may change in the store and not in memory (a merge of profiles, a lookup by email or
anonymous id, a delivery outcome) waits for the commit first. If a commit fails, the
batch that ran on it runs again on what the store holds.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from journeyman.domain.engine import Engine, Outcome, Versions
from journeyman.domain.ingest import identity_of, normal_email
from journeyman.domain.merge import merge_profiles
from journeyman.domain.model import EventDefinition, Workspace
from journeyman.domain.state import Effect, Event, Instance, Profile
from journeyman.errors import JourneymanError
from journeyman.storage.base import Batch, Delivered, Snapshot, Store, StoredEvent

__all__ = [
    "CommitFailure",
    "DeliveryResult",
    "HeldBack",
    "Operate",
    "Overloaded",
    "Processor",
    "Stats",
    "TimerDue",
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
class TimerDue:
    instance_id: str
    profile_id: str


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How a delivery went, for the engine; ``settled`` updates the outbox in the same commit.

    An outcome that comes from another worker (through the bus) has its outbox row settled
    already, and names it as ``told``: it applies only while the row still waits for the
    engine to learn it (see :meth:`Store.untold`), and the commit that applies it says it
    was learned, so an outcome that comes twice applies once.
    """

    effect: Effect
    ok: bool
    detail: str = ""
    settled: Delivered | None = None
    told: int | None = None  # the outbox row's id, for an outcome settled elsewhere


@dataclass(frozen=True, slots=True)
class Operate:
    """An operator's command for one instance: ``resume`` it, or ``stop`` it.

    ``seq``, for a resume, is the instance's step count when it was found held: the resume
    applies to that hold only, so one that comes again after the instance moved on (and
    maybe was held again) does nothing. A stop applies to whatever the instance does, and
    does nothing to an instance that has ended.
    """

    instance_id: str
    profile_id: str
    command: Literal["resume", "stop"]
    seq: int | None = None


Trigger = Event | TimerDue | DeliveryResult | Operate


@dataclass(frozen=True, slots=True)
class CommitFailure:
    """A commit the store refused: its error, and when (``time.monotonic()`` seconds)."""

    reason: str
    at: float


@dataclass(slots=True)
class Stats:
    """Counters for /metrics."""

    events_accepted: int = 0
    events_duplicate: int = 0
    batches: int = 0
    commit_seconds: float = 0.0
    last_commit_seconds: float = 0.0
    timers_fired: int = 0
    effects_queued: int = 0


class _Item:
    """A queued trigger and the future its submitter waits on."""

    __slots__ = ("done", "trigger")

    def __init__(self, trigger: Trigger, done: asyncio.Future[str]) -> None:
        self.trigger = trigger
        self.done = done


@dataclass(slots=True)
class _Commit:
    """A batch the engine has run, being committed; ``stored`` says whether all of it was."""

    batch: Batch
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
        on_commit: Callable[[Batch], None] | None = None,
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
        self.engine = engine

    def now(self) -> datetime:
        """The time on the processor's clock (a virtual one in tests)."""
        return self.clock()

    def obey(self, states: Mapping[str, str]) -> None:
        """Take the journeys' states as stored (name -> paused or stopped)."""
        self.engine.obey(states)

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
        self, triggers: Sequence[Trigger], *, force: bool = False
    ) -> list[str | Exception]:
        """As :meth:`submit`, but each trigger's own answer, in order: its result once
        committed, or the exception that kept it from being stored, which is
        :class:`HeldBack` for one not tried because an earlier trigger of its profile
        failed. The others of the batch are stored all the same (see :meth:`_failed`)."""
        items = self._queue_up(triggers, force)
        answers = await asyncio.gather(*(item.done for item in items), return_exceptions=True)
        results: list[str | Exception] = []
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer  # cancelled: not a trigger's failure
            results.append(answer)
        return results

    def _queue_up(self, triggers: Sequence[Trigger], force: bool) -> list[_Item]:
        if not force and len(self._queue) + len(triggers) > self.max_queue:
            raise Overloaded(f"{len(self._queue)} triggers are queued")
        loop = asyncio.get_running_loop()
        items = [_Item(trigger, loop.create_future()) for trigger in triggers]
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
        idling through every commit with every caller in one batch."""
        queue = self._queue
        ahead = self._committing
        committing = ahead.size if ahead is not None and not ahead.stored.done() else 0
        limit = self.max_batch
        if len(queue) >= 2 * SPLIT:
            limit = min(limit, max(SPLIT, (len(queue) + committing + 1) // 2))
        return [queue.popleft() for _ in range(min(limit, len(queue)))]

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
        stored = asyncio.ensure_future(self._commit(items, results, batch))
        self._committing = _Commit(batch, len(items), stored)

    def _may_overlap(self, items: list[_Item], ahead: _Commit) -> bool:
        """Whether the engine may run these triggers before the batch ahead is stored:
        whether everything they read of what it changes is in its :class:`Batch`."""
        if ahead.batch.merges or ahead.batch.forgotten:
            return False
        definitions = self.workspace.events
        for item in items:
            trigger = item.trigger
            if isinstance(trigger, DeliveryResult):
                return False  # it may read its instance from the store
            if isinstance(trigger, Event) and (
                trigger.user_id is None
                or _links(trigger)
                or _by_email_identity(trigger, definitions)
            ):
                return False  # it looks its profile up in the store
        return True

    async def _process(self, items: list[_Item]) -> bool:
        """Run and commit the items' triggers, with nothing ahead of them in flight;
        whether all of them were stored."""
        try:
            results, batch = await self._run_engine(items)
        except Exception as error:
            return await self._failed(items, error)
        return await self._commit(items, results, batch)

    async def _commit(self, items: list[_Item], results: list[str], batch: Batch) -> bool:
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
            profile = _profile_of(item.trigger)
            if profile in failed:
                if not item.done.done():
                    item.done.set_exception(HeldBack(failed[profile]))
                continue
            if not await self._process([item]):
                done = item.done
                own = done.exception() if done.done() and not done.cancelled() else None
                failed[profile] = own or error
        return not failed

    def _count(self, results: list[str], batch: Batch, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.commit_seconds += seconds
        stats.last_commit_seconds = seconds
        stats.events_accepted += len(batch.events)
        stats.events_duplicate += results.count("duplicate")
        stats.effects_queued += len(batch.effects)
        stats.timers_fired += results.count("fired")

    async def _run_engine(
        self, items: list[_Item], ahead: Batch | None = None
    ) -> tuple[list[str], Batch]:
        """What the engine makes of the items: each one's result, and the batch to commit.

        ``ahead`` is a batch still being committed: the state read from the store is
        brought up to it (see :meth:`_may_overlap` for what it can hold).
        """
        now = self.clock()
        engine = self.engine  # the whole batch runs on one workspace, even if it is replaced
        events, emails = await self._resolve(items)
        seen = await self.store.seen([e.message_id for e in events.values() if e.message_id])
        if ahead is not None:
            seen.update(s.event.message_id for s in ahead.events if s.event.message_id)
        untold = await self.store.untold(
            [t.told for t in (i.trigger for i in items) if isinstance(t, DeliveryResult) and t.told]
        )
        profile_ids = {_profile_of(events.get(i, item.trigger)) for i, item in enumerate(items)}
        profile_ids.update(e.anonymous_id for e in events.values() if e.anonymous_id and _links(e))
        snapshots = await self.store.load(profile_ids)
        if ahead is not None:
            _bring_up(snapshots, ahead)
        batch = Batch()
        results = []
        for index, item in enumerate(items):
            trigger = events.get(index, item.trigger)
            if index in emails:
                trigger = _by_email(events[index], emails[index], snapshots, batch)
            snapshot = snapshots[_profile_of(trigger)]
            if _applied_before(trigger, seen, untold, batch):
                results.append("duplicate")
                continue
            if isinstance(trigger, Event) and _links(trigger):
                _merge(trigger, snapshots, batch, now)
            outcome = await self._trigger(engine, snapshot, trigger, now)
            if isinstance(trigger, Event):
                batch.events.append(StoredEvent(trigger, now))
                if snapshot.new:  # an event makes its profile, traits or not
                    batch.profiles.setdefault(snapshot.profile.id, snapshot.profile)
                    snapshot.new = False
            elif isinstance(trigger, DeliveryResult) and trigger.settled is not None:
                batch.deliveries.append(trigger.settled)
            if outcome is not None:
                _apply(snapshot, outcome, batch)
            fired = (
                isinstance(trigger, TimerDue) and outcome is not None and bool(outcome.instances)
            )
            results.append("fired" if fired else "accepted")
        return results, batch

    async def _resolve(self, items: list[_Item]) -> tuple[dict[int, Event], dict[int, str]]:
        """Events by position, each with its profile id as stored, and the email of each
        event that names its profile by email.

        Such an event goes to the profile that has that email; an unknown email starts a
        profile whose id is the address (see :func:`_by_email`).
        """
        events = {
            i: item.trigger for i, item in enumerate(items) if isinstance(item.trigger, Event)
        }
        definitions = self.workspace.events
        by_email = {
            i: identity_of(e, definitions.get(e.name))[1]
            for i, e in events.items()
            if _by_email_identity(e, definitions)
        }
        if by_email:
            known = await self.store.resolve([("email", v) for v in by_email.values()])
            for i, email in by_email.items():
                profile_id = known.get(("email", email), email)
                events[i] = msgspec.structs.replace(events[i], profile_id=profile_id)
        # An anonymous visitor who has signed in since is the known profile now.
        anonymous = {
            i: e.anonymous_id
            for i, e in events.items()
            if e.user_id is None and e.anonymous_id is not None and i not in by_email
        }
        if anonymous:
            known = await self.store.resolve([("anonymousId", a) for a in anonymous.values()])
            for i, anonymous_id in anonymous.items():
                owner = known.get(("anonymousId", anonymous_id))
                if owner is not None:
                    events[i] = msgspec.structs.replace(events[i], profile_id=owner)
        return events, by_email

    async def _trigger(
        self, engine: Engine, snapshot: Snapshot, trigger: Trigger, now: datetime
    ) -> Outcome | None:
        """The engine's outcome of one trigger (None: it is for nothing that still runs).

        If the engine raises, the trigger fails alone (see :meth:`Engine.on_crash`): failing
        the batch would fail every other trigger in it, and the trigger would come back (a
        timer still due, a message redelivered) to fail the same way for ever.
        """
        if isinstance(trigger, Event):
            target: Instance | None = None
        else:
            target = await self._target(snapshot, trigger)
            if target is None:
                return None
        try:
            return _run(engine, snapshot, trigger, target, now)
        except Exception as error:
            log.exception("the engine failed on %s; it fails alone", _described(trigger))
            reason = f"the engine failed: {error!r}"[:_REASON_LENGTH]
            failed = trigger if isinstance(trigger, Event) else target
            assert failed is not None
            return engine.on_crash(snapshot.profile, snapshot.running, failed, reason, now)

    async def _target(self, snapshot: Snapshot, trigger: Trigger) -> Instance | None:
        """The instance a trigger other than an event is for, if it still applies to it."""
        running = snapshot.running
        if isinstance(trigger, TimerDue):
            return _find(running, trigger.instance_id)  # None: it moved on or ended since
        if isinstance(trigger, Operate):
            instance = _find(running, trigger.instance_id)  # None: it ended
            if instance is not None and trigger.seq is not None and instance.seq != trigger.seq:
                return None  # it moved on since the command was given
            return instance
        assert isinstance(trigger, DeliveryResult)
        instance_id = trigger.effect.instance_id
        return _find(running, instance_id) or await self.store.instance(instance_id)


_REASON_LENGTH = 500  # of an engine failure's text in the trace


def _run(
    engine: Engine, snapshot: Snapshot, trigger: Trigger, target: Instance | None, now: datetime
) -> Outcome:
    """The engine on one trigger; ``target`` is the instance it is for (not for an event)."""
    profile, running = snapshot.profile, snapshot.running
    if isinstance(trigger, Event):
        return engine.on_event(profile, running, trigger, now)
    assert target is not None
    if isinstance(trigger, TimerDue):
        return engine.on_timer(profile, running, target, now)
    if isinstance(trigger, Operate):
        if trigger.command == "stop":
            return engine.on_stop(profile, target, now)
        return engine.on_resume(profile, running, target, now)
    step = trigger.effect.step
    if trigger.ok:
        return engine.on_delivered(profile, running, target, step, now)
    return engine.on_failure(profile, running, target, step, trigger.detail, now)


def _described(trigger: Trigger) -> str:
    """The trigger, as the log names it."""
    if isinstance(trigger, Event):
        return f"{trigger.type} {trigger.name!r} of profile {trigger.profile_id!r}"
    if isinstance(trigger, TimerDue | Operate):
        kind = "the timer" if isinstance(trigger, TimerDue) else f"the {trigger.command}"
        return f"{kind} of instance {trigger.instance_id!r}"
    return f"the delivery outcome of {trigger.effect.key!r}"


def _applied_before(trigger: Trigger, seen: set[str], untold: set[int], batch: Batch) -> bool:
    """Whether the trigger came before (an event by its messageId, an outcome settled
    elsewhere by its outbox row); if not, remember it for the rest of the batch."""
    if isinstance(trigger, Event) and trigger.message_id is not None:
        if trigger.message_id in seen:
            return True
        seen.add(trigger.message_id)
    elif isinstance(trigger, DeliveryResult) and trigger.told is not None:
        if trigger.told not in untold:
            return True
        untold.discard(trigger.told)
        batch.told.append(trigger.told)
    return False


def _profile_of(trigger: Trigger) -> str:
    if isinstance(trigger, Event):
        return trigger.profile_id
    if isinstance(trigger, TimerDue | Operate):
        return trigger.profile_id
    return trigger.effect.profile_id


def _by_email(event: Event, email: str, snapshots: dict[str, Snapshot], batch: Batch) -> Event:
    """The event for the profile that has ``email`` at this point of the batch.

    An email given to a profile earlier in the batch counts as if it had been stored (the
    outcome must not depend on where batches happen to be cut); an address that no profile
    has starts a profile keyed by it, with the address as its email.
    """
    owner = batch.identities.get(("email", email))
    if owner is not None and owner != event.profile_id:
        event = msgspec.structs.replace(event, profile_id=owner)
    snapshot = snapshots[event.profile_id]
    if snapshot.new and event.profile_id == email:
        snapshot.profile = Profile(id=email, traits={"email": email})
        batch.profiles[email] = snapshot.profile
        batch.identities[("email", email)] = email
    return event


def _by_email_identity(event: Event, definitions: Mapping[str, EventDefinition]) -> bool:
    """Whether the event names its profile by email (its definition says so)."""
    return event.type == "track" and getattr(definitions.get(event.name), "identity", "") == "email"


def _bring_up(snapshots: dict[str, Snapshot], ahead: Batch) -> None:
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
        snapshot.running = sorted(_carry(snapshot.running, instances), key=lambda i: i.id)


def _carry(running: list[Instance], changed: Iterable[Instance]) -> list[Instance]:
    """The running instances after ``changed``: running ones replace or join, ended ones
    leave."""
    found = {i.id: i for i in running}
    for instance in changed:
        if instance.status == "ended":
            found.pop(instance.id, None)
        else:
            found[instance.id] = instance
    return list(found.values())


def _links(event: Event) -> bool:
    """Whether the event says an anonymous id and a user id are one person."""
    return (
        event.type == "identify"
        and event.user_id is not None
        and event.anonymous_id is not None
        and event.anonymous_id != event.user_id
    )


def _merge(event: Event, snapshots: dict[str, Snapshot], batch: Batch, now: datetime) -> None:
    """Fold the anonymous profile into the known one, once; remember they are one."""
    assert event.anonymous_id is not None
    anonymous = snapshots[event.anonymous_id]
    batch.identities[("anonymousId", event.anonymous_id)] = event.profile_id
    if anonymous.new:
        return
    known = snapshots[event.profile_id]
    merged = merge_profiles(known.profile, known.running, anonymous.profile, anonymous.running, now)
    known.profile, known.running, known.new = merged.profile, merged.running, False
    batch.profiles[merged.profile.id] = merged.profile
    batch.profiles.pop(anonymous.profile.id, None)
    batch.instances.update((i.id, i) for i in merged.changed)
    batch.records.extend(merged.records)
    batch.merges.append((anonymous.profile.id, merged.profile.id))
    snapshots[event.anonymous_id] = Snapshot(Profile(id=event.anonymous_id), [], new=True)


def _find(running: list[Instance], instance_id: str) -> Instance | None:
    return next((i for i in running if i.id == instance_id), None)


def _apply(snapshot: Snapshot, outcome: Outcome, batch: Batch) -> None:
    """Carry an outcome into the snapshot (for the next trigger) and the batch."""
    if outcome.profile_changed:
        before = snapshot.profile.traits.get("email")
        snapshot.profile = outcome.profile
        batch.profiles[outcome.profile.id] = outcome.profile
        email = outcome.profile.traits.get("email")
        if isinstance(before, str) and before and before != email:
            batch.forgotten.append(("email", normal_email(before), outcome.profile.id))
        if isinstance(email, str) and email:
            batch.identities[("email", normal_email(email))] = outcome.profile.id
    if outcome.instances:
        batch.instances.update(outcome.instances)
        snapshot.running = _carry(snapshot.running, outcome.instances.values())
    batch.effects.extend(outcome.effects)
    batch.records.extend(outcome.records)
