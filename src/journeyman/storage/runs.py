"""Scheduled runs in the database: each run's progress, and the audience it pages through.

A run (see :mod:`journeyman.domain.schedules`) is one row of ``schedule_runs``: its
journey, the moment it is for, its state (``running``, ``done``, ``cancelled``), the
cursor (the last profile id entered: members are read in id order), how many were
entered, of how many, and a lease. One process works a run at a time: it claims the run
(a row whose lease has passed; on PostgreSQL with ``FOR UPDATE SKIP LOCKED``), and each
page it saves moves the cursor and renews the lease, only while the lease is its own. A
process killed mid-run leaves its lease to lapse; whoever claims the run next goes on
from the cursor.

:class:`RunStore` is a port of its own; :class:`SQLRuns` writes it once for both SQL
backends, on the three primitives of :class:`~journeyman.storage.sql.SQLDatabase`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from journeyman.storage.codec import ms, time
from journeyman.storage.leases import SQLLeases

__all__ = ["RUNS_POSTGRES", "RUNS_SQLITE", "Run", "RunStore", "SQLRuns"]

RUNS_SQLITE = """
CREATE TABLE IF NOT EXISTS schedule_runs (
    id TEXT PRIMARY KEY, journey TEXT NOT NULL, segment TEXT, due_at INTEGER NOT NULL,
    state TEXT NOT NULL, cursor TEXT NOT NULL, entered INTEGER NOT NULL,
    total INTEGER NOT NULL, rate REAL NOT NULL, started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, owner TEXT, leased_until INTEGER);
CREATE INDEX IF NOT EXISTS schedule_runs_journey ON schedule_runs (journey, due_at);
CREATE INDEX IF NOT EXISTS schedule_runs_running ON schedule_runs (state)
    WHERE state = 'running';
"""
RUNS_POSTGRES = """
CREATE TABLE schedule_runs (
    id TEXT COLLATE "C" PRIMARY KEY, journey TEXT COLLATE "C" NOT NULL,
    segment TEXT COLLATE "C", due_at BIGINT NOT NULL, state TEXT NOT NULL,
    cursor TEXT COLLATE "C" NOT NULL, entered BIGINT NOT NULL, total BIGINT NOT NULL,
    rate DOUBLE PRECISION NOT NULL, started_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
    owner TEXT, leased_until BIGINT);
CREATE INDEX schedule_runs_journey ON schedule_runs (journey, due_at);
CREATE INDEX schedule_runs_running ON schedule_runs (state) WHERE state = 'running';
"""

_COLUMNS = (
    "id, journey, segment, due_at, state, cursor, entered, total, rate, started_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class Run:
    """One scheduled run, as stored."""

    id: str
    journey: str
    segment: str | None  # None: every profile
    due_at: datetime  # the moment the schedule named
    state: str  # running, done or cancelled
    cursor: str  # the last profile id entered ("" before the first)
    entered: int
    total: int  # members when the run started
    rate: float  # profiles a second (0: unthrottled)
    started_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        for key in ("due_at", "started_at", "updated_at"):
            found[key] = found[key].isoformat()
        return found


def _run(row: Any) -> Run:
    return Run(
        str(row[0]),
        str(row[1]),
        row[2],
        time(row[3]),
        str(row[4]),
        str(row[5]),
        int(row[6]),
        int(row[7]),
        float(row[8]),
        time(row[9]),
        time(row[10]),
    )


class RunStore(ABC):
    """What the scheduler needs of the database."""

    @abstractmethod
    async def add_run(self, run: Run) -> bool:
        """Store a new run; False if a run of that id is there already."""

    @abstractmethod
    async def claim_run(self, owner: str, now: datetime, until: datetime) -> Run | None:
        """A running run whose lease has passed (the oldest), leased to ``owner``."""

    @abstractmethod
    async def run_progress(
        self, run: Run, owner: str, cursor: str, entered: int, now: datetime, until: datetime
    ) -> bool:
        """Save a page's progress and renew the lease; False when the run is no longer
        ``owner``'s or no longer running (cancelled): then it stops."""

    @abstractmethod
    async def finish_run(self, run: Run, owner: str, now: datetime) -> None: ...

    @abstractmethod
    async def cancel_run(self, journey: str, run_id: str, now: datetime) -> tuple[Run | None, bool]:
        """Cancel a running run: the run as it is after (None: no such run), and whether
        this cancelled it (False: it was over already)."""

    @abstractmethod
    async def runs_of(self, journey: str, limit: int) -> list[Run]:
        """The journey's latest runs, newest first."""

    @abstractmethod
    async def audience(self, segment: str | None, after: str, limit: int) -> list[str]:
        """Profile ids after ``after``, in id order: the segment's members, or all."""

    @abstractmethod
    async def audience_size(self, segment: str | None) -> int: ...


class SQLRuns(RunStore, SQLLeases):
    """:class:`RunStore` on the primitives of an SQL backend (``_rows``, ``_value``,
    ``_write``) and its ``dialect``, its leases as :class:`SQLLeases` keeps them."""

    async def add_run(self, run: Run) -> bool:
        query = (
            f"INSERT INTO schedule_runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        )
        values = (run.id, run.journey, run.segment, ms(run.due_at), run.state, run.cursor)
        times = (ms(run.started_at), ms(run.updated_at))
        added = await self._write(
            self._sql(query), *values, run.entered, run.total, run.rate, *times
        )
        return added is not None

    async def claim_run(self, owner: str, now: datetime, until: datetime) -> Run | None:
        found = await self._claim_lease("schedule_runs", "due_at", owner, now, until)
        return None if found is None else await self._one(found)

    async def _one(self, run_id: str) -> Run | None:
        rows = await self._rows(
            self._sql(f"SELECT {_COLUMNS} FROM schedule_runs WHERE id = ?"), run_id
        )
        return _run(rows[0]) if rows else None

    async def run_progress(
        self, run: Run, owner: str, cursor: str, entered: int, now: datetime, until: datetime
    ) -> bool:
        args = (run.id, owner, cursor, entered, now, until)
        return await self._lease_progress("schedule_runs", "entered", *args)

    async def finish_run(self, run: Run, owner: str, now: datetime) -> None:
        await self._lease_done("schedule_runs", run.id, owner, now)

    async def cancel_run(self, journey: str, run_id: str, now: datetime) -> tuple[Run | None, bool]:
        query = (
            "UPDATE schedule_runs SET state = 'cancelled', updated_at = ?, leased_until = NULL "
            "WHERE id = ? AND journey = ? AND state = 'running' RETURNING id"
        )
        changed = await self._write(self._sql(query), ms(now), run_id, journey) is not None
        found = await self._one(run_id)
        return (found if found is not None and found.journey == journey else None), changed

    async def runs_of(self, journey: str, limit: int) -> list[Run]:
        query = (
            f"SELECT {_COLUMNS} FROM schedule_runs WHERE journey = ? ORDER BY due_at DESC LIMIT ?"
        )
        return [_run(row) for row in await self._rows(self._sql(query), journey, limit)]

    async def audience(self, segment: str | None, after: str, limit: int) -> list[str]:
        if segment is None:
            query = "SELECT id FROM profiles WHERE id > ? ORDER BY id LIMIT ?"
            rows = await self._rows(self._sql(query), after, limit)
        else:
            query = (
                "SELECT profile_id FROM segment_members WHERE segment = ? AND profile_id > ? "
                "ORDER BY profile_id LIMIT ?"
            )
            rows = await self._rows(self._sql(query), segment, after, limit)
        return [str(row[0]) for row in rows]

    async def audience_size(self, segment: str | None) -> int:
        if segment is None:
            return int(await self._value("SELECT count(*) FROM profiles"))
        query = self._sql("SELECT count(*) FROM segment_members WHERE segment = ?")
        return int(await self._value(query, segment))
