"""A worker that loses its partitions during a database outage leaves their batches to the
next owner, who applies each profile's events in order.

In-process, on real PostgreSQL and NATS JetStream: two :class:`Worker` objects, the first
one reaching PostgreSQL through a TCP proxy that the test cuts. The first worker is caught
applying a batch (a lock the test holds on the events table keeps its commit waiting)
when its connections drop, its partition locks with them. It does not look at its
partitions again for an hour, so only its check before each new try of the batch can
tell it that it owns them no more. (tests/integration/test_bus.py rides out the same
outage with worker processes under load.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from journeyman.domain.ingest import read_identify
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event
from journeyman.scaleout.bus import Bus
from journeyman.scaleout.front import BusRuntime
from journeyman.scaleout.worker import Worker
from journeyman.storage.postgres import PostgresStore, parse_url
from tests.cluster import NATS_URL, TcpProxy, nats_missing, nats_stream
from tests.conftest import START
from tests.waiting import eventually, when

# Workers share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

PARTITIONS = 4
PEOPLE = [f"p{n}" for n in range(12)]
NEVER = 3600.0  # seconds between a worker's looks at its partitions: not within the test


@pytest.fixture(autouse=True)
def _needs_nats() -> None:
    reason = nats_missing()
    if reason is not None:
        pytest.fail(reason)  # CI starts NATS: its absence is a failure, not a skip


@pytest.fixture
def stream() -> Iterator[str]:
    with nats_stream() as name:
        yield name


def round_of(number: int) -> list[Event]:
    """Every person's trait change number ``number``, with a messageId that says which."""
    return [
        read_identify({"userId": p, "messageId": f"{p}/{number}", "traits": {"n": number}}, START)
        for p in PEOPLE
    ]


def worker(workspace: Workspace, url: str) -> Worker:
    return Worker(workspace, PostgresStore(url), NATS_URL, {}, env={}, look=NEVER)


def test_a_worker_that_lost_its_partitions_in_an_outage_leaves_its_batch_to_the_next_owner(
    store_url: str, workspace: Callable[..., Workspace], stream: str
) -> None:
    target = urlsplit(store_url)
    dsn = parse_url(store_url)[0]
    ws = workspace()

    async def stored(db: asyncpg.Connection) -> dict[str, list[str]]:
        order: dict[str, list[str]] = {p: [] for p in PEOPLE}
        for row in await db.fetch("SELECT profile_id, message_id FROM events ORDER BY seq"):
            order[row["profile_id"]].append(row["message_id"])
        return order

    def rounds(db: asyncpg.Connection, count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return all(len(ids) >= count for ids in (await stored(db)).values())

        return check

    async def test(proxy: TcpProxy) -> None:
        routed = store_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        bus = Bus(NATS_URL, stream, PARTITIONS)
        runtime = BusRuntime(ws, PostgresStore(store_url), {}, env={}, bus=bus)
        await runtime.start()
        db = await asyncpg.connect(dsn)
        first, second = worker(ws, routed), worker(ws, store_url)
        try:
            await first.start()
            every = list(range(PARTITIONS))
            await eventually(when(lambda: first.owned == every), "the first worker's share")
            await runtime.accept(round_of(1))
            await eventually(rounds(db, 1), "the first round to be applied")

            # The first worker fetches the second round and waits to commit it ...
            async with db.transaction():
                await db.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                await runtime.accept(round_of(2))
                await eventually(lambda: _waiting_on(db, "events"), "a commit to wait")
                # ... when its connections drop, its partition locks with them.
                proxy.cut()
            await runtime.accept(round_of(3))

            def given_up() -> bool:
                return all(task.done() for task in first._owned.values())

            await eventually(when(given_up), "the first worker to give its batches up")
            proxy.restore()
            # Nobody owns the partitions now: nothing of the second round was applied.
            assert await stored(db) == {p: [f"{p}/1"] for p in PEOPLE}

            await second.start()
            await eventually(rounds(db, 3), "the second worker to apply the rest")
            assert await stored(db) == {p: [f"{p}/{n}" for n in (1, 2, 3)] for p in PEOPLE}
        finally:
            for started in (second, first):
                with contextlib.suppress(Exception):
                    await started.stop()
            await db.close()
            await runtime.stop()

    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        asyncio.run(test(proxy))


async def _waiting_on(db: asyncpg.Connection, table: str) -> bool:
    """Whether another session waits for a lock on ``table``."""
    query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass"
    return bool(await db.fetchval(query, table))
