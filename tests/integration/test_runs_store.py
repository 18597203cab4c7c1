"""Scheduled runs in the store, the same on every backend (memory, SQLite, PostgreSQL): one
process holds a run at a time, a page saved moves its cursor only while the lease is its
own, a lapsed lease lets another take the run over from the cursor, a cancel stops it, and
the audience is read in profile id order from the cursor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from journeyman.domain.core import Changes, TimerDue
from journeyman.domain.model import Workspace
from journeyman.domain.segments import segment_event
from journeyman.domain.state import Profile
from journeyman.runtime.processor import Processor
from journeyman.runtime.schedules import Scheduler
from journeyman.storage import Database
from journeyman.storage.runs import Run, RunStore
from tests.conftest import START
from tests.integration.test_owner import running
from tests.stores import run

LEASE = timedelta(seconds=10)


def _run(run_id: str = "weekly@1", due_in: int = 0) -> Run:
    due = START + timedelta(hours=due_in)
    return Run(run_id, "weekly", None, due, "running", "", 0, 5, 200.0, START, START)


async def _people(store: Database, ids: list[str], members: list[str]) -> None:
    changes = Changes(at=START)
    changes.profiles = {pid: Profile(id=pid) for pid in ids}
    changes.events = [segment_event(pid, "news", True, START) for pid in members]
    await store.commit(changes)


def test_one_process_holds_a_run_and_another_takes_it_over_from_its_cursor(
    store: Database,
) -> None:
    async def check() -> None:
        assert isinstance(store, RunStore)
        assert await store.add_run(_run())
        assert not await store.add_run(_run())  # two processes, one run
        now = START + timedelta(seconds=1)
        held = await store.claim_run("a", now, now + LEASE)
        assert held == _run()
        assert await store.claim_run("b", now, now + LEASE) is None
        assert await store.run_progress(held, "a", "p2", 2, now, now + LEASE)
        assert not await store.run_progress(held, "b", "p9", 9, now, now + LEASE)
        later = now + LEASE
        taken = await store.claim_run("b", later, later + LEASE)
        assert taken is not None
        assert (taken.cursor, taken.entered, taken.updated_at) == ("p2", 2, now)
        assert not await store.run_progress(held, "a", "p3", 3, later, later + LEASE)
        await store.finish_run(taken, "b", later)
        (done,) = await store.runs_of("weekly", 5)
        assert (done.state, done.cursor, done.entered) == ("done", "p2", 2)
        assert await store.claim_run("c", later + LEASE, later + 2 * LEASE) is None

    run(store, check)


def test_the_oldest_run_is_claimed_first_and_runs_are_listed_newest_first(
    store: Database,
) -> None:
    async def check() -> None:
        assert isinstance(store, RunStore)
        for run_id, hours in (("weekly@2", 2), ("weekly@1", 1), ("weekly@3", 3)):
            await store.add_run(_run(run_id, hours))
        now = START + timedelta(hours=4)
        first = await store.claim_run("a", now, now + LEASE)
        assert first is not None
        assert first.id == "weekly@1"
        assert [r.id for r in await store.runs_of("weekly", 2)] == ["weekly@3", "weekly@2"]
        assert await store.runs_of("other", 5) == []

    run(store, check)


def test_a_cancelled_run_stops_its_holder_and_is_claimed_no_more(store: Database) -> None:
    async def check() -> None:
        assert isinstance(store, RunStore)
        await store.add_run(_run())
        held = await store.claim_run("a", START, START + LEASE)
        assert held is not None
        cancelled, changed = await store.cancel_run("weekly", held.id, START)
        assert changed
        assert cancelled is not None
        assert cancelled.state == "cancelled"
        assert await store.cancel_run("weekly", held.id, START) == (cancelled, False)
        assert await store.cancel_run("other", held.id, START) == (None, False)
        assert await store.cancel_run("weekly", "nope", START) == (None, False)
        assert not await store.run_progress(held, "a", "p1", 1, START, START + LEASE)
        assert await store.claim_run("b", START + 2 * LEASE, START + 3 * LEASE) is None

    run(store, check)


def test_the_audience_is_paged_in_id_order_from_the_cursor(store: Database) -> None:
    async def check() -> None:
        assert isinstance(store, RunStore)
        await _people(store, ["p3", "p1", "p5", "p2", "p4"], members=["p4", "p2", "p5"])
        assert await store.audience(None, "", 2) == ["p1", "p2"]
        assert await store.audience(None, "p2", 10) == ["p3", "p4", "p5"]
        assert await store.audience("news", "", 2) == ["p2", "p4"]
        assert await store.audience("news", "p4", 2) == ["p5"]
        assert await store.audience("nobody", "", 2) == []
        assert await store.audience_size(None) == 5
        assert await store.audience_size("news") == 3

    run(store, check)


SCHEDULED = """
kind: journey
name: weekly
reentry: always
entry:
  schedule: {every: "mon 09:00", timezone: UTC, rate: 1000000}
steps:
  - {id: hold, wait: 1d}
---
kind: journey
name: morning
reentry: always
entry:
  schedule: {every: "day 09:00", timezone: profile}
steps:
  - {id: hold, wait: 1d}
"""
ZONES = {"u1": "Asia/Tokyo", "u2": "Europe/Paris", "u3": "UTC"}


def test_every_backend_runs_a_schedule_as_serve_does_and_sets_each_members_local_clock(
    store: Database, workspace: Callable[..., Workspace]
) -> None:
    """The scheduler on the backend, the processor and the virtual clock: the weekly run
    enters every profile; the first run of the `timezone: profile` schedule only sets each
    member's clock, which then enters them at their own 09:00."""
    ws = workspace(SCHEDULED)
    now = [START]

    def clock() -> datetime:
        return now[0]

    async def check() -> None:
        assert isinstance(store, RunStore)
        changes = Changes(at=START)  # profiles as an import leaves them: no clock yet
        changes.profiles = {p: Profile(id=p, traits={"timezone": z}) for p, z in ZONES.items()}
        await store.commit(changes)
        async with running(Processor(store, ws, clock=clock)) as processor:
            scheduler = Scheduler(store, lambda: ws, processor.submit, clock)
            await scheduler.tick()  # first sight of both schedules
            clocks = {r.journey: r for r in await store.runs_of("morning", 5)}
            assert clocks["morning"].id.startswith("morning@clocks-")
            assert (clocks["morning"].state, clocks["morning"].entered) == ("done", 3)
            loaded = await store.load(list(ZONES))
            assert {p: s.profile.wake_at for p, s in loaded.items()} == {
                "u1": datetime(2026, 1, 6, 0, tzinfo=UTC),  # 09:00 in Tokyo came at START
                "u2": datetime(2026, 1, 5, 8, tzinfo=UTC),
                "u3": datetime(2026, 1, 5, 9, tzinfo=UTC),
            }
            assert all(not s.running for s in loaded.values())  # the clocks run enters nobody

            now[0] = START + timedelta(hours=8)  # 09:00 in Paris
            due = await store.due(now[0], 10)
            assert [t.profile_id for t in due] == ["u2"]
            await processor.submit([TimerDue(t.id, t.profile_id) for t in due])

            now[0] = START + timedelta(hours=9)  # 09:00 in UTC: u3's own, and the weekly run
            await scheduler.tick()
            (weekly,) = await store.runs_of("weekly", 5)
            assert (weekly.state, weekly.entered, weekly.total) == ("done", 3, 3)
            await processor.submit(
                [TimerDue(t.id, t.profile_id) for t in await store.due(now[0], 10)]
            )
            loaded = await store.load(list(ZONES))
            journeys = {p: sorted(i.journey for i in s.running) for p, s in loaded.items()}
            assert journeys == {
                "u1": ["weekly"],
                "u2": ["morning", "weekly"],
                "u3": ["morning", "weekly"],
            }
            assert loaded["u3"].profile.wake_at == datetime(2026, 1, 6, 9, tzinfo=UTC)

    run(store, check)
