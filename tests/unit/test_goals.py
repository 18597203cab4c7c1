"""Goals and holdouts: a goal counted once per instance within its window, even after the
instance ended; exit_on_goal; a holdout arm that gets no messages; what validation says;
and the report built from the counters, with its statistics checked against statsmodels."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pytest

from journeyman.domain.goals import MAX_WINDOWS, bucket_bounds, time_bucket
from journeyman.domain.state import Tally
from journeyman.domain.times import parse_duration
from journeyman.journey_tests import run_tests
from journeyman.report import journey_report, lift, quantile
from journeyman.simulator import Simulator
from journeyman.storage.base import Counter
from tests.conftest import START
from tests.engine_helpers import after, journey, sign_up

Simulate = Callable[..., Simulator]

GOALS = """
  - name: purchased
    event: purchased
    within: 7d
    value: event.total
    primary: true
  - name: big_order
    event: purchased
    when: event.total >= 100
    within: 2d
"""
SEND_AND_WAIT = """
- id: hello
  send: hello_email
- id: pause
  wait: 1d
"""


def goal_journey(*steps: str, **keys: str) -> str:
    return journey(*(steps or (SEND_AND_WAIT,)), goals=GOALS, **keys)


def buy(sim: Simulator, at: str, total: float = 30, user: str = "u1") -> None:
    properties = {"order_id": f"o-{at}", "total": total}
    sim.track({"userId": user, "event": "purchased", "properties": properties}, after(at))


def reached(sim: Simulator, user: str = "u1") -> list[str]:
    return [r.detail for r in sim.records if r.outcome == "goal_reached" and r.profile_id == user]


def counters(tallies: Iterable[Tally]) -> list[Counter]:
    """The tallies added up as a store adds them."""
    sums: dict[tuple[int, str, str, str], list[float]] = {}
    for t in tallies:
        found = sums.setdefault((t.version, t.arm, t.goal, t.metric), [0, 0.0])
        found[0] += t.n
        found[1] += t.total
    return [Counter(*key, int(n), total) for key, (n, total) in sums.items()]


# reaching goals


def test_a_goal_is_recorded_once_per_instance_with_time_value_and_last_message(
    simulate: Simulate,
) -> None:
    sim = simulate(goal_journey())
    sign_up(sim)
    buy(sim, "2h", total=30)
    buy(sim, "3h", total=150)  # purchased again: counted once; big_order for the first time
    assert reached(sim) == [
        "purchased after 2h, value 30, no arm, last message hello",
        "big_order after 3h, no arm, last message hello",
    ]
    (record,) = [r for r in sim.records if r.detail.startswith("purchased")]
    assert record.instance_id == "u1:j:1"


def test_a_goal_counts_after_the_instance_ended_but_not_after_its_window(
    simulate: Simulate,
) -> None:
    sim = simulate(goal_journey())
    sign_up(sim)
    sim.run_until(after("2d"))
    assert [i.end_state for i in sim.instances.values()] == ["completed"]
    buy(sim, "3d", total=500)  # the instance ended after 1d; purchased's window is 7d
    buy(sim, "8d")
    assert reached(sim) == ["purchased after 3d, value 500, no arm, last message hello"]
    assert sim.profile("u1").goals == []  # nothing left to reach: the window is dropped


def test_the_entry_event_itself_is_not_a_goal_and_when_reads_the_entry(
    simulate: Simulate,
) -> None:
    goals = """
  - name: same_plan
    event: signed_up
    when: event.plan == entry.plan
    within: 1d
"""
    sim = simulate(journey(SEND_AND_WAIT, goals=goals, reentry="never"))
    sign_up(sim, plan="pro")
    assert reached(sim) == []
    sim.track({"userId": "u1", "event": "signed_up", "properties": {"plan": "free"}}, after("1h"))
    assert reached(sim) == []
    sim.track({"userId": "u1", "event": "signed_up", "properties": {"plan": "pro"}}, after("2h"))
    assert reached(sim) == ["same_plan after 2h, no arm, last message hello"]


def test_exit_on_goal_ends_the_running_instance(simulate: Simulate) -> None:
    sim = simulate(goal_journey(exit_on_goal="true"))
    sign_up(sim)
    buy(sim, "1h")
    (instance,) = sim.instances.values()
    assert (instance.end_state, instance.ended_at) == ("goal_reached", after("1h"))
    sim.run_until(after("2d"))  # its wait wakes nothing
    assert [r.outcome for r in sim.records if r.step == "pause"] == ["waiting", "ended"]


def test_goal_windows_kept_on_a_profile_are_bounded(simulate: Simulate) -> None:
    sim = simulate(goal_journey("- id: done\n  end: done", reentry="always"))
    for index in range(MAX_WINDOWS + 5):
        sim.track({"userId": "u1", "event": "signed_up"}, after(f"{index}m"))
    assert len(sim.profile("u1").goals) == MAX_WINDOWS


# holdouts


HOLDOUT = """
- id: pick
  split:
    - {weight: 1, goto: hello, name: treated}
    - {weight: 1, goto: hello, name: held_out, holdout: true}
- id: hello
  send: hello_email
- id: pause
  wait: 1d
"""


def test_a_holdout_arm_gets_no_messages_and_its_goals_are_measured(simulate: Simulate) -> None:
    sim = simulate(journey(HOLDOUT, goals=GOALS))
    users = [f"u{index}" for index in range(40)]
    for user in users:
        sign_up(sim, user)
    for user in users:
        buy(sim, "1h", user=user)
    arms = {i.profile_id: i.arm for i in sim.instances.values()}
    held = {user for user, arm in arms.items() if arm == "held_out"}
    assert held
    assert len(held) < len(users)
    assert {m.profile_id for m in sim.messages} == set(users) - held
    skipped = [r for r in sim.records if r.outcome == "skipped" and r.step == "hello"]
    assert {r.profile_id for r in skipped} == held
    assert {r.detail for r in skipped} == {"holdout"}
    held_goals = [r.detail for r in sim.records if r.outcome == "goal_reached"]
    assert "purchased after 1h, value 30, arm held_out, no message before it" in held_goals
    report = journey_report(sim.workspace.journeys["j"], counters(sim.tallies), None)
    purchased = report["goals"][0]
    by_arm = {arm["name"]: arm for arm in purchased["arms"]}
    assert by_arm["held_out"]["conversions"] == len(held)
    assert by_arm["treated"]["conversions"] == len(users) - len(held)
    assert report["holdout_arm"] == "held_out"
    assert by_arm["treated"]["lift"]["absolute"] == 0.0


def test_the_split_keeps_deterministic_arms_and_says_them_in_the_trace(
    simulate: Simulate,
) -> None:
    sim = simulate(journey(HOLDOUT, goals=GOALS))
    sign_up(sim, "u1")
    (line,) = [r.detail for r in sim.records if r.outcome == "split"]
    arm = next(iter(sim.instances.values())).arm
    assert line.startswith(f"to hello (arm {arm}, weight 1 of 2")


# validation


@pytest.mark.parametrize(
    ("goals", "message"),
    [
        ("[{name: p, event: purchased}]", "a goal needs 'within'"),
        ("[{name: p, event: nope, within: 1d}]", "event 'nope' is not defined"),
        ("[{name: p, event: purchased, within: soon}]", "goal p: 'within'"),
        ("[{name: p, event: purchased, within: 0s}]", "goal p: 'within' must be longer than 0s"),
        ("[{name: p, event: purchased, within: 1d, when: 'event.total >'}]", "goal p: 'when'"),
        ("[{name: p, event: purchased, within: 1d, primary: 2}]", "'primary' must be true"),
        (
            "[{name: p, event: purchased, within: 1d}, {name: p, event: purchased, within: 2d}]",
            "duplicate goal name 'p'",
        ),
        (
            "[{name: a, event: purchased, within: 1d, primary: true},"
            " {name: b, event: purchased, within: 1d, primary: true}]",
            "only one goal may be 'primary: true'",
        ),
        ("[{name: p, event: purchased, within: 1d, worth: 3}]", "unknown key 'worth' in a goal"),
    ],
)
def test_validate_names_the_goal_field_and_the_rule(
    load: Callable[..., object], goals: str, message: str
) -> None:
    from tests.conftest import BASE

    loaded = load(BASE, journey(SEND_AND_WAIT, goals=goals))
    lines = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any(message in line for line in lines), lines


def test_validate_refuses_exit_on_goal_without_goals_and_goal_reached_as_a_name(
    load: Callable[..., object],
) -> None:
    from tests.conftest import BASE

    reserved = "kind: event\nname: goal_reached\n"
    loaded = load(BASE, reserved, journey(SEND_AND_WAIT, exit_on_goal="true"))
    lines = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any("'exit_on_goal' needs 'goals' to reach" in line for line in lines), lines
    assert any("event name 'goal_reached' is reserved" in line for line in lines), lines


def test_validate_refuses_a_holdout_arm_that_cannot_be_told_apart(
    load: Callable[..., object],
) -> None:
    from tests.conftest import BASE

    split = """
- id: pick
  split:
    - {weight: 1, goto: hello}
    - {weight: 1, goto: hello, holdout: true}
- id: hello
  send: hello_email
"""
    lines = [str(p) for p in load(BASE, journey(split)).errors]  # type: ignore[attr-defined]
    assert any("two arms are named 'hello'" in line for line in lines), lines


# journey tests


def test_a_journey_test_expects_a_goal_reached(workspace: Callable[..., object]) -> None:
    test = """
kind: test
name: buys after the welcome
events:
  - {at: 0s, track: {userId: u1, event: signed_up, properties: {plan: pro}}}
  - {at: 3h, track: {userId: u1, event: purchased, properties: {order_id: o1, total: 150}}}
expect:
  - {reached: purchased, at: 3h}
  - {reached: j.big_order, profile: u1}
  - {reached: purchased, times: 1}
"""
    identify = "  - {at: 0s, identify: {userId: u1, traits: {email: u1@example.com}}}\n"
    test = test.replace("events:\n", "events:\n" + identify)
    ws = workspace(goal_journey(), test)
    (result,) = run_tests(ws)  # type: ignore[arg-type]
    assert result.passed, result.failures


def test_a_journey_test_names_an_unknown_goal(load: Callable[..., object]) -> None:
    from tests.conftest import BASE

    test = """
kind: test
name: t
events:
  - {at: 0s, track: {userId: u1, event: signed_up}}
expect:
  - {reached: purchsed}
"""
    lines = [str(p) for p in load(BASE, goal_journey(), test).errors]  # type: ignore[attr-defined]
    assert any("goal 'purchsed' is not a goal of any journey" in ln for ln in lines), lines


# the report's numbers


def test_time_buckets_hold_their_durations() -> None:
    for seconds in (0, 0.5, 1, 1.19, 60, 3600, 86400 * 7, 86400 * 365 * 100):
        low, high = bucket_bounds(time_bucket(seconds))
        assert low <= seconds < high


def test_quantiles_of_the_histogram_are_within_a_bucket_of_the_truth() -> None:
    durations = [parse_duration(d).total_seconds() for d in ("1h", "2h", "3h", "1d", "2d")]
    histogram: dict[int, int] = {}
    for seconds in durations:
        histogram[time_bucket(seconds)] = histogram.get(time_bucket(seconds), 0) + 1
    median = quantile(histogram, 0.5)
    assert median is not None
    assert 3 * 3600 / 1.19 <= median <= 3 * 3600 * 1.19
    p90 = quantile(histogram, 0.9)
    assert p90 is not None
    assert 86400 <= p90 <= 2 * 86400 * 1.19
    assert quantile({}, 0.5) is None


@pytest.mark.parametrize(
    ("converted", "entered", "held_converted", "held_entered"),
    [(120, 1000, 90, 1000), (33, 410, 41, 395), (7, 50, 1, 60), (500, 5000, 500, 5000)],
)
def test_lift_matches_the_reference_functions_of_statsmodels(
    converted: int, entered: int, held_converted: int, held_entered: int
) -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    found = lift(converted, entered, held_converted, held_entered)
    counts, sizes = [converted, held_converted], [entered, held_entered]
    _, p_value = proportions_ztest(counts, sizes)
    low, high = confint_proportions_2indep(
        converted, entered, held_converted, held_entered, method="wald", compare="diff"
    )
    ratio_low, ratio_high = confint_proportions_2indep(
        converted, entered, held_converted, held_entered, method="log", compare="ratio"
    )
    assert found.absolute == pytest.approx(converted / entered - held_converted / held_entered)
    assert found.p_value == pytest.approx(p_value, rel=1e-9)
    assert found.absolute_interval == pytest.approx((low, high), rel=1e-9)
    assert found.relative_interval == pytest.approx((ratio_low - 1, ratio_high - 1), rel=1e-9)


def test_a_report_of_no_entries_has_no_rates(workspace: Callable[..., object]) -> None:
    ws = workspace(journey(HOLDOUT, goals=GOALS))
    report = journey_report(ws.journeys["j"], [], 1)  # type: ignore[attr-defined]
    assert report["entries"] == 0
    assert [arm["name"] for arm in report["arms"]] == ["held_out", "treated"]
    purchased = report["goals"][0]
    assert (purchased["rate"], purchased["arms"][1]["lift"]) == (None, None)
    assert math.isclose(purchased["value"], 0.0)
    assert START  # the report needs no clock
