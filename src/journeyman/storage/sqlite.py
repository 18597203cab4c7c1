"""The embedded backend: one SQLite file in WAL mode, written by one thread.

Every write runs on a single worker thread that owns the writing connection, so writes
never contend and each :meth:`SQLiteStore.commit` is one ``BEGIN IMMEDIATE`` transaction.
With ``synchronous=FULL`` a commit is on disk when it returns: an acknowledged event
survives the process being killed the next instant (and a power cut). The engine's reads
(:meth:`~SQLiteStore.load`, ``seen``, ``resolve``) and the timer loop's (``due``) go
through a second connection on a thread of its own, so that they run while the writer
commits.

Python's ``sqlite3`` lets go of the GIL each time it calls into SQLite for a row, and a
thread that lets go of it waits to get it back for as long as the event loop keeps
running Python (up to the switch interval, 5 ms). Row by row, a commit of a few hundred
rows done beside a busy event loop would take seconds. So the hot statements move many
rows per call: inserts take many rows at once (:func:`_insert`), and reads of many rows
get them as one value (a JSON array, or hex strings joined by commas).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from journeyman.domain.state import Instance, Profile, StepRecord
from journeyman.storage.base import (
    LEASE,
    LEFT,
    Batch,
    DeadLetter,
    Delivered,
    MessageRow,
    NewerSchema,
    OutboxItem,
    PublishedJourney,
    PublishedWorkspace,
    Snapshot,
    Store,
    StoredEvent,
)
from journeyman.storage.codec import (
    DEAD_LETTER,
    dead_letter,
    dead_letter_row,
    decode_effect,
    decode_event,
    decode_instance,
    decode_profile,
    encode,
    instance_row,
    message_row,
    ms,
    outbox_row,
    time,
    wake_ms,
)
from journeyman.storage.migrations import SQLITE, Migration, latest, pending

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")

SCHEMA_VERSION = latest(SQLITE)


class SQLiteStore(Store):
    """A :class:`Store` in one SQLite file (``:memory:`` for a throwaway one)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None
        # The engine's and the timer loop's reads go through a second connection on its
        # own thread, so that they run while the writer commits (see the module's note).
        self._readers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")
        self._reader: sqlite3.Connection | None = None
        self.applied: list[Migration] = []

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, work, *args)

    async def _read(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(connection, *args)`` on the reading connection; with no file (an
        in-memory database) there is only the writer's."""
        loop = asyncio.get_running_loop()
        if self._reader is None:
            return await loop.run_in_executor(self._executor, work, self.db, *args)
        return await loop.run_in_executor(self._readers, work, self._reader, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    # lifecycle

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA foreign_keys=ON")
        # Before touching the schema: a newer version's tables may not take this one's DDL.
        try:
            steps = pending(_schema_version(db), SQLITE, self.path)
        except NewerSchema:
            db.close()
            raise
        for step in steps:
            _apply(db, step)
            self.applied.append(step)
        # One process owns an SQLite file: what a previous process claimed and never
        # settled (it was killed while delivering) is due again now, with the same key.
        db.execute("UPDATE outbox SET leased_until = NULL WHERE leased_until IS NOT NULL")
        self._db = db
        if self.path != ":memory:":
            self._readers.submit(self._open_reader).result()

    def _open_reader(self) -> None:
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        reader.execute("PRAGMA query_only=ON")
        reader.execute("PRAGMA busy_timeout=5000")
        self._reader = reader

    async def close(self) -> None:
        if self._reader is not None:
            await asyncio.get_running_loop().run_in_executor(self._readers, self._reader.close)
            self._reader = None
        if self._db is not None:
            await self._run(self.db.close)
            self._db = None
        self._readers.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    # the unit of work

    async def load(self, profile_ids: Collection[str]) -> dict[str, Snapshot]:
        return await self._read(_load, list(profile_ids))

    async def resolve(self, identities: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return await self._read(_resolve, list(identities))

    async def seen(self, message_ids: Collection[str]) -> set[str]:
        return await self._read(_seen, list(message_ids))

    async def commit(self, batch: Batch) -> None:
        await self._run(self._commit, batch)

    def _commit(self, batch: Batch) -> None:
        db = self.db
        now = ms(datetime.now(UTC))
        with self._transaction():
            self._merge(batch.merges)
            db.executemany(
                "DELETE FROM identities WHERE kind = ? AND value = ? AND profile_id = ?",
                batch.forgotten,
            )
            _insert(
                db,
                "events (message_id, profile_id, name, body, received_at)",
                [
                    (
                        s.event.message_id,
                        s.event.profile_id,
                        s.event.name,
                        encode(s.event),
                        ms(s.received_at),
                    )
                    for s in batch.events
                ],
            )
            _insert(
                db,
                "profiles (id, state, updated_at)",
                [(p.id, encode(p), now) for p in batch.profiles.values()],
                "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at",
            )
            _insert(
                db,
                "identities (kind, value, profile_id)",
                [(kind, value, pid) for (kind, value), pid in batch.identities.items()],
                "ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id",
            )
            _insert(
                db,
                "instances (id, profile_id, journey, version, step, status, wake_at, state, "
                "updated_at)",
                [instance_row(i, now) for i in batch.instances.values()],
                "ON CONFLICT (id) DO UPDATE SET profile_id = excluded.profile_id, "
                "step = excluded.step, status = excluded.status, wake_at = excluded.wake_at, "
                "state = excluded.state, updated_at = excluded.updated_at",
            )
            _insert(
                db,
                "outbox (key, kind, channel, journey, step, profile_id, instance_id, effect, "
                "status, due_at, created_at, updated_at)",
                [outbox_row(e, now) for e in batch.effects],
                "ON CONFLICT (key) DO NOTHING",
                "(?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            )
            _insert(
                db,
                "steps (profile_id, instance_id, journey, step, outcome, detail, at)",
                [
                    (r.profile_id, r.instance_id, r.journey, r.step, r.outcome, r.detail, ms(r.at))
                    for r in batch.records
                ],
            )
            self._settle_rows(batch.deliveries)

    def _merge(self, merges: list[tuple[str, str]]) -> None:
        """Move everything of each anonymous profile to the known one, and drop it."""
        for anonymous, known in merges:
            for table in ("events", "steps", "outbox", "instances"):
                self.db.execute(
                    f"UPDATE {table} SET profile_id = ? WHERE profile_id = ?", (known, anonymous)
                )
            self.db.execute(
                "UPDATE identities SET profile_id = ? WHERE profile_id = ?", (known, anonymous)
            )
            self.db.execute("DELETE FROM profiles WHERE id = ?", (anonymous,))

    # timers

    async def due(self, now: datetime, limit: int) -> list[Instance]:
        return await self._read(_due, now, limit)

    async def next_wake(self) -> datetime | None:
        return await self._read(_next_wake)

    # outbox

    async def claim(self, now: datetime, limit: int) -> list[OutboxItem]:
        return await self._run(self._claim, now, limit)

    def _claim(self, now: datetime, limit: int) -> list[OutboxItem]:
        db = self.db
        # A claim lost in a crash is harmless: opening the file releases every claim.
        with self._transaction(durable=False):
            # The rows come as one JSON array, in one call (see the module's note).
            (found,) = db.execute(
                "SELECT json_group_array(json_array(id, hex(effect), attempts, due_at)) "
                "FROM (SELECT id, effect, attempts, due_at FROM outbox "
                "WHERE status IN ('queued', 'retry') AND due_at <= ? "
                "AND (leased_until IS NULL OR leased_until <= ?) ORDER BY due_at, id LIMIT ?)",
                (ms(now), ms(now), limit),
            ).fetchone()
            rows = sorted(msgspec.json.decode(found), key=lambda row: (row[3], row[0]))
            db.execute(
                "UPDATE outbox SET leased_until = ? WHERE id IN (SELECT value FROM json_each(?))",
                (ms(now + LEASE), msgspec.json.encode([row[0] for row in rows])),
            )
        return [
            OutboxItem(id, decode_effect(bytes.fromhex(effect)), attempts)
            for id, effect, attempts, _ in rows
        ]

    async def settle(self, results: Sequence[Delivered]) -> None:
        await self._run(self._settle, list(results))

    def _settle(self, results: list[Delivered]) -> None:
        with self._transaction():
            self._settle_rows(results)

    def _settle_rows(self, results: list[Delivered]) -> None:
        # Outcomes alike (most often: sent, just now) are settled by one statement.
        alike: dict[tuple[str, str, int, int], list[int]] = {}
        for r in results:
            alike.setdefault((r.status, r.detail, ms(r.retry_at or r.at), ms(r.at)), []).append(
                r.id
            )
        for (status, detail, due, at), ids in alike.items():
            self.db.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, detail = ?, "
                "due_at = ?, leased_until = NULL, updated_at = ? "
                "WHERE id IN (SELECT value FROM json_each(?)) "
                "AND status IN ('queued', 'retry')",  # sent and failed are final
                (status, detail, due, at, msgspec.json.encode(ids)),
            )

    # reading

    async def instance(self, instance_id: str) -> Instance | None:
        return await self._run(self._one_instance, instance_id)

    def _one_instance(self, instance_id: str) -> Instance | None:
        row = self.db.execute("SELECT state FROM instances WHERE id = ?", (instance_id,)).fetchone()
        return decode_instance(row[0]) if row else None

    async def instances_of(self, profile_id: str) -> list[Instance]:
        return await self._run(self._instances_of, profile_id)

    def _instances_of(self, profile_id: str) -> list[Instance]:
        rows = self.db.execute(
            "SELECT state FROM instances WHERE profile_id = ? ORDER BY rowid DESC", (profile_id,)
        )
        return [decode_instance(state) for (state,) in rows]

    async def profile(self, profile_id: str) -> Profile | None:
        return await self._run(self._one_profile, profile_id)

    def _one_profile(self, profile_id: str) -> Profile | None:
        row = self.db.execute("SELECT state FROM profiles WHERE id = ?", (profile_id,)).fetchone()
        return decode_profile(row[0]) if row else None

    async def messages(
        self,
        profile: str | None = None,
        journey: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[MessageRow]:
        return await self._run(self._messages, profile, journey, status, limit)

    def _messages(
        self, profile: str | None, journey: str | None, status: str | None, limit: int
    ) -> list[MessageRow]:
        clauses, args = [], []
        for column, value in (("profile_id", profile), ("journey", journey), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.execute(
            "SELECT key, kind, channel, journey, step, profile_id, instance_id, status, "
            f"attempts, detail, created_at, updated_at, effect FROM outbox {where} "
            "ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [message_row(row) for row in rows]

    async def trace(self, profile_id: str, limit: int = 1000) -> list[StepRecord]:
        return await self._run(self._trace, profile_id, limit)

    def _trace(self, profile_id: str, limit: int) -> list[StepRecord]:
        rows = self.db.execute(
            "SELECT profile_id, instance_id, journey, step, outcome, detail, at FROM steps "
            "WHERE profile_id = ? ORDER BY seq LIMIT ?",
            (profile_id, limit),
        )
        return [
            StepRecord(
                profile_id=p, instance_id=i, journey=j, step=s, outcome=o, detail=d, at=time(at)
            )
            for p, i, j, s, o, d, at in rows
        ]

    async def history(self, profile_id: str, limit: int = 100) -> list[StoredEvent]:
        return await self._run(self._history, profile_id, limit)

    def _history(self, profile_id: str, limit: int) -> list[StoredEvent]:
        rows = self.db.execute(
            "SELECT body, received_at FROM events WHERE profile_id = ? ORDER BY seq DESC LIMIT ?",
            (profile_id, limit),
        )
        return [StoredEvent(decode_event(body), time(received)) for body, received in rows]

    # journey versions

    async def published(self) -> dict[str, PublishedJourney]:
        return await self._run(self._published)

    def _published(self) -> dict[str, PublishedJourney]:
        rows = self.db.execute(
            "SELECT name, version, digest, document FROM journeys j WHERE version = "
            "(SELECT max(version) FROM journeys WHERE name = j.name)"
        )
        return {
            name: PublishedJourney(name, version, digest, msgspec.json.decode(document))
            for name, version, digest, document in rows
        }

    async def publish(self, journeys: Sequence[PublishedJourney]) -> None:
        await self._run(self._publish, list(journeys))

    def _publish(self, journeys: list[PublishedJourney]) -> None:
        now = ms(datetime.now(UTC))
        with self._transaction():
            self.db.executemany(
                "INSERT INTO journeys (name, version, digest, document, published_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    (j.name, j.version, j.digest, msgspec.json.encode(j.document), now)
                    for j in journeys
                ),
            )

    async def journey_document(self, name: str, version: int) -> dict[str, Any] | None:
        return await self._run(self._journey_document, name, version)

    def _journey_document(self, name: str, version: int) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT document FROM journeys WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        return msgspec.json.decode(row[0]) if row else None

    async def versions_in_use(self) -> list[tuple[str, int]]:
        return await self._run(self._versions_in_use)

    def _versions_in_use(self) -> list[tuple[str, int]]:
        rows = self.db.execute(
            "SELECT DISTINCT journey, version FROM instances WHERE status != 'ended' ORDER BY 1, 2"
        )
        return [(name, version) for name, version in rows]

    async def journey_states(self) -> dict[str, str]:
        return await self._run(self._journey_states)

    def _journey_states(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT name, state FROM journey_states").fetchall())

    async def set_journey_state(self, name: str, state: str) -> None:
        await self._run(self._set_journey_state, name, state)

    def _set_journey_state(self, name: str, state: str) -> None:
        with self._transaction():
            if state == "active":
                self.db.execute("DELETE FROM journey_states WHERE name = ?", (name,))
            else:
                self.db.execute(
                    "INSERT INTO journey_states VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET state = excluded.state",
                    (name, state),
                )

    async def running_of(self, journey: str, limit: int, after: str = "") -> list[Instance]:
        return await self._run(self._running_of, journey, limit, after)

    def _running_of(self, journey: str, limit: int, after: str) -> list[Instance]:
        rows = self.db.execute(
            "SELECT state FROM instances WHERE journey = ? AND status != 'ended' AND id > ? "
            "ORDER BY id LIMIT ?",
            (journey, after, limit),
        )
        return [decode_instance(state) for (state,) in rows]

    async def step_counts(
        self, journey: str, version: int | None = None
    ) -> dict[str, dict[str, int]]:
        return await self._run(self._step_counts, journey, version)

    def _step_counts(self, journey: str, version: int | None) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        args: list[Any] = [journey]
        of_version = ""
        if version is not None:
            of_version = _OF_VERSION
            args.append(version)
        rows = self.db.execute(
            f"SELECT coalesce(s.step, ''), s.outcome, count(*), sum({LEFT}) FROM steps s "
            f"WHERE s.journey = ? {of_version}GROUP BY s.step, s.outcome",
            args,
        )
        for step, outcome, count, left in rows:
            counts.setdefault(step, {})[outcome] = count
            if left:
                counts[step]["left"] = counts[step].get("left", 0) + left
        rows = self.db.execute(
            "SELECT step, count(*) FROM instances WHERE journey = ? AND status = 'waiting' "
            f"{'AND version = ? ' if version is not None else ''}GROUP BY step",
            args,
        )
        for step, count in rows:
            counts.setdefault(step, {})["waiting_now"] = count
        return counts

    async def entries_since(self, journey: str, since: datetime) -> int:
        return await self._run(self._entries_since, journey, since)

    def _entries_since(self, journey: str, since: datetime) -> int:
        # Entry records are the journey's records without a step: the index finds them.
        row = self.db.execute(
            "SELECT count(*) FROM steps WHERE journey = ? AND step IS NULL "
            "AND outcome = 'entered' AND at >= ?",
            (journey, ms(since)),
        ).fetchone()
        return int(row[0])

    async def profiles_with_trait(self, trait: str, value: str, limit: int) -> list[str]:
        return await self._run(self._profiles_with_trait, trait, value, limit)

    def _profiles_with_trait(self, trait: str, value: str, limit: int) -> list[str]:
        # Profiles are stored encoded: find the ones holding the text, then check the trait.
        rows = self.db.execute(
            "SELECT state FROM profiles WHERE instr(state, ?) > 0", (value.encode(),)
        )
        found = []
        for (state,) in rows:
            profile = decode_profile(state)
            if profile.traits.get(trait) == value:
                found.append(profile.id)
                if len(found) >= limit:
                    break
        return found

    async def step_records(
        self, journey: str, step: str | None, limit: int, version: int | None = None
    ) -> list[StepRecord]:
        return await self._run(self._step_records, journey, step, limit, version)

    def _step_records(
        self, journey: str, step: str | None, limit: int, version: int | None
    ) -> list[StepRecord]:
        of_version = "" if version is None else _OF_VERSION
        args = (journey, step) if version is None else (journey, step, version)
        rows = self.db.execute(
            "SELECT profile_id, instance_id, journey, step, outcome, detail, at FROM steps s "
            f"WHERE journey = ? AND step IS ? {of_version}ORDER BY seq DESC LIMIT ?",
            (*args, limit),
        )
        return [
            StepRecord(
                profile_id=p, instance_id=i, journey=j, step=s, outcome=o, detail=d, at=time(at)
            )
            for p, i, j, s, o, d, at in rows
        ]

    async def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        return await self._run(self._identities_of, profile_id)

    def _identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT kind, value FROM identities WHERE profile_id = ? ORDER BY 1, 2", (profile_id,)
        )
        return [(kind, value) for kind, value in rows]

    async def instance_counts(self) -> dict[tuple[str, str], int]:
        return await self._run(self._instance_counts)

    def _instance_counts(self) -> dict[tuple[str, str], int]:
        rows = self.db.execute("SELECT journey, status, count(*) FROM instances GROUP BY 1, 2")
        return {(journey, status): count for journey, status, count in rows}

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[None]:
        """One write transaction. ``durable=False`` skips the wait for the disk: for writes
        that may be lost in a crash without harm (the next durable commit, in the same
        log, takes them to the disk anyway)."""
        relaxed = not durable and self.synchronous == "FULL"
        if relaxed:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        finally:
            if relaxed:
                self.db.execute(f"PRAGMA synchronous={self.synchronous}")

    async def get_setting(self, key: str) -> str | None:
        return await self._run(self._get_setting, key)

    def _get_setting(self, key: str) -> str | None:
        row = self.db.execute(
            "SELECT value FROM meta WHERE key = ?", (f"setting:{key}",)
        ).fetchone()
        return row[0] if row else None

    async def set_setting(self, key: str, value: str) -> None:
        await self._run(self._set_setting, key, value)

    def _set_setting(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (f"setting:{key}", value),
        )

    # dead letters

    async def add_dead_letter(self, letter: DeadLetter) -> int:
        return await self._run(self._add_dead_letter, letter)

    def _add_dead_letter(self, letter: DeadLetter) -> int:
        with self._transaction():
            cursor = self.db.execute(
                "INSERT INTO dead_letters (partition_no, headers, body, error, attempts, "
                "first_failed_at, last_failed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                dead_letter_row(letter),
            )
        return int(cursor.lastrowid or 0)

    async def dead_letters(self, limit: int = 100) -> tuple[int, list[DeadLetter]]:
        return await self._run(self._dead_letters, limit)

    def _dead_letters(self, limit: int) -> tuple[int, list[DeadLetter]]:
        (count,) = self.db.execute("SELECT count(*) FROM dead_letters").fetchone()
        rows = self.db.execute(
            f"SELECT {DEAD_LETTER} FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return count, [dead_letter(row) for row in rows]

    async def dead_letter(self, letter_id: int) -> DeadLetter | None:
        return await self._run(self._dead_letter, letter_id)

    def _dead_letter(self, letter_id: int) -> DeadLetter | None:
        row = self.db.execute(
            f"SELECT {DEAD_LETTER} FROM dead_letters WHERE id = ?", (letter_id,)
        ).fetchone()
        return dead_letter(row) if row else None

    async def delete_dead_letter(self, letter_id: int) -> bool:
        return await self._run(self._delete_dead_letter, letter_id)

    def _delete_dead_letter(self, letter_id: int) -> bool:
        with self._transaction():
            cursor = self.db.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
        return cursor.rowcount > 0

    # workspace versions: the whole workspace of each publish (see Store.publish_workspace)

    async def publish_workspace(self, workspace: PublishedWorkspace) -> int:
        return await self._run(self._publish_workspace, workspace)

    def _publish_workspace(self, workspace: PublishedWorkspace) -> int:
        with self._transaction():
            row = self.db.execute(
                "INSERT INTO workspaces (version, digest, files, journeys, published_at) "
                "SELECT coalesce(max(version), 0) + 1, ?, ?, ?, ? FROM workspaces "
                "RETURNING version",
                (
                    workspace.digest,
                    msgspec.json.encode(workspace.files),
                    msgspec.json.encode(workspace.journeys).decode(),
                    ms(datetime.now(UTC)),
                ),
            ).fetchone()
        return int(row[0])

    async def published_workspace(self, version: int | None = None) -> PublishedWorkspace | None:
        return await self._read(_published_workspace, version)

    async def workspace_version(self) -> int:
        return await self._read(_workspace_version)

    async def workspace_journeys(self) -> dict[int, dict[str, int]]:
        return await self._read(_workspace_journeys)


# Rows go in by many to an INSERT: SQLite is called once per statement, not once per row
# (see the module's note). Statements of 2**k rows (up to 2**ROWS_SHIFT) keep the distinct
# SQL texts few, and cached.
ROWS_SHIFT = 8


def _insert(
    db: sqlite3.Connection, into: str, rows: list[tuple[Any, ...]], tail: str = "", row: str = ""
) -> None:
    """``INSERT INTO {into} VALUES {row}, {row}, ... {tail}`` of every row, in few calls;
    ``row`` is ``(?, ?, ...)`` by default, one mark per value."""
    done = 0
    while done < len(rows):
        size = 1 << min(ROWS_SHIFT, (len(rows) - done).bit_length() - 1)
        chunk = rows[done : done + size]
        marks = row or "(" + ",".join("?" * len(chunk[0])) + ")"
        db.execute(_insert_sql(into, marks, size, tail), [v for one in chunk for v in one])
        done += size


@functools.lru_cache(maxsize=256)
def _insert_sql(into: str, row: str, rows: int, tail: str) -> str:
    return f"INSERT INTO {into} VALUES {','.join([row] * rows)} {tail}"


# The engine's reads, on whichever connection SQLiteStore._read gives them.


def _load(db: sqlite3.Connection, ids: list[str]) -> dict[str, Snapshot]:
    """The profiles and their running instances, all as of one moment (one read
    transaction), even while the writer commits."""
    found = {pid: Snapshot(Profile(id=pid), [], new=True) for pid in ids}
    db.execute("BEGIN")
    try:
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for state in _blobs(db, "state", f"profiles WHERE id IN ({marks})", chunk):
                profile = decode_profile(state)
                found[profile.id] = Snapshot(profile, [])
            running = f"instances WHERE profile_id IN ({marks}) AND status != 'ended'"
            for state in _blobs(db, "state", running, chunk):
                instance = decode_instance(state)
                found[instance.profile_id].running.append(instance)
    finally:
        db.execute("COMMIT")
    for snapshot in found.values():
        snapshot.running.sort(key=lambda i: i.id)
    return found


def _blobs(
    db: sqlite3.Connection, column: str, rest: str, parameters: Sequence[Any]
) -> list[bytes]:
    """``SELECT {column} FROM {rest}``: a column of blobs, got in one call (see the
    module's note), in no promised order."""
    query = f"SELECT group_concat(hex({column})) FROM (SELECT {column} FROM {rest})"
    (joined,) = db.execute(query, parameters).fetchone()
    return [bytes.fromhex(value) for value in joined.split(",")] if joined else []


def _resolve(
    db: sqlite3.Connection, identities: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    found = {}
    for kind, value in identities:
        row = db.execute(
            "SELECT profile_id FROM identities WHERE kind = ? AND value = ?", (kind, value)
        ).fetchone()
        if row is not None:
            found[(kind, value)] = row[0]
    return found


def _seen(db: sqlite3.Connection, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT message_id FROM events WHERE message_id IN ({marks})", chunk)
        found.update(row[0] for row in rows)
    return found


def _due(db: sqlite3.Connection, now: datetime, limit: int) -> list[Instance]:
    """Waiting instances whose wake time has come, the earliest first."""
    # wake_at is kept in whole milliseconds: select up to the end of the current one,
    # then drop what is due later within it.
    states = _blobs(
        db,
        "state",
        "instances WHERE status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= ? "
        "ORDER BY wake_at LIMIT ?",
        (wake_ms(now), limit),
    )
    found = (decode_instance(state) for state in states)
    due = [i for i in found if i.wake_at is not None and i.wake_at <= now]
    return sorted(due, key=lambda i: i.wake_at or now)


def _next_wake(db: sqlite3.Connection) -> datetime | None:
    row = db.execute(
        "SELECT min(wake_at) FROM instances WHERE status = 'waiting' AND wake_at IS NOT NULL"
    ).fetchone()
    return time(row[0]) if row and row[0] is not None else None


# A step record (steps s) is of its instance's version; a refused entry has no instance.
_OF_VERSION = (
    "AND (s.instance_id IS NULL OR EXISTS (SELECT 1 FROM instances i "
    "WHERE i.id = s.instance_id AND i.version = ?)) "
)


def _apply(db: sqlite3.Connection, step: Migration) -> None:
    """One schema step and its version number, in one transaction.

    The script carries its own BEGIN and COMMIT: ``executescript`` commits whatever
    transaction is open before it runs.
    """
    version = f"INSERT OR REPLACE INTO meta VALUES ('schema', '{step.version}');"
    try:
        db.executescript(f"BEGIN IMMEDIATE;\n{step.sql}\n{version}\nCOMMIT;")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _schema_version(db: sqlite3.Connection) -> int | None:
    """The schema version the database was made with; None for a new database."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return int(row[0]) if row else None


def _published_workspace(db: sqlite3.Connection, version: int | None) -> PublishedWorkspace | None:
    row = db.execute(
        "SELECT version, digest, files, journeys FROM workspaces "
        "WHERE version = coalesce(?, (SELECT max(version) FROM workspaces))",
        (version,),
    ).fetchone()
    if row is None:
        return None
    number, digest, files, journeys = row
    return PublishedWorkspace(
        number, digest, msgspec.json.decode(files), msgspec.json.decode(journeys)
    )


def _workspace_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT max(version) FROM workspaces").fetchone()
    return int(row[0] or 0)


def _workspace_journeys(db: sqlite3.Connection) -> dict[int, dict[str, int]]:
    rows = db.execute("SELECT version, journeys FROM workspaces")
    return {version: msgspec.json.decode(journeys) for version, journeys in rows}


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
