"""The storage interface: what the runtime keeps, behind one small class.

A backend stores profiles, running and ended instances, the event history, the outbox of
messages and calls to deliver, and the step log. The runtime talks to it through
:class:`Store` only; :func:`journeyman.storage.open_store` picks the backend from a URL.

The one write the hot path makes is :meth:`Store.commit`: everything one batch of events
or timers changed, in one transaction. Nothing is acknowledged before it returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from journeyman.domain.state import Effect, Event, Instance, Profile, StepRecord
from journeyman.errors import JourneymanError

if TYPE_CHECKING:
    from journeyman.storage.migrations import Migration

__all__ = [
    "LEASE",
    "LEFT",
    "Batch",
    "DeadLetter",
    "Delivered",
    "MessageRow",
    "NewerSchema",
    "OutboxItem",
    "PublishedJourney",
    "PublishedWorkspace",
    "Snapshot",
    "StorageUnavailable",
    "Store",
    "StoredEvent",
]

# A claimed outbox item is not claimed again for this long: if the process dies while
# delivering it, it is retried after the lease (with the same idempotency key).
LEASE = timedelta(minutes=2)


# The step records of an instance that ended at a step without completing it. An instance
# that ran out of steps ends 'completed' at the step it passed last: that is no leaving.
LEFT = (
    "(s.outcome = 'ended' AND s.detail NOT LIKE 'completed%') "
    "OR (s.outcome = 'merged' AND s.detail LIKE 'ended:%')"
)


class NewerSchema(JourneymanError):
    """The database was written by a newer journeyman: this one leaves it alone."""


class StorageUnavailable(JourneymanError):
    """The database cannot be reached or opened; the message names it and says why."""


@dataclass(slots=True)
class Snapshot:
    """A profile as the engine needs it: its traits and its running instances."""

    profile: Profile
    running: list[Instance]
    new: bool = False  # no such profile is stored yet


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An accepted event, kept in the profile's history (and for messageId dedupe)."""

    event: Event
    received_at: datetime


@dataclass(slots=True)
class Batch:
    """Everything one engine pass changed, committed in one transaction."""

    events: list[StoredEvent] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    identities: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, value) -> id
    deliveries: list[Delivered] = field(default_factory=list)  # outbox rows to settle
    # (kind, value, profile id): identities the profile no longer has, such as an old email
    forgotten: list[tuple[str, str, str]] = field(default_factory=list)
    # (anonymous id, known id): the anonymous profile's history moves to the known one
    merges: list[tuple[str, str]] = field(default_factory=list)
    # outbox rows, settled already, whose outcome the engine has now learned (see
    # Store.untold): the commit fails if another one learned it first
    told: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(
            (
                self.events,
                self.profiles,
                self.instances,
                self.effects,
                self.records,
                self.deliveries,
                self.forgotten,
                self.merges,
                self.told,
            )
        )


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A message or call waiting for delivery."""

    id: int
    effect: Effect
    attempts: int


@dataclass(frozen=True, slots=True)
class Delivered:
    """What became of one delivery attempt."""

    id: int
    status: Literal["sent", "retry", "failed"]
    detail: str
    at: datetime
    retry_at: datetime | None = None  # with status retry


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


class Store(ABC):
    """One backend. Every method is a coroutine; a backend serialises its own writes."""

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
    async def seen(self, message_ids: Collection[str]) -> set[str]:
        """Which of these messageIds were accepted before."""

    async def untold(self, outbox_ids: Collection[int]) -> set[int]:
        """Which of these settled outbox rows still wait for the engine to learn their
        outcome. Only a database shared by workers keeps such rows (the worker that
        delivered a message is not always the one that applies its outcome); in every
        other, an outcome is settled in the commit that applies it, and none waits."""
        return set()

    @abstractmethod
    async def commit(self, batch: Batch) -> None:
        """Write the whole batch in one transaction, durably, or raise and write nothing."""

    # timers

    @abstractmethod
    async def due(self, now: datetime, limit: int) -> list[Instance]:
        """Waiting instances whose wake-up time has come, earliest first."""

    @abstractmethod
    async def next_wake(self) -> datetime | None:
        """The earliest wake-up time of any waiting instance."""

    # outbox

    @abstractmethod
    async def claim(self, now: datetime, limit: int) -> list[OutboxItem]:
        """Outbox items due for a delivery attempt, oldest first."""

    @abstractmethod
    async def settle(self, results: Sequence[Delivered]) -> None:
        """Record delivery attempts: sent and failed are final, retry comes back later."""

    # reading

    @abstractmethod
    async def instance(self, instance_id: str) -> Instance | None: ...

    @abstractmethod
    async def messages(
        self,
        profile: str | None = None,
        journey: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[MessageRow]: ...

    @abstractmethod
    async def trace(self, profile_id: str, limit: int = 1000) -> list[StepRecord]:
        """The profile's step records, oldest first."""

    @abstractmethod
    async def history(self, profile_id: str, limit: int = 100) -> list[StoredEvent]:
        """The profile's most recent events, newest first."""

    @abstractmethod
    async def instances_of(self, profile_id: str) -> list[Instance]:
        """Every instance of the profile, running and ended, newest first."""

    @abstractmethod
    async def profile(self, profile_id: str) -> Profile | None: ...

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
    async def entries_since(self, journey: str, since: datetime) -> int:
        """How many instances entered the journey at or after ``since``."""

    @abstractmethod
    async def profiles_with_trait(self, trait: str, value: str, limit: int) -> list[str]:
        """Ids of profiles whose trait ``trait`` is the text ``value`` (a console search,
        such as by phone: it may read every profile)."""

    @abstractmethod
    async def step_records(
        self, journey: str, step: str | None, limit: int, version: int | None = None
    ) -> list[StepRecord]:
        """The most recent records of one step of a journey (None: the entry), newest first;
        with ``version``, of that version's instances and refused entries only."""

    @abstractmethod
    async def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        """The (kind, value) identities that lead to the profile: emails, anonymous ids."""

    @abstractmethod
    async def instance_counts(self) -> dict[tuple[str, str], int]:
        """How many instances each journey has in each status (waiting, ended)."""

    @abstractmethod
    async def get_setting(self, key: str) -> str | None: ...

    # dead letters

    @abstractmethod
    async def add_dead_letter(self, letter: DeadLetter) -> int:
        """Keep a message no worker could apply (durably: the worker then acknowledges
        it); its new id."""

    @abstractmethod
    async def dead_letters(self, limit: int = 100) -> tuple[int, list[DeadLetter]]:
        """How many dead letters are kept, and the latest ``limit`` of them, newest first."""

    @abstractmethod
    async def dead_letter(self, letter_id: int) -> DeadLetter | None: ...

    @abstractmethod
    async def delete_dead_letter(self, letter_id: int) -> bool:
        """Forget a dead letter (replayed, or given up); whether there was one."""

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
