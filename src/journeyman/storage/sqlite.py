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
get them as one value (a JSON array, or msgpack blobs joined end to end).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from journeyman.domain.core import Changes, Delivered, ProfileClock, Snapshot, Timer
from journeyman.domain.state import Account, Instance, Profile
from journeyman.storage.backfills import SIZES, SQLBackfills, size_rows
from journeyman.storage.base import LEASE, HistoryRow, NewerSchema, OutboxItem
from journeyman.storage.codec import (
    decode_effect,
    decode_profile,
    encode,
    ms,
    time,
    wake_ms,
    with_trait,
)
from journeyman.storage.drafts import SQLDrafts
from journeyman.storage.migrations import SQLITE, Migration, latest, pending
from journeyman.storage.runs import SQLRuns
from journeyman.storage.sql import (
    INSERTS,
    KEPT,
    MEMBERS,
    SQLITE_DIALECT,
    Insert,
    SQLDatabase,
    Statements,
    commit_rows,
    counter_rows,
    kept_rows,
    membership_rows,
    once_keys,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")

SCHEMA_VERSION = latest(SQLITE)


class SQLiteStore(SQLDatabase, SQLRuns, SQLBackfills, SQLDrafts):
    """A :class:`Database` in one SQLite file (``:memory:`` for a throwaway one), owned by
    one process: no :class:`~journeyman.storage.base.ScaleOutStore`."""

    dialect = SQLITE_DIALECT
    sql = Statements.of(SQLITE_DIALECT)

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

    async def accounts(self, account_ids: Collection[str]) -> dict[str, Account]:
        return await self._read(_accounts, list(account_ids))

    async def instances(self, instance_ids: Collection[str]) -> dict[str, Instance]:
        return await self._read(_instances, list(instance_ids))

    async def commit(self, changes: Changes) -> None:
        await self._run(self._commit, changes)

    def _commit(self, changes: Changes) -> None:
        db = self.db
        now = ms(datetime.now(UTC))
        with self._transaction():
            for anonymous, known in changes.merges:
                for statement in self.sql.merge:
                    db.execute(statement, (known, anonymous))
                _many(db, _leave_sql, _memberships(db, anonymous))
                db.execute(self.sql.drop_profile, (anonymous,))
            db.executemany(
                "DELETE FROM identities WHERE kind = ? AND value = ? AND profile_id = ?",
                changes.forgotten,
            )
            for table, rows in commit_rows(changes, now).items():
                _insert(db, _PROFILES if table == "profiles" else INSERTS[table], rows)
                if table == "profiles":
                    _many(db, _wake_sql, [(row[0], row[2]) for row in rows])
            joins, leaves = membership_rows(changes)
            _insert(db, MEMBERS, joins)
            _many(db, _leave_sql, leaves)
            self._put_accounts(changes.accounts, now)
            once = once_keys(changes)
            fresh = {k for k in once if db.execute(self.sql.count_once, (k,)).rowcount == 1}
            db.executemany(self.sql.add_counter, counter_rows(changes, fresh))
            _insert(db, SIZES, size_rows(changes.events))
            self._settle_rows(changes.deliveries)

    def _put_accounts(self, patches: dict[str, dict[str, Any]], now: int) -> None:
        """Merge each account's changed traits into the stored ones (one writer: what is
        read here is what is stored)."""
        for account_id, patch in patches.items():
            found = _accounts(self.db, [account_id]).get(account_id) or Account(id=account_id)
            self.db.execute(self.sql.put_account, (account_id, encode(found.patched(patch)), now))

    async def keep_history(self, rows: Sequence[HistoryRow], at: datetime) -> int:
        return await self._run(self._keep_history, rows, at)

    def _keep_history(self, history: Sequence[HistoryRow], at: datetime) -> int:
        db = self.db
        profiles, rows = kept_rows(history, at)
        with self._transaction():
            _insert(db, KEPT[0], profiles)
            before = db.total_changes
            _insert(db, KEPT[1], rows)
            return db.total_changes - before

    # timers

    async def due(self, now: datetime, limit: int) -> list[Timer]:
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

    # the primitives of SQLDatabase: the console's reads go through the writer's
    # connection, so that they never hold the engine's reader up

    async def _rows(self, query: str, *args: Any) -> list[Any]:
        return await self._run(lambda: self.db.execute(query, args).fetchall())

    async def _value(self, query: str, *args: Any) -> Any:
        row = await self._run(lambda: self.db.execute(query, args).fetchone())
        return row[0] if row else None

    async def _write(self, query: str, *args: Any) -> Any:
        return await self._run(self._write_now, query, args)

    def _write_now(self, query: str, args: Sequence[Any]) -> Any:
        with self._transaction():
            rows = self.db.execute(query, args).fetchall()
        return rows[0][0] if rows else None

    async def _write_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._run(self._write_many_now, query, rows)

    def _write_many_now(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._transaction():
            self.db.executemany(query, rows)

    async def profiles_with_trait(self, trait: str, value: str, limit: int) -> list[str]:
        # Profiles are stored encoded: find the ones holding the text, then check the trait.
        rows = await self._rows(
            "SELECT state FROM profiles WHERE instr(state, ?) > 0", value.encode()
        )
        found = (with_trait(state, trait, value) for (state,) in rows)
        return [profile_id for profile_id in found if profile_id is not None][:limit]

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


# Rows go in by many to an INSERT: SQLite is called once per statement, not once per row
# (see the module's note). Statements of 2**k rows (up to 2**ROWS_SHIFT) keep the distinct
# SQL texts few, and cached.
ROWS_SHIFT = 8


def _insert(db: sqlite3.Connection, insert: Insert, rows: list[tuple[Any, ...]]) -> None:
    """``INSERT INTO`` the table every row, in few calls (many rows to a statement)."""
    _many(db, functools.partial(_insert_sql, insert), rows)


def _many(
    db: sqlite3.Connection, statement: Callable[[int], str], rows: Sequence[Sequence[Any]]
) -> None:
    """Run ``statement(n)``, a statement of n rows, for every row, in few calls."""
    done = 0
    while done < len(rows):
        size = 1 << min(ROWS_SHIFT, (len(rows) - done).bit_length() - 1)
        chunk = rows[done : done + size]
        db.execute(statement(size), [v for one in chunk for v in one])
        done += size


@functools.lru_cache(maxsize=256)
def _insert_sql(insert: Insert, rows: int) -> str:
    names = ", ".join([*insert.names, *(column for column, _ in insert.constants)])
    row = "(" + ", ".join(["?"] * len(insert.names) + [v for _, v in insert.constants]) + ")"
    return f"INSERT INTO {insert.table} ({names}) VALUES {','.join([row] * rows)} {insert.tail}"


@functools.lru_cache(maxsize=16)
def _leave_sql(rows: int) -> str:
    """Take (segment, profile) rows out of ``segment_members``."""
    # IN over a subquery of VALUES: each pair is looked up along the primary key (a row
    # value IN a bare VALUES list is not, and would scan the table).
    pairs = ",".join(["(?, ?)"] * rows)
    return (
        "DELETE FROM segment_members WHERE (segment, profile_id) IN "
        f"(SELECT column1, column2 FROM (VALUES {pairs}))"
    )


def _memberships(db: sqlite3.Connection, profile_id: str) -> list[tuple[str, str]]:
    """The profile's rows in segment_members, (segment, profile), as its stored state
    says: both are written from the same segment events, in the same commits."""
    row = db.execute("SELECT state FROM profiles WHERE id = ?", (profile_id,)).fetchone()
    return [] if row is None else [(s, profile_id) for s in decode_profile(row[0]).segments]


# A profile's state is stored without its clock (wake_at), which is set apart where it
# moved only: an UPDATE that names wake_at rewrites its entry in profiles_wake even when
# the value is the same, and most commits leave a profile's clock where it was.
_PROFILES = dataclasses.replace(
    INSERTS["profiles"],
    tail="ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
)


@functools.lru_cache(maxsize=16)
def _wake_sql(rows: int) -> str:
    """Set the clock of (profile, wake_at) rows where it is not that already."""
    pairs = ",".join(["(?, ?)"] * rows)
    return (
        f"UPDATE profiles SET wake_at = v.column2 FROM (VALUES {pairs}) AS v "
        "WHERE profiles.id = v.column1 AND profiles.wake_at IS NOT v.column2"
    )


# The engine's reads, on whichever connection SQLiteStore._read gives them.


def _load(db: sqlite3.Connection, ids: list[str]) -> dict[str, Snapshot]:
    """The profiles and their running instances, all as of one moment (one read
    transaction), even while the writer commits."""
    found = {pid: Snapshot(Profile(id=pid), [], new=True) for pid in ids}
    db.execute("BEGIN")
    try:
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for profile in _states_of(db, f"profiles WHERE id IN ({marks})", chunk, _profiles):
                found[profile.id] = Snapshot(profile, [])
            running = f"instances WHERE profile_id IN ({marks}) AND status != 'ended'"
            for instance in _states_of(db, running, chunk, _instances_of):
                found[instance.profile_id].running.append(instance)
    finally:
        db.execute("COMMIT")
    for snapshot in found.values():
        snapshot.running.sort(key=lambda i: i.id)
    return found


def _states_of(
    db: sqlite3.Connection, rest: str, parameters: Sequence[Any], decode: Callable[[bytes], list[T]]
) -> list[T]:
    """``SELECT state FROM {rest}``, decoded: got in one call (see the module's note) and
    decoded in one, in no promised order. The msgpack blobs come joined end to end
    (``group_concat`` keeps a blob's bytes as they are), and an array header in front
    makes them one array: ``decode`` reads a list."""
    query = (
        f"SELECT count(*), CAST(group_concat(state, '') AS BLOB) FROM (SELECT state FROM {rest})"
    )
    number, joined = db.execute(query, parameters).fetchone()
    return decode(b"\xdd" + number.to_bytes(4, "big") + joined) if number else []


_profiles = msgspec.msgpack.Decoder(list[Profile]).decode
_accounts_of = msgspec.msgpack.Decoder(list[Account]).decode
_instances_of = msgspec.msgpack.Decoder(list[Instance]).decode


def _accounts(db: sqlite3.Connection, ids: list[str]) -> dict[str, Account]:
    return {account.id: account for account in _states(db, "accounts", ids, _accounts_of)}


def _instances(db: sqlite3.Connection, ids: list[str]) -> dict[str, Instance]:
    return {i.id: i for i in _states(db, "instances", ids, _instances_of)}


def _states(
    db: sqlite3.Connection, table: str, ids: list[str], decode: Callable[[bytes], list[T]]
) -> Iterator[T]:
    """The decoded ``state`` of the rows of ``table`` with these ids, in no promised order."""
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        yield from _states_of(db, f"{table} WHERE id IN ({marks})", chunk, decode)


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


def _due(db: sqlite3.Connection, now: datetime, limit: int) -> list[Timer]:
    """Waiting instances whose wake time has come, the earliest first."""
    # wake_at is kept in whole milliseconds: select up to the end of the current one,
    # then drop what is due later within it.
    found = _states_of(
        db,
        "instances WHERE status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= ? "
        "ORDER BY wake_at LIMIT ?",
        (wake_ms(now), limit),
        _instances_of,
    )
    due: list[Timer] = [i for i in found if i.wake_at is not None and i.wake_at <= now]
    clocks = db.execute(
        "SELECT id, wake_at FROM profiles WHERE wake_at IS NOT NULL AND wake_at <= ? "
        "ORDER BY wake_at LIMIT ?",
        (ms(now), limit),
    )
    due += (ProfileClock(pid, time(wake)) for pid, wake in clocks)
    return sorted(due, key=lambda t: t.wake_at or now)[:limit]


def _next_wake(db: sqlite3.Connection) -> datetime | None:
    row = db.execute(
        "SELECT min(w) FROM (SELECT min(wake_at) AS w FROM instances WHERE status = 'waiting' "
        "AND wake_at IS NOT NULL UNION ALL SELECT min(wake_at) FROM profiles "
        "WHERE wake_at IS NOT NULL)"
    ).fetchone()
    return time(row[0]) if row and row[0] is not None else None


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


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
