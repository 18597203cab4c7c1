"""Delivery outcomes are recorded as soon as each provider answers.

A crash repeats the sends whose outcome is not recorded: so an outcome must not wait for
other sends of the same claim to finish. Each test delivers to a real SMTP server on
127.0.0.1 that holds the email to one recipient until the test lets it go, and answers
the others at once; the dispatcher runs over a real store of each selected backend with
the processor's loop going.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from journeyman.channels.base import Channel, Delivery
from journeyman.channels.file import FileChannel
from journeyman.channels.smtp import SmtpChannel
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event, SendMessage
from journeyman.runtime.dispatcher import Dispatcher
from journeyman.runtime.processor import Processor
from journeyman.scaleout.worker import TellingDispatcher
from journeyman.storage import Database
from journeyman.storage.base import Delivered
from journeyman.storage.postgres import PostgresStore
from tests.integration.test_processor import (
    ON_ERROR,
    WELCOME,
    Build,
    Clock,
    identify,
    live,
    sign_up,
    track,
)
from tests.servers import SmtpServer
from tests.waiting import eventually, turns

SLOW = "slow@example.com"
FAST = ["u1", "u2", "u3", "u4"]


class HoldingSmtpServer(SmtpServer):
    """Holds the DATA of an email to :data:`SLOW` until :meth:`release`; answers the others
    at once."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()  # the slow email is in, and held
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if SLOW in envelope.rcpt_tos:
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self._released.wait)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp() -> Iterator[HoldingSmtpServer]:
    server = HoldingSmtpServer()
    with server:
        try:
            yield server
        finally:
            server.release()


def dispatcher(
    store: Database, processor: Processor, server: SmtpServer, clock: Clock, **options: Any
) -> Dispatcher:
    email = SmtpChannel(
        "email",
        host="127.0.0.1",
        port=server.port,
        sender="j@example.com",
        security="none",
        timeout=300,  # the held email never times out while a test waits
    )
    return Dispatcher(store, processor, {"email": email}, clock, env={}, **options)


async def until(condition: Any) -> None:
    """Wait (30 s at most: a "does it ever happen" bound, not a timing) for ``condition``."""
    await eventually(condition, getattr(condition, "__name__", "the condition"), timeout=30)


async def statuses(store: Database) -> dict[str, str]:
    return {m.profile_id: m.status for m in await store.messages(limit=100)}


def everyone(workspace: Workspace) -> list[Event]:
    """Four profiles whose emails go fast, and one whose email the server holds."""
    fast = [e for user in FAST for e in sign_up(workspace, user)]
    slow = [identify({"userId": "slow", "traits": {"email": SLOW}})]
    return [*fast, *slow, track(workspace, {"userId": "slow"})]


def test_fast_outcomes_are_recorded_while_a_slow_send_is_still_in_flight(
    store: Database, workspace: Build, smtp: HoldingSmtpServer
) -> None:
    ws = workspace(WELCOME)
    clock = Clock()

    async def test(processor: Processor) -> None:
        await processor.submit(everyone(ws))
        claimed = await store.claim(clock(), 100)
        assert len(claimed) == 5
        delivering = asyncio.ensure_future(
            dispatcher(store, processor, smtp, clock).deliver(claimed)
        )
        try:
            # The slow email is held by its provider; the fast ones were answered: their
            # outcomes are in the store now, so a crash at this instant repeats the slow one
            # only.
            await until(lambda: asyncio.to_thread(smtp.holding.wait, 0))
            fast = dict.fromkeys(FAST, "sent")

            async def fast_recorded() -> bool:
                found = await statuses(store)
                return {u: found[u] for u in FAST} == fast

            await until(fast_recorded)
            assert (await statuses(store))["slow"] == "queued"
            assert not delivering.done()
        finally:
            smtp.release()
        await delivering
        assert await statuses(store) == {**fast, "slow": "sent"}
        assert len(smtp.received) == 5

    live(store, ws, test, clock)


def test_outcomes_the_engine_awaits_move_their_instances_on_while_a_slow_send_is_in_flight(
    store: Database, workspace: Build, smtp: HoldingSmtpServer
) -> None:
    ws = workspace(ON_ERROR)
    clock = Clock()

    async def test(processor: Processor) -> None:
        await processor.submit(everyone(ws))
        claimed = await store.claim(clock(), 100)
        delivering = asyncio.ensure_future(
            dispatcher(store, processor, smtp, clock).deliver(claimed)
        )
        try:

            async def fast_welcomed() -> bool:
                ends = [(await store.instances_of(u))[0].end_state for u in FAST]
                return ends == ["welcomed"] * len(FAST)

            await until(fast_welcomed)
            (slow,) = await store.instances_of("slow")
            assert (slow.status, slow.waiting) == ("waiting", "delivery")
            assert (await statuses(store))["slow"] == "queued"
        finally:
            smtp.release()
        await delivering
        (slow,) = await store.instances_of("slow")
        assert slow.end_state == "welcomed"

    live(store, ws, test, clock)


def test_an_outcome_the_store_refuses_leaves_the_others_recorded(
    store: Database, workspace: Build, smtp: HoldingSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(WELCOME)
    clock = Clock()
    smtp.release()  # no send is held here
    real = store.settle

    async def test(processor: Processor) -> None:
        await processor.submit(everyone(ws))
        claimed = await store.claim(clock(), 100)
        (bad,) = [item.id for item in claimed if item.effect.profile_id == "u2"]

        async def refuse_bad(rows: list[Delivered]) -> None:
            if any(row.id == bad for row in rows):
                raise RuntimeError("cannot store this one")
            await real(rows)

        monkeypatch.setattr(store, "settle", refuse_bad)
        sending = dispatcher(store, processor, smtp, clock)
        sending.record_tries, sending.idle = 2, 0.01
        with contextlib.suppress(RuntimeError):  # when the refused one was written alone
            await sending.deliver(claimed)
        found = await statuses(store)
        assert found.pop("u2") == "queued"  # still claimed: it goes out again after its lease
        assert set(found.values()) == {"sent"}

    live(store, ws, test, clock)


@pytest.mark.shared
def test_a_worker_records_fast_outcomes_while_a_slow_send_is_still_in_flight(
    store: Database, workspace: Build, smtp: HoldingSmtpServer
) -> None:
    """The same with a scale-out worker's dispatcher, which keeps outcomes for the owner
    of the profile (PostgreSQL only: workers share the database)."""
    ws = workspace(ON_ERROR)
    clock = Clock()

    async def test(processor: Processor) -> None:
        assert isinstance(store, PostgresStore)
        await processor.submit(everyone(ws))
        claimed = await store.claim(clock(), 100)
        email = dispatcher(store, processor, smtp, clock).channels["email"]
        telling = TellingDispatcher(store, processor, {"email": email}, clock, env={})
        delivering = asyncio.ensure_future(telling.deliver(claimed))
        try:

            async def fast_recorded() -> bool:
                found = await statuses(store)
                return all(found[u] == "sent" for u in FAST)

            await until(fast_recorded)
            assert (await statuses(store))["slow"] == "queued"
            assert not delivering.done()
        finally:
            smtp.release()
        await delivering
        assert set((await statuses(store)).values()) == {"sent"}

    live(store, ws, test, clock)


@pytest.mark.shared
def test_an_outcome_a_workers_store_refuses_leaves_the_others_recorded(
    store: Database, workspace: Build, smtp: HoldingSmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(WELCOME)
    clock = Clock()
    smtp.release()  # no send is held here

    async def test(processor: Processor) -> None:
        assert isinstance(store, PostgresStore)
        real = store.settle_telling
        await processor.submit(everyone(ws))
        claimed = await store.claim(clock(), 100)
        (bad,) = [item.id for item in claimed if item.effect.profile_id == "u2"]

        async def refuse_bad(rows: list[Delivered], telling: list[Delivered], *args: Any) -> None:
            # A message sent is told (its message_sent event goes to the profile's owner).
            if any(row.id == bad for row in [*rows, *telling]):
                raise RuntimeError("cannot store this one")
            await real(rows, telling, *args)

        monkeypatch.setattr(store, "settle_telling", refuse_bad)
        email = dispatcher(store, processor, smtp, clock).channels["email"]
        telling = TellingDispatcher(store, processor, {"email": email}, clock, env={})
        telling.record_tries, telling.idle = 2, 0.01
        with contextlib.suppress(RuntimeError):  # when the refused one was written alone
            await telling.deliver(claimed)
        found = await statuses(store)
        assert found.pop("u2") == "queued"  # still claimed: it goes out again after its lease
        assert set(found.values()) == {"sent"}

    live(store, ws, test, clock)


def test_outcomes_that_come_together_are_recorded_in_one_write(
    store: Database, workspace: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A channel that takes messages in batches answers them all at once: one write."""
    ws = workspace(WELCOME)
    clock = Clock()
    real = store.settle
    writes: list[int] = []

    async def counting(rows: list[Delivered]) -> None:
        writes.append(len(rows))
        await real(rows)

    async def test(processor: Processor) -> None:
        await processor.submit(everyone(ws))
        claimed = await store.claim(clock(), 100)
        monkeypatch.setattr(store, "settle", counting)
        email = FileChannel("email", tmp_path / "mail.jsonl")
        await Dispatcher(store, processor, {"email": email}, clock, env={}).deliver(claimed)
        assert writes == [5]
        assert set((await statuses(store)).values()) == {"sent"}

    live(store, ws, test, clock)


def test_a_send_not_started_before_its_claim_nears_its_end_is_left_for_a_later_claim(
    store: Database, workspace: Build, smtp: HoldingSmtpServer
) -> None:
    # One send at a time: the slow email (claimed first) holds the only slot while the
    # claim's lease runs out; the sends queued behind it must not go out after that, since
    # another process may have claimed their rows by then.
    ws = workspace(WELCOME)
    clock = Clock()

    async def test(processor: Processor) -> None:
        slow = [identify({"userId": "slow", "traits": {"email": SLOW}})]
        await processor.submit([*slow, track(ws, {"userId": "slow"})])
        await processor.submit([e for user in FAST for e in sign_up(ws, user)])
        claimed = await store.claim(clock(), 100)
        assert claimed[0].effect.profile_id == "slow"
        sender = dispatcher(store, processor, smtp, clock, concurrency=1)
        deadline = clock() + sender.lease * 3 / 4
        delivering = asyncio.ensure_future(sender.deliver(claimed, deadline))
        await until_held(smtp)
        clock.now = deadline  # the round took three quarters of the lease so far
        smtp.release()
        await delivering
        assert await statuses(store) == {"slow": "sent", **dict.fromkeys(FAST, "queued")}
        assert len(smtp.received) == 1
        # Claimed again (here, once the lease has passed), they go out.
        later = await store.claim(clock() + sender.lease, 100)
        await sender.deliver(later)
        assert await statuses(store) == dict.fromkeys(["slow", *FAST], "sent")

    live(store, ws, test, clock)


async def until_held(smtp: HoldingSmtpServer) -> None:
    await until(lambda: asyncio.to_thread(smtp.holding.wait, 0))


class CountingChannel(Channel):
    """A provider that accepts every email at once, and notes how many sends had been
    answered without their outcome being written when each one began."""

    name = "email"
    rate = None

    def __init__(self) -> None:
        self.started = 0
        self.written = 0  # outcomes the store has taken
        self.unrecorded: list[int] = []  # answered, not yet written, at each send's start

    async def send(self, message: SendMessage) -> Delivery:
        self.unrecorded.append(self.started - self.written)
        self.started += 1
        await asyncio.sleep(0)  # a provider answers on a later turn of the loop
        return Delivery("sent")


def test_a_crash_repeats_at_most_the_dispatchers_concurrency_however_slow_the_writes(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send holds its slot until its outcome is written: while the store is slow to take
    outcomes, no more sends start, so a crash can repeat at most ``concurrency`` of them
    (those answered but not recorded, and those under way)."""
    ws = workspace(WELCOME)
    clock = Clock()
    channel = CountingChannel()
    real = store.settle
    gate, entered = asyncio.Event(), asyncio.Event()

    async def slow_settle(rows: list[Delivered]) -> None:
        entered.set()
        await gate.wait()
        await real(rows)
        channel.written += len(rows)

    async def test(processor: Processor) -> None:
        users = [f"u{n}" for n in range(6)]
        await processor.submit([e for user in users for e in sign_up(ws, user)])
        claimed = await store.claim(clock(), 100)
        monkeypatch.setattr(store, "settle", slow_settle)
        sender = Dispatcher(store, processor, {"email": channel}, clock, env={}, concurrency=2)
        delivering = asyncio.ensure_future(sender.deliver(claimed))
        await entered.wait()
        await turns()
        assert channel.started == 2  # a crash now would repeat these two at most
        gate.set()
        await delivering
        assert channel.started == len(users)
        assert max(channel.unrecorded) <= 1  # with the one starting, two in all
        assert set((await statuses(store)).values()) == {"sent"}

    live(store, ws, test, clock)
