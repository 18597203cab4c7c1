"""The SQL both backends run, each statement written once, and the methods made of it.

Statements are written with ``?`` placeholders, as SQLite takes them, and with a few
named gaps (``{seq}``, ``{same}``) where the dialects really differ in one word.
:class:`Dialect` fills the gaps and, for asyncpg, numbers the placeholders (``$1``,
``$2``, ...): each backend builds its :class:`Statements` once, at import.

:class:`SQLDatabase` is what both backends share: every method that is only a statement
and its rows (the read model, journey versions, settings, dead letters), written on three
primitives that each backend gives (read rows, read a value, write). A backend overrides
only what differs: how a batch of rows travels, how rows are claimed and locked, how many
rows one read returns. The same tables and the same encoding serve both (see
:mod:`journeyman.storage.codec`), so a statement answers alike on each.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from abc import abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec

from journeyman.domain.state import Account, Event, Instance, Profile, SendMessage, StepRecord
from journeyman.storage import codec
from journeyman.storage.base import (
    LEFT,
    AuditEntry,
    Changes,
    Counter,
    Database,
    DeadLetter,
    HistoryRow,
    MessageRow,
    PublishedJourney,
    PublishedWorkspace,
    StoredEvent,
)
from journeyman.storage.codec import (
    DEAD_LETTER,
    audit_entry,
    audit_row,
    dead_letter,
    dead_letter_row,
    decode_account,
    decode_event,
    decode_instance,
    decode_profile,
    encode,
    instance_row,
    like_prefix,
    message_row,
    ms,
    names_start,
    outbox_row,
    published_journey,
    step_record,
    time,
    wake_ms,
)

__all__ = [
    "INSERTS",
    "KEPT",
    "MEMBERS",
    "POSTGRES_DIALECT",
    "SQLITE_DIALECT",
    "Dialect",
    "Insert",
    "SQLDatabase",
    "Statements",
    "commit_rows",
    "counter_rows",
    "kept_rows",
    "membership_rows",
    "messages",
    "once_keys",
    "step_counts",
    "step_records",
]


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database's SQL differs from the way the statements here are written."""

    numbered: bool  # placeholders are $1, $2, ... (asyncpg), not ?
    same: str  # equal, NULL being equal to NULL
    seq: str  # the column that keeps the order instances were first stored in
    has: str = "instr(state, ?) > 0"  # the encoded document holds these bytes

    def __call__(self, sql: str) -> str:
        """``sql`` in this dialect."""
        return _in_dialect(self, sql)


@functools.lru_cache(maxsize=512)
def _in_dialect(dialect: Dialect, sql: str) -> str:
    text = sql.replace("{same}", dialect.same).replace("{seq}", dialect.seq)
    text = text.replace("{has}", dialect.has)
    if not dialect.numbered:
        return text
    numbers = iter(range(1, text.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(numbers)}", text)


SQLITE_DIALECT = Dialect(numbered=False, same="IS", seq="rowid")
POSTGRES_DIALECT = Dialect(
    numbered=True, same="IS NOT DISTINCT FROM", seq="seq", has="position(?::bytea in state) > 0"
)

# Profiles by id, after a cursor, that a search may be about: their id, an email or an
# anonymousId starts with the text, case ignored (``sure``: the state is not read), or
# their stored document holds the text as typed, lower-cased, capitalised or upper-cased
# (a name trait may start with it: the caller decodes those to see).
_SURE = (
    "(lower(id) LIKE ? ESCAPE '\\' OR id IN (SELECT profile_id FROM identities "
    "WHERE kind IN ('email', 'anonymousId') AND lower(value) LIKE ? ESCAPE '\\'))"
)
SEARCH_PROFILES = (
    f"SELECT id, CASE WHEN {_SURE} THEN NULL ELSE state END FROM profiles WHERE id > ? "
    f"AND ({_SURE} OR {{has}} OR {{has}} OR {{has}} OR {{has}}) ORDER BY id LIMIT ?"
)
LIST_PROFILES = "SELECT id, NULL FROM profiles WHERE id > ? ORDER BY id LIMIT ?"


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement written once, as :class:`Dialect` gives them (see :meth:`of`)."""

    profile: str = "SELECT state FROM profiles WHERE id = ?"
    account: str = "SELECT state FROM accounts WHERE id = ?"
    put_account: str = (
        "INSERT INTO accounts (id, state, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
    )
    instances_of: str = "SELECT state FROM instances WHERE profile_id = ? ORDER BY {seq} DESC"
    identities_of: str = "SELECT kind, value FROM identities WHERE profile_id = ? ORDER BY 1, 2"
    trace: str = (
        "SELECT profile_id, instance_id, journey, step, outcome, detail, at FROM steps "
        "WHERE profile_id = ? ORDER BY seq LIMIT ?"
    )
    history: str = (
        "SELECT body, received_at FROM events WHERE profile_id = ? ORDER BY seq DESC LIMIT ?"
    )
    # Entry records are the journey's records without a step: an index finds them.
    entries_since: str = (
        "SELECT count(*) FROM steps WHERE journey = ? AND step IS NULL "
        "AND outcome = 'entered' AND at >= ?"
    )
    instance_counts: str = "SELECT journey, status, count(*) FROM instances GROUP BY 1, 2"
    sent_message: str = "SELECT profile_id, effect FROM outbox WHERE key = ? AND kind = 'send'"
    # journey versions and their states
    published: str = (
        "SELECT name, version, digest, document FROM journeys j WHERE version = "
        "(SELECT max(version) FROM journeys WHERE name = j.name)"
    )
    publish: str = (
        "INSERT INTO journeys (name, version, digest, document, published_at) "
        "VALUES (?, ?, ?, ?, ?)"
    )
    journey_document: str = "SELECT document FROM journeys WHERE name = ? AND version = ?"
    versions_in_use: str = (
        "SELECT DISTINCT journey, version FROM instances WHERE status <> 'ended' ORDER BY 1, 2"
    )
    journey_states: str = "SELECT name, state FROM journey_states"
    activate: str = "DELETE FROM journey_states WHERE name = ?"
    set_journey_state: str = (
        "INSERT INTO journey_states VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET state = excluded.state"
    )
    running_of: str = (
        "SELECT state FROM instances WHERE journey = ? AND status <> 'ended' AND id > ? "
        "ORDER BY id LIMIT ?"
    )
    # settings, beside the schema version
    get_setting: str = "SELECT value FROM meta WHERE key = ?"
    set_setting: str = (
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )
    # workspace versions: the whole workspace of each publish
    publish_workspace: str = (
        "INSERT INTO workspaces (version, digest, files, journeys, published_at) "
        "SELECT coalesce(max(version), 0) + 1, ?, ?, ?, ? FROM workspaces RETURNING version"
    )
    published_workspace: str = (
        "SELECT version, digest, files, journeys FROM workspaces "
        "WHERE version = coalesce(?, (SELECT max(version) FROM workspaces))"
    )
    workspace_version: str = "SELECT max(version) FROM workspaces"
    workspace_journeys: str = "SELECT version, journeys FROM workspaces"
    # dead letters
    add_dead_letter: str = (
        "INSERT INTO dead_letters (partition_no, headers, body, error, attempts, "
        "first_failed_at, last_failed_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
    )
    count_dead_letters: str = "SELECT count(*) FROM dead_letters"
    dead_letters: str = f"SELECT {DEAD_LETTER} FROM dead_letters ORDER BY id DESC LIMIT ?"
    dead_letter: str = f"SELECT {DEAD_LETTER} FROM dead_letters WHERE id = ?"
    delete_dead_letter: str = "DELETE FROM dead_letters WHERE id = ? RETURNING id"
    # who did what (see storage.base.AuditEntry)
    add_audit: str = (
        "INSERT INTO audit (at, actor, via, command, journey, instances, journey_version, "
        "workspace_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    audit: str = (
        "SELECT at, actor, via, command, journey, instances, journey_version, "
        "workspace_version FROM audit WHERE journey = ? ORDER BY id DESC LIMIT ?"
    )
    # An identify that links an anonymous profile to a known one: everything of the
    # anonymous one moves to the known one (known id, anonymous id), and it is dropped.
    # Its segments too, where the known one is not in them already (as merge_profiles
    # does; the anonymous one's rows are then taken out with it).
    merge: tuple[str, ...] = (
        *(
            f"UPDATE {table} SET profile_id = ? WHERE profile_id = ?"
            for table in ("events", "steps", "outbox", "instances", "identities")
        ),
        "INSERT INTO segment_members (segment, profile_id, since) "
        "SELECT segment, ?, since FROM segment_members WHERE profile_id = ? "
        "ON CONFLICT (segment, profile_id) DO NOTHING",
    )
    drop_profile: str = "DELETE FROM profiles WHERE id = ?"
    # segment membership (see membership_rows and MEMBERS)
    segment_sizes: str = "SELECT segment, count(*) FROM segment_members GROUP BY segment"
    segment_members: str = (
        "SELECT profile_id, since FROM segment_members WHERE segment = ? AND profile_id > ? "
        "ORDER BY profile_id LIMIT ?"
    )
    # report counters (see counter_rows)
    count_once: str = "INSERT INTO counted_once VALUES (?) ON CONFLICT (key) DO NOTHING"
    add_counter: str = (
        "INSERT INTO report_counters VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (journey, version, arm, goal, metric) DO UPDATE SET "
        "n = report_counters.n + excluded.n, total = report_counters.total + excluded.total"
    )
    counters: str = (
        "SELECT version, arm, goal, metric, n, total FROM report_counters WHERE journey = ?"
    )
    counters_of_version: str = (
        "SELECT version, arm, goal, metric, n, total FROM report_counters "
        "WHERE journey = ? AND version = ?"
    )
    # A segment's trace lines: no journey's, no step's (along the steps_journey index).
    segment_changes: str = (
        "SELECT profile_id, instance_id, journey, step, outcome, detail, at FROM steps "
        "WHERE journey = '' AND step IS NULL "
        "AND outcome IN ('segment_entered', 'segment_exited') AND detail = ? "
        "ORDER BY seq DESC LIMIT ?"
    )

    @classmethod
    def of(cls, dialect: Dialect) -> Statements:
        """Every statement in ``dialect``."""
        written = cls()
        return cls(
            **{
                f.name: _translated(dialect, getattr(written, f.name))
                for f in dataclasses.fields(cls)
            }
        )


def _translated(dialect: Dialect, value: str | tuple[str, ...]) -> Any:
    return dialect(value) if isinstance(value, str) else tuple(dialect(v) for v in value)


@dataclass(frozen=True, slots=True)
class Insert:
    """The rows of one table that a commit writes: each backend sends them its own way
    (SQLite as many-row VALUES, PostgreSQL as one array per column)."""

    table: str
    columns: str  # "name type, ...": the types are PostgreSQL's, for its arrays
    tail: str = ""  # what to do with a row already there
    constants: tuple[tuple[str, str], ...] = ()  # (column, SQL value): the same in every row

    @property
    def names(self) -> list[str]:
        return [column.split()[0] for column in self.columns.split(", ")]

    @property
    def types(self) -> list[str]:
        return [column.split()[1] for column in self.columns.split(", ")]


# The tables a commit writes, in the order it writes them.
INSERTS = {
    insert.table: insert
    for insert in (
        Insert(
            "events", "message_id text, profile_id text, name text, body bytea, received_at int8"
        ),
        Insert(
            "profiles",
            "id text, state bytea, wake_at int8, updated_at int8",
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
            "wake_at = excluded.wake_at, updated_at = excluded.updated_at",
        ),
        Insert(
            "identities",
            "kind text, value text, profile_id text",
            "ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id",
        ),
        Insert(
            "instances",
            "id text, profile_id text, journey text, version int4, step text, status text, "
            "wake_at int8, state bytea, updated_at int8",
            "ON CONFLICT (id) DO UPDATE SET profile_id = excluded.profile_id, "
            "step = excluded.step, status = excluded.status, wake_at = excluded.wake_at, "
            "state = excluded.state, updated_at = excluded.updated_at",
        ),
        Insert(
            "outbox",
            "key text, kind text, channel text, journey text, step text, profile_id text, "
            "instance_id text, effect bytea, due_at int8, created_at int8, updated_at int8",
            "ON CONFLICT (key) DO NOTHING",
            (("status", "'queued'"),),
        ),
        Insert(
            "steps",
            "profile_id text, instance_id text, journey text, step text, outcome text, "
            "detail text, at int8",
        ),
    )
}


# Who joined a segment in a commit (see membership_rows), many rows to a statement.
MEMBERS = Insert(
    "segment_members",
    "segment text, profile_id text, since int8",
    "ON CONFLICT (segment, profile_id) DO UPDATE SET since = excluded.since",
)

# What an import keeps of events that only go in their profiles' history (keep_history).
KEPT = (
    Insert("profiles", "id text, state bytea, updated_at int8", "ON CONFLICT (id) DO NOTHING"),
    Insert(
        "events",
        "message_id text, profile_id text, name text, body bytea, received_at int8",
        "ON CONFLICT (message_id) DO NOTHING",
    ),
)


def kept_rows(
    rows: Sequence[HistoryRow], at: datetime
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows of :data:`KEPT`: new profiles (empty), and the events."""
    now = ms(at)
    profiles = {r.profile_id: None for r in rows}
    return (
        [(pid, encode(Profile(id=pid)), now) for pid in profiles],
        [(*r, now) for r in rows],
    )


def commit_rows(changes: Changes, now: int) -> dict[str, list[tuple[Any, ...]]]:
    """The rows a commit of ``changes`` inserts, by table (see :data:`INSERTS`), in the
    order they are written; ``now`` stamps the rows that are changed, and the events if
    ``changes.at`` does not say when they were received."""
    received = now if changes.at is None else ms(changes.at)
    events = [(e.message_id, e.profile_id, e.name, encode(e), received) for e in changes.events]
    records = [
        (r.profile_id, r.instance_id, r.journey, r.step, r.outcome, r.detail, ms(r.at))
        for r in changes.records
    ]
    return {
        "events": events,
        "profiles": [(p.id, encode(p), _wake(p), now) for p in changes.profiles.values()],
        "identities": [(kind, value, pid) for (kind, value), pid in changes.identities.items()],
        "instances": [instance_row(i, now) for i in changes.instances.values()],
        "outbox": [outbox_row(e, now) for e in changes.effects],
        "steps": records,
    }


def _wake(profile: Profile) -> int | None:
    wake = profile.wake_at
    return wake_ms(wake) if wake is not None else None


def membership_rows(
    changes: Changes,
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str]]]:
    """(rows to put in segment_members, (segment, profile) rows to take out): what the
    batch's segment_entered and segment_exited events leave, the last one of each pair
    winning."""
    final: dict[tuple[str, str], int | None] = {}
    for event in changes.events:
        if event.name in ("segment_entered", "segment_exited"):
            segment = event.properties.get("segment")
            if isinstance(segment, str):
                entered = event.name == "segment_entered"
                final[(segment, event.profile_id)] = ms(event.timestamp) if entered else None
    joins = [(s, p, since) for (s, p), since in final.items() if since is not None]
    leaves = [(s, p) for (s, p), since in final.items() if since is None]
    return joins, leaves


def once_keys(changes: Changes) -> list[str]:
    """The keys of the commit's tallies that count once (``Tally.once``), sorted."""
    return sorted({t.once for t in changes.tallies if t.once})


def counter_rows(
    changes: Changes, fresh: Collection[str] = ()
) -> list[tuple[str, int, str, str, str, int, float]]:
    """The report counters a commit adds to, one row per counter with the batch's sum, in
    key order: concurrent commits lock the rows they share in the same order. A tally
    with a ``once`` key counts only if the key is ``fresh`` (counted by no commit before),
    and only once for its counter in this commit."""
    sums: dict[tuple[str, int, str, str, str], list[float]] = {}
    seen: set[tuple[str, str, int, str, str, str]] = set()
    for t in changes.tallies:
        if t.once:
            mark = (t.once, t.journey, t.version, t.arm, t.goal, t.metric)
            if t.once not in fresh or mark in seen:
                continue
            seen.add(mark)
        found = sums.setdefault((t.journey, t.version, t.arm, t.goal, t.metric), [0, 0.0])
        found[0] += t.n
        found[1] += t.total
    return [(*key, int(n), total) for key, (n, total) in sorted(sums.items())]


# Statements whose shape depends on what is asked: built in SQLite's way, for a Dialect.

_STEP_RECORD = "profile_id, instance_id, journey, step, outcome, detail, at"

# A step record (steps s) is of its instance's version; a refused entry has no instance.
_OF_VERSION = (
    "AND (s.instance_id IS NULL OR EXISTS (SELECT 1 FROM instances i "
    "WHERE i.id = s.instance_id AND i.version = ?)) "
)


def messages(
    profile: str | None, journey: str | None, status: str | None, limit: int
) -> tuple[str, list[Any]]:
    """The message log's query, filtered by what is given, and its arguments."""
    clauses, args = [], []
    for column, value in (("profile_id", profile), ("journey", journey), ("status", status)):
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    query = (
        "SELECT key, kind, channel, journey, step, profile_id, instance_id, status, "
        f"attempts, detail, created_at, updated_at, effect FROM outbox {where}"
        "ORDER BY id DESC LIMIT ?"
    )
    return query, [*args, limit]


def step_records(
    journey: str, step: str | None, limit: int, version: int | None
) -> tuple[str, list[Any]]:
    """The most recent records of one step (None: the entry), and the arguments."""
    of_version = "" if version is None else _OF_VERSION
    args: list[Any] = [journey, step] if version is None else [journey, step, version]
    query = (
        f"SELECT {_STEP_RECORD} FROM steps s WHERE journey = ? AND step {{same}} ? "
        f"{of_version}ORDER BY seq DESC LIMIT ?"
    )
    return query, [*args, limit]


def step_counts(journey: str, version: int | None) -> tuple[str, str, list[Any]]:
    """The queries of :meth:`ReadModel.step_counts` (records by step and outcome, with
    how many of them left and how many instances they are of; instances waiting by step),
    and the arguments of both."""
    args: list[Any] = [journey] if version is None else [journey, version]
    records = (
        "SELECT coalesce(s.step, ''), s.outcome, count(*), "
        f"sum(CASE WHEN {LEFT} THEN 1 ELSE 0 END), count(DISTINCT s.instance_id) "
        "FROM steps s WHERE s.journey = ? "
        f"{'' if version is None else _OF_VERSION}GROUP BY s.step, s.outcome"
    )
    waiting = (
        "SELECT step, count(*) FROM instances WHERE journey = ? AND status = 'waiting' "
        f"{'' if version is None else 'AND version = ? '}GROUP BY step"
    )
    return records, waiting, args


def workspace_row(workspace: PublishedWorkspace) -> tuple[Any, ...]:
    """The values of a workspace version's row, after its number (which the insert takes)."""
    return (
        workspace.digest,
        msgspec.json.encode(workspace.files),
        msgspec.json.encode(workspace.journeys).decode(),
        ms(datetime.now(UTC)),
    )


class SQLDatabase(Database):
    """The methods both backends share, on three primitives each one gives."""

    dialect: ClassVar[Dialect]
    sql: ClassVar[Statements]  # Statements.of(dialect)

    @abstractmethod
    async def _rows(self, query: str, *args: Any) -> Sequence[Sequence[Any]]:
        """The rows a read gives."""

    @abstractmethod
    async def _value(self, query: str, *args: Any) -> Any:
        """The first value of the first row a read gives; None for no row."""

    @abstractmethod
    async def _write(self, query: str, *args: Any) -> Any:
        """Run one statement in a write transaction of its own: the first value it
        returns (``RETURNING``), None if it returns none."""

    @abstractmethod
    async def _write_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each of ``rows``, all in one write transaction."""

    # the engine's reads that are only a statement

    async def log_of(self, profile_id: str, names: Collection[str]) -> list[Event]:
        query = self.dialect("SELECT name, body FROM events WHERE profile_id = ? ORDER BY seq")
        rows = await self._rows(query, profile_id)
        return [decode_event(body) for name, body in rows if name in names]

    async def running_of(self, journey: str, limit: int, after: str = "") -> list[Instance]:
        rows = await self._rows(self.sql.running_of, journey, after, limit)
        return [decode_instance(state) for (state,) in rows]

    # journey versions

    async def published(self) -> dict[str, PublishedJourney]:
        found = map(published_journey, await self._rows(self.sql.published))
        return {journey.name: journey for journey in found}

    async def publish(self, journeys: Sequence[PublishedJourney]) -> None:
        now = ms(datetime.now(UTC))
        rows = [
            (j.name, j.version, j.digest, msgspec.json.encode(j.document), now) for j in journeys
        ]
        await self._write_many(self.sql.publish, rows)

    async def journey_document(self, name: str, version: int) -> dict[str, Any] | None:
        document = await self._value(self.sql.journey_document, name, version)
        return msgspec.json.decode(document) if document is not None else None

    async def versions_in_use(self) -> list[tuple[str, int]]:
        return [(name, version) for name, version in await self._rows(self.sql.versions_in_use)]

    async def journey_states(self) -> dict[str, str]:
        return {row[0]: row[1] for row in await self._rows(self.sql.journey_states)}

    async def set_journey_state(self, name: str, state: str) -> None:
        if state == "active":
            await self._write(self.sql.activate, name)
        else:
            await self._write(self.sql.set_journey_state, name, state)

    # settings

    async def get_setting(self, key: str) -> str | None:
        value: str | None = await self._value(self.sql.get_setting, f"setting:{key}")
        return value

    async def set_setting(self, key: str, value: str) -> None:
        await self._write(self.sql.set_setting, f"setting:{key}", value)

    # workspace versions: the whole workspace of each publish (see Store.publish_workspace)

    async def publish_workspace(self, workspace: PublishedWorkspace) -> int:
        return int(await self._write(self.sql.publish_workspace, *workspace_row(workspace)))

    async def published_workspace(self, version: int | None = None) -> PublishedWorkspace | None:
        rows = await self._rows(self.sql.published_workspace, version)
        if not rows:
            return None
        number, digest, files, journeys = rows[0]
        return PublishedWorkspace(
            number, digest, msgspec.json.decode(files), msgspec.json.decode(journeys)
        )

    async def workspace_version(self) -> int:
        return int(await self._value(self.sql.workspace_version) or 0)

    async def workspace_journeys(self) -> dict[int, dict[str, int]]:
        rows = await self._rows(self.sql.workspace_journeys)
        return {version: msgspec.json.decode(journeys) for version, journeys in rows}

    # the read model

    async def profile(self, profile_id: str) -> Profile | None:
        state = await self._value(self.sql.profile, profile_id)
        return decode_profile(state) if state is not None else None

    async def account(self, account_id: str) -> Account | None:
        state = await self._value(self.sql.account, account_id)
        return decode_account(state) if state is not None else None

    async def instances_of(self, profile_id: str) -> list[Instance]:
        rows = await self._rows(self.sql.instances_of, profile_id)
        return [decode_instance(state) for (state,) in rows]

    async def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        return [
            (kind, value) for kind, value in await self._rows(self.sql.identities_of, profile_id)
        ]

    async def segment_sizes(self) -> dict[str, int]:
        return {str(row[0]): int(row[1]) for row in await self._rows(self.sql.segment_sizes)}

    async def segment_members(
        self, segment: str, after: str, limit: int
    ) -> list[tuple[str, datetime]]:
        rows = await self._rows(self.sql.segment_members, segment, after, limit)
        return [(profile_id, time(since)) for profile_id, since in rows]

    async def segment_changes(self, segment: str, limit: int) -> list[StepRecord]:
        rows = await self._rows(self.sql.segment_changes, segment, limit)
        return list(map(step_record, rows))

    async def history(self, profile_id: str, limit: int = 100) -> list[StoredEvent]:
        rows = await self._rows(self.sql.history, profile_id, limit)
        return [StoredEvent(decode_event(body), time(received)) for body, received in rows]

    async def trace(self, profile_id: str, limit: int = 1000) -> list[StepRecord]:
        return list(map(step_record, await self._rows(self.sql.trace, profile_id, limit)))

    async def messages(
        self,
        profile: str | None = None,
        journey: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[MessageRow]:
        query, args = messages(profile, journey, status, limit)
        return [message_row(tuple(row)) for row in await self._rows(self.dialect(query), *args)]

    async def sent_message(self, key: str) -> SendMessage | None:
        rows = await self._rows(self.sql.sent_message, key)
        return codec.sent_message(rows[0][0], bytes(rows[0][1])) if rows else None

    async def search_profiles(
        self, text: str, after: str, limit: int
    ) -> tuple[list[str], str | None]:
        found: list[str] = []
        while True:
            size = limit - len(found)
            if not text:
                rows = await self._rows(self.dialect(LIST_PROFILES), after, size)
            else:
                prefix = like_prefix(text)
                forms = [t.encode() for t in (text, text.lower(), text.capitalize(), text.upper())]
                args = (prefix, prefix, after, prefix, prefix, *forms, size)
                rows = await self._rows(self.dialect(SEARCH_PROFILES), *args)
            found += [i for i, state in rows if state is None or names_start(state, text)]
            if len(rows) < size:
                return found, None
            after = rows[-1][0]
            if len(found) == limit:
                return found, after

    async def step_counts(
        self, journey: str, version: int | None = None
    ) -> dict[str, dict[str, int]]:
        records, waiting, args = step_counts(journey, version)
        return codec.step_counts(
            await self._rows(self.dialect(records), *args),
            await self._rows(self.dialect(waiting), *args),
        )

    async def step_records(
        self, journey: str, step: str | None, limit: int, version: int | None = None
    ) -> list[StepRecord]:
        query, args = step_records(journey, step, limit, version)
        return list(map(step_record, await self._rows(self.dialect(query), *args)))

    async def counters(self, journey: str, version: int | None = None) -> list[Counter]:
        if version is None:
            rows = await self._rows(self.sql.counters, journey)
        else:
            rows = await self._rows(self.sql.counters_of_version, journey, version)
        return [Counter(int(v), a, g, m, int(n), float(t)) for v, a, g, m, n, t in rows]

    async def entries_since(self, journey: str, since: datetime) -> int:
        return int(await self._value(self.sql.entries_since, journey, ms(since)))

    async def instance_counts(self) -> dict[tuple[str, str], int]:
        rows = await self._rows(self.sql.instance_counts)
        return {(journey, status): count for journey, status, count in rows}

    # dead letters

    async def add_dead_letter(self, letter: DeadLetter) -> int:
        return int(await self._write(self.sql.add_dead_letter, *dead_letter_row(letter)))

    async def dead_letters(self, limit: int = 100) -> tuple[int, list[DeadLetter]]:
        count = await self._value(self.sql.count_dead_letters)
        rows = await self._rows(self.sql.dead_letters, limit)
        return int(count), [dead_letter(row) for row in rows]

    async def dead_letter(self, letter_id: int) -> DeadLetter | None:
        rows = await self._rows(self.sql.dead_letter, letter_id)
        return dead_letter(rows[0]) if rows else None

    async def delete_dead_letter(self, letter_id: int) -> bool:
        return await self._write(self.sql.delete_dead_letter, letter_id) is not None

    # who did what

    async def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        await self._write_many(self.sql.add_audit, [audit_row(e) for e in entries])

    async def audit(self, journey: str, limit: int) -> list[AuditEntry]:
        return [audit_entry(row) for row in await self._rows(self.sql.audit, journey, limit)]
