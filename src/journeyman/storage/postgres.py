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
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from journeyman.domain.state import Effect, Instance, Profile, StepRecord
from journeyman.storage import shown_url
from journeyman.storage.base import (
    LEASE,
    LEFT,
    Batch,
    DeadLetter,
    Delivered,
    MessageRow,
    OutboxItem,
    PublishedJourney,
    PublishedWorkspace,
    Snapshot,
    StorageUnavailable,
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
from journeyman.storage.migrations import POSTGRES, Migration, pending

__all__ = ["DEFAULT_POOL", "PostgresStore", "StaleOutcome", "ToTell", "parse_url"]

DEFAULT_POOL = 10
CONNECT_TIMEOUT = 10.0  # seconds: an unreachable server is reported, not waited for
# Any number will do, as long as it is journeyman's own: opening processes take turns to
# migrate the schema while holding this advisory lock.
_MIGRATION_LOCK = 0x6A6F75726E


def _bulk(table: str, columns: str, tail: str = "", **constants: str) -> str:
    """An INSERT of rows sent as one array per column, in the order they were given.

    ``columns`` is "name type, name type, ..."; ``constants`` are columns with one value.
    """
    pairs = [column.split() for column in columns.split(", ")]
    names = [name for name, _ in pairs]
    arrays = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(pairs, 1))
    into = ", ".join([*names, *constants])
    values = ", ".join([*(f"r.{name}" for name in names), *constants.values()])
    return (
        f"INSERT INTO {table} ({into}) SELECT {values} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS r({', '.join(names)}, ord) ORDER BY r.ord {tail}"
    )


_EVENTS = _bulk(
    "events", "message_id text, profile_id text, name text, body bytea, received_at int8"
)
_PROFILES = _bulk(
    "profiles",
    "id text, state bytea, updated_at int8",
    "ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
)
_IDENTITIES = _bulk(
    "identities",
    "kind text, value text, profile_id text",
    "ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id",
)
_INSTANCES = _bulk(
    "instances",
    "id text, profile_id text, journey text, version int4, step text, status text, "
    "wake_at int8, state bytea, updated_at int8",
    "ON CONFLICT (id) DO UPDATE SET profile_id = excluded.profile_id, step = excluded.step, "
    "status = excluded.status, wake_at = excluded.wake_at, state = excluded.state, "
    "updated_at = excluded.updated_at, leased_until = NULL",
)
_OUTBOX = _bulk(
    "outbox",
    "key text, kind text, channel text, journey text, step text, profile_id text, "
    "instance_id text, effect bytea, due_at int8, created_at int8, updated_at int8",
    "ON CONFLICT (key) DO NOTHING",
    status="'queued'",
)
_STEPS = _bulk(
    "steps",
    "profile_id text, instance_id text, journey text, step text, outcome text, detail text, "
    "at int8",
)
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


class ToTell(NamedTuple):
    """A settled delivery whose outcome its profile's worker has still to learn."""

    id: int  # the outbox row
    effect: Effect
    status: str  # sent or failed
    detail: str
    # The profile that has the instance now: the effect's, unless an identify merged it
    # into a known profile since (the merge moves the outbox rows with the instances).
    profile_id: str


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


class PostgresStore(Store):
    """A :class:`Store` in a PostgreSQL database, shared safely with other processes."""

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
                self._dsn, min_size=1, max_size=self.pool_size, timeout=CONNECT_TIMEOUT
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

    async def seen(self, message_ids: Collection[str]) -> set[str]:
        if not message_ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT message_id FROM events WHERE message_id = ANY($1::text[])", list(message_ids)
        )
        return {row[0] for row in rows}

    async def untold(self, outbox_ids: Collection[int]) -> set[int]:
        if not outbox_ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT id FROM outbox WHERE id = ANY($1::int8[]) AND tell_at IS NOT NULL",
            list(outbox_ids),
        )
        return {row[0] for row in rows}

    async def commit(self, batch: Batch) -> None:
        now = ms(datetime.now(UTC))
        events = [
            (
                s.event.message_id,
                s.event.profile_id,
                s.event.name,
                encode(s.event),
                ms(s.received_at),
            )
            for s in batch.events
        ]
        records = [
            (r.profile_id, r.instance_id, r.journey, r.step, r.outcome, r.detail, ms(r.at))
            for r in batch.records
        ]
        async with self._transaction() as db:
            for anonymous, known in batch.merges:
                await _merge(db, anonymous, known)
            await _send(db, _FORGET, batch.forgotten, 3)
            await _send(db, _EVENTS, events, 5)
            await _send(db, _PROFILES, [(p.id, encode(p), now) for p in batch.profiles.values()], 3)
            identities = [(kind, value, pid) for (kind, value), pid in batch.identities.items()]
            await _send(db, _IDENTITIES, identities, 3)
            await _send(db, _INSTANCES, [instance_row(i, now) for i in batch.instances.values()], 9)
            await _send(db, _OUTBOX, [outbox_row(e, now) for e in batch.effects], 11)
            await _send(db, _STEPS, records, 7)
            await _send(db, _SETTLE, _settle_rows(batch.deliveries), 6)
            if batch.told:
                await _learn(db, batch.told)

    # timers

    async def due(self, now: datetime, limit: int) -> list[Instance]:
        # wake_at is kept in whole milliseconds: select up to the end of the current one,
        # then drop what is due later within it.
        rows = await self.pool.fetch(
            f"SELECT state FROM instances WHERE {_WAITING} ORDER BY wake_at LIMIT $3",
            wake_ms(now),
            ms(now),
            limit,
        )
        found = (decode_instance(state) for (state,) in rows)
        return [i for i in found if i.wake_at is not None and i.wake_at <= now]

    async def claim_due(self, now: datetime, limit: int) -> list[Instance]:
        """Like :meth:`due`, but each instance is leased to the caller for ``lease``:
        other processes skip it until the lease passes or a commit stores its next state.

        For workers sharing the database: no timer fires in two of them, and the timers of
        a worker that died mid-batch are claimed again once their lease has passed.
        """
        # Only what is due by the last whole millisecond: wake times are stored rounded up,
        # and a timer leased but not due yet would wait out its lease.
        async with self._transaction() as db:
            rows = await db.fetch(_CLAIM_DUE, ms(now), ms(now), limit, ms(now + self.lease))
        found = (decode_instance(state) for (state,) in rows)
        due = [i for i in found if i.wake_at is not None and i.wake_at <= now]
        return sorted(due, key=lambda i: (i.wake_at or now, i.id))

    async def next_wake(self) -> datetime | None:
        # A claimed timer is due again for this process only when its lease passes. Two
        # minimums, each along its own index, rather than one over every waiting instance.
        first = await self.pool.fetchval(
            "SELECT least((SELECT min(wake_at) FROM instances WHERE status = 'waiting' "
            "AND wake_at IS NOT NULL AND leased_until IS NULL), "
            "(SELECT min(leased_until) FROM instances WHERE leased_until IS NOT NULL "
            "AND status = 'waiting'))"
        )
        return time(first) if first is not None else None

    # outbox

    async def claim(self, now: datetime, limit: int) -> list[OutboxItem]:
        async with self._transaction() as db:
            rows = await db.fetch(_CLAIM, ms(now), limit, ms(now + self.lease))
        rows = sorted(rows, key=lambda row: (row["due_at"], row["id"]))
        return [
            OutboxItem(row["id"], decode_effect(row["effect"]), row["attempts"]) for row in rows
        ]

    async def settle(self, results: Sequence[Delivered]) -> None:
        async with self._transaction() as db:
            await _send(db, _SETTLE, _settle_rows(results), 6)

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
        async with self._transaction() as db:
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

    # reading

    async def instance(self, instance_id: str) -> Instance | None:
        state = await self.pool.fetchval("SELECT state FROM instances WHERE id = $1", instance_id)
        return decode_instance(state) if state is not None else None

    async def instances_of(self, profile_id: str) -> list[Instance]:
        rows = await self.pool.fetch(
            "SELECT state FROM instances WHERE profile_id = $1 ORDER BY seq DESC", profile_id
        )
        return [decode_instance(state) for (state,) in rows]

    async def profile(self, profile_id: str) -> Profile | None:
        state = await self.pool.fetchval("SELECT state FROM profiles WHERE id = $1", profile_id)
        return decode_profile(state) if state is not None else None

    async def messages(
        self,
        profile: str | None = None,
        journey: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[MessageRow]:
        clauses, args = [], []
        for column, value in (("profile_id", profile), ("journey", journey), ("status", status)):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.pool.fetch(
            "SELECT key, kind, channel, journey, step, profile_id, instance_id, status, "
            f"attempts, detail, created_at, updated_at, effect FROM outbox {where} "
            f"ORDER BY id DESC LIMIT ${len(args) + 1}",
            *args,
            limit,
        )
        return [message_row(tuple(row)) for row in rows]

    async def trace(self, profile_id: str, limit: int = 1000) -> list[StepRecord]:
        rows = await self.pool.fetch(
            "SELECT profile_id, instance_id, journey, step, outcome, detail, at FROM steps "
            "WHERE profile_id = $1 ORDER BY seq LIMIT $2",
            profile_id,
            limit,
        )
        return [
            StepRecord(
                profile_id=p, instance_id=i, journey=j, step=s, outcome=o, detail=d, at=time(at)
            )
            for p, i, j, s, o, d, at in rows
        ]

    async def entries_since(self, journey: str, since: datetime) -> int:
        count = await self.pool.fetchval(
            "SELECT count(*) FROM steps WHERE journey = $1 AND step IS NULL "
            "AND outcome = 'entered' AND at >= $2",
            journey,
            ms(since),
        )
        return int(count)

    async def profiles_with_trait(self, trait: str, value: str, limit: int) -> list[str]:
        # Profiles are stored encoded: find the ones holding the text, then check the trait.
        found: list[str] = []
        async with self.pool.acquire() as db, db.transaction():
            cursor = db.cursor(
                "SELECT state FROM profiles WHERE position($1::bytea in state) > 0",
                value.encode(),
            )
            async for (state,) in cursor:
                profile = decode_profile(state)
                if profile.traits.get(trait) == value:
                    found.append(profile.id)
                    if len(found) >= limit:
                        break
        return found

    async def step_records(
        self, journey: str, step: str | None, limit: int, version: int | None = None
    ) -> list[StepRecord]:
        of_version = "" if version is None else _of_version(4)
        args = (journey, step, limit) if version is None else (journey, step, limit, version)
        rows = await self.pool.fetch(
            "SELECT profile_id, instance_id, journey, step, outcome, detail, at FROM steps s "
            f"WHERE journey = $1 AND step IS NOT DISTINCT FROM $2 {of_version}"
            "ORDER BY seq DESC LIMIT $3",
            *args,
        )
        return [
            StepRecord(
                profile_id=p, instance_id=i, journey=j, step=s, outcome=o, detail=d, at=time(at)
            )
            for p, i, j, s, o, d, at in rows
        ]

    async def history(self, profile_id: str, limit: int = 100) -> list[StoredEvent]:
        rows = await self.pool.fetch(
            "SELECT body, received_at FROM events WHERE profile_id = $1 ORDER BY seq DESC LIMIT $2",
            profile_id,
            limit,
        )
        return [StoredEvent(decode_event(body), time(received)) for body, received in rows]

    # journey versions

    async def published(self) -> dict[str, PublishedJourney]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (name) name, version, digest, document FROM journeys "
            "ORDER BY name, version DESC"
        )
        return {
            name: PublishedJourney(name, version, digest, msgspec.json.decode(document))
            for name, version, digest, document in rows
        }

    async def publish(self, journeys: Sequence[PublishedJourney]) -> None:
        now = ms(datetime.now(UTC))
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO journeys (name, version, digest, document, published_at) "
                "VALUES ($1, $2, $3, $4, $5)",
                [
                    (j.name, j.version, j.digest, msgspec.json.encode(j.document), now)
                    for j in journeys
                ],
            )

    async def journey_document(self, name: str, version: int) -> dict[str, Any] | None:
        document = await self.pool.fetchval(
            "SELECT document FROM journeys WHERE name = $1 AND version = $2", name, version
        )
        return msgspec.json.decode(document) if document is not None else None

    async def versions_in_use(self) -> list[tuple[str, int]]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT journey, version FROM instances WHERE status <> 'ended' ORDER BY 1, 2"
        )
        return [(name, version) for name, version in rows]

    async def journey_states(self) -> dict[str, str]:
        rows = await self.pool.fetch("SELECT name, state FROM journey_states")
        return dict(rows)

    async def set_journey_state(self, name: str, state: str) -> None:
        async with self._transaction() as db:
            if state == "active":
                await db.execute("DELETE FROM journey_states WHERE name = $1", name)
            else:
                await db.execute(
                    "INSERT INTO journey_states VALUES ($1, $2) "
                    "ON CONFLICT (name) DO UPDATE SET state = excluded.state",
                    name,
                    state,
                )

    async def running_of(self, journey: str, limit: int, after: str = "") -> list[Instance]:
        rows = await self.pool.fetch(
            "SELECT state FROM instances WHERE journey = $1 AND status <> 'ended' AND id > $3 "
            "ORDER BY id LIMIT $2",
            journey,
            limit,
            after,
        )
        return [decode_instance(state) for (state,) in rows]

    async def step_counts(
        self, journey: str, version: int | None = None
    ) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        args: list[Any] = [journey]
        of_version = ""
        if version is not None:
            of_version = _of_version(2)
            args.append(version)
        async with self.pool.acquire() as db:
            records = await db.fetch(
                "SELECT coalesce(s.step, ''), s.outcome, count(*), "
                f"count(*) FILTER (WHERE {LEFT}) FROM steps s "
                f"WHERE s.journey = $1 {of_version}GROUP BY s.step, s.outcome",
                *args,
            )
            waiting = await db.fetch(
                "SELECT step, count(*) FROM instances WHERE journey = $1 AND status = 'waiting' "
                f"{'AND version = $2 ' if version is not None else ''}GROUP BY step",
                *args,
            )
        for step, outcome, count, left in records:
            counts.setdefault(step, {})[outcome] = count
            if left:
                counts[step]["left"] = counts[step].get("left", 0) + left
        for step, count in waiting:
            counts.setdefault(step, {})["waiting_now"] = count
        return counts

    async def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        rows = await self.pool.fetch(
            "SELECT kind, value FROM identities WHERE profile_id = $1 ORDER BY 1, 2", profile_id
        )
        return [(kind, value) for kind, value in rows]

    async def instance_counts(self) -> dict[tuple[str, str], int]:
        rows = await self.pool.fetch(
            "SELECT journey, status, count(*) FROM instances GROUP BY 1, 2"
        )
        return {(journey, status): count for journey, status, count in rows}

    async def get_setting(self, key: str) -> str | None:
        value: str | None = await self.pool.fetchval(
            "SELECT value FROM meta WHERE key = $1", f"setting:{key}"
        )
        return value

    async def set_setting(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO meta VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                f"setting:{key}",
                value,
            )

    # dead letters

    async def add_dead_letter(self, letter: DeadLetter) -> int:
        async with self._transaction() as db:
            letter_id: int = await db.fetchval(
                "INSERT INTO dead_letters (partition_no, headers, body, error, attempts, "
                "first_failed_at, last_failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) "
                "RETURNING id",
                *dead_letter_row(letter),
            )
        return letter_id

    async def dead_letters(self, limit: int = 100) -> tuple[int, list[DeadLetter]]:
        count = await self.pool.fetchval("SELECT count(*) FROM dead_letters")
        rows = await self.pool.fetch(
            f"SELECT {DEAD_LETTER} FROM dead_letters ORDER BY id DESC LIMIT $1", limit
        )
        return count, [dead_letter(row) for row in rows]

    async def dead_letter(self, letter_id: int) -> DeadLetter | None:
        row = await self.pool.fetchrow(
            f"SELECT {DEAD_LETTER} FROM dead_letters WHERE id = $1", letter_id
        )
        return dead_letter(row) if row is not None else None

    async def delete_dead_letter(self, letter_id: int) -> bool:
        async with self._transaction() as db:
            done = await db.execute("DELETE FROM dead_letters WHERE id = $1", letter_id)
        return bool(done != "DELETE 0")

    # workspace versions: the whole workspace of each publish (see Store.publish_workspace)

    async def publish_workspace(self, workspace: PublishedWorkspace) -> int:
        async with self._transaction() as db:
            # One publish at a time: the next number is taken under the table's lock.
            await db.execute("LOCK TABLE workspaces IN EXCLUSIVE MODE")
            version: int = await db.fetchval(
                "INSERT INTO workspaces (version, digest, files, journeys, published_at) "
                "SELECT coalesce(max(version), 0) + 1, $1, $2, $3, $4 FROM workspaces "
                "RETURNING version",
                workspace.digest,
                msgspec.json.encode(workspace.files),
                msgspec.json.encode(workspace.journeys).decode(),
                ms(datetime.now(UTC)),
            )
        return version

    async def published_workspace(self, version: int | None = None) -> PublishedWorkspace | None:
        row = await self.pool.fetchrow(
            "SELECT version, digest, files, journeys FROM workspaces "
            "WHERE version = coalesce($1, (SELECT max(version) FROM workspaces))",
            version,
        )
        if row is None:
            return None
        number, digest, files, journeys = row
        return PublishedWorkspace(
            number, digest, msgspec.json.decode(files), msgspec.json.decode(journeys)
        )

    async def workspace_version(self) -> int:
        found = await self.pool.fetchval("SELECT max(version) FROM workspaces")
        return int(found or 0)

    async def workspace_journeys(self) -> dict[int, dict[str, int]]:
        rows = await self.pool.fetch("SELECT version, journeys FROM workspaces")
        return {version: msgspec.json.decode(journeys) for version, journeys in rows}


async def _merge(db: asyncpg.Connection, anonymous: str, known: str) -> None:
    """Move everything of the anonymous profile to the known one, and drop it."""
    for table in ("events", "steps", "outbox", "instances", "identities"):
        await db.execute(
            f"UPDATE {table} SET profile_id = $1 WHERE profile_id = $2", known, anonymous
        )
    await db.execute("DELETE FROM profiles WHERE id = $1", anonymous)


async def _send(
    db: asyncpg.Connection, statement: str, rows: Sequence[Sequence[Any]], width: int
) -> None:
    """Run a statement that takes its rows as ``width`` arrays; nothing for no rows."""
    if rows:
        await db.execute(statement, *_columns(rows, width))


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


def _of_version(number: int) -> str:
    """A step record (steps s) is of its instance's version, parameter ``$number``; a
    refused entry has no instance."""
    return (
        "AND (s.instance_id IS NULL OR EXISTS (SELECT 1 FROM instances i "
        f"WHERE i.id = s.instance_id AND i.version = ${number})) "
    )
