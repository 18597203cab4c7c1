"""Move a SQLite deployment into PostgreSQL: ``journeyman migrate --from sqlite:///x.db``.

Both backends keep the same tables with the same encoding, so the move is a copy, table by
table, in batches: profiles and their identities, accounts, the event history, every instance (the
waiting ones with their wake times, which PostgreSQL then fires as SQLite would have), the
outbox, the step log, the published journey versions and their states, the settings (the
API keys), the dead letters and the audit of who did what. Rows keep their order, so
histories, traces and message logs read the same.

The whole copy is one transaction on the target: a move that fails part way leaves the
target as it was. The target must hold no profiles, events, instances, messages, step
records or journeys, unless ``replace`` is given, which deletes them first. Stop the
server on the SQLite file before moving it: what it writes during the copy is not moved.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from journeyman.errors import JourneymanError
from journeyman.storage import is_postgres, open_store, sqlite_path
from journeyman.storage.postgres import PostgresStore

__all__ = ["BATCH", "TABLES", "TransferError", "transfer"]

BATCH = 5000

# (table, the columns copied, the order they were written in). Row ids (seq, id) are
# left for the target to number in the same order; leases are not copied: a claim of the
# old process means nothing to the new one.
TABLES: list[tuple[str, list[str], str]] = [
    (table, columns.split(), order)
    for table, columns, order in (
        ("meta", "key value", "key"),
        ("profiles", "id state wake_at updated_at", "id"),
        ("accounts", "id state updated_at", "id"),
        ("identities", "kind value profile_id", "kind, value"),
        ("journeys", "name version digest document published_at", "name, version"),
        ("journey_states", "name state", "name"),
        ("workspaces", "version digest files journeys published_at", "version"),
        ("events", "message_id profile_id name body received_at", "seq"),
        (
            "instances",
            "id profile_id journey version step status wake_at state updated_at",
            "rowid",
        ),
        (
            "outbox",
            "key kind channel journey step profile_id instance_id effect status attempts "
            "due_at detail created_at updated_at",
            "id",
        ),
        ("steps", "profile_id instance_id journey step outcome detail at", "seq"),
        ("segment_members", "segment profile_id since", "segment, profile_id"),
        (
            "report_counters",
            "journey version arm goal metric n total",
            "journey, version, arm, goal, metric",
        ),
        (
            "dead_letters",
            "partition_no headers body error attempts first_failed_at last_failed_at",
            "id",
        ),
        (
            "audit",
            "at actor via command journey instances journey_version workspace_version",
            "id",
        ),
        ("drafts", "journey revision actor at file document", "journey"),
    )
]

# What makes a target non-empty: the state of a deployment (meta alone is only the schema).
_STATE = [
    "profiles",
    "accounts",
    "identities",
    "events",
    "instances",
    "outbox",
    "steps",
    "journeys",
    "report_counters",
]


class TransferError(JourneymanError):
    """The move cannot be made: wrong kinds of URL, no source file, a target in use."""

    exit_code = 2


async def transfer(
    source: str, target: str, *, replace: bool = False, say: Callable[[str], None] = print
) -> dict[str, int]:
    """Copy every row of the SQLite database ``source`` into the PostgreSQL ``target``.

    Returns how many rows each table received; ``say`` hears the progress.
    """
    path = sqlite_path(source) if source.startswith("sqlite:///") else None
    if path is None or not is_postgres(target):
        raise TransferError(
            "journeyman migrate --from moves a SQLite file into PostgreSQL: "
            "--from sqlite:///path/to/journeyman.db --db postgresql://..."
        )
    if not path.is_file():
        raise TransferError(f"no SQLite database at {path}")
    await _bring_up_to_date(source)
    store = open_store(target)
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        for step in store.applied:
            say(f"{store.url}: applied schema step {step}")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return await _copy(db, store, replace, say)
    finally:
        await store.close()


async def _bring_up_to_date(source: str) -> None:
    """Apply the source's own pending schema steps (and refuse a newer one) first."""
    store = open_store(source)
    await store.open()
    await store.close()


async def _copy(
    db: sqlite3.Connection, store: PostgresStore, replace: bool, say: Callable[[str], None]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with store.pool.acquire() as target, target.transaction():
        await _make_room(target, store.url, replace)
        for table, columns, order in TABLES:
            total = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            copied = 0
            for rows in _batches(db, table, columns, order):
                await target.copy_records_to_table(table, records=rows, columns=columns)
                copied += len(rows)
                say(f"{table}: {copied:,} of {total:,} rows")
            counts[table] = copied
        # The schema version stays the target's own; the source's settings came with meta.
    return counts


async def _make_room(target: Any, url: str, replace: bool) -> None:
    """Refuse a target that holds a deployment already, or empty it when told to."""
    held = [t for t in _STATE if await target.fetchval(f"SELECT EXISTS (SELECT FROM {t})")]
    if held and not replace:
        raise TransferError(
            f"{url} already holds {', '.join(held)}: move into an empty database, "
            "or give --replace to delete what it holds first"
        )
    await target.execute(f"TRUNCATE {', '.join(t for t, _, _ in TABLES if t != 'meta')}")
    await target.execute("DELETE FROM meta WHERE key <> 'schema'")


def _batches(
    db: sqlite3.Connection, table: str, columns: list[str], order: str
) -> Iterator[list[tuple[Any, ...]]]:
    where = "WHERE key <> 'schema'" if table == "meta" else ""
    cursor = db.execute(f"SELECT {', '.join(columns)} FROM {table} {where} ORDER BY {order}")
    while rows := cursor.fetchmany(BATCH):
        yield rows
