"""The engine loop over a real store: group commit, dedupe, timers, delivery outcomes.

Each test runs a :class:`Processor` with its loop going, on a fresh database of each
selected backend (the ``store`` fixture), with a virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from journeyman.domain.core import Changes, Delivered
from journeyman.domain.ingest import read_identify, read_track
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event
from journeyman.runtime.processor import (
    DeliveryResult,
    HeldBack,
    Overloaded,
    Processor,
    TimerDue,
)
from journeyman.runtime.timers import TimerLoop
from journeyman.storage import Database
from tests.conftest import START
from tests.stores import run
from tests.waiting import eventually, turns, when

Build = Callable[..., Workspace]

WELCOME = """
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: greet
    send: hello_email
  - id: pause
    wait: 1d
"""

NEWSLETTER = """
kind: event
name: newsletter_signup
identity: email
schema:
  type: object
  required: [email]
  properties:
    email: {type: string}
---
kind: journey
name: news
entry: {event: newsletter_signup}
reentry: always
steps:
  - id: greet
    send: hello_email
"""

CART = """
kind: journey
name: cart
entry: {event: signed_up}
exit:
  - event: deleted
steps:
  - id: await_order
    wait_for: {event: purchased, timeout: 2d}
    on_event: thank
    on_timeout: nudge
  - id: nudge
    send: hello_sms
    next: done
  - id: thank
    wait: 7d
  - id: done
    end: finished
"""

ON_ERROR = """
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: greet
    send: hello_email
    on_error: fallback
  - id: done
    end: welcomed
  - id: fallback
    send: hello_sms
    next: by_sms
  - id: by_sms
    end: reached_by_sms
"""


class Clock:
    """A virtual clock: the processor reads it, the test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Commits:
    """Stands in for a store's commit: it can fail, or wait until the test lets it go on."""

    def __init__(self, store: Database) -> None:
        self.real = store.commit
        self.error: Exception | None = None
        self.entered = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def __call__(self, changes: Changes) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        await self.real(changes)


def live(
    store: Database,
    workspace: Workspace,
    test: Callable[[Processor], Awaitable[None]],
    clock: Clock | None = None,
    **options: Any,
) -> None:
    """Run ``test`` with a processor's loop going on the open ``store``, then drain it."""

    async def main() -> None:
        processor = Processor(store, workspace, clock=clock or Clock(), **options)
        loop = asyncio.create_task(processor.run())
        try:
            await test(processor)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            await processor.drain()

    run(store, main)


def track(workspace: Workspace, body: dict[str, Any], at: datetime = START) -> Event:
    return read_track({"event": "signed_up", **body}, workspace.events, at)


def identify(body: dict[str, Any], at: datetime = START) -> Event:
    return read_identify(body, at)


def sign_up(workspace: Workspace, user: str, message_id: str | None = None) -> list[Event]:
    """``user`` gets an email address and a phone number, then signs up."""
    traits = {"email": f"{user}@example.com", "phone": "+15550100"}
    return [
        identify({"userId": user, "traits": traits}),
        track(workspace, {"userId": user, "messageId": message_id}),
    ]


# group commit


@pytest.mark.latency  # the next batch forms while the last one commits
def test_concurrent_submits_share_a_few_commits_and_are_all_accepted(
    store: Database, workspace: Build
) -> None:
    ws = workspace(WELCOME)
    users = [f"u{n}" for n in range(200)]

    async def test(processor: Processor) -> None:
        calls = [processor.submit(sign_up(ws, user)) for user in users]
        assert await asyncio.gather(*calls) == [["accepted"] * 2] * len(users)
        assert processor.stats.batches <= 2
        assert processor.stats.events_accepted == 2 * len(users)
        snapshots = await store.load(users)
        assert all([i.step for i in snapshots[u].running] == ["pause"] for u in users)
        assert len(await store.messages(limit=1000)) == len(users)

    live(store, ws, test)


@pytest.mark.latency  # the next batch forms while the last one commits
def test_a_batch_takes_at_most_max_batch_triggers(store: Database, workspace: Build) -> None:
    ws = workspace(WELCOME)
    batches: list[Changes] = []

    async def test(processor: Processor) -> None:
        calls = [processor.submit(sign_up(ws, f"u{n}")) for n in range(60)]
        await asyncio.gather(*calls)
        assert [len(b.events) for b in batches] == [50, 50, 20]

    live(store, ws, test, max_batch=50, on_commit=batches.append)


# events


def test_a_repeated_message_id_is_a_duplicate_and_stored_once(
    store: Database, workspace: Build
) -> None:
    ws = workspace(WELCOME)
    hello, first = sign_up(ws, "u1", "m1")
    again = track(ws, {"userId": "u1", "messageId": "m1", "properties": {"plan": "pro"}})
    other = track(ws, {"userId": "u1", "event": "purchased", "messageId": "m2"})

    async def test(processor: Processor) -> None:
        assert await processor.submit([hello, first, again, other]) == [
            "accepted",
            "accepted",
            "duplicate",
            "accepted",
        ]
        assert await processor.submit([again]) == ["duplicate"]
        history = await store.history("u1")
        assert [(s.event.name, s.event.properties) for s in history] == [
            ("purchased", {}),
            ("signed_up", {}),
            ("identify", hello.properties),
        ]
        assert len(await store.instances_of("u1")) == 1
        assert len(await store.messages()) == 1
        assert processor.stats.events_duplicate == 2

    live(store, ws, test)


def test_events_of_one_profile_in_one_batch_see_each_other_in_order(
    store: Database, workspace: Build
) -> None:
    ws = workspace(WELCOME)
    batch = [
        identify({"userId": "u1", "traits": {"email": "u1@example.com", "firstName": "Ada"}}),
        track(ws, {"userId": "u1"}),
        track(ws, {"userId": "u1"}),
        identify({"userId": "u2", "traits": {"email": "u2@example.com"}}),
        track(ws, {"userId": "u2"}),
        identify({"userId": "u2", "traits": {"firstName": "Bo"}}),
    ]

    async def test(processor: Processor) -> None:
        assert await processor.submit(batch) == ["accepted"] * len(batch)
        assert processor.stats.batches == 1
        subjects = {m.profile_id: m.content["subject"] for m in await store.messages()}
        # u1's name came before the send; u2's after it
        assert subjects == {"u1": "Hello Ada", "u2": "Hello there"}
        # the second sign-up saw the instance the first one started
        assert len(await store.instances_of("u1")) == 1
        assert [s.event.name for s in await store.history("u1")] == [
            "signed_up",
            "signed_up",
            "identify",
        ]
        profile = await store.profile("u2")
        assert profile is not None
        assert profile.traits == {"email": "u2@example.com", "firstName": "Bo"}

    live(store, ws, test)


# profiles named by email


def test_an_email_identity_event_reaches_the_profile_with_that_email(
    store: Database, workspace: Build
) -> None:
    ws = workspace(NEWSLETTER)
    signup = track(ws, {"event": "newsletter_signup", "properties": {"email": "ada@example.com"}})

    async def test(processor: Processor) -> None:
        ada = {"email": "ada@example.com", "firstName": "Ada"}
        await processor.submit([identify({"userId": "u1", "traits": ada})])
        assert await processor.submit([signup]) == ["accepted"]
        assert [s.event.name for s in await store.history("u1")] == [
            "newsletter_signup",
            "identify",
        ]
        (message,) = await store.messages()
        assert (message.profile_id, message.content["to"]) == ("u1", "ada@example.com")
        assert message.content["subject"] == "Hello Ada"
        assert await store.profile("ada@example.com") is None

    live(store, ws, test)


def test_an_email_identity_event_for_a_new_address_makes_a_profile_keyed_by_it(
    store: Database, workspace: Build
) -> None:
    ws = workspace(NEWSLETTER)
    signup = track(ws, {"event": "newsletter_signup", "properties": {"email": "bo@example.com"}})

    async def test(processor: Processor) -> None:
        assert await processor.submit([signup]) == ["accepted"]
        profile = await store.profile("bo@example.com")
        assert profile is not None
        assert profile.traits == {"email": "bo@example.com"}
        (message,) = await store.messages()
        assert (message.profile_id, message.content["to"]) == ("bo@example.com", "bo@example.com")
        # the next event for the address finds the same profile
        assert await processor.submit([signup]) == ["accepted"]
        assert len(await store.history("bo@example.com")) == 2
        assert len(await store.messages()) == 2

    live(store, ws, test)


def test_an_email_identity_event_sees_an_email_given_earlier_in_its_batch(
    store: Database, workspace: Build
) -> None:
    ws = workspace(NEWSLETTER)
    batch = [
        identify({"userId": "u1", "traits": {"email": "cy@example.com"}}),
        track(ws, {"event": "newsletter_signup", "properties": {"email": "cy@example.com"}}),
    ]

    async def test(processor: Processor) -> None:
        assert await processor.submit(batch) == ["accepted", "accepted"]
        assert processor.stats.batches == 1
        assert [s.event.name for s in await store.history("u1")] == [
            "newsletter_signup",
            "identify",
        ]
        assert await store.profile("cy@example.com") is None

    live(store, ws, test)


# timers


def test_a_timer_fires_only_for_an_instance_still_waiting_for_it(
    store: Database, workspace: Build
) -> None:
    ws = workspace(CART)
    clock = Clock()

    async def test(processor: Processor) -> None:
        await processor.submit([e for u in ("u1", "u2", "u3") for e in sign_up(ws, u)])
        waiting = {u: (await store.load([u]))[u].running[0] for u in ("u1", "u2", "u3")}
        assert {i.wake_at for i in waiting.values()} == {START + timedelta(days=2)}
        stale = [TimerDue(i.id, u) for u, i in waiting.items()]
        # meanwhile u1 bought (its instance moved on to a later wait), u2 was deleted
        clock.now = START + timedelta(hours=1)
        await processor.submit(
            [
                track(ws, {"userId": "u1", "event": "purchased"}),
                track(ws, {"userId": "u2", "event": "deleted"}),
            ]
        )
        (u1,), (u2,) = [await store.instances_of(u) for u in ("u1", "u2")]
        assert (u1.step, u1.wake_at, u2.end_state) == (
            "thank",
            clock.now + timedelta(days=7),
            "exited",
        )
        before = {u: (await store.trace(u), await store.instances_of(u)) for u in ("u1", "u2")}
        clock.now = START + timedelta(days=2)
        assert await processor.submit(stale) == ["accepted", "accepted", "fired"]
        assert {
            u: (await store.trace(u), await store.instances_of(u)) for u in ("u1", "u2")
        } == before
        # only u3 still waited for this timer: it took the timeout path
        assert [m.profile_id for m in await store.messages()] == ["u3"]
        (u3,) = await store.instances_of("u3")
        assert (u3.status, u3.end_state) == ("ended", "finished")

    live(store, ws, test, clock)


def test_a_timer_delivered_early_changes_nothing(store: Database, workspace: Build) -> None:
    ws = workspace(CART)
    clock = Clock()

    async def test(processor: Processor) -> None:
        await processor.submit(sign_up(ws, "u1"))
        (waiting,) = await store.instances_of("u1")
        clock.now = START + timedelta(days=2) - timedelta(milliseconds=1)
        await processor.submit([TimerDue(waiting.id, "u1")])
        assert await store.instances_of("u1") == [waiting]
        assert await store.messages() == []

    live(store, ws, test, clock)


def test_the_timer_loop_fires_every_due_timer_once_in_batches_even_after_a_failed_commit(
    store: Database, workspace: Build
) -> None:
    ws = workspace(CART)
    clock = Clock()
    people = [f"u{n}" for n in range(23)]

    async def test(processor: Processor) -> None:
        await processor.submit([e for u in people for e in sign_up(ws, u)])
        clock.now = START + timedelta(days=2)
        commits = Commits(store)
        commits.error = OSError("disk full")
        processor.store.commit = commits  # type: ignore[method-assign]
        fired: list[int] = []
        batches = TimerLoop(store, processor, clock, batch=4, idle=0.01)
        loop = asyncio.create_task(batches.run())
        try:
            await commits.entered.wait()  # the first round fails: nothing of it is stored
            commits.error = None
            await eventually(every_message(store, len(people)), "every message", timeout=30)
            fired.append(processor.stats.timers_fired)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        messages = await store.messages(limit=100)
        assert sorted(m.profile_id for m in messages) == sorted(people)  # each exactly once
        assert fired == [len(people)]
        for person in people:
            (instance,) = await store.instances_of(person)
            assert (instance.status, instance.end_state) == ("ended", "finished")

    live(store, ws, test, clock)


# delivery outcomes


def test_a_failed_awaited_send_takes_on_error_and_settles_the_outbox_row_in_one_commit(
    store: Database, workspace: Build
) -> None:
    ws = workspace(ON_ERROR)
    batches: list[Changes] = []
    later = START + timedelta(minutes=1)
    clock = Clock()

    async def test(processor: Processor) -> None:
        await processor.submit(sign_up(ws, "u1"))
        (item,) = await store.claim(START, 10)
        (waiting,) = await store.instances_of("u1")
        assert (waiting.step, waiting.waiting) == ("greet", "delivery")
        clock.now = later
        settled = Delivered(item.id, "failed", "550 mailbox unavailable", later)
        result = DeliveryResult(item.effect, False, "550 mailbox unavailable", settled)
        assert await processor.submit([result]) == ["accepted"]
        (ended,) = await store.instances_of("u1")
        assert ended.end_state == "reached_by_sms"
        rows = {m.step: m for m in await store.messages()}
        assert (rows["greet"].status, rows["greet"].detail) == (
            "failed",
            "550 mailbox unavailable",
        )
        assert rows["fallback"].status == "queued"
        (together,) = [b for b in batches if b.deliveries]
        assert together.deliveries == [settled]
        assert together.instances[ended.id] == ended

    live(store, ws, test, clock, on_commit=batches.append)


def test_a_delivery_outcome_runs_while_the_batch_before_it_commits(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(ON_ERROR)
    later = START + timedelta(minutes=1)
    clock = Clock()
    gated = gate(store, monkeypatch)
    gated.gate.set()

    async def test(processor: Processor) -> None:
        await processor.submit(sign_up(ws, "u1"))
        (item,) = await store.claim(START, 10)
        clock.now = later
        gated.gate.clear()
        first = asyncio.ensure_future(processor.submit(sign_up(ws, "u2")))
        await gated.until(lambda: len(gated.committing) == 2)
        settled = Delivered(item.id, "failed", "550 mailbox unavailable", later)
        result = DeliveryResult(item.effect, False, "550 mailbox unavailable", settled)
        second = asyncio.ensure_future(processor.submit([result]))
        await gated.until(lambda: gated.loads_done == 3)  # the engine ran it ...
        await turns()
        assert len(gated.committing) == 2  # ... before the sign-up ahead was stored
        gated.gate.set()
        assert await first == ["accepted"] * 2
        assert await second == ["accepted"]
        (ended,) = await store.instances_of("u1")
        assert ended.end_state == "reached_by_sms"
        assert {m.step: m.status for m in await store.messages() if m.profile_id == "u1"} == {
            "greet": "failed",
            "fallback": "queued",
        }

    live(store, ws, gated_test(gated, test), clock)


# failures and back-pressure


def test_a_failed_commit_fails_every_caller_and_stores_nothing(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(WELCOME)
    events = [sign_up(ws, f"u{n}", f"m{n}") for n in range(3)]

    async def test(processor: Processor) -> None:
        commits = Commits(store)
        commits.error = OSError("disk full")
        monkeypatch.setattr(store, "commit", commits)
        calls = [processor.submit(e) for e in events]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert outcomes == [commits.error] * 3
        assert await store.seen([f"m{n}" for n in range(3)]) == set()
        assert await store.instances_of("u0") == []
        assert await store.messages() == []
        # the disk has room again: the loop goes on, and the retries are not duplicates
        commits.error = None
        assert await processor.submit([e for pair in events for e in pair]) == ["accepted"] * 6
        assert len(await store.messages()) == 3

    live(store, ws, test)


def every_message(store: Database, count: int) -> Callable[[], Awaitable[bool]]:
    """Whether the store holds ``count`` messages (or more), for :func:`eventually`."""

    async def made() -> bool:
        return len(await store.messages(limit=100)) >= count

    return made


# a batch runs while the one before it commits


class Gated:
    """Stands in for a store's commit: each one waits until the test opens the gate, and
    the first ``failures`` fail. Records what the engine loaded, batch by batch, and how
    many of those loads are done."""

    def __init__(self, store: Database, failures: int = 0) -> None:
        self.real_commit, self.real_load = store.commit, store.load
        self.gate = asyncio.Event()
        self.failures = failures
        self.committing: list[Changes] = []
        self.loaded: list[set[str]] = []
        self.loads_done = 0  # loads the store has answered

    async def commit(self, batch: Changes) -> None:
        self.committing.append(batch)
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        await self.real_commit(batch)

    async def until(self, condition: Callable[[], bool]) -> None:
        await eventually(when(condition), "the processor to get there")

    async def load(self, profile_ids: Any) -> Any:
        self.loaded.append(set(profile_ids))
        try:
            return await self.real_load(profile_ids)
        finally:
            self.loads_done += 1


def gate(store: Database, monkeypatch: pytest.MonkeyPatch, failures: int = 0) -> Gated:
    gated = Gated(store, failures)
    monkeypatch.setattr(store, "commit", gated.commit)
    monkeypatch.setattr(store, "load", gated.load)
    return gated


def gated_test(
    gated: Gated, test: Callable[[Processor], Awaitable[None]]
) -> Callable[[Processor], Awaitable[None]]:
    """``test``, then the gate opened whatever it did, so that the processor can drain."""

    async def opening(processor: Processor) -> None:
        try:
            await test(processor)
        finally:
            gated.gate.set()

    return opening


def test_the_engine_runs_a_batch_while_the_one_before_commits_on_the_state_it_leaves(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(CART)
    gated = gate(store, monkeypatch)

    async def test(processor: Processor) -> None:
        first = asyncio.ensure_future(processor.submit([track(ws, {"userId": "u1"})]))
        await gated.until(lambda: len(gated.committing) == 1)
        bought = track(ws, {"userId": "u1", "event": "purchased"})
        second = asyncio.ensure_future(processor.submit([bought]))
        await gated.until(lambda: gated.loads_done == 2)  # the engine ran it ...
        await turns()  # (what it would do next needs no I/O)
        assert len(gated.committing) == 1  # ... and it waits for the first to be stored
        gated.gate.set()
        assert await first == ["accepted"]
        assert await second == ["accepted"]
        # it ran on the instance the first one made, which took the purchase
        [instance] = await store.instances_of("u1")
        assert (instance.step, instance.status) == ("thank", "waiting")
        assert [s.event.name for s in await store.history("u1")] == ["purchased", "signed_up"]

    live(store, ws, gated_test(gated, test))


def test_a_batch_that_ran_on_one_whose_commit_failed_runs_again_on_what_is_stored(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(CART)
    gated = gate(store, monkeypatch, failures=1)

    async def test(processor: Processor) -> None:
        first = asyncio.ensure_future(processor.submit([track(ws, {"userId": "u1"})]))
        await gated.until(lambda: len(gated.committing) == 1)
        bought = track(ws, {"userId": "u1", "event": "purchased"})
        second = asyncio.ensure_future(processor.submit([bought]))
        await gated.until(lambda: len(gated.loaded) == 2)
        gated.gate.set()
        with pytest.raises(OSError, match="disk full"):
            await first
        assert await second == ["accepted"]
        # the purchase found no instance: the sign-up that made one was not stored
        assert await store.instances_of("u1") == []
        assert [s.event.name for s in await store.history("u1")] == ["purchased"]
        assert len(gated.loaded) == 3  # it ran again, on what the store holds

    live(store, ws, gated_test(gated, test))


def test_a_batch_that_looks_a_profile_up_by_email_waits_for_the_commit_before_it(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(NEWSLETTER)
    gated = gate(store, monkeypatch)

    async def test(processor: Processor) -> None:
        named = identify({"userId": "u1", "traits": {"email": "Ann@Example.com"}})
        first = asyncio.ensure_future(processor.submit([named]))
        await gated.until(lambda: len(gated.committing) == 1)
        signup = read_track(
            {"event": "newsletter_signup", "properties": {"email": "ann@example.com"}},
            ws.events,
            START,
        )
        second = asyncio.ensure_future(processor.submit([signup]))
        await turns()  # queued and taken in: none of that waits for I/O or time ...
        assert processor.backlog == 0
        assert len(gated.loaded) == 1  # ... but not run before the first is stored
        gated.gate.set()
        assert await first == ["accepted"]
        assert await second == ["accepted"]
        assert [i.journey for i in await store.instances_of("u1")] == ["news"]

    live(store, ws, gated_test(gated, test))


def test_many_queued_triggers_are_cut_in_two_so_that_one_half_runs_while_the_other_commits(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(WELCOME)
    gated = gate(store, monkeypatch)
    batches: list[Changes] = []

    async def test(processor: Processor) -> None:
        events = [track(ws, {"userId": f"u{n}"}) for n in range(64)]
        calls = asyncio.gather(*(processor.submit([e]) for e in events))
        await gated.until(lambda: len(gated.loaded) == 2)
        assert len(gated.committing) == 1  # the second half ran while the first commits
        gated.gate.set()
        assert await calls == [["accepted"]] * 64
        assert [len(b.events) for b in batches] == [32, 32]

    live(store, ws, gated_test(gated, test), on_commit=batches.append)


@pytest.mark.latency  # the next batch forms while the last one commits
def test_the_timer_loop_hands_over_the_next_due_timers_while_the_last_ones_commit(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(CART)
    clock = Clock()
    people = [f"u{n}" for n in range(12)]

    async def test(processor: Processor) -> None:
        await processor.submit([e for u in people for e in sign_up(ws, u)])
        clock.now = START + timedelta(days=2)
        gated = gate(store, monkeypatch)
        timers = TimerLoop(store, processor, clock, batch=4, idle=0.01)
        loop = asyncio.create_task(timers.run())
        try:
            await gated.until(lambda: len(gated.committing) == 1)
            # the engine runs the next four while the first four are still committing
            await gated.until(lambda: len(gated.loaded) == 2)
            assert len(gated.committing) == 1
            assert len(gated.loaded[0] | gated.loaded[1]) == 8
            gated.gate.set()
            await eventually(every_message(store, len(people)), "every message", timeout=30)
        finally:
            gated.gate.set()
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        messages = await store.messages(limit=100)
        assert sorted(m.profile_id for m in messages) == sorted(people)  # each exactly once
        assert processor.stats.timers_fired == len(people)

    live(store, ws, test, clock)


def test_submit_refuses_more_than_max_queue_unless_forced(
    store: Database, workspace: Build
) -> None:
    ws = workspace(WELCOME)

    async def test() -> None:
        processor = Processor(store, ws, clock=Clock(), max_queue=3)
        events = [track(ws, {"userId": f"u{n}"}) for n in range(5)]
        first = asyncio.ensure_future(processor.submit(events[:2]))
        await asyncio.sleep(0)  # let it queue
        assert processor.backlog == 2
        with pytest.raises(Overloaded):
            await processor.submit(events[2:4])
        assert processor.backlog == 2  # nothing of a refused call is queued
        forced = asyncio.ensure_future(processor.submit(events[2:], force=True))
        await asyncio.sleep(0)
        assert processor.backlog == 5
        await processor.drain()
        assert await first == ["accepted"] * 2
        assert await forced == ["accepted"] * 3

    run(store, test)


def test_drain_after_cancel_finishes_the_batch_in_flight_and_the_queue(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(WELCOME)
    users = [f"u{n}" for n in range(5)]

    async def test() -> None:
        commits = Commits(store)
        commits.gate = asyncio.Event()
        monkeypatch.setattr(store, "commit", commits)
        processor = Processor(store, ws, clock=Clock(), max_batch=2)
        loop = asyncio.create_task(processor.run())
        calls = [asyncio.ensure_future(processor.submit([track(ws, {"userId": u})])) for u in users]
        await commits.entered.wait()  # the first batch of two is committing
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        assert processor.backlog == 3
        commits.gate.set()
        await processor.drain()
        assert processor.backlog == 0
        assert [await call for call in calls] == [["accepted"]] * 5
        assert processor.stats.batches == 3
        snapshots = await store.load(users)
        assert all(len(snapshots[u].running) == 1 for u in users)

    run(store, test)


def test_triggers_withdrawn_by_a_cancelled_submitter_are_never_applied(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that loses a partition cancels its batch in hand: what the processor has
    not run yet of it must not be applied later, after the partition's new owner applied
    later events of the same profiles. A plain submitter that goes away (the API process
    stopping) still has its triggers stored, as before."""
    ws = workspace(WELCOME)

    async def test() -> None:
        commits = Commits(store)
        commits.gate = asyncio.Event()
        monkeypatch.setattr(store, "commit", commits)
        processor = Processor(store, ws, clock=Clock())
        loop = asyncio.create_task(processor.run())
        first = asyncio.ensure_future(processor.submit([track(ws, {"userId": "u0"})]))
        await commits.entered.wait()  # the first batch is committing; the next ones queue
        lost = [track(ws, {"userId": u}) for u in ("u1", "u2")]
        running = asyncio.ensure_future(processor.submit_each(lost, force=True, withdraw=True))
        plain = asyncio.ensure_future(processor.submit([track(ws, {"userId": "u3"})]))
        await turns()
        assert processor.backlog == 0  # the engine ran them, on what the first batch leaves
        late = [track(ws, {"userId": "u4"})]
        queued = asyncio.ensure_future(processor.submit_each(late, force=True, withdraw=True))
        await turns()
        assert processor.backlog == 1
        for call in (running, plain, queued):
            call.cancel()
        commits.gate.set()
        assert await first == ["accepted"]
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await processor.drain()
        assert processor.backlog == 0
        for withdrawn in ("u1", "u2", "u4"):
            assert await store.history(withdrawn) == []
        assert [s.event.name for s in await store.history("u3")] == ["signed_up"]

    run(store, test)


def test_a_trigger_that_cannot_be_stored_fails_alone(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(WELCOME)
    real = store.commit

    async def refuse_poison(batch: Changes) -> None:
        if any(e.name == "poison" for e in batch.events):
            raise RuntimeError("cannot store this one")
        await real(batch)

    monkeypatch.setattr(store, "commit", refuse_poison)

    async def test(processor: Processor) -> None:
        good = [track(ws, {"userId": u}) for u in ("u1", "u2")]
        poison = track(ws, {"userId": "u3", "event": "poison"})
        results = await asyncio.gather(
            *(processor.submit([e]) for e in (good[0], poison, good[1])),
            return_exceptions=True,
        )
        assert results[0] == results[2] == ["accepted"]
        assert isinstance(results[1], RuntimeError)
        assert [await store.profile(u) is not None for u in ("u1", "u2", "u3")] == [
            True,
            True,
            False,
        ]

    live(store, ws, test)


def test_after_a_failed_batch_no_later_event_of_a_profile_is_stored_before_its_earlier_one(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails the whole batch and then the first try alone (it is coming back):
    the profile's second event must not be stored before its first, or the history and
    every decision taken on it would be out of order."""
    ws = workspace(WELCOME)
    real = store.commit
    failures = [RuntimeError("connection lost"), RuntimeError("connection lost")]

    async def flaky(batch: Changes) -> None:
        if failures:
            raise failures.pop(0)
        await real(batch)

    monkeypatch.setattr(store, "commit", flaky)

    async def test(processor: Processor) -> None:
        first, second = (track(ws, {"userId": "u1", "messageId": m}) for m in ("m1", "m2"))
        other = track(ws, {"userId": "u2", "messageId": "m3"})
        results = await asyncio.gather(
            *(processor.submit([e]) for e in (first, second, other)), return_exceptions=True
        )
        # the second is held back behind the first, failed for the same reason
        assert [type(r) for r in results] == [RuntimeError, HeldBack, list]
        assert isinstance(results[1], HeldBack)
        assert results[1].cause is results[0]
        assert await store.seen(["m1", "m2", "m3"]) == {"m3"}  # u2 is not held up
        # tried again in order, as a worker does: both stored, the first one first
        assert await processor.submit([first, second]) == ["accepted", "accepted"]
        assert [s.event.message_id for s in await store.history("u1")] == ["m2", "m1"]

    live(store, ws, test)
