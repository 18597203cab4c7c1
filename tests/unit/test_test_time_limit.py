"""`journeyman test --time-limit`: a journey test that never settles stops and fails, saying
where it was, and the other tests still run. So does one that makes more trace lines than
a test may keep (journey_tests.TRACE_LIMIT)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from journeyman import journey_tests
from journeyman.cli import main
from journeyman.journey_tests import run_test, run_tests
from journeyman.trying import Deadline, TooSlow
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace

# Within its 100-year timeout, a reminder every second: timers for billions of rounds.
NAGGING = """
kind: journey
name: nag
entry: {event: signed_up}
timeout: 36500d
steps:
  - id: settle
    wait: 1s
  - id: remind
    send: hello_email
    next: settle
---
kind: test
name: reminds again and again
events:
  - at: 0s
    identify: {userId: u1, traits: {email: a@example.com}}
  - at: 0s
    track: {userId: u1, event: signed_up, properties: {plan: pro}}
expect:
  - sent: remind
"""

GREETING = """
kind: journey
name: hello
entry: {event: purchased}
steps:
  - id: greet
    send: hello_email
  - id: done
    end: greeted
---
kind: test
name: a purchase is greeted
events:
  - at: 0s
    identify: {userId: u2, traits: {email: b@example.com, firstName: Bo}}
  - at: 1s
    track: {userId: u2, event: purchased, properties: {total: 30}}
expect:
  - sent: greet
    at: 1s
    subject: Hello Bo
  - ended: greeted
"""

# A run every minute, with nobody to enter, for a century of virtual time.
MINUTELY = """
kind: journey
name: minutely
reentry: always
entry:
  schedule: {cron: "* * * * *"}
steps:
  - id: greet
    send: hello_email
---
kind: test
name: a century of minutes
until: 36500d
events: []
expect:
  - never: greet
"""


@pytest.fixture(autouse=True)
def far_trace_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The time limit's tests are about time: a fast machine must not reach the trace limit
    # first. Those of the trace limit set it themselves.
    monkeypatch.setattr(journey_tests, "TRACE_LIMIT", 10**9)


def run(*args: str | Path) -> tuple[int, str, float]:
    began = time.monotonic()
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output, time.monotonic() - began


def stopped(folder: Path, *options: str, within: float) -> str:
    """The output of `journeyman test` on ``folder``, which fails (a test stopped) well
    within ``within`` seconds."""
    code, output, seconds = run("test", folder, *options)
    assert code == 1, output
    assert seconds < within, output
    return output


def test_a_looping_test_stops_at_its_time_limit_and_the_others_still_run(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path, BASE, NAGGING, GREETING)
    # without the limit it would run for years of virtual time
    output = stopped(folder, "--time-limit", "1", within=10)
    assert "PASS a purchase is greeted" in output
    assert re.search(r"FAIL reminds again and again \(\S+:\d+, \d+\.\d ms\)", output)
    assert "stopped at the time limit of 1 s, " in output
    assert re.search(
        r"still running: journey nag, profile u1, at step settle, after [\d,]+ steps", output
    )
    assert "give it an 'until' (such as 30d)" in output
    assert "raise the limit with --time-limit SECONDS (now 1)" in output
    assert "1 passed, 1 failed (1 stopped at the time limit)" in output


def test_a_schedule_that_runs_to_a_far_until_stops_at_the_time_limit(tmp_path: Path) -> None:
    # Runs that enter nobody run no batch of the core; the limit stops them all the same.
    folder = write_workspace(tmp_path, BASE, MINUTELY, GREETING)
    output = stopped(folder, "--time-limit", "0.5", within=10)
    assert "FAIL a century of minutes" in output
    assert "stopped at the time limit of 0.5 s" in output
    assert re.search(r"scheduled journey minutely: [\d,]+ runs by then", output)
    assert "give it a shorter 'until'" in output
    assert "PASS a purchase is greeted" in output


def test_the_trace_of_a_stopped_test_shows_its_latest_steps(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path, BASE, NAGGING)
    code, output, _ = run("test", folder, "--time-limit", "0.5", "--trace")
    assert code == 1, output
    assert re.search(r"\.\.\. [\d,]+ earlier entries", output)
    assert len(re.findall(r"nag\.remind sent: email to a@example.com", output)) <= 20


def test_tests_that_settle_pass_well_within_the_default_limit(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path, BASE, GREETING)
    code, output, _ = run("test", folder)
    assert code == 0, output
    assert "1 passed, 0 failed in" in output
    assert "stopped" not in output


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", ""])
def test_a_time_limit_that_is_not_a_positive_number_is_a_usage_error(
    tmp_path: Path, value: str
) -> None:
    folder = write_workspace(tmp_path, BASE, GREETING)
    code, output, _ = run("test", folder, "--time-limit", value)
    assert code == 2
    assert (
        f"Invalid value for '--time-limit': must be a positive number of seconds, "
        f"such as 30 or 2.5, not {value!r}"
    ) in output
    assert "PASS" not in output


def test_the_help_names_the_default_time_limit() -> None:
    code, output, _ = run("test", "--help")
    assert code == 0
    assert "--time-limit SECONDS" in output
    assert "(default 30)" in output


@pytest.fixture
def nagging(tmp_path: Path) -> Path:
    return write_workspace(tmp_path, BASE, NAGGING, GREETING)


def test_run_tests_with_a_time_limit_stops_only_the_test_that_never_settles(
    nagging: Path,
) -> None:
    workspace = load_workspace(nagging).workspace
    assert workspace is not None
    results = {r.test.name: r for r in run_tests(workspace, time_limit=0.5)}
    assert results["a purchase is greeted"].passed
    stopped = results["reminds again and again"]
    assert stopped.stopped
    assert not stopped.passed
    assert stopped.failures[0].startswith("stopped at the time limit of 0.5 s")


def test_a_callers_own_check_still_stops_the_run_with_its_error(nagging: Path) -> None:
    # The editor's deadline spans all the tests it runs: its error goes to the editor.
    workspace = load_workspace(nagging).workspace
    assert workspace is not None
    test = next(t for t in workspace.tests if t.name == "reminds again and again")
    deadline = Deadline(0.3, "the workspace's tests")
    with pytest.raises(TooSlow, match=r"the workspace's tests took longer than 0\.3 s"):
        run_test(workspace, test, deadline.check, time_limit=30)


# the trace limit


def test_a_looping_test_stops_at_the_trace_limit_well_before_its_time_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journey_tests, "TRACE_LIMIT", 2_000)
    monkeypatch.setattr(journey_tests, "TRACE_PER_PROFILE", 1)
    folder = write_workspace(tmp_path, BASE, NAGGING, GREETING)
    output = stopped(folder, "--time-limit", "60", within=30)
    assert "PASS a purchase is greeted" in output
    assert "FAIL reminds again and again" in output
    assert re.search(
        r"stopped at the trace limit of 2,000 lines, \d+m\d*s? into the test's virtual time",
        output,
    )
    assert re.search(
        r"still running: journey nag, profile u1, at step \w+, after [\d,]+ steps", output
    )
    assert "a journey that loops makes trace lines without end" in output
    assert "give it an 'until' (such as 30d)" in output
    assert "--time-limit" not in output.split("FAIL reminds again and again")[1].split("PASS")[0]
    assert "1 passed, 1 failed (1 stopped at the trace limit)" in output


def test_the_default_trace_limit_stops_a_looping_test_with_what_it_keeps_bounded(
    nagging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # the real limit
    workspace = load_workspace(nagging).workspace
    assert workspace is not None
    test = next(t for t in workspace.tests if t.name == "reminds again and again")
    result = run_test(workspace, test, time_limit=600)
    assert result.stopped == "trace"
    limit = journey_tests.TRACE_LIMIT
    assert limit == 100_000
    assert result.failures[0].startswith(f"stopped at the trace limit of {limit:,} lines")
    # stopped before the next batch: at most one batch's lines past the limit
    assert limit < result.simulator.trace_lines < limit + 100


def test_a_test_that_settles_within_the_trace_limit_passes_and_one_line_more_fails(
    nagging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = load_workspace(nagging).workspace
    assert workspace is not None
    test = next(t for t in workspace.tests if t.name == "a purchase is greeted")
    made = run_test(workspace, test).simulator.trace_lines
    assert made > 1
    monkeypatch.setattr(journey_tests, "TRACE_PER_PROFILE", 1)
    within = run_test(workspace, test, trace_limit=made)
    assert within.passed, within.failures
    assert not within.stopped
    over = run_test(workspace, test, trace_limit=made - 1)
    assert over.stopped == "trace"
    assert over.failures[0].startswith(f"stopped at the trace limit of {made - 1} lines")
    # A test of many profiles may make more: as many lines for each of its profiles.
    monkeypatch.setattr(journey_tests, "TRACE_PER_PROFILE", made)
    assert run_test(workspace, test, trace_limit=made - 1).passed
