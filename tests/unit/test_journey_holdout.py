"""A journey-level ``holdout: 10%``: a deterministic share of entries gets no messages, its
goals are still measured, and the report compares everyone else against it; what
validation says of a share out of range or beside a split's holdout."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from journeyman.domain.goals import held_out
from journeyman.report import journey_report
from journeyman.simulator import Simulator
from tests.conftest import BASE
from tests.engine_helpers import journey, sign_up
from tests.unit.test_goals import GOALS, SEND_AND_WAIT, buy, counters

Simulate = Callable[..., Simulator]
USERS = [f"u{index:02}" for index in range(60)]


def run(sim: Simulator) -> tuple[set[str], set[str]]:
    """Every user signs up, and those with an even number buy; (held out, buyers)."""
    for user in USERS:
        sign_up(sim, user)
    buyers = set(USERS[::2])
    for user in sorted(buyers):
        buy(sim, "1h", user=user)
    journey_model = sim.workspace.journeys["j"]
    return {u for u in USERS if held_out(journey_model, u)}, buyers


def test_a_journey_holdout_gets_no_messages_and_the_report_compares_the_rest(
    simulate: Simulate,
) -> None:
    sim = simulate(journey(SEND_AND_WAIT, goals=GOALS, holdout="20%"))
    held, buyers = run(sim)
    assert 0 < len(held) < len(USERS) / 2  # about a fifth: a hash, not a count
    assert {m.profile_id for m in sim.messages} == set(USERS) - held
    skipped = [r for r in sim.records if r.outcome == "skipped"]
    assert {r.profile_id for r in skipped} == held
    assert {r.detail for r in skipped} == {"holdout"}
    entered = [r for r in sim.records if r.outcome == "entered" and r.profile_id in held]
    assert all("held out (0.2 of entries get no messages)" in r.detail for r in entered)

    report = journey_report(sim.workspace.journeys["j"], counters(sim.tallies), None)
    assert (report["holdout"], report["holdout_arm"]) == (0.2, "holdout")
    arms = {a["name"]: a for a in report["arms"]}
    assert arms["holdout"]["entries"] == len(held)
    assert arms["treated"]["entries"] == len(USERS) - len(held)
    assert not arms["treated"]["holdout"]
    purchased = {a["name"]: a for a in report["goals"][0]["arms"]}
    assert purchased["holdout"]["conversions"] == len(held & buyers)
    assert purchased["treated"]["conversions"] == len(buyers - held)
    lift = purchased["treated"]["lift"]
    expected = len(buyers - held) / (len(USERS) - len(held)) - len(held & buyers) / len(held)
    assert lift["absolute"] == pytest.approx(expected)
    hello = next(step for step in report["steps"] if step["id"] == "hello")
    per_arm = {a["name"]: a for a in hello["arms"]}
    assert per_arm["holdout"]["counts"] == {"skipped": len(held)}
    assert per_arm["holdout"]["reached"] == len(held)
    assert per_arm["treated"]["reached"] == len(USERS) - len(held)


def test_the_same_profiles_are_held_out_every_time_and_each_journey_its_own(
    workspace: Callable[..., object],
) -> None:
    ws = workspace(
        journey(SEND_AND_WAIT, holdout="30%"), journey(SEND_AND_WAIT, name="k", holdout="30%")
    )
    journeys = ws.journeys  # type: ignore[attr-defined]
    first = {u for u in USERS if held_out(journeys["j"], u)}
    assert first == {u for u in USERS if held_out(journeys["j"], u)}
    assert first != {u for u in USERS if held_out(journeys["k"], u)}


def test_a_split_after_a_journey_holdout_keeps_the_held_out_in_their_arm(
    simulate: Simulate,
) -> None:
    split = """
- id: pick
  split:
    - {weight: 1, goto: hello, name: a}
    - {weight: 1, goto: hello, name: b}
- id: hello
  send: hello_email
"""
    sim = simulate(journey(split, goals=GOALS, holdout="25%"))
    held, _ = run(sim)
    arms = {i.profile_id: i.arm for i in sim.instances.values()}
    assert {u for u, arm in arms.items() if arm == "holdout"} == held
    assert {arm for u, arm in arms.items() if u not in held} == {"a", "b"}
    assert {m.profile_id for m in sim.messages} == set(USERS) - held
    report = journey_report(sim.workspace.journeys["j"], counters(sim.tallies), None)
    entries = {a["name"]: a["entries"] for a in report["arms"]}
    assert entries["a"] + entries["b"] == entries["treated"] == len(USERS) - len(held)


@pytest.mark.parametrize(
    ("holdout", "message"),
    [
        ("0%", "'holdout' must be above 0% and below 100%, not 0%"),
        ("100%", "'holdout' must be above 0% and below 100%, not 100%"),
        ("ten", "'holdout' must be a percentage of entries, such as 10%"),
        ("10", "'holdout' must be a percentage of entries, such as 10%"),
        ("-5%", "'holdout' must be a percentage of entries, such as 10%"),
    ],
)
def test_validate_names_a_holdout_share_out_of_range(
    load: Callable[..., object], holdout: str, message: str
) -> None:
    loaded = load(BASE, journey(SEND_AND_WAIT, holdout=repr(holdout)))
    lines = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any(message in line for line in lines), lines


def test_validate_refuses_a_journey_holdout_beside_a_split_holdout_or_its_arm_names(
    load: Callable[..., object],
) -> None:
    split = """
- id: pick
  split:
    - {weight: 1, goto: hello, name: treated}
    - {weight: 1, goto: hello, name: control, holdout: true}
- id: hello
  send: hello_email
"""
    loaded = load(BASE, journey(split, holdout="10%"))
    lines = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any("cannot be 'holdout: true' in a journey with 'holdout: N%'" in ln for ln in lines)
    assert any("cannot be named 'treated' in a journey with 'holdout: N%'" in ln for ln in lines)
    assert all(":" in line and "journey j" in line for line in lines), lines
