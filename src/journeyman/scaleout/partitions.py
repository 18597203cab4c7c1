"""Which worker owns which partition: PostgreSQL session advisory locks, nothing home-made.

Every worker keeps one connection of its own to the database. On it, it holds an advisory
lock that says it is alive, and one lock per partition it owns. The server releases all
of them the moment that connection ends, whether the worker stopped, was killed or lost
the network, so the other workers can take its partitions at their next look.

Each worker aims at its fair share, ceil(partitions / live workers): one below it takes
free partitions, one above it gives the extra back (after finishing its batch). Live
workers are counted from the liveness locks the server holds.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time

import asyncpg

__all__ = ["Ownership", "fair_share"]

# The first key of journeyman's two-key advisory locks (any numbers will do, as long as
# they are journeyman's own; the migration lock is a one-key lock and cannot collide).
_LIVE = 0x6A6D01
_PARTITION = 0x6A6D02

_LIVE_WORKERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
    "AND objsubid = 2 AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


_HELD = (
    "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
    "AND objsubid = 2 AND granted AND pid = pg_backend_pid()"
)
HELD_FOR = 0.2  # seconds one look at the locks held answers for


def fair_share(partitions: int, workers: int) -> int:
    """The most partitions one of ``workers`` live workers should own."""
    return math.ceil(partitions / max(1, workers))


class Ownership:
    """The locks of one worker, on a connection of its own."""

    def __init__(self, dsn: str, partitions: int) -> None:
        self.dsn = dsn
        self.partitions = partitions
        self.worker = secrets.randbelow(2**31)  # this worker's liveness lock
        self._db: asyncpg.Connection | None = None
        self._asking = asyncio.Lock()
        self._held: tuple[float, set[int]] | None = None  # when read, and what

    @property
    def connected(self) -> bool:
        return self._db is not None and not self._db.is_closed()

    async def connect(self) -> None:
        """Connect, and say this worker is alive (under a new number each time, so that
        it never waits for the server to notice that its last connection ended)."""
        db = await asyncpg.connect(self.dsn, timeout=10)
        try:
            while True:
                self.worker = secrets.randbelow(2**31)
                if await db.fetchval("SELECT pg_try_advisory_lock($1, $2)", _LIVE, self.worker):
                    break
        except BaseException:
            db.terminate()
            raise
        self._db = db

    async def close(self) -> None:
        """End the connection: every lock of this worker is released with it."""
        if self._db is not None:
            db, self._db = self._db, None
            try:
                await db.close(timeout=5)
            except Exception:
                db.terminate()

    def drop(self) -> None:
        """Give up the connection without a word (after it failed)."""
        self._held = None
        if self._db is not None:
            db, self._db = self._db, None
            db.terminate()

    async def live_workers(self) -> int:
        """How many workers are alive now (this one among them); raises if the
        connection is gone, and with it every lock this worker held."""
        async with self._asking:  # one query at a time on the connection
            count: int = await self._connection().fetchval(_LIVE_WORKERS, _LIVE)
        return count

    async def take(self, partition: int) -> bool:
        """Own ``partition`` if no other worker does."""
        async with self._asking:
            taken: bool = await self._connection().fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", _PARTITION, partition
            )
            self._held = None
        return taken

    async def held(self) -> set[int]:
        """The partitions whose locks this worker's connection holds now, as the server
        sees them (read at most every ``HELD_FOR`` seconds, however many ask); raises if
        the connection is gone, and with it every lock."""
        async with self._asking:
            now = time.monotonic()
            if self._held is None or now - self._held[0] > HELD_FOR:
                rows = await self._connection().fetch(_HELD, _PARTITION)
                self._held = (now, {int(row[0]) for row in rows})
            return self._held[1]

    async def release(self, partition: int) -> None:
        async with self._asking:
            self._held = None
            await self._connection().execute(
                "SELECT pg_advisory_unlock($1, $2)", _PARTITION, partition
            )

    def _connection(self) -> asyncpg.Connection:
        if self._db is None:
            raise ConnectionError("the ownership connection is not open")
        return self._db
