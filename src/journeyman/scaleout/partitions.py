"""Which worker owns which partition: database locks held by a connection, nothing home-made.

Every worker keeps one connection of its own to the database
(:class:`~journeyman.storage.base.PartitionLocks`; in PostgreSQL, session advisory locks).
On it, it holds a lock that says it is alive, and one lock per partition it owns. The
server releases all of them the moment that connection ends, whether the worker stopped,
was killed or lost the network, so the other workers can take its partitions at their
next look.

Each worker aims at its fair share, ceil(partitions / live workers): one below it takes
free partitions, one above it gives the extra back (after finishing its batch). Live
workers are counted from the liveness locks the server holds.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time

from journeyman.storage.base import PartitionLocks

__all__ = ["Ownership", "fair_share"]

# The spaces of journeyman's locks (any numbers will do, as long as they are journeyman's
# own): live workers, numbered at random, and partitions.
_LIVE = 0x6A6D01
_PARTITION = 0x6A6D02

HELD_FOR = 0.2  # seconds one look at the locks held answers for


def fair_share(partitions: int, workers: int) -> int:
    """The most partitions one of ``workers`` live workers should own."""
    return math.ceil(partitions / max(1, workers))


class Ownership:
    """The locks of one worker, on a connection of their own."""

    def __init__(self, locks: PartitionLocks, partitions: int) -> None:
        self.locks = locks
        self.partitions = partitions
        self.worker = secrets.randbelow(2**31)  # this worker's liveness lock
        self._asking = asyncio.Lock()
        self._held: tuple[float, set[int]] | None = None  # when read, and what

    @property
    def connected(self) -> bool:
        return self.locks.connected

    async def connect(self) -> None:
        """Connect, and say this worker is alive (under a new number each time, so that
        it never waits for the server to notice that its last connection ended)."""
        await self.locks.connect()
        try:
            while True:
                self.worker = secrets.randbelow(2**31)
                if await self.locks.take(_LIVE, self.worker):
                    break
        except BaseException:
            self.locks.drop()
            raise

    async def close(self) -> None:
        """End the connection: every lock of this worker is released with it."""
        await self.locks.close()

    def drop(self) -> None:
        """Give up the connection without a word (after it failed)."""
        self._held = None
        self.locks.drop()

    async def live_workers(self) -> int:
        """How many workers are alive now (this one among them); raises if the
        connection is gone, and with it every lock this worker held."""
        async with self._asking:  # one query at a time on the connection
            return await self.locks.holders(_LIVE)

    async def take(self, partition: int) -> bool:
        """Own ``partition`` if no other worker does."""
        async with self._asking:
            taken = await self.locks.take(_PARTITION, partition)
            self._held = None
        return taken

    async def held(self, *, fresh: bool = False) -> set[int]:
        """The partitions whose locks this worker's connection holds now, as the server
        sees them (read at most every ``HELD_FOR`` seconds, however many ask, unless
        ``fresh``); raises if the connection is gone, and with it every lock."""
        async with self._asking:
            now = time.monotonic()
            if fresh or self._held is None or now - self._held[0] > HELD_FOR:
                self._held = (now, await self.locks.held(_PARTITION))
            return self._held[1]

    async def release(self, partition: int) -> None:
        async with self._asking:
            self._held = None
            await self.locks.release(_PARTITION, partition)
