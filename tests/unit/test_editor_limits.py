"""What keeps a template render, a test run and a try from keeping a thread busy, or its
memory growing: the render's budget of work, a deadline the simulator and renders check,
and the most trace lines a test or a try makes (journey_tests.TRACE_LIMIT)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from journeyman import journey_tests, trying, trying_api
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event, Profile
from journeyman.domain.templates import compile_template, guarded
from journeyman.trying import Deadline, Replay, TooLong, TooSlow, replay
from journeyman.wire import Problem
from journeyman.workspace import load_workspace
from tests.conftest import START, write_workspace

LOOPING = """
kind: event
name: signed_up
---
kind: template
name: hello
channel: email
transactional: true
subject: Hello
text: Hello
---
kind: journey
name: loop
entry:
  event: signed_up
steps:
  - id: settle
    wait: 1s
  - id: greet
    send: hello
    next: settle
---
kind: test
name: a sign-up is greeted, again and again
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 0s
    track: {userId: u1, event: signed_up}
expect:
  - sent: greet
"""


def test_sequential_loops_that_each_stay_under_the_loop_limit_stop_at_the_work_budget() -> None:
    loops = "{% for i in (1..9999) %}a{% endfor %}" * 100  # 999,900 characters if it ran
    out = compile_template(loops).render({})
    assert 0 < len(out) < 200_000
    # What stops is the statement past the budget, and every one after it.
    assert set(out) == {"a"}
    assert len(out) % 9999 == 0


def test_a_usual_email_renders_whole_within_the_budget() -> None:
    source = (
        "<table>{% for item in event.items %}<tr><td>{{ item.name | upcase }}</td>"
        "<td>{{ item.price | times: 1.2 | round: 2 }}</td>"
        "<td>{% if item.price > 10 %}big{% else %}small{% endif %}</td></tr>{% endfor %}"
        "</table>"
    )
    items = [{"name": f"item {i}", "price": i} for i in range(500)]
    out = compile_template(source, escape=True).render({"event": {"items": items}})
    assert out.count("<tr>") == 500
    assert "<td>ITEM 499</td><td>598.8</td><td>big</td>" in out


def test_filters_on_big_texts_spend_the_budget_by_their_size() -> None:
    grow = "{% assign s = 'xxxxxxxxxx' %}" + "{% assign s = s | append: s %}" * 14  # 163,840
    busy = "{% for i in (1..9999) %}{% assign t = s | replace: 'x', 'y' %}{% endfor %}"
    started = time.monotonic()
    out = compile_template(grow + busy * 20 + "{{ s | size }}").render({})
    assert time.monotonic() - started < 5
    assert out == ""  # the budget ran out: the last statement rendered empty too


def test_a_render_inside_guarded_stops_once_its_check_raises() -> None:
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls > 50:
            raise TooSlow("the preview", 0)

    with guarded(check):
        out = compile_template("{% for i in (1..9999) %}a{% endfor %}b").render({})
    assert out == ""  # the loop stopped, and the statement after it with it
    assert compile_template("{% for i in (1..3) %}a{% endfor %}b").render({}) == "aaab"


@pytest.fixture
def far_trace_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline's tests are about time: a fast machine must not reach the trace limit
    first."""
    monkeypatch.setattr(journey_tests, "TRACE_LIMIT", 10**9)


@pytest.fixture
def looping(tmp_path: Path) -> Workspace:
    loaded = load_workspace(write_workspace(tmp_path / "ws", LOOPING))
    assert loaded.workspace is not None, loaded.problems
    return loaded.workspace


@pytest.mark.usefixtures("far_trace_limit")
def test_tests_of_a_journey_that_waits_in_a_loop_stop_at_the_deadline(looping: Workspace) -> None:
    started = time.monotonic()
    with pytest.raises(TooSlow, match=r"the workspace's tests took longer than 0\.3 s \(0 of 1"):
        trying.test_results(looping, "loop", Deadline(0.3, "the workspace's tests"))
    assert time.monotonic() - started < 5


@pytest.mark.usefixtures("far_trace_limit")
def test_tests_of_a_schedule_that_enters_nobody_stop_at_the_deadline(tmp_path: Path) -> None:
    # Each run enters nobody, so none runs a batch of the core: each checks the deadline.
    minutely = LOOPING.split("---\nkind: journey")[0] + (
        "---\nkind: journey\nname: minutely\nentry: {schedule: {cron: '* * * * *'}}\n"
        "steps:\n  - id: greet\n    send: hello\n"
        "---\nkind: test\nname: a century of minutes\nuntil: 36500d\nevents: []\n"
        "expect:\n  - never: greet\n"
    )
    loaded = load_workspace(write_workspace(tmp_path / "ws", minutely))
    assert loaded.workspace is not None, loaded.problems
    with pytest.raises(TooSlow, match=r"the workspace's tests took longer than 0\.3 s"):
        trying.test_results(loaded.workspace, "minutely", Deadline(0.3, "the workspace's tests"))


@pytest.mark.usefixtures("far_trace_limit")
def test_a_try_until_the_end_of_a_looping_journey_stops_at_the_deadline(looping: Workspace) -> None:
    profile = Profile(id="u1", traits={"email": "u1@example.com"})
    event = Event(name="signed_up", profile_id="u1", timestamp=START)
    given = Replay(profile, [("userId", "u1")], [(event, START)])
    now = START + timedelta(seconds=5)
    with pytest.raises(TooSlow, match=r"trying the profile took longer than 0\.3 s"):
        replay(looping, "loop", given, now, "end", Deadline(0.3, "trying the profile"))
    # Until now, the same try answers: a few rounds of the loop.
    answer = replay(looping, "loop", given, now, "now", Deadline(5, "trying the profile"))
    assert answer["state"] == "waiting"
    assert len(answer["messages"]) == 5


def test_the_editor_answers_busy_rather_than_queue_without_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trying_api, "QUEUE", 2)
    release = threading.Event()

    async def scene() -> tuple[list[Any], Problem]:
        held = [asyncio.ensure_future(trying_api.in_worker(release.wait, 10)) for _ in range(2)]
        await asyncio.sleep(0)  # both are given to the pool
        with pytest.raises(Problem) as refused:
            await trying_api.in_worker(time.monotonic)
        release.set()
        return await asyncio.gather(*held), refused.value

    done, problem = asyncio.run(scene())
    assert done == [True, True]
    assert problem.status == 503
    assert problem.body["error"]["field"] == "editor"
    assert problem.body["error"]["rule"] == "busy"
    assert problem.headers == {"Retry-After": "5"}
    assert asyncio.run(trying_api.in_worker(sum, [1, 2])) == 3  # free again


def test_tests_of_a_journey_that_loops_stop_at_the_trace_limit_and_fail(
    looping: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journey_tests, "TRACE_LIMIT", 500)
    monkeypatch.setattr(journey_tests, "TRACE_PER_PROFILE", 1)
    answer = trying.test_results(looping, "loop", Deadline(60, "the workspace's tests"))
    assert (answer["passed"], answer["failed"]) == (0, 1)
    (result,) = answer["results"]
    assert result["failures"][0].startswith("stopped at the trace limit of 500 lines, ")
    assert len(result["trace"]) < 600


def test_a_try_until_the_end_of_a_looping_journey_stops_at_the_trace_limit(
    looping: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journey_tests, "TRACE_LIMIT", 500)
    monkeypatch.setattr(journey_tests, "TRACE_PER_PROFILE", 1)
    profile = Profile(id="u1", traits={"email": "u1@example.com"})
    event = Event(name="signed_up", profile_id="u1", timestamp=START)
    given = Replay(profile, [("userId", "u1")], [(event, START)])
    with pytest.raises(TooLong, match="it made more than 500 trace lines"):
        replay(looping, "loop", given, START + timedelta(seconds=5), "end", Deadline(60, "try"))

    async def tried() -> Any:
        return await trying_api.in_worker(
            replay, looping, "loop", given, START + timedelta(seconds=5), "end", None
        )

    with pytest.raises(Problem) as refused:
        asyncio.run(tried())
    error = refused.value.body["error"]
    assert (refused.value.status, error["field"], error["rule"]) == (422, "profile", "trace")
    assert "more than 500 trace lines" in error["message"]
    assert "try it until now" in error["message"]
