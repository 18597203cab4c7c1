"""The storage ports: what the runtime keeps, behind three small interfaces.

A backend stores profiles, running and ended instances, the event history, the outbox of
messages and calls to deliver, and the step log. Each caller sees it through the
narrowest port that serves it:

- :class:`Store`, the engine's port: the processor, the timer loop, the dispatcher and a
  publish read and write through it, and nothing else;
- :class:`ReadModel`, the reads of the HTTP API and the console: logs, traces, counts,
  dead letters;
- :class:`ScaleOutStore`, the engine's port for a database that workers share: leased
  claims of timers, outcomes kept for the owner of their profile, dead letters, and the
  :class:`PartitionLocks` that say which worker owns which partition.

Every backend is a :class:`Database` (a :class:`Store` and a :class:`ReadModel`);
PostgreSQL's is a :class:`ScaleOutStore` too. :func:`journeyman.storage.open_store` picks
the backend from a URL.

The ports speak the domain's language: :meth:`Store.load` gives the
:class:`~journeyman.domain.core.Snapshot` s that :func:`journeyman.domain.core.apply` reads,
and the one write the hot path makes, :meth:`Store.commit`, keeps the
:class:`~journeyman.domain.core.Changes` it made (everything one batch of events or timers
changed) in one transaction. Nothing is acknowledged before it returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from journeyman.domain.core import Changes, Delivered, ProfileClock, Snapshot, Timer
from journeyman.domain.state import (
    Account,
    Effect,
    Event,
    Instance,
    Profile,
    SendMessage,
    StepRecord,
)
from journeyman.errors import JourneymanError

if TYPE_CHECKING:
    from journeyman.storage.migrations import Migration

__all__ = [
    "LEASE",
    "LEFT",
    "AuditEntry",
    "Changes",
    "Counter",
    "Database",
    "DeadLetter",
    "Delivered",
    "HistoryRow",
    "MessageRow",
    "NewerSchema",
    "OutboxItem",
    "PartitionLocks",
    "ProfileClock",
    "PublishedJourney",
    "PublishedWorkspace",
    "ReadModel",
    "ScaleOutStore",
    "Snapshot",
    "StorageUnavailable",
    "Store",
    "StoredEvent",
    "ToTell",
]

# A claimed outbox item is not claimed again for this long: if the process dies while
# delivering it, it is retried after the lease (with the same idempotency key).
LEASE = timedelta(minutes=2)


# The step records of an instance that ended at a step without completing it: an early
# end's record says why after its state ('exited: exit event deleted', 'stopped: ...',
# 'timed_out: ...', 'failed: ...', 'goal_reached: ...'), or the instance was merged away.
# A normal completion is no leaving: an instance that reached an `end` step ends with the
# step's state alone ('converted'), one that ran out of steps with 'completed'.
LEFT = (
    "(s.outcome = 'ended' AND s.detail LIKE '%: %') "
    "OR (s.outcome = 'merged' AND s.detail LIKE 'ended:%')"
)


class NewerSchema(JourneymanError):
    """The database was written by a newer journeyman: this one leaves it alone."""


class StorageUnavailable(JourneymanError):
    """The database cannot be reached or opened; the message names it and says why."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An accepted event, kept in the profile's history (and for messageId dedupe)."""

    event: Event
    received_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A message or call waiting for delivery."""

    id: int
    effect: Effect
    attempts: int


@dataclass(frozen=True, slots=True)
class PublishedJourney:
    """One published version of a journey, with its document as written."""

    name: str
    version: int
    digest: str
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PublishedWorkspace:
    """One published version of the whole workspace: its files as written (``${ENV}``
    references unresolved, so no secret is stored), a digest of its documents, and the
    version of every journey it runs."""

    version: int
    digest: str
    files: dict[str, str]
    journeys: dict[str, int]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what to a journey or to the workspace, and when: a pause, resume or stop
    (``count``: the instances it reached), or a publish. A publish is kept once for the
    workspace (``journey`` "") and once for each journey it gave a new version
    (``journey_version``) or removed (command ``remove``)."""

    at: datetime
    by: str  # the console user, the ``by`` an API call gave, "api", "serve"
    via: str  # console, api or serve
    command: str  # pause, resume, stop, publish, remove; draft, edit, discard, save (editor)
    journey: str = ""
    count: int | None = None
    journey_version: int | None = None
    workspace_version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "by": self.by,
            "via": self.via,
            "command": self.command,
            "journey": self.journey or None,
            "count": self.count,
            "journey_version": self.journey_version,
            "workspace_version": self.workspace_version,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A bus message that a worker could not apply after several tries, kept as it came
    (its headers and body) so that it can be published again once the cause is fixed."""

    partition: int
    headers: dict[str, str]
    body: bytes
    error: str  # the last failure
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    id: int = 0  # the store numbers it


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One line of the message log."""

    key: str
    kind: str  # send or call
    channel: str
    journey: str
    step: str
    profile_id: str
    instance_id: str
    status: str  # queued, sent, retry, failed
    attempts: int
    detail: str
    created_at: datetime
    updated_at: datetime
    content: dict[str, Any]


class HistoryRow(NamedTuple):
    """An event for :meth:`Store.keep_history`, encoded already (``codec.encode``)."""

    message_id: str | None
    profile_id: str
    name: str
    body: bytes


class Counter(NamedTuple):
    """One report counter of a journey (see journeyman.domain.goals): ``n`` of ``metric``
    and their sum ``total``, for a version, an arm ("" for none) and a goal ("" for the
    journey itself)."""

    version: int
    arm: str
    goal: str
    metric: str
    n: int
    total: float


class ToTell(NamedTuple):
    """A settled delivery whose outcome its profile's worker has still to learn."""

    id: int  # the outbox row
    effect: Effect
    status: str  # sent or failed
    detail: str
    # The profile that has the instance now: the effect's, unless an identify merged it
    # into a known profile since (the merge moves the outbox rows with the instances).
    profile_id: str


class Store(ABC):
    """The engine's port: what the processor, the timer loop, the dispatcher and a publish
    read and write. Every method is a coroutine; a backend serialises its own writes."""

    # The schema steps the last open() applied, in order (``journeyman migrate`` shows them).
    applied: list[Migration]

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema and get ready."""

    @abstractmethod
    async def close(self) -> None: ...

    # the engine's unit of work

    @abstractmethod
    async def load(self, profile_ids: Collection[str]) -> dict[str, Snapshot]:
        """The profiles (new, empty ones for unknown ids) and their running instances."""

    @abstractmethod
    async def resolve(self, identities: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Profile ids for (kind, value) identities already known, such as an email."""

    @abstractmethod
    async def accounts(self, account_ids: Collection[str]) -> dict[str, Account]:
        """The stored accounts among these ids (one no group call named is left out)."""

    @abstractmethod
    async def seen(self, message_ids: Collection[str]) -> set[str]:
        """Which of these messageIds were accepted before."""

    async def untold(self, outbox_ids: Collection[int]) -> set[int]:
        """Which of these settled outbox rows still wait for the engine to learn their
        outcome. Only a database shared by workers keeps such rows (the worker that
        delivered a message is not always the one that applies its outcome); in every
        other, an outcome is settled in the commit that applies it, and none waits."""
        return set()

    @abstractmethod
    async def commit(self, changes: Changes) -> None:
        """Keep all the changes in one transaction, durably, or raise and keep nothing.
        Their events are kept as received at ``changes.at`` (now, if it is None). The
        traits of ``changes.accounts`` are merged key by key into what is stored when the
        transaction runs (not into what was read before it), so that two processes that
        change different traits of one account at once both keep theirs."""

    @abstractmethod
    async def keep_history(self, rows: Sequence[HistoryRow], at: datetime) -> int:
        """Keep events in their profiles' history only, received at ``at``, in one
        transaction (an import: no journey reads them). Their profiles are made, empty, if
        they are new; an event whose messageId is kept already is skipped. How many were
        kept. Each names its profile by id and changes no trait: see
        :func:`journeyman.runtime.importing.only_history` for which ones come here."""

    @abstractmethod
    async def instances(self, instance_ids: Collection[str]) -> dict[str, Instance]:
        """The instances of these ids that exist, running or ended, by id (those that
        delivery outcomes are for): one read, however many."""

    async def instance(self, instance_id: str) -> Instance | None:
        """One instance, running or ended."""
        return (await self.instances([instance_id])).get(instance_id)

    @abstractmethod
    async def log_of(self, profile_id: str, names: Collection[str]) -> list[Event]:
        """The profile's stored events of these names, in the order they were stored: what
        a segment backfill rebuilds the profile's history from."""

    # timers

    @abstractmethod
    async def due(self, now: datetime, limit: int) -> list[Timer]:
        """Waiting instances whose wake-up time has come, and profiles whose clock has
        (:class:`~journeyman.domain.core.ProfileClock`, see :attr:`Profile.wake_at`),
        earliest first."""

    @abstractmethod
    async def next_wake(self) -> datetime | None:
        """The earliest wake-up time of any waiting instance or profile clock."""

    # outbox

    @abstractmethod
    async def claim(self, now: datetime, limit: int) -> list[OutboxItem]:
        """Outbox items due for a delivery attempt, oldest first."""

    @abstractmethod
    async def settle(self, results: Sequence[Delivered]) -> None:
        """Record delivery attempts: sent and failed are final, retry comes back later."""

    # journey versions and their operation

    @abstractmethod
    async def published(self) -> dict[str, PublishedJourney]:
        """The latest published version of every journey."""

    @abstractmethod
    async def publish(self, journeys: Sequence[PublishedJourney]) -> None:
        """Store new versions."""

    @abstractmethod
    async def journey_document(self, name: str, version: int) -> dict[str, Any] | None: ...

    @abstractmethod
    async def versions_in_use(self) -> list[tuple[str, int]]:
        """The (journey, version) pairs that running instances are on."""

    @abstractmethod
    async def journey_states(self) -> dict[str, str]:
        """Journeys that are not simply active: name -> paused."""

    @abstractmethod
    async def set_journey_state(self, name: str, state: str) -> None:
        """Mark a journey ``active`` or ``paused``."""

    @abstractmethod
    async def running_of(self, journey: str, limit: int, after: str = "") -> list[Instance]:
        """Running instances of a journey (for stop and resume) in id order, from the
        first whose id comes after ``after``."""

    # settings: keys, sessions, the bus's and the published versions' descriptions

    @abstractmethod
    async def get_setting(self, key: str) -> str | None: ...

    @abstractmethod
    async def set_setting(self, key: str, value: str) -> None: ...

    # workspace versions (a publish stores the whole workspace; every process follows it)

    @abstractmethod
    async def publish_workspace(self, workspace: PublishedWorkspace) -> int:
        """Store the workspace as the next version (its ``version`` is ignored): the number
        it got."""

    @abstractmethod
    async def published_workspace(self, version: int | None = None) -> PublishedWorkspace | None:
        """One stored workspace version (None: the latest), or None if there is none."""

    @abstractmethod
    async def workspace_version(self) -> int:
        """The latest workspace version's number, 0 if none: cheap, polled often."""

    @abstractmethod
    async def workspace_journeys(self) -> dict[int, dict[str, int]]:
        """Every workspace version's journey versions: which version an old journey version
        was published in (and so which templates it sends)."""

    # who did what (pauses, resumes, stops, publishes)

    @abstractmethod
    async def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Keep ``entries``, in order, in one transaction."""


class ReadModel(ABC):
    """The reads of the HTTP API and the console: logs, traces, counts and dead letters.
    Nothing on the hot path calls them."""

    @abstractmethod
    async def segment_sizes(self) -> dict[str, int]:
        """How many profiles each segment has now (segments with none are left out)."""

    @abstractmethod
    async def segment_members(
        self, segment: str, after: str, limit: int
    ) -> list[tuple[str, datetime]]:
        """(profile id, since when) of the segment's members, by profile id, those after
        ``after`` first; at most ``limit``."""

    @abstractmethod
    async def segment_changes(self, segment: str, limit: int) -> list[StepRecord]:
        """The segment's most recent entries and exits (their trace lines: outcome
        ``segment_entered`` or ``segment_exited``, detail the segment), newest first."""

    @abstractmethod
    async def profile(self, profile_id: str) -> Profile | None: ...

    @abstractmethod
    async def account(self, account_id: str) -> Account | None: ...

    @abstractmethod
    async def instances_of(self, profile_id: str) -> list[Instance]:
        """Every instance of the profile, running and ended, newest first."""

    @abstractmethod
    async def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        """The (kind, value) identities that lead to the profile: emails, anonymous ids."""

    @abstractmethod
    async def history(self, profile_id: str, limit: int = 100) -> list[StoredEvent]:
        """The profile's most recent events, newest first."""

    @abstractmethod
    async def trace(self, profile_id: str, limit: int = 1000) -> list[StepRecord]:
        """The profile's step records, oldest first."""

    @abstractmethod
    async def messages(
        self,
        profile: str | None = None,
        journey: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[MessageRow]: ...

    @abstractmethod
    async def sent_message(self, key: str) -> SendMessage | None:
        """The message of the outbox row ``key`` as it was rendered, naming the profile
        that has it now (an identify may have merged it into another), or None if there
        is no such message (a call is not one)."""

    @abstractmethod
    async def search_profiles(
        self, text: str, after: str, limit: int
    ) -> tuple[list[str], str | None]:
        """Up to ``limit`` profile ids after ``after``, in id order, whose id, email or
        anonymousId starts with ``text``, or a word of whose name trait (firstName,
        lastName, name) does, case ignored; every profile for an empty ``text``. With the
        cursor to pass as ``after`` for the next page (None on the last one)."""

    @abstractmethod
    async def profiles_with_trait(self, trait: str, value: str, limit: int) -> list[str]:
        """Ids of profiles whose trait ``trait`` is the text ``value`` (a console search,
        such as by phone: it may read every profile)."""

    @abstractmethod
    async def step_counts(
        self, journey: str, version: int | None = None
    ) -> dict[str, dict[str, int]]:
        """Per step ('' is the entry), how many records of each outcome the journey has;
        ``waiting_now``, how many instances wait at the step now; and ``left``, how many
        ended there without completing it (exited, stopped, timed out, failed, merged
        away: see :data:`LEFT`). Keys with nothing to count are left out.

        With ``version``, only the records and instances of that version: a record is of
        its instance's version. Refused entries have no instance and are always counted.
        """

    @abstractmethod
    async def step_records(
        self, journey: str, step: str | None, limit: int, version: int | None = None
    ) -> list[StepRecord]:
        """The most recent records of one step of a journey (None: the entry), newest first;
        with ``version``, of that version's instances and refused entries only."""

    @abstractmethod
    async def counters(self, journey: str, version: int | None = None) -> list[Counter]:
        """The journey's report counters (of one version, if given): a few rows per arm
        and goal, kept as instances are committed, whatever the number of instances."""

    @abstractmethod
    async def entries_since(self, journey: str, since: datetime) -> int:
        """How many instances entered the journey at or after ``since``."""

    @abstractmethod
    async def instance_counts(self) -> dict[tuple[str, str], int]:
        """How many instances each journey has in each status (waiting, ended)."""

    # dead letters (workers keep them: see ScaleOutStore.add_dead_letter)

    @abstractmethod
    async def dead_letters(self, limit: int = 100) -> tuple[int, list[DeadLetter]]:
        """How many dead letters are kept, and the latest ``limit`` of them, newest first."""

    @abstractmethod
    async def dead_letter(self, letter_id: int) -> DeadLetter | None: ...

    @abstractmethod
    async def delete_dead_letter(self, letter_id: int) -> bool:
        """Forget a dead letter (replayed, or given up); whether there was one."""

    @abstractmethod
    async def audit(self, journey: str, limit: int) -> list[AuditEntry]:
        """What was done to ``journey`` ("": to the workspace), newest first."""


class Database(Store, ReadModel):
    """A whole backend: one database behind both the engine's port and the read model.

    :func:`journeyman.storage.open_store` returns one; each caller keeps to the port it
    uses (the runtime to :class:`Store`, the API and the console to :class:`ReadModel`).
    """


class PartitionLocks(ABC):
    """Locks held by one connection of their own, which the database releases the moment
    that connection ends (closed, killed, or cut off): how workers own partitions.

    A lock is a pair of numbers, ``(space, key)``: the space says what the keys number
    (live workers, partitions). One query at a time: the caller serialises them.
    """

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection (a new one, holding nothing)."""

    @abstractmethod
    async def close(self) -> None:
        """End the connection, and every lock with it."""

    @abstractmethod
    def drop(self) -> None:
        """Give up the connection without a word (after it failed)."""

    @abstractmethod
    async def take(self, space: int, key: int) -> bool:
        """Hold the lock if no other connection does; whether it is held now."""

    @abstractmethod
    async def release(self, space: int, key: int) -> None: ...

    @abstractmethod
    async def held(self, space: int) -> set[int]:
        """The keys of ``space`` this connection holds, as the database sees them now;
        raises if the connection is gone."""

    @abstractmethod
    async def holders(self, space: int) -> int:
        """How many locks of ``space`` any connection to the database holds now."""


class ScaleOutStore(Store):
    """The engine's port, for a database that worker processes share.

    Timers and outbox rows are claimed with a lease (no two workers get the same one;
    a dead worker's claims are taken up once the lease has passed), a delivery's outcome
    is kept until the owner of its profile has learned it, workers keep the messages they
    cannot apply as dead letters, and partitions are owned through :class:`PartitionLocks`.
    """

    lease: timedelta  # how long a claim is this process's alone

    @abstractmethod
    async def claim_due(self, now: datetime, limit: int) -> list[Timer]:
        """Like :meth:`Store.due`, but each instance is leased to the caller for ``lease``:
        other processes skip it until the lease passes or a commit stores its next state."""

    @abstractmethod
    async def settle_telling(
        self, results: Sequence[Delivered], telling: Sequence[Delivered], now: datetime
    ) -> None:
        """Settle ``results`` and ``telling`` in one transaction, and keep the outcomes of
        ``telling`` for the engine, due to be handed on at ``now`` (see :meth:`claim_tell`)."""

    @abstractmethod
    async def claim_tell(self, now: datetime, limit: int) -> list[ToTell]:
        """Outcomes due to be handed on, each leased to the caller for ``lease``."""

    @abstractmethod
    async def tell_again(self, outbox_ids: Collection[int], at: datetime) -> None:
        """Make claimed outcomes that could not be handed on due again at ``at``."""

    @abstractmethod
    async def add_dead_letter(self, letter: DeadLetter) -> int:
        """Keep a message no worker could apply (durably: the worker then acknowledges
        it); its new id."""

    @abstractmethod
    async def delete_dead_letter(self, letter_id: int) -> bool:
        """Forget a dead letter (as :meth:`ReadModel.delete_dead_letter`): a worker drops
        the one it kept for a message that was applied after all."""

    @abstractmethod
    def partition_locks(self) -> PartitionLocks:
        """Locks on a connection of their own (not open yet: call ``connect``)."""

    @abstractmethod
    def unreachable(self, error: BaseException) -> bool:
        """Whether ``error`` says the database cannot take work now (the connection is
        gone, the server shuts down, a failover), whatever was asked of it: a failure that
        is no fault of the work that met it. The same answer as
        :func:`journeyman.storage.cannot_write_now`, by which the API answers 503."""
