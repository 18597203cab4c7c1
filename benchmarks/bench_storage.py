"""PostgreSQL drivers on the storage hot path: asyncpg against psycopg 3 (async).

Measures what the runtime asks of the database for every batch of events: ``commit`` of a
batch of 200 events (200 event rows, 200 profile upserts, 200 instance upserts, 600 step
records and 200 outbox rows, in one transaction) and ``load`` of 200 profiles with their
running instances. Both drivers run the same SQL on the same schema (journeyman's own) in
a throwaway database, one connection each; asyncpg is also timed with the batch sent as
arrays (``unnest``), one statement per table. The numbers chose asyncpg for
:mod:`journeyman.storage.postgres`.

Needs a PostgreSQL server: ``JOURNEYMAN_BENCH_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``); psycopg 3 comes with the ``bench``
extra. Run with ``python benchmarks/bench_storage.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from journeyman.domain.core import Changes
from journeyman.domain.state import Event, Instance, Profile, SendMessage, StepRecord
from journeyman.storage import Store, open_store
from journeyman.storage.codec import encode, instance_row, ms, outbox_row
from journeyman.storage.migrations import POSTGRES

SERVER = os.environ.get(
    "JOURNEYMAN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BATCH = 200
ROUNDS = 40
START = datetime(2026, 1, 5, tzinfo=UTC)

EVENTS = (
    "INSERT INTO events (message_id, profile_id, name, body, received_at) "
    "VALUES ($1, $2, $3, $4, $5)"
)
PROFILES = (
    "INSERT INTO profiles (id, state, updated_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)
INSTANCES = (
    "INSERT INTO instances (id, profile_id, journey, version, step, status, wake_at, state, "
    "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET "
    "step = excluded.step, status = excluded.status, wake_at = excluded.wake_at, "
    "state = excluded.state, updated_at = excluded.updated_at"
)
OUTBOX = (
    "INSERT INTO outbox (key, kind, channel, journey, step, profile_id, instance_id, effect, "
    "status, due_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', "
    "$9, $10, $11) ON CONFLICT (key) DO NOTHING"
)
STEPS = (
    "INSERT INTO steps (profile_id, instance_id, journey, step, outcome, detail, at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
LOAD_PROFILES = "SELECT state FROM profiles WHERE id = ANY($1)"
LOAD_INSTANCES = (
    "SELECT state FROM instances WHERE profile_id = ANY($1) AND status <> 'ended' ORDER BY id"
)

# The unnest form: each column as one array, one statement per table.
UNNEST = {
    EVENTS: "text[], text[], text[], bytea[], int8[]",
    PROFILES: "text[], bytea[], int8[]",
    INSTANCES: "text[], text[], text[], int4[], text[], text[], int8[], bytea[], int8[]",
    OUTBOX: "text[], text[], text[], text[], text[], text[], text[], bytea[], "
    "int8[], int8[], int8[]",
    STEPS: "text[], text[], text[], text[], text[], text[], int8[]",
}


Signup = tuple[Event, Profile, Instance, SendMessage]


def signups(tag: str) -> list[Signup]:
    """One batch of sign-ups: every profile enters a journey, is sent to, and waits."""
    found = []
    for n in range(BATCH):
        pid = f"{tag}-{n}"
        event = Event(
            name="signed_up",
            profile_id=pid,
            timestamp=START,
            properties={"plan": "pro"},
            message_id=f"m-{pid}",
            user_id=pid,
        )
        profile = Profile(
            id=pid, traits={"email": f"{pid}@example.com", "firstName": "Ada", "plan": "pro"}
        )
        instance = Instance(
            id=f"{pid}:welcome:1",
            journey="welcome",
            version=1,
            profile_id=pid,
            entered_at=START,
            entry=event,
            step="pause",
            status="waiting",
            waiting="timer",
            wake_at=START + timedelta(days=1),
            seq=3,
        )
        send = SendMessage(
            key=f"{instance.id}:greet:1",
            instance_id=instance.id,
            journey="welcome",
            step="greet",
            profile_id=pid,
            channel="email",
            template="welcome",
            to=f"{pid}@example.com",
            content={"subject": "Hi Ada, welcome to pro", "text": "Thank you for signing up." * 4},
            at=START,
        )
        found.append((event, profile, instance, send))
    return found


OUTCOMES = (("", "entered"), ("greet", "sent"), ("pause", "waiting"))


def batch(tag: str) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of one batch, statement by statement."""
    now = ms(datetime.now(UTC))
    rows: dict[str, list[tuple[Any, ...]]] = {key: [] for key in UNNEST}
    for event, profile, instance, send in signups(tag):
        pid = profile.id
        rows[EVENTS].append((event.message_id, pid, event.name, encode(event), now))
        rows[PROFILES].append((pid, encode(profile), now))
        rows[INSTANCES].append(instance_row(instance, now))
        rows[OUTBOX].append(outbox_row(send, now))
        for step, outcome in OUTCOMES:
            rows[STEPS].append((pid, instance.id, "welcome", step, outcome, "", now))
    return rows


def store_batch(tag: str) -> Changes:
    """The same changes as the runtime hands them to :meth:`Store.commit`."""
    now = datetime.now(UTC)
    found = Changes(at=now)
    for event, profile, instance, send in signups(tag):
        found.events.append(event)
        found.profiles[profile.id] = profile
        found.instances[instance.id] = instance
        found.effects.append(send)
        found.records += [
            StepRecord(
                at=now,
                profile_id=profile.id,
                journey="welcome",
                instance_id=instance.id,
                step=step or None,
                outcome=outcome,
            )
            for step, outcome in OUTCOMES
        ]
    return found


async def store_commit(store: Store, found: Changes) -> None:
    await store.commit(found)


async def store_load(store: Store, ids: list[str]) -> int:
    snapshots = await store.load(ids)
    return sum(1 + len(s.running) for s in snapshots.values() if not s.new)


def unnest(statement: str) -> str:
    """The statement with its VALUES taken from arrays, one per column."""
    types = UNNEST[statement].split(", ")
    arrays = ", ".join(f"${n}::{t}" for n, t in enumerate(types, 1))
    values = re.search(r"VALUES \((.*?)\)( ON CONFLICT|$)", statement)
    assert values is not None
    fixed = iter(range(1, len(types) + 1))
    columns = [c if c.startswith("'") else f"c{next(fixed)}" for c in values.group(1).split(", ")]
    names = ", ".join(f"c{n}" for n in range(1, len(types) + 1))
    select = f"SELECT {', '.join(columns)} FROM unnest({arrays}) AS t({names})"
    return statement.replace(f"VALUES ({values.group(1)})", select)


async def asyncpg_commit(db: asyncpg.Connection, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    async with db.transaction():
        for statement, args in rows.items():
            await db.executemany(statement, args)


async def asyncpg_unnest_commit(
    db: asyncpg.Connection, rows: dict[str, list[tuple[Any, ...]]]
) -> None:
    async with db.transaction():
        for statement, args in rows.items():
            await db.execute(
                unnest(statement), *(list(column) for column in zip(*args, strict=True))
            )


async def asyncpg_load(db: asyncpg.Connection, ids: list[str]) -> int:
    profiles = await db.fetch(LOAD_PROFILES, ids)
    instances = await db.fetch(LOAD_INSTANCES, ids)
    return len(profiles) + len(instances)


def psycopg_sql(statement: str) -> str:
    return re.sub(r"\$\d+", "%s", statement)


async def psycopg_commit(db: Any, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    async with db.transaction(), db.cursor() as cursor:
        for statement, args in rows.items():
            await cursor.executemany(psycopg_sql(statement), args)


async def psycopg_unnest_commit(db: Any, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    async with db.transaction(), db.cursor() as cursor:
        for statement, args in rows.items():
            columns = [list(column) for column in zip(*args, strict=True)]
            await cursor.execute(psycopg_sql(unnest(statement)), columns)


async def psycopg_load(db: Any, ids: list[str]) -> int:
    async with db.cursor(binary=True) as cursor:
        await cursor.execute(psycopg_sql(LOAD_PROFILES), (ids,))
        profiles = await cursor.fetchall()
        await cursor.execute(psycopg_sql(LOAD_INSTANCES), (ids,))
        instances = await cursor.fetchall()
    return len(profiles) + len(instances)


@asynccontextmanager
async def scratch_database(schema: bool = True) -> AsyncIterator[str]:
    """A fresh database (with journeyman's schema), dropped afterwards: its URL."""
    name = f"jm_test_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(SERVER)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = SERVER.rsplit("/", 1)[0] + f"/{name}"
    try:
        db = await asyncpg.connect(url)
        for step in POSTGRES if schema else []:
            await db.execute(step.sql)
        await db.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


Commit = Callable[[Any, Any], Awaitable[None]]
Load = Callable[[Any, list[str]], Awaitable[int]]


async def measure(
    db: Any, tag: str, commit: Commit, load: Load, make: Callable[[str], Any] = batch
) -> tuple[float, float]:
    """Median milliseconds of one commit and of one load, over ``ROUNDS`` batches."""
    commits, loads = [], []
    for round in range(ROUNDS):
        rows = make(f"{tag}{round}")
        began = time.perf_counter()
        await commit(db, rows)
        commits.append(time.perf_counter() - began)
        ids = [f"{tag}{round}-{n}" for n in range(BATCH)]
        began = time.perf_counter()
        assert await load(db, ids) == 2 * BATCH
        loads.append(time.perf_counter() - began)
    return statistics.median(commits) * 1000, statistics.median(loads) * 1000


async def measure_all() -> dict[str, tuple[float, float]]:
    try:
        import psycopg
    except ImportError:
        print("  psycopg 3 is not installed (pip install -e '.[bench]'): asyncpg only")
        psycopg = None

    found = {}
    async with scratch_database() as url:
        db = await asyncpg.connect(url)
        await measure(db, "warm", asyncpg_commit, asyncpg_load)
        found["asyncpg"] = await measure(db, "a", asyncpg_commit, asyncpg_load)
        found["asyncpg, unnest"] = await measure(db, "u", asyncpg_unnest_commit, asyncpg_load)
        await db.close()
        if psycopg is None:
            return found
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await measure(conn, "pwarm", psycopg_commit, psycopg_load)
            found["psycopg 3"] = await measure(conn, "p", psycopg_commit, psycopg_load)
            found["psycopg 3, unnest"] = await measure(
                conn, "q", psycopg_unnest_commit, psycopg_load
            )
    async with scratch_database(schema=False) as url:
        found["journeyman's PostgresStore"] = await measure_store(open_store(url))
    with tempfile.TemporaryDirectory() as folder:
        found["journeyman's SQLiteStore"] = await measure_store(
            open_store(f"sqlite:///{folder}/j.db")
        )
    return found


async def measure_store(store: Store) -> tuple[float, float]:
    """The same batches through the runtime's own interface (an empty database first)."""
    await store.open()
    try:
        await measure(store, "warm", store_commit, store_load, store_batch)
        return await measure(store, "s", store_commit, store_load, store_batch)
    finally:
        await store.close()


def run() -> list[tuple[str, float, str]]:
    try:
        found = asyncio.run(measure_all())
    except (OSError, asyncpg.PostgresError) as error:
        # The other benchmarks need no server: report this one missing rather than fail all.
        print(f"  no PostgreSQL at {SERVER} ($JOURNEYMAN_BENCH_POSTGRES): {error}")
        return []
    rows = []
    for driver, (commit, load) in found.items():
        what = f"median of {ROUNDS} rounds, one connection, PostgreSQL on 127.0.0.1"
        if "Store" in driver:
            what = f"median of {ROUNDS} rounds, through Store.commit and Store.load"
        batch_rows = "200 event, profile, instance and outbox rows, 600 step records"
        database = "SQLite" if "SQLite" in driver else "PostgreSQL"
        rows.append(
            (f"{database} commit of {BATCH} events, {driver}", commit, f"{what}: {batch_rows}")
        )
        if "unnest" not in driver:  # the same queries: loading does not send arrays
            profiles = "profiles and their running instances, two queries"
            rows.append(
                (f"{database} load of {BATCH} profiles, {driver}", load, f"{what}: {profiles}")
            )
    return rows


if __name__ == "__main__":
    for label, value, note in run():
        print(f"{label}: {value:.2f} ms  ({note})")
