"""Segment backfills and segment sizes in the database.

A backfill (see :mod:`journeyman.runtime.backfills`) is one row of ``segment_backfills``:
the segment, the digest of the ``when`` it computes, its state (``running``, ``done``,
``superseded``: a newer ``when`` of the segment replaced it), the cursor (the last
profile id handed over: profiles are read in id order), how many were done, of how many,
and a lease. One process works a backfill at a time, as a scheduled run is worked (see
:mod:`journeyman.storage.runs`): it claims a row whose lease has passed (on PostgreSQL
with ``FOR UPDATE SKIP LOCKED``), and each page it saves moves the cursor and renews the
lease, only while the lease is its own. Whoever claims it after a crash or a restart goes
on from the cursor.

``segment_sizes`` holds, per segment and UTC hour, how many profiles entered and left
it: added to in the commit that changes the members (see :func:`size_rows`), so that a
segment's size over time is a read of a few rows, never a scan.

:class:`BackfillStore` is a port of its own; :class:`SQLBackfills` writes it once for both
SQL backends, on the primitives of :class:`~journeyman.storage.sql.SQLDatabase`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from journeyman.domain.segments import SEGMENT_EVENTS
from journeyman.domain.state import Event
from journeyman.storage.codec import ms, time
from journeyman.storage.leases import SQLLeases
from journeyman.storage.sql import Insert

__all__ = [
    "BACKFILLS_POSTGRES",
    "BACKFILLS_SQLITE",
    "Backfill",
    "BackfillStore",
    "SQLBackfills",
    "SizeBucket",
    "hour_of",
    "size_rows",
]

BACKFILLS_SQLITE = """
CREATE TABLE IF NOT EXISTS segment_backfills (
    id TEXT PRIMARY KEY, segment TEXT NOT NULL, digest TEXT NOT NULL, state TEXT NOT NULL,
    cursor TEXT NOT NULL, done INTEGER NOT NULL, total INTEGER NOT NULL,
    started_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, owner TEXT,
    leased_until INTEGER);
CREATE INDEX IF NOT EXISTS segment_backfills_segment ON segment_backfills (segment, started_at);
CREATE TABLE IF NOT EXISTS segment_sizes (
    segment TEXT NOT NULL, hour INTEGER NOT NULL, entered INTEGER NOT NULL,
    exited INTEGER NOT NULL, PRIMARY KEY (segment, hour)) WITHOUT ROWID;
"""
BACKFILLS_POSTGRES = """
CREATE TABLE segment_backfills (
    id TEXT COLLATE "C" PRIMARY KEY, segment TEXT COLLATE "C" NOT NULL, digest TEXT NOT NULL,
    state TEXT NOT NULL, cursor TEXT COLLATE "C" NOT NULL, done BIGINT NOT NULL,
    total BIGINT NOT NULL, started_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    owner TEXT, leased_until BIGINT);
CREATE INDEX segment_backfills_segment ON segment_backfills (segment, started_at);
CREATE TABLE segment_sizes (
    segment TEXT COLLATE "C" NOT NULL, hour BIGINT NOT NULL, entered BIGINT NOT NULL,
    exited BIGINT NOT NULL, PRIMARY KEY (segment, hour));
"""

_COLUMNS = "id, segment, digest, state, cursor, done, total, started_at, updated_at"
_HOUR = timedelta(hours=1)
# A size bucket's row: added to, never read back before the write (concurrent commits
# of several workers add to the same hour).
SIZES = Insert(
    "segment_sizes",
    "segment text, hour int8, entered int8, exited int8",
    "ON CONFLICT (segment, hour) DO UPDATE SET "
    "entered = segment_sizes.entered + excluded.entered, "
    "exited = segment_sizes.exited + excluded.exited",
)


@dataclass(frozen=True, slots=True)
class Backfill:
    """One backfill of a segment, as stored."""

    id: str
    segment: str
    digest: str  # of the `when` it computes
    state: str  # running, done or superseded
    cursor: str  # the last profile id handed over ("" before the first)
    done: int
    total: int  # profiles when it started
    started_at: datetime
    updated_at: datetime

    def progress(self) -> dict[str, Any]:
        """What the console and the API show: done of total, the rate (profiles a second
        since it started) and ``eta``, the seconds left at that rate (None once over)."""
        seconds = (self.updated_at - self.started_at).total_seconds()
        rate = self.done / seconds if seconds > 0 and self.done else 0.0
        total = max(self.total, self.done)  # profiles made since it started count too
        left = total - self.done
        eta = round(left / rate, 1) if self.state == "running" and rate > 0 else None
        return {
            "id": self.id,
            "state": self.state,
            "done": self.done,
            "total": total,
            "percent": 100.0 if not total else round(100 * self.done / total, 1),
            "rate": round(rate, 1),
            "eta": eta,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class SizeBucket:
    """How many profiles entered and left a segment in one UTC hour."""

    hour: datetime
    entered: int
    exited: int


_HOUR_MS = 3_600_000


def hour_of(at: datetime) -> int:
    """The start of ``at``'s UTC hour, in ms (UTC hours begin at whole multiples of an
    hour since the epoch)."""
    return ms(at) // _HOUR_MS * _HOUR_MS


def size_rows(events: Iterable[Event]) -> list[tuple[str, int, int, int]]:
    """(segment, hour, entered, exited) for the segment events of a commit, one row per
    bucket, in key order (concurrent commits lock shared rows in the same order)."""
    sums: dict[tuple[str, int], list[int]] = {}
    for event in events:
        if event.name not in SEGMENT_EVENTS:
            continue
        segment = event.properties.get("segment")
        if isinstance(segment, str):
            found = sums.setdefault((segment, hour_of(event.timestamp)), [0, 0])
            found[0 if event.name == SEGMENT_EVENTS[0] else 1] += 1
    return [(s, h, n[0], n[1]) for (s, h), n in sorted(sums.items())]


def _backfill(row: Any) -> Backfill:
    return Backfill(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        str(row[4]),
        int(row[5]),
        int(row[6]),
        time(row[7]),
        time(row[8]),
    )


class BackfillStore(ABC):
    """What backfills and the segments' sizes over time need of the database."""

    @abstractmethod
    async def add_backfill(self, backfill: Backfill) -> bool:
        """Store a new backfill, and mark the segment's other running ones superseded;
        False if one of that id is there already (then nothing changes)."""

    @abstractmethod
    async def claim_backfill(
        self, owner: str, now: datetime, until: datetime, ready: datetime
    ) -> Backfill | None:
        """A running backfill started by ``ready`` whose lease has passed, leased to
        ``owner``."""

    @abstractmethod
    async def backfill_progress(
        self, backfill: Backfill, owner: str, cursor: str, done: int, now: datetime, until: datetime
    ) -> bool:
        """Save a page's progress and renew the lease; False when the backfill is no longer
        ``owner``'s or no longer running: then it stops."""

    @abstractmethod
    async def finish_backfill(self, backfill: Backfill, owner: str, now: datetime) -> None: ...

    @abstractmethod
    async def backfills_of(self, segment: str, limit: int) -> list[Backfill]:
        """The segment's latest backfills, newest first."""

    @abstractmethod
    async def profile_ids(self, after: str, limit: int) -> list[str]:
        """Profile ids after ``after``, in id order."""

    @abstractmethod
    async def profile_count(self) -> int: ...

    @abstractmethod
    async def size_buckets(self, segment: str, since: datetime) -> list[SizeBucket]:
        """The segment's hours from ``since`` on that had an entry or an exit, in order."""


class SQLBackfills(BackfillStore, SQLLeases):
    """:class:`BackfillStore` on the primitives of an SQL backend (``_rows``, ``_value``,
    ``_write``) and its ``dialect``, its leases as :class:`SQLLeases` keeps them."""

    async def add_backfill(self, backfill: Backfill) -> bool:
        b = backfill
        query = (
            f"INSERT INTO segment_backfills ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        values = (b.id, b.segment, b.digest, b.state, b.cursor, b.done, b.total)
        times = (ms(b.started_at), ms(b.updated_at))
        if await self._write(self._sql(query), *values, *times) is None:
            return False
        older = (
            "UPDATE segment_backfills SET state = 'superseded', leased_until = NULL "
            "WHERE segment = ? AND state = 'running' AND id <> ?"
        )
        await self._write(self._sql(older), b.segment, b.id)
        return True

    async def claim_backfill(
        self, owner: str, now: datetime, until: datetime, ready: datetime
    ) -> Backfill | None:
        table, started = "segment_backfills", ("started_at <= ?", ms(ready))
        found = await self._claim_lease(table, "started_at", owner, now, until, *started)
        return None if found is None else await self._backfill_of(found)

    async def _backfill_of(self, backfill_id: str) -> Backfill | None:
        query = self._sql(f"SELECT {_COLUMNS} FROM segment_backfills WHERE id = ?")
        rows = await self._rows(query, backfill_id)
        return _backfill(rows[0]) if rows else None

    async def backfill_progress(
        self, backfill: Backfill, owner: str, cursor: str, done: int, now: datetime, until: datetime
    ) -> bool:
        table, row = "segment_backfills", backfill.id
        return await self._lease_progress(table, "done", row, owner, cursor, done, now, until)

    async def finish_backfill(self, backfill: Backfill, owner: str, now: datetime) -> None:
        await self._lease_done("segment_backfills", backfill.id, owner, now)

    async def backfills_of(self, segment: str, limit: int) -> list[Backfill]:
        query = (
            f"SELECT {_COLUMNS} FROM segment_backfills WHERE segment = ? "
            "ORDER BY started_at DESC, id DESC LIMIT ?"
        )
        return [_backfill(row) for row in await self._rows(self._sql(query), segment, limit)]

    async def profile_ids(self, after: str, limit: int) -> list[str]:
        query = self._sql("SELECT id FROM profiles WHERE id > ? ORDER BY id LIMIT ?")
        return [str(row[0]) for row in await self._rows(query, after, limit)]

    async def profile_count(self) -> int:
        return int(await self._value("SELECT count(*) FROM profiles"))

    async def size_buckets(self, segment: str, since: datetime) -> list[SizeBucket]:
        query = self._sql(
            "SELECT hour, entered, exited FROM segment_sizes WHERE segment = ? AND hour >= ? "
            "ORDER BY hour"
        )
        rows = await self._rows(query, segment, hour_of(since))
        return [SizeBucket(time(hour), int(n), int(x)) for hour, n, x in rows]
