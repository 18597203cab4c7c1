"""``kind: test`` documents: what passes, and what a failure says."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

from journeyman.domain.model import Workspace
from journeyman.journey_tests import TestResult, run_test

Build = Callable[..., Workspace]

JOURNEYS = """
kind: journey
name: welcome
entry: {event: signed_up}
exit: [{event: deleted}]
timeout: 1d
steps:
  - id: settle
    wait: 20s
  - id: hello
    send: hello_email
    on_error: fallback
  - id: pause
    wait: 1h
  - id: done
    end: welcomed
  - id: fallback
    send: hello_sms
    next: by_sms
  - id: by_sms
    end: reached_by_sms
---
kind: journey
name: upsell
entry: {event: purchased}
timeout: 2d
steps:
  - id: hello
    send: hello_sms
  - id: await_another
    wait_for: {event: purchased}
"""

SIGN_UP = """
- at: 0s
  identify: {userId: u1, traits: {firstName: Ada, email: ada@example.com, phone: "+15550100"}}
- at: 1s
  track: {userId: u1, event: signed_up, properties: {plan: pro}}
- at: 10s
  identify: {userId: u1, traits: {firstName: Adele}}
"""


def run(workspace: Build, expect: str, events: str = SIGN_UP, **keys: str) -> TestResult:
    """Run one test of ``events`` and ``expect`` (YAML lists) against JOURNEYS."""
    lines = ["kind: test", "name: the test", *(f"{k}: {v}" for k, v in keys.items())]
    for key, items in (("events", events), ("expect", expect)):
        lines += [f"{key}:", textwrap.indent(textwrap.dedent(items).strip(), "  ")]
    built = workspace(JOURNEYS, "\n".join(lines))
    (test,) = built.tests
    return run_test(built, test)


def failure(result: TestResult) -> str:
    (found,) = result.failures
    return found


def test_a_test_whose_expectations_all_happened_passes(workspace: Build) -> None:
    expect = """
    - sent: hello
      at: 21s
      to: ada@example.com
      channel: email
      subject: Hello Adele
      body_contains: Plan pro
    - entered: welcome
      profile: u1
    - ended: welcomed
      profile: u1
      at: 1h21s
    - never: upsell.hello
    """
    result = run(workspace, expect)
    assert result.failures == []
    assert result.passed


@pytest.mark.parametrize(
    "expect",
    [
        "- {sent: hello, times: 1}",
        "- {sent: welcome.hello, at: 21s}",
        "- {sent: upsell.hello, times: 0}",
        "- {never: fallback}",
        "- {ended: welcomed, journey: welcome}",
    ],
)
def test_narrowed_expectations_pass_when_they_hold(workspace: Build, expect: str) -> None:
    assert run(workspace, expect).failures == []


@pytest.mark.parametrize(
    ("expect", "says"),
    [
        (
            "- {sent: hello, subject: Hello Ada}",
            "expected sent hello subject 'Hello Ada', but got welcome.hello at 21s for u1, "
            "to 'ada@example.com'",
        ),
        ("- {sent: hello, subject: Hello Ada}", "(subject 'Hello Adele')"),
        ("- {sent: hello, at: 20s}", "expected sent hello at 20s, but got welcome.hello at 21s"),
        ("- {sent: hello, times: 2}", "expected sent hello 2 time(s), but it happened 1 time(s)"),
        ("- {never: hello}", "expected never hello, but it ran: welcome.hello at 21s for u1"),
        ("- {ended: welcomed, profile: u2}", "(profile u1)"),
        ("- {sent: upsell.hello}", "expected sent upsell.hello, but nothing like it happened"),
    ],
)
def test_a_failure_says_what_was_expected_and_what_happened(
    workspace: Build, expect: str, says: str
) -> None:
    result = run(workspace, expect)
    assert not result.passed
    message = failure(result)
    assert message.startswith("line ")
    assert says in message


def test_journey_step_names_tell_apart_steps_with_the_same_id(workspace: Build) -> None:
    events = SIGN_UP + "- {at: 1m, track: {userId: u1, event: purchased}}"
    expect = """
    - {sent: welcome.hello, channel: email, times: 1}
    - {sent: upsell.hello, channel: sms, at: 1m, times: 1}
    - {sent: hello, times: 2}
    """
    assert run(workspace, expect, events).failures == []


def test_until_stops_the_clock(workspace: Build) -> None:
    result = run(workspace, "- {never: hello}\n- {ended: welcomed}", until="15s")
    assert failure(result).endswith("expected ended welcomed, but nothing like it happened")
    assert result.simulator.now - result.test.start == result.test.until


def test_an_event_that_breaks_its_schema_is_expected_as_rejected(workspace: Build) -> None:
    events = "- {at: 0s, track: {userId: u1, event: signed_up, properties: {plan: 5}}}"
    expect = "- {rejected: signed_up, at: 0s}\n- {entered: welcome, times: 0}"
    assert run(workspace, expect, events).failures == []
    assert "rejected purchased" in failure(run(workspace, "- {rejected: purchased}", events))


def test_exited_true_matches_an_exit_from_any_journey(workspace: Build) -> None:
    events = SIGN_UP + "- {at: 5s, track: {userId: u1, event: deleted}}"
    expect = "- {exited: true, at: 5s}\n- {exited: welcome, profile: u1}\n- {never: hello}"
    assert run(workspace, expect, events).failures == []
    assert "expected exited upsell" in failure(run(workspace, "- {exited: upsell}", events))


def test_skipped_and_timed_out_match_what_happened(workspace: Build) -> None:
    events = """
    - {at: 0s, identify: {userId: u2, traits: {phone: "+15550100"}}}
    - {at: 0s, track: {userId: u2, event: signed_up, properties: {plan: free}}}
    - {at: 0s, track: {userId: u2, event: purchased}}
    """
    expect = """
    - {skipped: welcome.hello, at: 20s, profile: u2}
    - {sent: upsell.hello, to: "+15550100"}
    - {timed_out: upsell, at: 2d}
    - {timed_out: true, times: 1}
    """
    assert run(workspace, expect, events).failures == []


def test_fail_sends_a_step_down_its_on_error_path(workspace: Build) -> None:
    expect = "- {sent: fallback, at: 21s}\n- {ended: reached_by_sms, at: 21s}\n- {never: done}"
    assert run(workspace, expect, fail="[welcome.hello]").failures == []
    assert run(workspace, "- {ended: welcomed}").failures == []


def test_page_screen_and_alias_calls_drive_a_journey_test_as_they_do_the_server(
    workspace: Build,
) -> None:
    views = """
    kind: event
    name: pricing_viewed
    page: Pricing
    identity: anonymousId
    ---
    kind: event
    name: screen
    ---
    kind: journey
    name: browse
    entry: {event: pricing_viewed}
    steps:
      - id: await_app
        wait_for: {event: screen, when: event.properties.name == "Home", timeout: 1d}
        on_timeout: gone
      - id: opened
        end: opened
      - id: gone
        end: gone
    """
    test = """
    kind: test
    name: a visitor's page view moves with them when they sign in
    events:
      - {at: 0s, page: {anonymousId: a1, name: Pricing}}
      - {at: 1s, alias: {userId: u1, previousId: a1}}
      - {at: 2s, screen: {userId: u1, name: Settings}}
      - {at: 3s, screen: {userId: u1, name: Home}}
    expect:
      - {entered: browse}
      - {ended: opened, profile: u1, at: 3s}
    """
    built = workspace(textwrap.dedent(views), textwrap.dedent(test))
    (found,) = built.tests
    assert run_test(built, found).failures == []
