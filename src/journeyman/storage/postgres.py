"""The shared backend: a PostgreSQL database, through a pool of asyncpg connections.

Same tables, same encoding and same answers as :mod:`journeyman.storage.sqlite`, so the
runtime cannot tell them apart; what differs is how the rows travel. A batch goes to the
server as one statement per table, each column as one array (``unnest``), in one
transaction: the fastest of the ways measured by ``benchmarks/bench_storage.py``.

The database may be shared by several processes. So opening it never releases claims
that another process holds, outbox items are claimed with ``FOR UPDATE SKIP LOCKED`` and
a lease (no two processes get the same item; one that dies mid-delivery leaves it to be
claimed again once the lease has passed), and :meth:`PostgresStore.claim_due` claims
due timers the same way. Within one process, writes go one at a time, as in SQLite.

URL: ``postgresql://user:password@host:5432/database?pool=10`` (``postgres://`` too);
``pool`` is the most connections the store opens (default 10), every other query
parameter goes to the server as a setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from journeyman.domain.core import Changes, Delivered, ProfileClock, Snapshot, Timer
from journeyman.domain.state import Account, Instance, Profile
from journeyman.storage import shown_url
from journeyman.storage.backfills import SIZES, SQLBackfills, size_rows
from journeyman.storage.base import (
    LEASE,
    HistoryRow,
    OutboxItem,
    PartitionLocks,
    PublishedWorkspace,
    ScaleOutStore,
    StorageUnavailable,
    ToTell,
)
from journeyman.storage.codec import (
    decode_account,
    decode_effect,
    decode_instance,
    decode_profile,
    encode,
    ms,
    time,
    wake_ms,
    with_trait,
)
from journeyman.storage.drafts import SQLDrafts
from journeyman.storage.migrations import POSTGRES, Migration, pending
from journeyman.storage.runs import SQLRuns
from journeyman.storage.sql import (
    INSERTS,
    KEPT,
    MEMBERS,
    POSTGRES_DIALECT,
    Insert,
    SQLDatabase,
    Statements,
    commit_rows,
    counter_rows,
    kept_rows,
    membership_rows,
    once_keys,
    workspace_row,
)

__all__ = ["DEFAULT_POOL", "AdvisoryLocks", "PostgresStore", "StaleOutcome", "ToTell", "parse_url"]

DEFAULT_POOL = 10
T = TypeVar("T")
CONNECT_TIMEOUT = 10.0  # seconds: an unreachable server is reported, not waited for
# Any number will do, as long as it is journeyman's own: opening processes take turns to
# migrate the schema while holding this advisory lock.
_MIGRATION_LOCK = 0x6A6F75726E


def _bulk(insert: Insert, also: str = "") -> str:
    """The INSERT of rows sent as one array per column, in the order they were given;
    ``also`` adds to what a row already there gets."""
    names = insert.names
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(insert.types, 1))
    into = ", ".join([*names, *(column for column, _ in insert.constants)])
    values = ", ".join([*(f"r.{name}" for name in names), *(v for _, v in insert.constants)])
    return (
        f"INSERT INTO {insert.table} ({into}) SELECT {values} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS r({', '.join(names)}, ord) ORDER BY r.ord {insert.tail}{also}"
    )


# A commit stores an instance's (or a profile's) next state: a claim of its timer ends.
_BULK = {
    table: (
        _bulk(insert, ", leased_until = NULL" if table in ("instances", "profiles") else ""),
        width,
    )
    for table, insert in INSERTS.items()
    for width in [len(insert.names)]
}
_KEEP_PROFILES, _KEEP_EVENTS = (_bulk(insert) for insert in KEPT)
_JOIN, _ADD_SIZES = _bulk(MEMBERS), _bulk(SIZES)
_LEAVE = (
    "DELETE FROM segment_members WHERE (segment, profile_id) IN "
    "(SELECT * FROM unnest($1::text[], $2::text[]))"
)
_COUNT_ONCE = (
    "INSERT INTO counted_once SELECT unnest($1::text[]) ON CONFLICT (key) DO NOTHING RETURNING key"
)


async def _count_once(db: asyncpg.Connection, keys: list[str]) -> set[str]:
    """The keys that no commit counted before, now kept (see ``Tally.once``)."""
    if not keys:
        return set()
    return {row[0] for row in await db.fetch(_COUNT_ONCE, keys)}


_FORGET = (
    "DELETE FROM identities WHERE (kind, value, profile_id) IN "
    "(SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))"
)
# Sent and failed are final: the late outcome of a delivery whose lease had run out (and
# that another process delivered meanwhile) changes nothing, nor is it told twice.
_SETTLE = (
    "UPDATE outbox o SET status = r.status, attempts = o.attempts + 1, detail = r.detail, "
    "due_at = r.due_at, leased_until = NULL, updated_at = r.at, tell_at = r.tell_at "
    "FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[]) "
    "AS r(id, status, detail, due_at, at, tell_at) "
    "WHERE o.id = r.id AND o.status IN ('queued', 'retry')"
)
# Claims skip rows another transaction has locked: concurrent claimers never wait for
# each other, and never get the same row.
_CLAIM = (
    "UPDATE outbox o SET leased_until = $3 FROM (SELECT id FROM outbox "
    "WHERE status IN ('queued', 'retry') AND due_at <= $1 "
    "AND (leased_until IS NULL OR leased_until <= $1) "
    "ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) c "
    "WHERE o.id = c.id RETURNING o.id, o.effect, o.attempts, o.due_at"
)
# Outcomes the engine must learn (outbox.tell_at, see PostgresStore.settle_telling): due
# ones are claimed as deliveries are, and cleared by the commit that applies them.
_CLAIM_TELL = (
    "UPDATE outbox o SET tell_at = $3 FROM (SELECT id FROM outbox "
    "WHERE tell_at IS NOT NULL AND tell_at <= $1 ORDER BY tell_at, id LIMIT $2 "
    "FOR UPDATE SKIP LOCKED) c WHERE o.id = c.id "
    "RETURNING o.id, o.effect, o.status, o.detail, o.profile_id"
)
_TOLD = "UPDATE outbox SET tell_at = NULL WHERE id = ANY($1::int8[]) AND tell_at IS NOT NULL"
_WAITING = (
    "status = 'waiting' AND wake_at IS NOT NULL AND wake_at <= $1 "
    "AND (leased_until IS NULL OR leased_until <= $2)"
)
_CLAIM_DUE = (
    "UPDATE instances i SET leased_until = $4 FROM (SELECT id FROM instances "
    f"WHERE {_WAITING} ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED) c "
    "WHERE i.id = c.id RETURNING i.state"
)


# Profiles whose clock has come (Profile.wake_at), as due instances are found and claimed.
_CLOCK_DUE = (
    "wake_at IS NOT NULL AND wake_at <= $1 AND (leased_until IS NULL OR leased_until <= $2)"
)
_CLAIM_CLOCKS = (
    "UPDATE profiles p SET leased_until = $4 FROM (SELECT id FROM profiles "
    f"WHERE {_CLOCK_DUE} ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED) c "
    "WHERE p.id = c.id RETURNING p.id, p.wake_at"
)


class _Pooled(asyncpg.Connection):  # type: ignore[misc]
    """A connection of the pool, not reset when it goes back to it: the store leaves no
    session state on one (no SET, LISTEN, session lock or cursor outlives a transaction;
    an open transaction is still rolled back), so the reset would only be one more round
    trip after every query and commit."""

    def get_reset_query(self) -> str:
        return ""


class StaleOutcome(Exception):
    """A commit would apply a delivery outcome another commit has applied already."""


def parse_url(url: str) -> tuple[str, int]:
    """The server's DSN (without ``pool``) and the pool size; ValueError for a bad size."""
    parts = urlsplit(url)
    pool = DEFAULT_POOL
    settings = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "pool":
            settings.append((key, value))
        elif not value.isdigit() or int(value) < 1:
            raise ValueError(f"pool={value} in {shown_url(url)}: use a whole number from 1 up")
        else:
            pool = int(value)
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(settings))), pool


class PostgresStore(SQLDatabase, SQLRuns, SQLBackfills, SQLDrafts, ScaleOutStore):
    """A :class:`Database` in PostgreSQL, shared safely with other processes: a
    :class:`ScaleOutStore` too."""

    dialect = POSTGRES_DIALECT
    skip_locked = " FOR UPDATE SKIP LOCKED"  # two processes never claim one run or backfill
    sql = Statements.of(POSTGRES_DIALECT)

    def __init__(self, url: str) -> None:
        self.url = shown_url(url)
        self._dsn, self.pool_size = parse_url(url)
        self._pool: asyncpg.Pool | None = None
        self._writes = asyncio.Lock()
        self.applied: list[Migration] = []
        self.lease = LEASE  # how long a claim is this process's alone

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the store is not open")
        return self._pool

    # lifecycle

    async def open(self) -> None:
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT,
                connection_class=_Pooled,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise StorageUnavailable(f"cannot open {self.url}: {_reason(error)}") from None
        try:
            await self._migrate(pool)
        except asyncpg.PostgresError as error:
            await pool.close()
            raise StorageUnavailable(
                f"cannot set up the schema in {self.url}: {_reason(error)}"
            ) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        """Apply the schema steps the database lacks; refuse one from a newer version."""
        async with pool.acquire() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            found = None
            if await db.fetchval("SELECT to_regclass('meta') IS NOT NULL"):
                version = await db.fetchval("SELECT value FROM meta WHERE key = 'schema'")
                found = int(version) if version is not None else None
            for step in pending(found, POSTGRES, self.url):
                await db.execute(step.sql)
                await db.execute(
                    "INSERT INTO meta VALUES ('schema', $1) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    str(step.version),
                )
                self.applied.append(step)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One write transaction. This process's writes go one at a time, as in SQLite,
        so that two of them never wait on each other's rows."""
        async with self._writes, self.pool.acquire() as db, db.transaction():
            yield db

    @asynccontextmanager
    async def _claiming(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction that only claims (``FOR UPDATE SKIP LOCKED``): it never waits on
        a row, so it need not wait for this process's other writes either. A worker's
        timer claims then go on while its engine's batch commits, rather than after it."""
        async with self.pool.acquire() as db, db.transaction():
            yield db

    # the unit of work

    async def load(self, profile_ids: Collection[str]) -> dict[str, Snapshot]:
        ids = list(profile_ids)
        found = {pid: Snapshot(Profile(id=pid), [], new=True) for pid in ids}
        if not ids:
            return found
        async with self.pool.acquire() as db:
            profiles = await db.fetch("SELECT state FROM profiles WHERE id = ANY($1::text[])", ids)
            instances = await db.fetch(
                "SELECT state FROM instances WHERE profile_id = ANY($1::text[]) "
                "AND status <> 'ended' ORDER BY id",
                ids,
            )
        for (state,) in profiles:
            profile = decode_profile(state)
            found[profile.id] = Snapshot(profile, [])
        for (state,) in instances:
            instance = decode_instance(state)
            found[instance.profile_id].running.append(instance)
        return found

    async def resolve(self, identities: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        if not identities:
            return {}
        rows = await self.pool.fetch(
            "SELECT kind, value, profile_id FROM identities WHERE (kind, value) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))",
            *_columns(identities, 2),
        )
        return {(kind, value): pid for kind, value, pid in rows}

    async def accounts(self, account_ids: Collection[str]) -> dict[str, Account]:
        found = await self._states("accounts", account_ids, decode_account)
        return {account.id: account for account in found}

    async def seen(self, message_ids: Collection[str]) -> set[str]:
        if not message_ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT message_id FROM events WHERE message_id = ANY($1::text[])", list(message_ids)
        )
        return {row[0] for row in rows}

    async def instances(self, instance_ids: Collection[str]) -> dict[str, Instance]:
        found = await self._states("instances", instance_ids, decode_instance)
        return {instance.id: instance for instance in found}

    async def _states(
        self, table: str, ids: Collection[str], decode: Callable[[bytes], T]
    ) -> list[T]:
        """The decoded ``state`` of the rows of ``table`` with these ids, in no promised
        order."""
        if not ids:
            return []
        query = f"SELECT state FROM {table} WHERE id = ANY($1::text[])"
        return [decode(state) for (state,) in await self.pool.fetch(query, list(ids))]

    async def untold(self, outbox_ids: Collection[int]) -> set[int]:
        if not outbox_ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT id FROM outbox WHERE id = ANY($1::int8[]) AND tell_at IS NOT NULL",
            list(outbox_ids),
        )
        return {row[0] for row in rows}

    async def commit(self, changes: Changes) -> None:
        now = ms(datetime.now(UTC))
        async with self._transaction() as db:
            for anonymous, known in changes.merges:
                for statement in self.sql.merge:
                    await db.execute(statement, known, anonymous)
                # its rows in segment_members, as its stored state says (see sqlite.py)
                state = await db.fetchval(self.sql.profile, anonymous)
                if state is not None:
                    segments = list(decode_profile(state).segments)
                    await _send(db, _LEAVE, [(s, anonymous) for s in segments], 2)
                await db.execute(self.sql.drop_profile, anonymous)
            await _send(db, _FORGET, changes.forgotten, 3)
            for table, rows in commit_rows(changes, now).items():
                statement, width = _BULK[table]
                await _send(db, statement, rows, width)
            joins, leaves = membership_rows(changes)
            await _send(db, _JOIN, joins, 3)
            await _send(db, _LEAVE, leaves, 2)
            if changes.accounts:
                await _put_accounts(db, changes.accounts, now)
            if changes.tallies:
                fresh = await _count_once(db, once_keys(changes))
                await db.executemany(self.sql.add_counter, counter_rows(changes, fresh))
            await _send(db, _ADD_SIZES, size_rows(changes.events), 4)
            await _send(db, _SETTLE, _settle_rows(changes.deliveries), 6)
            if changes.told:
                await _learn(db, changes.told)

    async def keep_history(self, history: Sequence[HistoryRow], at: datetime) -> int:
        profiles, rows = kept_rows(history, at)
        async with self._transaction() as db:
            await _send(db, _KEEP_PROFILES, profiles, 3)
            if not rows:
                return 0
            status = await db.execute(_KEEP_EVENTS, *_columns(rows, 5))
        return int(status.rsplit(" ", 1)[-1])

    # timers

    async def due(self, now: datetime, limit: int) -> list[Timer]:
        # wake_at is kept in whole milliseconds: select up to the end of the current one,
        # then drop what is due later within it.
        rows = await self.pool.fetch(
            f"SELECT state FROM instances WHERE {_WAITING} ORDER BY wake_at LIMIT $3",
            wake_ms(now),
            ms(now),
            limit,
        )
        found = (decode_instance(state) for (state,) in rows)
        due: list[Timer] = [i for i in found if i.wake_at is not None and i.wake_at <= now]
        clocks = await self.pool.fetch(
            f"SELECT id, wake_at FROM profiles WHERE {_CLOCK_DUE} ORDER BY wake_at LIMIT $3",
            ms(now),
            ms(now),
            limit,
        )
        due += (ProfileClock(pid, time(wake)) for pid, wake in clocks)
        return sorted(due, key=lambda t: t.wake_at or now)[:limit]

    async def claim_due(self, now: datetime, limit: int) -> list[Timer]:
        """Like :meth:`due`, but each instance is leased to the caller for ``lease``:
        other processes skip it until the lease passes or a commit stores its next state.

        For workers sharing the database: no timer fires in two of them, and the timers of
        a worker that died mid-batch are claimed again once their lease has passed.
        """
        # Only what is due by the last whole millisecond: wake times are stored rounded up,
        # and a timer leased but not due yet would wait out its lease.
        lease = ms(now + self.lease)
        async with self._claiming() as db:
            rows = await db.fetch(_CLAIM_DUE, ms(now), ms(now), limit, lease)
            # Profile clocks get what instances left of the batch, and never less than a
            # quarter of it, so that a long backlog of waits does not starve them.
            room = max(limit - len(rows), limit // 4, 1)
            clocks = await db.fetch(_CLAIM_CLOCKS, ms(now), ms(now), room, lease)
        found = (decode_instance(state) for (state,) in rows)
        due: list[Timer] = [i for i in found if i.wake_at is not None and i.wake_at <= now]
        due += (ProfileClock(pid, time(wake)) for pid, wake in clocks)
        return sorted(due, key=lambda t: (t.wake_at or now, t.id))

    async def next_wake(self) -> datetime | None:
        # A claimed timer is due again for this process only when its lease passes. Two
        # minimums, each along its own index, rather than one over every waiting instance.
        first = await self.pool.fetchval(
            "SELECT least((SELECT min(wake_at) FROM instances WHERE status = 'waiting' "
            "AND wake_at IS NOT NULL AND leased_until IS NULL), "
            "(SELECT min(leased_until) FROM instances WHERE leased_until IS NOT NULL "
            "AND status = 'waiting'), "
            "(SELECT min(wake_at) FROM profiles WHERE wake_at IS NOT NULL "
            "AND leased_until IS NULL), "
            "(SELECT min(leased_until) FROM profiles WHERE leased_until IS NOT NULL "
            "AND wake_at IS NOT NULL))"
        )
        return time(first) if first is not None else None

    # outbox

    async def claim(self, now: datetime, limit: int) -> list[OutboxItem]:
        async with self._claiming() as db:
            rows = await db.fetch(_CLAIM, ms(now), limit, ms(now + self.lease))
        rows = sorted(rows, key=lambda row: (row["due_at"], row["id"]))
        return [
            OutboxItem(row["id"], decode_effect(row["effect"]), row["attempts"]) for row in rows
        ]

    async def settle(self, results: Sequence[Delivered]) -> None:
        async with self._transaction() as db:
            await _send(db, _SETTLE, _settle_rows(results), 6)

    # for workers

    def partition_locks(self) -> AdvisoryLocks:
        return AdvisoryLocks(self._dsn)

    def unreachable(self, error: BaseException) -> bool:
        return cannot_write_now(error)

    # outcomes for the worker that owns the profile

    async def settle_telling(
        self, results: Sequence[Delivered], telling: Sequence[Delivered], now: datetime
    ) -> None:
        """Settle ``results`` and ``telling`` in one statement, and keep the outcomes of
        ``telling`` for the engine, due to be handed on at ``now`` (see :meth:`claim_tell`).

        Settled, a row is never sent again; kept, its outcome is not lost if the process
        dies before handing it on. A row already final (another process delivered it after
        this one's lease ran out) stays as it is, and its outcome is not kept twice.
        """
        rows = [*_settle_rows(results), *_settle_rows(telling, tell_at=now)]
        async with self._transaction() as db:
            await _send(db, _SETTLE, rows, 6)

    async def claim_tell(self, now: datetime, limit: int) -> list[ToTell]:
        """Outcomes due to be handed on, each leased to the caller for ``lease``: another
        process takes them up after it unless the commit that applies them came first."""
        async with self._claiming() as db:
            rows = await db.fetch(_CLAIM_TELL, ms(now), limit, ms(now + self.lease))
        found = [
            ToTell(r["id"], decode_effect(r["effect"]), r["status"], r["detail"], r["profile_id"])
            for r in rows
        ]
        return sorted(found, key=lambda t: t.id)

    async def tell_again(self, outbox_ids: Collection[int], at: datetime) -> None:
        """Make claimed outcomes that could not be handed on due again at ``at``."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE outbox SET tell_at = $2 WHERE id = ANY($1::int8[]) AND tell_at IS NOT NULL",
                list(outbox_ids),
                ms(at),
            )

    # the primitives of SQLDatabase

    async def _rows(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(query, *args)
        return rows

    async def _value(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)

    async def _write(self, query: str, *args: Any) -> Any:
        async with self._transaction() as db:
            return await db.fetchval(query, *args)

    async def _write_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self._transaction() as db:
            await db.executemany(query, rows)

    async def publish_workspace(self, workspace: PublishedWorkspace) -> int:
        async with self._transaction() as db:
            # One publish at a time: the next number is taken under the table's lock.
            await db.execute("LOCK TABLE workspaces IN EXCLUSIVE MODE")
            version: int = await db.fetchval(self.sql.publish_workspace, *workspace_row(workspace))
        return version

    async def profiles_with_trait(self, trait: str, value: str, limit: int) -> list[str]:
        # Profiles are stored encoded: find the ones holding the text, then check the trait.
        found: list[str] = []
        async with self.pool.acquire() as db, db.transaction():
            query = "SELECT state FROM profiles WHERE position($1::bytea in state) > 0"
            async for (state,) in db.cursor(query, value.encode()):
                profile_id = with_trait(state, trait, value)
                if profile_id is not None:
                    found.append(profile_id)
                    if len(found) >= limit:
                        break
        return found


class AdvisoryLocks(PartitionLocks):
    """:class:`PartitionLocks` as session advisory locks (two-key ones, so that they never
    meet the one-key migration lock), on a connection of their own."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._db: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._db is not None and not self._db.is_closed()

    async def connect(self) -> None:
        self._db = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                await db.close(timeout=5)
            except Exception:
                db.terminate()

    def drop(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.terminate()

    async def take(self, space: int, key: int) -> bool:
        taken: bool = await self._connection().fetchval(
            "SELECT pg_try_advisory_lock($1, $2)", space, key
        )
        return taken

    async def release(self, space: int, key: int) -> None:
        await self._connection().execute("SELECT pg_advisory_unlock($1, $2)", space, key)

    async def held(self, space: int) -> set[int]:
        rows = await self._connection().fetch(_HELD, space)
        return {int(row[0]) for row in rows}

    async def holders(self, space: int) -> int:
        count: int = await self._connection().fetchval(_HOLDERS, space)
        return count

    def _connection(self) -> asyncpg.Connection:
        if self._db is None:
            raise ConnectionError("the connection for the locks is not open")
        return self._db


def cannot_write_now(error: BaseException) -> bool:
    """Whether PostgreSQL failed for not being able to take work now, whatever was asked of
    it: unreachable, shutting down, full, a standby, or a transaction that lost a race. The
    same work may well succeed later, so the API answers 503 and a worker tries the message
    again without counting it against the message.

    Anything else (a bad value, a broken constraint) is the work's own fault and fails
    again on every try: asyncpg's ``DataError`` for a value it cannot send is an
    ``InterfaceError`` too, but not one that says the connection or the pool is closed.
    """
    if type(error) is asyncpg.InterfaceError:  # the connection or the pool is closed
        return True
    return isinstance(error, _CANNOT_WRITE_NOW)


# What says the database cannot take work now (see cannot_write_now).
_CANNOT_WRITE_NOW = (
    StorageUnavailable,  # the pool could not be opened
    OSError,  # refused, reset, unreachable; TimeoutError among them
    asyncpg.PostgresConnectionError,  # the connection is lost or was never made
    asyncpg.CannotConnectNowError,  # the server is starting up
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InsufficientResourcesError,  # disk full, out of memory, too many connections
    asyncpg.TransactionRollbackError,  # a serialization failure or a deadlock
    asyncpg.QueryCanceledError,  # a statement timeout, or cancelled by an operator
    asyncpg.LockNotAvailableError,
    asyncpg.ReadOnlySQLTransactionError,  # a standby, during a failover
)


# Two-key advisory locks: classid is the space, objid the key, objsubid 2.
_HOLDERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
    "AND objsubid = 2 AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
_HELD = (
    "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
    "AND objsubid = 2 AND granted AND pid = pg_backend_pid()"
)


async def _send(
    db: asyncpg.Connection, statement: str, rows: Sequence[Sequence[Any]], width: int
) -> None:
    """Run a statement that takes its rows as ``width`` arrays; nothing for no rows."""
    if rows:
        await db.execute(statement, *_columns(rows, width))


async def _put_accounts(
    db: asyncpg.Connection, patches: dict[str, dict[str, Any]], now: int
) -> None:
    """Merge each account's changed traits into the stored ones, under a row lock: two
    workers that change one account at once (its members are in different partitions)
    each keep their keys. Every row is made first, so that the lock has a row to hold;
    in id order, so that two commits never wait on each other."""
    ids = sorted(patches)
    empty = encode(Account(id=""))  # a placeholder: replaced below, in this transaction
    await db.execute(
        "INSERT INTO accounts (id, state, updated_at) SELECT unnest($1::text[]), $2, $3 "
        "ON CONFLICT (id) DO NOTHING",
        ids,
        empty,
        now,
    )
    rows = await db.fetch(
        "SELECT id, state FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids
    )
    traits = {account_id: decode_account(state).traits for account_id, state in rows}
    merged = [(i, encode(Account(id=i, traits=traits[i]).patched(patches[i])), now) for i in ids]
    await db.executemany("UPDATE accounts SET state = $2, updated_at = $3 WHERE id = $1", merged)


async def _learn(db: asyncpg.Connection, told: list[int]) -> None:
    """Mark outcomes as learned; raise if one was learned already, by a worker that owned
    the partition a moment ago and had checked it before this one's commit."""
    status = await db.execute(_TOLD, told)
    if status != f"UPDATE {len(set(told))}":
        raise StaleOutcome(f"another commit applied some of the outcomes {sorted(told)}")


def _columns(rows: Collection[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _settle_rows(
    results: Sequence[Delivered], tell_at: datetime | None = None
) -> list[tuple[Any, ...]]:
    tell = ms(tell_at) if tell_at is not None else None
    return [(r.id, r.status, r.detail, ms(r.retry_at or r.at), ms(r.at), tell) for r in results]


def _reason(error: BaseException) -> str:
    """Why a connection failed, in one line."""
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())
