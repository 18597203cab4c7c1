"""With a bus, whatever changes a profile's instances reaches the owner of its partition.

In-process, on real PostgreSQL and NATS JetStream (a database and a stream of each test's
own): a delivery outcome kept by the worker that delivered the message, and an operator's
stop or resume given by the API process, are published to the partition of the profile,
decoded there and applied by the owner's processor. A message that JetStream delivers
again (the owner died before acknowledging it) changes nothing the second time, which the
tests check on the instances' traces, statuses and messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg

from journeyman.domain.model import Workspace
from journeyman.runtime.processor import DeliveryResult, Operate, Processor, TimerDue
from journeyman.scaleout.bus import Bus, decode, partition_of
from journeyman.scaleout.front import BusRuntime
from journeyman.scaleout.worker import Relay, TellingDispatcher
from journeyman.storage import Database
from journeyman.storage.postgres import PostgresStore, StaleOutcome
from tests.cluster import NATS_URL, NatsServer, nats_missing, nats_stream, stream_messages
from tests.conftest import START
from tests.integration.test_processor import ON_ERROR, Clock, identify, sign_up, track
from tests.stores import run
from tests.waiting import eventually

# Workers share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

Build = Callable[..., Workspace]
PARTITIONS = 4
PEOPLE = ["u1", "u2", "u3", "u4", "u5"]

WAITING = """
kind: journey
name: waiting
entry: {event: signed_up}
steps:
  - id: later
    wait: 1h
  - id: greet
    send: hello_email
  - id: rest
    wait: 1d
  - id: done
    end: done
"""


@pytest.fixture(autouse=True)
def _needs_nats() -> None:
    reason = nats_missing()
    if reason is not None:
        pytest.fail(reason)  # CI starts NATS: its absence is a failure, not a skip


@pytest.fixture
def stream() -> Iterator[str]:
    with nats_stream() as name:
        yield name


@contextlib.asynccontextmanager
async def running(processor: Processor) -> AsyncIterator[Processor]:
    loop = asyncio.create_task(processor.run())
    try:
        yield processor
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await processor.drain()


async def taken(bus: Bus, profiles: list[str]) -> list[Msg]:
    """What a worker gets when it takes the partitions of ``profiles``: every message not
    acknowledged yet, oldest first in each partition."""
    found: list[Msg] = []
    for partition in sorted({partition_of(p, bus.partitions) for p in profiles}):
        subscription = await bus.take(partition, max_pending=100)
        try:
            found += await subscription.fetch(100, timeout=5)
        except TimeoutError:
            pass
        finally:
            await subscription.unsubscribe()
    return found


async def apply(owner: Processor, messages: list[Msg], *, ack: bool) -> list[str]:
    """What the owner does with them: decode, commit, and then (maybe) acknowledge."""
    results = await owner.submit([t for m in messages for t in decode(m)], force=True)
    if ack:
        for message in messages:
            await message.ack()
    return results


def acknowledged(stream: str) -> Callable[[], Awaitable[bool]]:
    """Whether every message of the stream was acknowledged (the work queue is empty)."""

    async def check() -> bool:
        return await stream_messages(NATS_URL, stream) == 0

    return check


async def records(store: Database, profile: str, outcome: str) -> Counter[str | None]:
    """How many records of ``outcome`` the profile's trace has, by step."""
    return Counter(r.step for r in await store.trace(profile) if r.outcome == outcome)


# delivery outcomes


def test_a_failed_send_is_settled_where_delivered_and_applied_once_by_the_owner(
    store: Database, workspace: Build, stream: str
) -> None:
    ws = workspace(ON_ERROR)  # no channel is configured: every send fails for good
    clock = Clock()

    async def test() -> None:
        assert isinstance(store, PostgresStore)
        bus = Bus(NATS_URL, stream, PARTITIONS)
        await bus.connect()
        try:
            async with running(Processor(store, ws, clock=clock)) as owner:
                await owner.submit(sign_up(ws, "u1"))
                # Another worker delivers; its own processor (not running) must not be used.
                elsewhere = Processor(store, ws, clock=clock)
                dispatcher = TellingDispatcher(store, elsewhere, {}, clock, env={})
                relay = dispatcher.relay = Relay(store, bus, clock)
                (item,) = await store.claim(clock(), 10)
                async with asyncio.timeout(10):
                    await dispatcher.deliver([item])
                (row,) = await store.messages()
                assert (row.status, row.attempts) == ("failed", 1)
                (waiting,) = await store.instances_of("u1")
                assert (waiting.step, waiting.waiting) == ("greet", "delivery")

                assert await relay.publish_due() == 1
                assert await relay.publish_due() == 0  # claimed: published once
                (message,) = await taken(bus, ["u1"])
                (outcome,) = decode(message)
                assert isinstance(outcome, DeliveryResult)
                assert (outcome.told, outcome.ok, outcome.effect.key) == (
                    item.id,
                    False,
                    item.effect.key,
                )
                assert await apply(owner, [message], ack=False) == ["accepted"]
                (ended,) = await store.instances_of("u1")
                assert ended.end_state == "reached_by_sms"

                # The owner died before acknowledging it: the next one gets it again.
                (again,) = await taken(bus, ["u1"])
                assert again.metadata.sequence.stream == message.metadata.sequence.stream
                assert await apply(owner, [again], ack=True) == ["duplicate"]
                assert await records(store, "u1", "failed") == {"greet": 1}
                assert await records(store, "u1", "ended") == {"by_sms": 1}
                steps = Counter(m.step for m in await store.messages())
                assert steps == {"greet": 1, "fallback": 1}

                # Nothing comes back after the lease: not the outcome, not the send.
                later = clock() + store.lease + timedelta(minutes=1)
                assert await store.claim_tell(later, 10) == []
                assert [i.effect.step for i in await store.claim(later, 10)] == ["fallback"]
                await until(acknowledged(stream), "the stream to be acknowledged")
        finally:
            await bus.close()

    run(store, test)


def test_an_outcome_goes_to_the_known_profile_a_visitor_was_merged_into_meanwhile(
    store: Database, workspace: Build, stream: str
) -> None:
    browsed = "kind: event\nname: browsed\nidentity: anonymousId\n---\n"
    ws = workspace(browsed + ON_ERROR.replace("{event: signed_up}", "{event: browsed}"))
    clock = Clock()
    assert partition_of("a1", PARTITIONS) != partition_of("u1", PARTITIONS)

    async def test() -> None:
        assert isinstance(store, PostgresStore)
        bus = Bus(NATS_URL, stream, PARTITIONS)
        await bus.connect()
        try:
            async with running(Processor(store, ws, clock=clock)) as owner:
                visitor = {"anonymousId": "a1", "traits": {"email": "a1@example.com"}}
                await owner.submit(
                    [identify(visitor), track(ws, {"event": "browsed", "anonymousId": "a1"})]
                )
                dispatcher = TellingDispatcher(store, owner, {}, clock, env={})
                relay = dispatcher.relay = Relay(store, bus, clock)
                await dispatcher.deliver(await store.claim(clock(), 10))
                # The visitor signs in before the outcome is handed on.
                await owner.submit([identify({"userId": "u1", "anonymousId": "a1"})])
                assert await relay.publish_due() == 1
                (message,) = await taken(bus, ["u1"])  # the known profile's partition
                assert await apply(owner, [message], ack=True) == ["accepted"]
                (ended,) = await store.instances_of("u1")
                assert ended.end_state == "reached_by_sms"
                assert await records(store, "u1", "failed") == {"greet": 1}
        finally:
            await bus.close()

    run(store, test)


def test_an_outcome_applied_by_two_owners_at_once_is_kept_by_one_commit_only(
    store: Database, store_url: str, workspace: Build
) -> None:
    """A worker that lost its partition in the middle of a batch, and the one that took the
    partition over, may both apply the same outcome: the later commit fails, and applying
    it again, as a worker does, finds it applied."""
    ws = workspace(ON_ERROR)
    clock = Clock()

    async def test() -> None:
        assert isinstance(store, PostgresStore)
        other = PostgresStore(store_url)
        await other.open()
        gate, entered = asyncio.Event(), asyncio.Event()
        real = store.commit

        async def slow_commit(changes: Any) -> None:
            entered.set()
            await gate.wait()
            await real(changes)

        try:
            async with (
                running(Processor(store, ws, clock=clock)) as old_owner,
                running(Processor(other, ws, clock=clock)) as new_owner,
            ):
                await old_owner.submit(sign_up(ws, "u1"))
                dispatcher = TellingDispatcher(other, new_owner, {}, clock, env={})
                await dispatcher.deliver(await other.claim(clock(), 10))
                (kept,) = await other.claim_tell(clock(), 10)
                outcome = DeliveryResult(kept.effect, False, kept.detail, told=kept.id)

                store.commit = slow_commit  # type: ignore[method-assign]
                first = asyncio.ensure_future(old_owner.submit([outcome]))
                await entered.wait()  # checked, not yet committed
                assert await new_owner.submit([outcome]) == ["accepted"]
                gate.set()
                with pytest.raises(StaleOutcome):
                    await first
                assert await old_owner.submit([outcome]) == ["duplicate"]
                assert await records(store, "u1", "failed") == {"greet": 1}
                assert await records(store, "u1", "ended") == {"by_sms": 1}
        finally:
            await other.close()

    run(store, test)


def test_an_outcome_kept_while_nats_is_down_is_applied_once_it_is_back_and_not_sent_again(
    store: Database, workspace: Build, tmp_path: Path
) -> None:
    ws = workspace(ON_ERROR)
    clock = Clock()

    async def test() -> None:
        assert isinstance(store, PostgresStore)
        with NatsServer(tmp_path / "nats") as nats_server:
            bus = Bus(nats_server.url, "JMTEST", PARTITIONS)
            await bus.connect()
            try:
                async with running(Processor(store, ws, clock=clock)) as owner:
                    await owner.submit(sign_up(ws, "u1"))
                    dispatcher = TellingDispatcher(store, owner, {}, clock, env={})
                    relay = dispatcher.relay = Relay(store, bus, clock)
                    (item,) = await store.claim(clock(), 10)
                    nats_server.kill()
                    await until(lambda: not bus.connected, "the bus to notice")
                    await dispatcher.deliver([item])
                    assert await relay.publish_due() == 0  # nothing claimed while away
                    later = clock() + store.lease + timedelta(minutes=1)
                    assert await store.claim(later, 10) == []  # settled: not sent again

                    nats_server.start()
                    await until(lambda: bus.connected, "the bus to reconnect")
                    await until(relay.publish_due, "the outcome to be published", tries=True)
                    assert await apply(owner, await taken(bus, ["u1"]), ack=True) == ["accepted"]
                    (ended,) = await store.instances_of("u1")
                    assert ended.end_state == "reached_by_sms"
                    assert await records(store, "u1", "failed") == {"greet": 1}
                    (row,) = [m for m in await store.messages() if m.step == "greet"]
                    assert (row.status, row.attempts) == ("failed", 1)
            finally:
                await bus.close()

    run(store, test)


async def until(check: Callable[[], Any], what: str, *, tries: bool = False) -> None:
    """Poll ``check`` (a function or a coroutine function) until it gives something true;
    with ``tries``, an exception counts as a no."""

    async def look() -> Any:
        try:
            found = check()
            return (await found) if asyncio.iscoroutine(found) else found
        except Exception:
            if not tries:
                raise
            return None

    await eventually(look, what, timeout=30)


# an operator's commands


async def bus_runtime(ws: Workspace, store: Database, stream: str) -> BusRuntime:
    runtime = BusRuntime(ws, store, {}, env={}, bus=Bus(NATS_URL, stream, PARTITIONS))
    await runtime.start()
    return runtime


def test_a_stop_given_by_the_api_process_is_applied_once_by_the_owner(
    store_url: str, workspace: Build, stream: str
) -> None:
    clock = Clock()

    async def test() -> None:
        runtime = await bus_runtime(workspace(WAITING), PostgresStore(store_url), stream)
        store = runtime.store
        assert isinstance(store, PostgresStore)
        try:
            async with running(Processor(store, runtime.workspace, clock=clock)) as owner:
                await owner.submit([track(runtime.workspace, {"userId": p}) for p in PEOPLE])
                assert await runtime.stop_journey("waiting") == len(PEOPLE)
                # Stored in JetStream; the API process changed no instance itself.
                running_now = await store.running_of("waiting", 100)
                assert [i.step for i in running_now] == ["later"] * len(PEOPLE)

                messages = await taken(runtime.bus, PEOPLE)
                assert all(isinstance(t, Operate) for m in messages for t in decode(m))
                await apply(owner, messages, ack=False)
                await apply(owner, await taken(runtime.bus, PEOPLE), ack=True)  # again
                for person in PEOPLE:
                    (instance,) = await store.instances_of(person)
                    assert (instance.status, instance.end_state) == ("ended", "stopped")
                    assert await records(store, person, "ended") == {"later": 1}
                await until(acknowledged(stream), "the stream to be acknowledged")
        finally:
            await runtime.stop()

    asyncio.run(test())


def test_a_resume_given_by_the_api_process_runs_each_held_instance_on_once(
    store_url: str, workspace: Build, stream: str
) -> None:
    clock = Clock()

    async def test() -> None:
        runtime = await bus_runtime(workspace(WAITING), PostgresStore(store_url), stream)
        store = runtime.store
        assert isinstance(store, PostgresStore)
        try:
            async with running(Processor(store, runtime.workspace, clock=clock)) as owner:
                await owner.submit([e for p in PEOPLE for e in sign_up(runtime.workspace, p)])
                await runtime.pause_journey("waiting")
                owner.engine.obey(await store.journey_states())  # as a worker reads it
                clock.now = START + timedelta(hours=2)
                waiting = await store.running_of("waiting", 100)
                await owner.submit([TimerDue(i.id, i.profile_id) for i in waiting])
                held = await store.running_of("waiting", 100)
                assert {(i.step, i.waiting) for i in held} == {("greet", "paused")}

                assert await runtime.resume_journey("waiting") == len(PEOPLE)
                owner.engine.obey({})
                messages = await taken(runtime.bus, PEOPLE)
                commands = [t for m in messages for t in decode(m)]
                assert {(c.command, c.seq) for c in commands if isinstance(c, Operate)} == {
                    ("resume", held[0].seq)
                }
                await apply(owner, messages, ack=False)
                await apply(owner, await taken(runtime.bus, PEOPLE), ack=True)  # again
                moved = await store.running_of("waiting", 100)
                assert {(i.step, i.waiting) for i in moved} == {("rest", "timer")}
                for person in PEOPLE:
                    assert await records(store, person, "sent") == {"greet": 1}
                sends = Counter(m.profile_id for m in await store.messages())
                assert sends == dict.fromkeys(PEOPLE, 1)
        finally:
            await runtime.stop()

    asyncio.run(test())


def test_a_worker_sees_at_once_that_its_partition_locks_went_with_their_connection(
    store: Database, store_url: str
) -> None:
    """Before each batch a worker reads which locks it holds: one whose lock connection
    ended (the server released the locks with it) must find none, not its old list."""
    import asyncpg

    from journeyman.scaleout.partitions import Ownership
    from journeyman.storage.postgres import AdvisoryLocks, parse_url

    async def test() -> None:
        assert isinstance(store, PostgresStore)
        dsn = parse_url(store_url)[0]
        mine = Ownership(store.partition_locks(), 4)
        other = Ownership(store.partition_locks(), 4)
        await mine.connect()
        await other.connect()
        try:
            assert await mine.take(1)
            assert await mine.take(3)
            assert not await other.take(1)  # taken: the other worker may not have it
            assert await mine.held() == {1, 3}
            assert await other.held() == set()
            await mine.release(3)
            assert await mine.held() == {1}

            # The server ends the lock connection (as when the network drops it).
            locks = mine.locks
            assert isinstance(locks, AdvisoryLocks)
            pid = await locks._connection().fetchval("SELECT pg_backend_pid()")
            killer = await asyncpg.connect(dsn)
            try:
                await killer.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await killer.close()
            lost = (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)

            async def noticed() -> bool:
                # a read of the locks is kept a moment: the loss shows once it is stale
                try:
                    await mine.held()
                except lost:
                    return True
                return False

            await until(noticed, "the lost lock connection to show")
            assert await other.take(1)  # and the partition is free for another worker
        finally:
            await mine.close()
            await other.close()

    run(store, test)
