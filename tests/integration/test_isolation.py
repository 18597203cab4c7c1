"""One bad item never blocks the others: a time zone that is no zone, a trigger that makes
the engine raise, a timer that cannot be stored.

The processor tests run a :class:`Processor` over a real store of each selected backend,
with a virtual clock (see tests/integration/test_processor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from journeyman.api import create_app
from journeyman.cli import main
from journeyman.domain.core import Changes
from journeyman.domain.engine import Engine
from journeyman.domain.times import TimeFormatError, parse_zone
from journeyman.runtime.processor import Processor, TimerDue
from journeyman.runtime.service import Runtime
from journeyman.runtime.timers import TimerLoop
from journeyman.storage import Database, open_store
from journeyman.workspace import load_workspace
from tests.conftest import BASE, START, write_workspace
from tests.integration.test_api import KEYS, WRITE
from tests.integration.test_processor import CART, Build, Clock, identify, live, sign_up, track
from tests.waiting import eventually, when

ODD_ZONES = ["a" * 300, "../../etc/passwd", "UTC\x00", "/etc/localtime", "Europe", "Europe/"]

# Tokyo is 9 hours ahead: START, Monday 00:00 UTC, is 09:00 there; 08:00 comes at 23:00 UTC.
MORNING = """
kind: settings
timezone: Asia/Tokyo
---
kind: journey
name: morning
entry: {event: signed_up}
steps:
  - id: morning
    wait: {until_local: "08:00"}
  - id: hello
    send: hello_email
"""

QUIET = """
kind: rules
quiet_hours: {from: "21:00", to: "08:00", channels: [email], action: defer}
---
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: hello
    send: hello_email
"""


# zones


@pytest.mark.parametrize("name", ODD_ZONES)
def test_a_zone_name_that_is_long_or_a_path_is_refused_as_no_zone(name: str) -> None:
    with pytest.raises(TimeFormatError, match="is not an IANA time zone name"):
        parse_zone(name)


def test_a_refused_zone_name_is_cut_short_in_the_message() -> None:
    with pytest.raises(TimeFormatError) as refused:
        parse_zone("a" * 300)
    assert len(str(refused.value)) < 150
    assert "(300 characters)" in str(refused.value)


@pytest.mark.parametrize("name", ["a" * 300, "Europe", "UTC\\0"])
def test_validate_names_the_field_of_a_settings_zone_that_is_no_zone(
    tmp_path: Path, name: str
) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, f'kind: settings\ntimezone: "{name}"\n')
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = [line for line in result.output.splitlines() if "timezone" in line]
    assert line.startswith("doc01.yaml:2: settings: 'timezone': ")
    assert line.endswith("is not an IANA time zone name such as Europe/Paris")


def test_a_long_journeyman_timezone_is_a_problem_that_names_the_variable(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path / "ws", BASE)
    loaded = load_workspace(folder, env={"JOURNEYMAN_TIMEZONE": "a" * 300})
    (problem,) = [str(p) for p in loaded.problems]
    assert problem.startswith("JOURNEYMAN_TIMEZONE:")
    assert problem.endswith("is not an IANA time zone name such as Europe/Paris")


def test_a_long_timezone_trait_waits_in_the_workspace_zone_and_the_trace_says_why(
    store: Database, workspace: Build
) -> None:
    ws = workspace(MORNING)
    clock = Clock()
    morning_in_tokyo = START + timedelta(hours=23)

    async def test(processor: Processor) -> None:
        odd = identify(
            {"userId": "u1", "traits": {"email": "u1@example.com", "timezone": "a" * 300}}
        )
        assert await processor.submit([odd, track(ws, {"userId": "u1"})]) == ["accepted"] * 2
        (waiting,) = await store.instances_of("u1")
        assert (waiting.step, waiting.wake_at) == ("morning", morning_in_tokyo)
        (line,) = [r.detail for r in await store.trace("u1") if r.outcome == "waiting"]
        assert line.startswith(
            f"wait until {morning_in_tokyo:%Y-%m-%d %H:%M:%S} UTC; the timezone trait"
        )
        assert "is not an IANA time zone name" in line
        assert line.endswith("Asia/Tokyo is used")
        # later events of the profile are taken, and its timer fires
        later = track(ws, {"userId": "u1", "event": "purchased"})
        assert await processor.submit([later]) == ["accepted"]
        clock.now = morning_in_tokyo
        assert await processor.submit([TimerDue(waiting.id, "u1")]) == ["fired"]
        assert [m.profile_id for m in await store.messages()] == ["u1"]

    live(store, ws, test, clock)


def test_quiet_hours_with_an_odd_timezone_trait_use_the_workspace_zone_and_say_so(
    store: Database, workspace: Build
) -> None:
    ws = workspace(QUIET)
    clock = Clock(START - timedelta(hours=2))  # Sunday 22:00 UTC, in quiet hours

    async def test(processor: Processor) -> None:
        traits = {"email": "u1@example.com", "timezone": "../../etc/passwd"}
        events = [identify({"userId": "u1", "traits": traits}), track(ws, {"userId": "u1"})]
        assert await processor.submit(events) == ["accepted"] * 2
        (line,) = [r.detail for r in await store.trace("u1") if r.outcome == "deferred"]
        assert line.startswith("quiet hours 21:00-08:00 UTC, until ")
        assert "'../../etc/passwd' is not an IANA time zone name" in line

    live(store, ws, test, clock)


# a trigger that makes the engine raise


def crash_for(monkeypatch: pytest.MonkeyPatch, method: str, profile_id: str) -> None:
    """Make ``Engine.<method>`` raise for one profile, as a fault of the engine's would."""
    real = getattr(Engine, method)

    def crashing(self: Engine, profile: Any, *args: Any, **kwargs: Any) -> Any:
        if profile.id == profile_id:
            raise ZeroDivisionError("a fault of the engine's")
        return real(self, profile, *args, **kwargs)

    monkeypatch.setattr(Engine, method, crashing)


def test_a_timer_that_makes_the_engine_raise_fails_its_instance_alone(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(CART)
    clock = Clock()
    people = ["u1", "bad", "u2"]

    async def test(processor: Processor) -> None:
        await processor.submit([e for u in people for e in sign_up(ws, u)])
        waiting = {u: (await store.instances_of(u))[0] for u in people}
        crash_for(monkeypatch, "on_timer", "bad")
        clock.now = START + timedelta(days=2)
        results = await processor.submit([TimerDue(waiting[u].id, u) for u in people])
        assert results == ["fired"] * 3
        # the others took their timeout path in the same batch
        assert sorted(m.profile_id for m in await store.messages()) == ["u1", "u2"]
        (bad,) = await store.instances_of("bad")
        assert (bad.status, bad.end_state) == ("ended", "failed")
        (ended,) = [r for r in await store.trace("bad") if r.outcome == "ended"]
        assert (
            ended.detail
            == 'failed: the engine failed: ZeroDivisionError("a fault of the engine\'s")'
        )
        # it is not due any more: nothing comes back to fail again
        assert [i.profile_id for i in await store.due(clock.now, 10)] == []

    live(store, ws, test, clock)


def test_an_event_that_makes_the_engine_raise_is_stored_and_recorded_and_fails_no_other(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(CART)

    async def test(processor: Processor) -> None:
        await processor.submit(sign_up(ws, "bad"))
        crash_for(monkeypatch, "on_event", "bad")
        events = [
            track(ws, {"userId": "u1"}),
            track(ws, {"userId": "bad", "event": "purchased", "messageId": "m-bad"}),
            track(ws, {"userId": "u2"}),
        ]
        assert await processor.submit(events) == ["accepted"] * 3
        assert [len(await store.instances_of(u)) for u in ("u1", "u2")] == [1, 1]
        (waiting,) = await store.instances_of("bad")
        assert waiting.status == "waiting"  # it goes on as if the event had not come
        (line,) = [r for r in await store.trace("bad") if r.outcome == "failed"]
        assert (line.instance_id, line.step) == (waiting.id, "await_order")
        assert line.detail.startswith("purchased could not be applied: the engine failed: ")
        # the event is stored: sent again, it is a duplicate, not a second failure
        assert await processor.submit([events[1]]) == ["duplicate"]

    live(store, ws, test)


# the timer loop


def test_a_timer_that_cannot_be_stored_is_held_back_while_the_others_fire(
    store: Database, workspace: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(CART)
    clock = Clock()
    people = ["u1", "u2", "bad", "u3", "u4"]
    real = store.commit
    refused: list[int] = []
    looks: list[int] = []
    real_due = store.due

    async def refuse_bad(batch: Changes) -> None:
        if any(i.profile_id == "bad" for i in batch.instances.values()):
            refused.append(1)
            raise RuntimeError("cannot store this one")
        await real(batch)

    async def counting_due(*args: Any) -> Any:
        looks.append(1)
        return await real_due(*args)

    async def test(processor: Processor) -> None:
        await processor.submit([e for u in people for e in sign_up(ws, u)])
        clock.now = START + timedelta(days=2)
        monkeypatch.setattr(store, "commit", refuse_bad)
        monkeypatch.setattr(store, "due", counting_due)
        timers = TimerLoop(store, processor, clock, batch=2, idle=0.01)
        loop = asyncio.create_task(timers.run())
        try:

            async def sent_and_refused() -> bool:
                return len(await store.messages(limit=100)) >= 4 and bool(refused)

            await eventually(sent_and_refused, "the good sends and a refusal", timeout=30)
            held, seen = len(refused), len(looks)
            # many more looks at the due timers, at the same virtual time: the one that
            # failed is held back, not tried again at every look
            await eventually(when(lambda: len(looks) >= seen + 50), "50 more looks", timeout=30)
            assert len(refused) == held
            clock.now += timedelta(minutes=5)  # its hold has passed: it is tried again
            await eventually(when(lambda: len(refused) > held), "another try", timeout=30)
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        messages = await store.messages(limit=100)
        assert sorted(m.profile_id for m in messages) == ["u1", "u2", "u3", "u4"]
        (bad,) = await store.instances_of("bad")
        assert bad.status == "waiting"  # still due: it fires once the store takes it

    live(store, ws, test, clock)


def test_over_http_events_of_a_profile_with_a_long_timezone_trait_are_answered_202(
    tmp_path: Path, store_url: str
) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, MORNING)
    workspace = load_workspace(folder).workspace
    assert workspace is not None

    async def main() -> None:
        runtime = Runtime(workspace, open_store(store_url), {}, env={})
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                traits = {"email": "u1@example.com", "timezone": "a" * 300}
                calls = [
                    ("/v1/identify", {"userId": "u1", "traits": traits}),
                    ("/v1/track", {"userId": "u1", "event": "signed_up"}),
                    ("/v1/track", {"userId": "u1", "event": "purchased"}),
                ]
                for path, body in calls:
                    answer = await client.post(path, json=body, headers=WRITE)
                    assert answer.status_code == 202, answer.text
            (waiting,) = await runtime.reads.instances_of("u1")
            assert (waiting.status, waiting.step) == ("waiting", "morning")
        finally:
            await runtime.stop()

    asyncio.run(main())
