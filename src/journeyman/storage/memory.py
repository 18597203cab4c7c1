"""The in-memory backend: every table a dict or a list in this process, for fast tests
and for trying journeyman out.

``memory://`` gives the same answers as the SQLite and PostgreSQL backends, for one
process: the same rows (documents encoded as they would be stored, times in whole
milliseconds), the same order, the same outbox leases, and a batch written whole or not
at all. Nothing survives :meth:`MemoryStore.close`, and no other process can see it.

Each method runs to its end without giving the event loop up, so every write is one
transaction by construction: :meth:`MemoryStore.commit` checks and encodes the whole
batch first, and changes nothing until nothing can fail.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from journeyman.domain.core import Changes, Delivered, ProfileClock, Snapshot, Timer
from journeyman.domain.funnel import leaves
from journeyman.domain.reactions import ENGAGEMENT
from journeyman.domain.state import (
    Account,
    Event,
    Instance,
    Profile,
    SendMessage,
    StepRecord,
)
from journeyman.storage.base import (
    LEASE,
    AuditEntry,
    Counter,
    Database,
    DeadLetter,
    HistoryRow,
    MessageRow,
    OutboxItem,
    PublishedJourney,
    PublishedWorkspace,
    StoredEvent,
)
from journeyman.storage.codec import (
    audit_entry,
    audit_row,
    dead_letter,
    dead_letter_row,
    decode_account,
    decode_effect,
    decode_event,
    decode_instance,
    decode_profile,
    encode,
    instance_row,
    message_row,
    ms,
    names_start,
    outbox_row,
    sent_message,
    time,
    wake_ms,
)
from journeyman.storage.drafts import MemoryDrafts
from journeyman.storage.migrations import Migration
from journeyman.storage.runs import Run, RunStore
from journeyman.storage.sql import counter_rows, membership_rows, once_keys

__all__ = ["MemoryStore"]

T = TypeVar("T")


@dataclass(slots=True)
class _Event:
    message_id: str | None
    profile_id: str
    body: bytes
    received_at: int


@dataclass(slots=True)
class _Instance:
    profile_id: str
    journey: str  # as first stored, like the other backends' rows
    version: int
    step: str
    status: str
    wake_at: int | None
    state: bytes


@dataclass(slots=True)
class _Outbox:
    id: int
    key: str
    kind: str
    channel: str
    journey: str
    step: str
    profile_id: str
    instance_id: str
    effect: bytes
    due_at: int
    created_at: int
    updated_at: int
    status: str = "queued"
    attempts: int = 0
    leased_until: int | None = None
    detail: str = ""


@dataclass(slots=True)
class _Step:
    profile_id: str
    instance_id: str | None
    journey: str
    step: str | None
    outcome: str
    detail: str
    at: int

    def record(self) -> StepRecord:
        return StepRecord(
            profile_id=self.profile_id,
            instance_id=self.instance_id,
            journey=self.journey,
            step=self.step,
            outcome=self.outcome,
            detail=self.detail,
            at=time(self.at),
        )

    def left(self) -> bool:
        """Whether its instance ended here without completing the step (see base.LEFT)."""
        return leaves(self.outcome, self.detail)


@dataclass(slots=True)
class _Tables:
    """What one open store holds. Lists keep the order rows were written in (the other
    backends' ``seq``); dicts keep the order their keys were first written in."""

    profiles: dict[str, bytes] = field(default_factory=dict)
    clocks: dict[str, datetime] = field(default_factory=dict)  # profile id -> its wake_at
    accounts: dict[str, bytes] = field(default_factory=dict)
    identities: dict[tuple[str, str], str] = field(default_factory=dict)
    events: list[_Event] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)
    instances: dict[str, _Instance] = field(default_factory=dict)
    # the ids of each profile's instances, in the order they were first stored
    instances_by_profile: dict[str, dict[str, None]] = field(default_factory=dict)
    outbox: dict[int, _Outbox] = field(default_factory=dict)
    outbox_keys: set[str] = field(default_factory=set)
    steps: list[_Step] = field(default_factory=list)
    journeys: dict[tuple[str, int], tuple[str, bytes]] = field(default_factory=dict)
    journey_states: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    dead_letters: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    # workspace versions, 1 up: (digest, files, journeys) encoded, as the other backends keep
    workspaces: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    # segment -> {profile id: since (ms)}, as the other backends' segment_members
    segment_members: dict[str, dict[str, int]] = field(default_factory=dict)
    # (journey, version, arm, goal, metric) -> [n, total], as the others' report_counters
    counters: dict[tuple[str, int, str, str, str], list[Any]] = field(default_factory=dict)
    counted_once: set[str] = field(default_factory=set)  # as the others' counted_once
    # who did what, encoded as the other backends' audit rows, in the order kept
    audit: list[tuple[Any, ...]] = field(default_factory=list)
    # scheduled runs by id, as the others' schedule_runs: (run, owner, leased until ms)
    runs: dict[str, tuple[Run, str | None, int | None]] = field(default_factory=dict)
    # journey -> its draft, encoded as the other backends' drafts rows
    drafts: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # row ids, numbered as a database numbers them: from 1 up, never reused
    outbox_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    letter_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class MemoryStore(Database, RunStore, MemoryDrafts):
    """A :class:`Store` in this process's memory: empty when opened, gone when closed.
    Scheduled runs too (:class:`RunStore`), claimed and leased as the others claim them."""

    def __init__(self) -> None:
        self._tables: _Tables | None = None
        self.applied: list[Migration] = []  # no schema: nothing to migrate, ever

    @property
    def db(self) -> _Tables:
        if self._tables is None:
            raise RuntimeError("the store is not open")
        return self._tables

    async def open(self) -> None:
        self._tables = _Tables()

    async def close(self) -> None:
        self._tables = None

    def _drafts(self) -> dict[str, tuple[Any, ...]]:
        return self.db.drafts

    # the unit of work

    async def load(self, profile_ids: Collection[str]) -> dict[str, Snapshot]:
        db = self.db
        found = {pid: Snapshot(Profile(id=pid), [], new=True) for pid in profile_ids}
        for pid, snapshot in found.items():
            state = db.profiles.get(pid)
            if state is not None:
                snapshot.profile, snapshot.new = decode_profile(state), False
            running = [db.instances[i] for i in db.instances_by_profile.get(pid, ())]
            snapshot.running = sorted(
                (decode_instance(row.state) for row in running if row.status != "ended"),
                key=lambda i: i.id,
            )
        return found

    async def resolve(self, identities: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        known = self.db.identities
        return {identity: known[identity] for identity in identities if identity in known}

    async def seen(self, message_ids: Collection[str]) -> set[str]:
        return self.db.message_ids.intersection(message_ids)

    async def accounts(self, account_ids: Collection[str]) -> dict[str, Account]:
        stored = self.db.accounts
        return {i: decode_account(stored[i]) for i in account_ids if i in stored}

    async def keep_history(self, rows: Sequence[HistoryRow], at: datetime) -> int:
        db = self.db
        received = ms(at)
        kept = 0
        for row in rows:
            if row.message_id is not None and row.message_id in db.message_ids:
                continue
            db.profiles.setdefault(row.profile_id, encode(Profile(id=row.profile_id)))
            db.events.append(_Event(row.message_id, row.profile_id, row.body, received))
            if row.message_id is not None:
                db.message_ids.add(row.message_id)
            kept += 1
        return kept

    async def commit(self, changes: Changes) -> None:
        db = self.db
        now = ms(datetime.now(UTC))
        received = now if changes.at is None else ms(changes.at)
        # Everything that could fail comes first: encoding, and the unique messageIds.
        events = [_Event(e.message_id, e.profile_id, encode(e), received) for e in changes.events]
        _check_new(db.message_ids, (e.message_id for e in events if e.message_id is not None))
        profiles = {p.id: encode(p) for p in changes.profiles.values()}
        accounts = {
            i: encode(self._account(i).patched(patch)) for i, patch in changes.accounts.items()
        }
        instances = [instance_row(i, now) for i in changes.instances.values()]
        effects = [outbox_row(e, now) for e in changes.effects]
        steps = [
            _Step(r.profile_id, r.instance_id, r.journey, r.step, r.outcome, r.detail, ms(r.at))
            for r in changes.records
        ]
        # Then the changes, in the order the SQL backends make them.
        for anonymous, known in changes.merges:
            self._merge(anonymous, known)
        for kind, value, pid in changes.forgotten:
            if db.identities.get((kind, value)) == pid:
                del db.identities[(kind, value)]
        db.events += events
        db.message_ids.update(e.message_id for e in events if e.message_id is not None)
        db.profiles.update(profiles)
        for profile in changes.profiles.values():
            if profile.wake_at is None:
                db.clocks.pop(profile.id, None)
            else:
                db.clocks[profile.id] = profile.wake_at
        db.accounts.update(accounts)
        db.identities.update(changes.identities)
        for row in instances:
            self._put_instance(row)
        for row in effects:
            self._queue(row)
        db.steps += steps
        joins, leaves = membership_rows(changes)
        for segment, profile_id, since in joins:
            db.segment_members.setdefault(segment, {})[profile_id] = since
        for segment, profile_id in leaves:
            db.segment_members.get(segment, {}).pop(profile_id, None)
        fresh = set(once_keys(changes)) - db.counted_once
        db.counted_once |= fresh
        for *key, n, total in counter_rows(changes, fresh):
            found = db.counters.setdefault(tuple(key), [0, 0.0])  # type: ignore[arg-type]
            found[0] += n
            found[1] += total
        self._settle_rows(changes.deliveries)

    def _merge(self, anonymous: str, known: str) -> None:
        """Move everything of the anonymous profile to the known one, and drop it."""
        db = self.db
        tables: tuple[Iterable[_Event | _Step | _Outbox | _Instance], ...] = (
            db.events,
            db.steps,
            db.outbox.values(),
            db.instances.values(),
        )
        for rows in tables:
            for row in rows:
                if row.profile_id == anonymous:
                    row.profile_id = known
        if db.instances_by_profile.pop(anonymous, None):
            # in the order the instances were first stored, whichever profile had them
            db.instances_by_profile[known] = {
                i: None for i, row in db.instances.items() if row.profile_id == known
            }
        for identity, pid in db.identities.items():
            if pid == anonymous:
                db.identities[identity] = known
        db.profiles.pop(anonymous, None)
        db.clocks.pop(anonymous, None)
        for members in db.segment_members.values():
            since = members.pop(anonymous, None)
            if since is not None:  # its segments, where the known one is not in them yet
                members.setdefault(known, since)

    def _put_instance(self, row: tuple[Any, ...]) -> None:
        instance_id, profile_id, journey, version, step, status, wake_at, state, _ = row
        db = self.db
        stored = db.instances.get(instance_id)
        if stored is None:
            stored = _Instance(profile_id, journey, version, step, status, wake_at, state)
            db.instances[instance_id] = stored
        elif stored.profile_id != profile_id:
            del db.instances_by_profile[stored.profile_id][instance_id]
        stored.profile_id, stored.step, stored.status = profile_id, step, status
        stored.wake_at, stored.state = wake_at, state
        db.instances_by_profile.setdefault(profile_id, {})[instance_id] = None

    def _queue(self, row: tuple[Any, ...]) -> None:
        """A new outbox row (see codec.outbox_row), unless its key is queued already."""
        db = self.db
        if row[0] in db.outbox_keys:
            return
        db.outbox_keys.add(row[0])
        row_id = next(db.outbox_ids)
        db.outbox[row_id] = _Outbox(row_id, *row)

    # timers

    async def due(self, now: datetime, limit: int) -> list[Timer]:
        # wake_at is kept in whole milliseconds, rounded up: the instance's own time decides
        by = wake_ms(now)
        found = (
            decode_instance(row.state)
            for row in self.db.instances.values()
            if row.status == "waiting" and row.wake_at is not None and row.wake_at <= by
        )
        due: list[Timer] = [i for i in found if i.wake_at is not None and i.wake_at <= now]
        due += (ProfileClock(pid, at) for pid, at in self.db.clocks.items() if at <= now)
        return heapq.nsmallest(limit, due, key=lambda t: t.wake_at or now)

    async def next_wake(self) -> datetime | None:
        wakes = [
            time(row.wake_at)
            for row in self.db.instances.values()
            if row.status == "waiting" and row.wake_at is not None
        ]
        wakes += self.db.clocks.values()
        return min(wakes) if wakes else None

    # outbox

    async def claim(self, now: datetime, limit: int) -> list[OutboxItem]:
        at = ms(now)
        ready = (
            row
            for row in self.db.outbox.values()
            if row.status in ("queued", "retry")
            and row.due_at <= at
            and (row.leased_until is None or row.leased_until <= at)
        )
        claimed = heapq.nsmallest(limit, ready, key=lambda row: (row.due_at, row.id))
        for row in claimed:
            row.leased_until = ms(now + LEASE)
        return [OutboxItem(row.id, decode_effect(row.effect), row.attempts) for row in claimed]

    async def settle(self, results: Sequence[Delivered]) -> None:
        self._settle_rows(results)

    def _settle_rows(self, results: Sequence[Delivered]) -> None:
        settled: set[int] = set()  # a row takes one outcome per call, as an UPDATE gives it
        for result in results:
            row = self.db.outbox.get(result.id)
            if row is None or row.status not in ("queued", "retry") or row.id in settled:
                continue  # sent and failed are final
            settled.add(row.id)
            row.status, row.detail = result.status, result.detail
            row.attempts += 1
            row.due_at = ms(result.retry_at or result.at)
            row.leased_until = None
            row.updated_at = ms(result.at)

    # reading

    async def instances(self, instance_ids: Collection[str]) -> dict[str, Instance]:
        stored = self.db.instances
        return {i: decode_instance(stored[i].state) for i in instance_ids if i in stored}

    async def instances_of(self, profile_id: str) -> list[Instance]:
        db = self.db
        ids = db.instances_by_profile.get(profile_id, {})
        return [decode_instance(db.instances[i].state) for i in reversed(ids)]

    async def profile(self, profile_id: str) -> Profile | None:
        state = self.db.profiles.get(profile_id)
        return decode_profile(state) if state is not None else None

    async def account(self, account_id: str) -> Account | None:
        state = self.db.accounts.get(account_id)
        return decode_account(state) if state is not None else None

    def _account(self, account_id: str) -> Account:
        state = self.db.accounts.get(account_id)
        return decode_account(state) if state is not None else Account(id=account_id)

    async def sent_message(self, key: str) -> SendMessage | None:
        for row in self.db.outbox.values():
            if row.key == key and row.kind == "send":
                return sent_message(row.profile_id, row.effect)
        return None

    async def messages(
        self,
        profile: str | None = None,
        journey: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[MessageRow]:
        rows = (
            row
            for row in reversed(self.db.outbox.values())
            if (profile is None or row.profile_id == profile)
            and (journey is None or row.journey == journey)
            and (status is None or row.status == status)
        )
        return [_message(row) for row in _first(rows, limit)]

    async def trace(self, profile_id: str, limit: int = 1000) -> list[StepRecord]:
        mine = (s for s in self.db.steps if s.profile_id == profile_id)
        return [s.record() for s in _first(mine, limit)]

    async def segment_sizes(self) -> dict[str, int]:
        return {name: len(members) for name, members in self.db.segment_members.items() if members}

    async def segment_members(
        self, segment: str, after: str, limit: int
    ) -> list[tuple[str, datetime]]:
        members = self.db.segment_members.get(segment, {})
        found = sorted((p, since) for p, since in members.items() if p > after)
        return [(profile_id, time(since)) for profile_id, since in found[:limit]]

    async def log_of(self, profile_id: str, names: Collection[str]) -> list[Event]:
        mine = (decode_event(e.body) for e in self.db.events if e.profile_id == profile_id)
        return [event for event in mine if event.name in names]

    async def history(self, profile_id: str, limit: int = 100) -> list[StoredEvent]:
        mine = (e for e in reversed(self.db.events) if e.profile_id == profile_id)
        return [StoredEvent(decode_event(e.body), time(e.received_at)) for e in _first(mine, limit)]

    # journey versions and their operation

    async def published(self) -> dict[str, PublishedJourney]:
        latest: dict[str, int] = {}
        for name, version in self.db.journeys:
            latest[name] = max(version, latest.get(name, version))
        return {name: self._journey(name, latest[name]) for name in sorted(latest)}

    def _journey(self, name: str, version: int) -> PublishedJourney:
        digest, document = self.db.journeys[(name, version)]
        return PublishedJourney(name, version, digest, msgspec.json.decode(document))

    async def publish(self, journeys: Sequence[PublishedJourney]) -> None:
        keys = [(j.name, j.version) for j in journeys]
        _check_new(self.db.journeys, keys, what="journey version")
        for j in journeys:
            self.db.journeys[(j.name, j.version)] = (j.digest, msgspec.json.encode(j.document))

    async def journey_document(self, name: str, version: int) -> dict[str, Any] | None:
        found = self.db.journeys.get((name, version))
        return msgspec.json.decode(found[1]) if found is not None else None

    async def versions_in_use(self) -> list[tuple[str, int]]:
        rows = self.db.instances.values()
        return sorted({(r.journey, r.version) for r in rows if r.status != "ended"})

    async def journey_states(self) -> dict[str, str]:
        return dict(self.db.journey_states)

    async def set_journey_state(self, name: str, state: str) -> None:
        if state == "active":
            self.db.journey_states.pop(name, None)
        else:
            self.db.journey_states[name] = state

    async def running_of(self, journey: str, limit: int, after: str = "") -> list[Instance]:
        db = self.db
        ids = sorted(
            instance_id
            for instance_id, row in db.instances.items()
            if row.journey == journey and row.status != "ended" and instance_id > after
        )
        return [decode_instance(db.instances[i].state) for i in ids[:limit]]

    async def step_counts(
        self, journey: str, version: int | None = None
    ) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        reached: dict[tuple[str, str], set[str | None]] = {}
        for s in self._steps_of(journey, version):
            step = counts.setdefault(s.step or "", {})
            step[s.outcome] = step.get(s.outcome, 0) + 1
            if s.left():
                step["left"] = step.get("left", 0) + 1
            if s.outcome in ENGAGEMENT:
                reached.setdefault((s.step or "", s.outcome), set()).add(s.instance_id)
        for (step_id, outcome), instances in reached.items():
            counts[step_id][f"unique_{outcome}"] = len(instances)
        for row in self.db.instances.values():
            if row.journey != journey or row.status != "waiting":
                continue
            if version is None or row.version == version:
                step = counts.setdefault(row.step, {})
                step["waiting_now"] = step.get("waiting_now", 0) + 1
        return counts

    def _steps_of(self, journey: str, version: int | None) -> Iterable[_Step]:
        """The journey's step records; with ``version``, those of that version's instances
        and the refused entries (they have no instance)."""
        instances = self.db.instances
        for s in self.db.steps:
            if s.journey != journey:
                continue
            row = instances.get(s.instance_id) if s.instance_id is not None else None
            if (
                version is None
                or s.instance_id is None
                or (row is not None and row.version == version)
            ):
                yield s

    async def counters(self, journey: str, version: int | None = None) -> list[Counter]:
        return [
            Counter(v, arm, goal, metric, n, total)
            for (j, v, arm, goal, metric), (n, total) in sorted(self.db.counters.items())
            if j == journey and (version is None or v == version)
        ]

    async def entries_since(self, journey: str, since: datetime) -> int:
        at = ms(since)
        return sum(
            1
            for s in self.db.steps
            if s.journey == journey and s.step is None and s.outcome == "entered" and s.at >= at
        )

    async def search_profiles(
        self, text: str, after: str, limit: int
    ) -> tuple[list[str], str | None]:
        wanted = text.lower()
        owned: set[str] = {
            owner
            for (kind, value), owner in self.db.identities.items()
            if kind in ("email", "anonymousId") and value.lower().startswith(wanted)
        }
        found: list[str] = []
        for profile_id in sorted(i for i in self.db.profiles if i > after):
            state = self.db.profiles[profile_id]
            if (
                profile_id.lower().startswith(wanted)
                or profile_id in owned
                or names_start(state, text)
            ):
                if len(found) == limit:
                    return found, found[-1]
                found.append(profile_id)
        return found, None

    async def profiles_with_trait(self, trait: str, value: str, limit: int) -> list[str]:
        found = []
        for state in self.db.profiles.values():
            profile = decode_profile(state)
            if profile.traits.get(trait) == value:
                found.append(profile.id)
                if len(found) >= limit:
                    break
        return found

    async def segment_changes(self, segment: str, limit: int) -> list[StepRecord]:
        found = (
            s
            for s in reversed(self.db.steps)
            if s.journey == ""
            and s.step is None
            and s.detail == segment
            and s.outcome in ("segment_entered", "segment_exited")
        )
        return [s.record() for s in _first(found, limit)]

    async def step_records(
        self, journey: str, step: str | None, limit: int, version: int | None = None
    ) -> list[StepRecord]:
        found = [s for s in self._steps_of(journey, version) if s.step == step]
        return [s.record() for s in _first(reversed(found), limit)]

    async def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        return sorted(i for i, pid in self.db.identities.items() if pid == profile_id)

    async def instance_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for row in self.db.instances.values():
            counts[(row.journey, row.status)] = counts.get((row.journey, row.status), 0) + 1
        return counts

    async def get_setting(self, key: str) -> str | None:
        return self.db.settings.get(key)

    async def set_setting(self, key: str, value: str) -> None:
        self.db.settings[key] = value

    # workspace versions

    async def publish_workspace(self, workspace: PublishedWorkspace) -> int:
        files, journeys = (
            msgspec.json.encode(workspace.files),
            msgspec.json.encode(workspace.journeys),
        )
        self.db.workspaces.append((workspace.digest, files, journeys))
        return len(self.db.workspaces)

    async def published_workspace(self, version: int | None = None) -> PublishedWorkspace | None:
        number = len(self.db.workspaces) if version is None else version
        if not 1 <= number <= len(self.db.workspaces):
            return None
        digest, files, journeys = self.db.workspaces[number - 1]
        return PublishedWorkspace(
            number, digest, msgspec.json.decode(files), msgspec.json.decode(journeys)
        )

    async def workspace_version(self) -> int:
        return len(self.db.workspaces)

    async def workspace_journeys(self) -> dict[int, dict[str, int]]:
        return {
            number: msgspec.json.decode(journeys)
            for number, (_, _, journeys) in enumerate(self.db.workspaces, 1)
        }

    # dead letters

    async def add_dead_letter(self, letter: DeadLetter) -> int:
        letter_id = next(self.db.letter_ids)
        self.db.dead_letters[letter_id] = (letter_id, *dead_letter_row(letter))
        return letter_id

    async def dead_letters(self, limit: int = 100) -> tuple[int, list[DeadLetter]]:
        kept = self.db.dead_letters
        latest = sorted(kept, reverse=True)[: max(limit, 0)]
        return len(kept), [dead_letter(kept[letter_id]) for letter_id in latest]

    async def dead_letter(self, letter_id: int) -> DeadLetter | None:
        row = self.db.dead_letters.get(letter_id)
        return dead_letter(row) if row is not None else None

    async def delete_dead_letter(self, letter_id: int) -> bool:
        return self.db.dead_letters.pop(letter_id, None) is not None

    # who did what

    async def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        self.db.audit.extend(audit_row(entry) for entry in entries)

    async def audit(self, journey: str, limit: int) -> list[AuditEntry]:
        mine = (row for row in reversed(self.db.audit) if row[4] == journey)
        return [audit_entry(row) for row in _first(mine, limit)]

    # scheduled runs (journeyman.storage.runs)

    async def add_run(self, run: Run) -> bool:
        if run.id in self.db.runs:
            return False
        stored = dataclasses.replace(
            run,
            due_at=_ms_time(run.due_at),
            started_at=_ms_time(run.started_at),
            updated_at=_ms_time(run.updated_at),
        )
        self.db.runs[run.id] = (stored, None, None)
        return True

    async def claim_run(self, owner: str, now: datetime, until: datetime) -> Run | None:
        free = [
            run
            for run, _, leased in self.db.runs.values()
            if run.state == "running" and (leased is None or leased <= ms(now))
        ]
        if not free:
            return None
        run = min(free, key=lambda r: r.due_at)
        self.db.runs[run.id] = (run, owner, ms(until))
        return run

    def _held(self, run_id: str, owner: str | None) -> Run | None:
        """The run, if it is running (and ``owner``'s, unless None)."""
        found = self.db.runs.get(run_id)
        if found is None or found[0].state != "running" or owner not in (None, found[1]):
            return None
        return found[0]

    async def run_progress(
        self, run: Run, owner: str, cursor: str, entered: int, now: datetime, until: datetime
    ) -> bool:
        held = self._held(run.id, owner)
        if held is None:
            return False
        moved = dataclasses.replace(held, cursor=cursor, entered=entered, updated_at=_ms_time(now))
        self.db.runs[run.id] = (moved, owner, ms(until))
        return True

    async def finish_run(self, run: Run, owner: str, now: datetime) -> None:
        held = self._held(run.id, owner)
        if held is not None:
            done = dataclasses.replace(held, state="done", updated_at=_ms_time(now))
            self.db.runs[run.id] = (done, owner, None)

    async def cancel_run(self, journey: str, run_id: str, now: datetime) -> tuple[Run | None, bool]:
        held = self._held(run_id, None)
        if held is not None and held.journey == journey:
            cancelled = dataclasses.replace(held, state="cancelled", updated_at=_ms_time(now))
            self.db.runs[run_id] = (cancelled, self.db.runs[run_id][1], None)
        found = self.db.runs.get(run_id)
        run = found[0] if found is not None and found[0].journey == journey else None
        return run, held is not None and run is not None

    async def runs_of(self, journey: str, limit: int) -> list[Run]:
        runs = [run for run, _, _ in self.db.runs.values() if run.journey == journey]
        return sorted(runs, key=lambda r: r.due_at, reverse=True)[:limit]

    async def audience(self, segment: str | None, after: str, limit: int) -> list[str]:
        ids = self.db.profiles if segment is None else self.db.segment_members.get(segment, {})
        return heapq.nsmallest(limit, (p for p in ids if p > after))

    async def audience_size(self, segment: str | None) -> int:
        if segment is None:
            return len(self.db.profiles)
        return len(self.db.segment_members.get(segment, {}))


def _check_new(taken: Collection[Any], keys: Iterable[Any], what: str = "messageId") -> None:
    """Raise, as a database's unique index would, if a key is taken or comes twice."""
    seen: set[Any] = set()
    for key in keys:
        if key in taken or key in seen:
            raise ValueError(f"duplicate {what} {key!r}: it must be unique")
        seen.add(key)


def _first(rows: Iterable[T], limit: int) -> list[T]:
    """The first ``limit`` rows, as ``LIMIT`` gives them."""
    return list(itertools.islice(rows, max(limit, 0)))


def _message(row: _Outbox) -> MessageRow:
    return message_row(
        (
            row.key,
            row.kind,
            row.channel,
            row.journey,
            row.step,
            row.profile_id,
            row.instance_id,
            row.status,
            row.attempts,
            row.detail,
            row.created_at,
            row.updated_at,
            row.effect,
        )
    )


def _ms_time(at: datetime) -> datetime:
    """``at`` as the other backends give it back: to the whole millisecond."""
    return time(ms(at))
