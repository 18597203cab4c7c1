"""The experiment step: variants drawn by weight and the same in every process, recorded
as the instance's arm; a forced variant in journey tests; the Bayesian winner policy on
simulated arms; and what validation says."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from journeyman.domain.core import Changes
from journeyman.domain.experiments import Arm, Decision, choose, probability_best
from journeyman.domain.model import Experiment, WinnerPolicy, Workspace
from journeyman.journey_tests import run_tests
from journeyman.report import journey_report, report_csv
from journeyman.runtime.experiments import check, decide, read_decisions
from journeyman.simulator import Simulator
from journeyman.storage.base import Counter
from journeyman.storage.memory import MemoryStore
from tests.conftest import BASE, START
from tests.engine_helpers import journey, sign_up
from tests.unit.test_goals import GOALS, buy, counters

Simulate = Callable[..., Simulator]

TEMPLATES = """
kind: template
name: subject_a
channel: email
subject: "A subject"
text: "a"
---
kind: template
name: subject_b
channel: email
subject: "B subject"
text: "b"
"""
EXPERIMENT = """
- id: subject_test
  experiment:
    - {name: a, weight: 3, send: subject_a}
    - {name: b, weight: 1, send: subject_b}
    - {name: none, weight: 1, goto: quiet}
  winner: {metric: purchased, min_per_variant: 10, min_time: 1d, confidence: 0.95}
- id: pause
  wait: 1d
  next: done
- id: quiet
  wait: 2d
- id: done
  end: completed
"""


def experiment_journey() -> str:
    return journey(EXPERIMENT, goals=GOALS)


def variants_of(sim: Simulator) -> dict[str, str]:
    return {
        r.profile_id: r.detail.split(" ", 1)[0]
        for r in sim.records
        if r.outcome == "variant" and r.step == "subject_test"
    }


def test_each_profile_gets_a_stable_variant_near_the_weights_and_its_message(
    simulate: Simulate,
) -> None:
    users = [f"u{index}" for index in range(1500)]
    first, second = (
        simulate(TEMPLATES, experiment_journey()),
        simulate(TEMPLATES, experiment_journey()),
    )
    for sim in (first, second):
        for user in users:
            sign_up(sim, user)
    assert variants_of(first) == variants_of(second)  # a hash of the profile, not a draw
    given = list(variants_of(first).values())
    shares = {name: given.count(name) / len(users) for name in ("a", "b", "none")}
    assert shares == pytest.approx({"a": 0.6, "b": 0.2, "none": 0.2}, abs=0.04)
    subjects = {m.profile_id: m.content["subject"] for m in first.messages}
    for user, variant in variants_of(first).items():
        assert subjects.get(user) == {"a": "A subject", "b": "B subject"}.get(variant)
    assert {i.arm for i in first.instances.values()} == {"a", "b", "none"}


def test_goals_and_the_report_count_per_variant(simulate: Simulate) -> None:
    sim = simulate(TEMPLATES, experiment_journey())
    users = [f"u{index}" for index in range(40)]
    for user in users:
        sign_up(sim, user)
    for user in users[:10]:
        buy(sim, "2h", user=user)
    given = variants_of(sim)
    report = journey_report(sim.workspace.journeys["j"], counters(sim.tallies), None)
    arms = {a["name"]: a["entries"] for a in report["arms"]}
    assert arms == {name: list(given.values()).count(name) for name in ("a", "b", "none")}
    purchased = {a["name"]: a["conversions"] for a in report["goals"][0]["arms"]}
    bought = [given[user] for user in users[:10]]
    assert purchased == {name: bought.count(name) for name in ("a", "b", "none")}
    (experiment,) = report["experiments"]
    assert experiment["step"] == "subject_test"
    assert [v["name"] for v in experiment["variants"]] == ["a", "b", "none"]
    assert experiment["decision"] is None


def test_a_decision_sends_every_new_profile_to_its_variant(simulate: Simulate) -> None:
    sim = simulate(TEMPLATES, experiment_journey())
    decision = Decision("j", "subject_test", "b", "chosen", START, "ana")
    sim.engine.decisions[("j", "subject_test")] = decision
    for index in range(30):
        sign_up(sim, f"u{index}")
    assert set(variants_of(sim).values()) == {"b"}
    assert {m.content["subject"] for m in sim.messages} == {"B subject"}
    (detail,) = {r.detail for r in sim.records if r.outcome == "variant"}
    assert detail.startswith("b (chosen by ana, ")


def test_a_journey_test_forces_a_variant_and_asserts_it(workspace: Callable[..., object]) -> None:
    test = """
kind: test
name: b wins a buyer
variants:
  - {profile: u1, step: subject_test, is: b}
  - {profile: u2, step: j.subject_test, is: none}
events:
  - {at: 0s, identify: {userId: u1, traits: {email: u1@example.com}}}
  - {at: 0s, identify: {userId: u2, traits: {email: u2@example.com}}}
  - {at: 1s, track: {userId: u1, event: signed_up, properties: {plan: pro}}}
  - {at: 1s, track: {userId: u2, event: signed_up, properties: {plan: pro}}}
  - {at: 2h, track: {userId: u1, event: purchased, properties: {order_id: o1, total: 5}}}
expect:
  - {variant: subject_test, is: b, profile: u1}
  - {variant: j.subject_test, is: none, profile: u2}
  - {sent: subject_test, subject: B subject, profile: u1}
  - {reached: purchased, profile: u1}
  - {never: subject_test, profile: u3}
"""
    results = run_tests(workspace(TEMPLATES, experiment_journey(), test))  # type: ignore[arg-type]
    assert [r.failures for r in results] == [[]]
    wrong = test.replace(
        "- {variant: subject_test, is: b, profile: u1}",
        "- {variant: subject_test, is: a, profile: u1}",
    )
    (result,) = run_tests(workspace(TEMPLATES, experiment_journey(), wrong))  # type: ignore[arg-type]
    assert "expected variant subject_test" in result.failures[0]


# the winner policy

POLICY = WinnerPolicy("purchased", min_per_variant=500, min_time=timedelta(0), confidence=0.95)


def simulated(generator: np.random.Generator, rates: list[float], n: int) -> list[Arm]:
    return [Arm(f"v{i}", n, int(generator.binomial(n, rate))) for i, rate in enumerate(rates)]


def test_the_policy_picks_the_better_variant_when_there_is_a_real_difference() -> None:
    generator = np.random.default_rng(7)
    picked = []
    for run in range(40):
        arms = simulated(generator, [0.10, 0.16, 0.10], 1500)
        picked.append(choose(POLICY, arms, START, START, seed=run)[0])
    assert picked.count("v1") >= 36  # power well above 90% at this difference
    assert set(picked) <= {"v1", None}


def test_with_no_difference_it_picks_a_winner_no_more_often_than_its_error_rate() -> None:
    generator = np.random.default_rng(11)
    runs, winners = 300, 0
    for run in range(runs):
        arms = simulated(generator, [0.12, 0.12], 1000)
        winners += choose(POLICY, arms, START, START, seed=run)[0] is not None
    # One look at two variants: each is best with P >= 0.95 about 5% of the time, so a
    # winner in about 10% of runs; 3 standard errors of slack for 300 runs.
    allowed = 0.10 + 3 * (0.10 * 0.90 / runs) ** 0.5
    assert winners / runs <= allowed


def test_the_policy_waits_for_its_minimums() -> None:
    arms = [Arm("a", 499, 10), Arm("b", 600, 200)]
    assert choose(POLICY, arms, START, START) == (None, None)
    later = WinnerPolicy("purchased", 10, timedelta(days=3), 0.95)
    assert choose(later, arms, START, START + timedelta(days=2)) == (None, None)
    winner, probabilities = choose(later, arms, START, START + timedelta(days=3))
    assert winner == "b"
    assert probabilities is not None
    assert probabilities["b"] > 0.999


def test_probability_to_be_best_matches_the_exact_answer_for_two_variants() -> None:
    # Exact P(rate_b > rate_a) for Beta posteriors (Evan Miller's closed form).
    from math import exp, lgamma, log

    a, b = Arm("a", 200, 20), Arm("b", 200, 30)
    alpha_a, beta_a = 1 + a.conversions, 1 + a.n - a.conversions
    alpha_b, beta_b = 1 + b.conversions, 1 + b.n - b.conversions

    def log_beta(x: float, y: float) -> float:
        return lgamma(x) + lgamma(y) - lgamma(x + y)

    exact = sum(
        exp(
            log_beta(alpha_a + i, beta_b + beta_a)
            - log(beta_b + i)
            - log_beta(1 + i, beta_b)
            - log_beta(alpha_a, beta_a)
        )
        for i in range(alpha_b)
    )
    found = probability_best([a, b])
    assert found["b"] == pytest.approx(exact, abs=0.01)
    assert found == probability_best([a, b])  # seeded by the data


# validation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("weight: 1, send: subject_b", "'weight' must be above 0"),
        ("{name: a, weight: 1, send: subject_b}", "two variants are named 'a'"),
        ("goto: quiet}", "names no step"),
        ("metric: purchased", "'metric' must name a goal"),
        ("send: subject_b}", "template 'nope' is not defined"),
    ],
)
def test_validation_names_what_is_wrong(
    load: Callable[..., object], change: str, message: str
) -> None:
    text = experiment_journey()
    broken = {
        "weight: 1, send: subject_b": ("weight: 1, send: subject_b", "weight: 0, send: subject_b"),
        "{name: a, weight: 1, send: subject_b}": ("name: b,", "name: a,"),
        "goto: quiet}": ("goto: quiet}", "goto: qiet}"),
        "metric: purchased": ("metric: purchased", "metric: bought"),
        "send: subject_b}": ("send: subject_b}", "send: nope}"),
    }[change]
    loaded = load(BASE, TEMPLATES, text.replace(*broken))
    errors = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any(message in error for error in errors), errors


def test_an_experiment_of_one_variant_is_an_error_naming_the_step(
    load: Callable[..., object],
) -> None:
    one = EXPERIMENT.replace(
        "    - {name: b, weight: 1, send: subject_b}\n    - {name: none, weight: 1, goto: quiet}\n",
        "",
    ).replace(
        "  winner: {metric: purchased, min_per_variant: 10, min_time: 1d, confidence: 0.95}\n", ""
    )
    assert one != EXPERIMENT
    loaded = load(BASE, TEMPLATES, journey(one, goals=GOALS))
    errors = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any(
        "step subject_test: an experiment needs at least two variants" in e for e in errors
    ), errors


# where the decision is made: serve's check, on the stored counters


def stored_counts(store: MemoryStore, counts: dict[str, tuple[int, int]]) -> None:
    """Counters as commits leave them: each variant's entries and purchases."""
    for arm, (entered, bought) in counts.items():
        store.db.counters[("j", 1, arm, "", "entered")] = [entered, 0.0]
        store.db.counters[("j", 1, arm, "purchased", "reached")] = [bought, 0.0]


def test_the_check_stores_one_decision_that_the_engine_then_obeys(
    workspace: Callable[..., Workspace],
) -> None:
    asyncio.run(_check_then_obey(workspace(TEMPLATES, experiment_journey())))


async def _check_then_obey(model: Workspace) -> None:
    store = MemoryStore()
    await store.open()
    stored_counts(store, {"a": (400, 40), "b": (400, 90), "none": (400, 38)})
    assert await check(store, store, model, START) == []  # min_time 1d from the first look
    (decision,) = await check(store, store, model, START + timedelta(days=1))
    assert (decision.variant, decision.how, decision.by) == ("b", "winner", "policy")
    assert [(a.name, a.n, a.conversions) for a in decision.data] == [
        ("a", 400, 40),
        ("b", 400, 90),
        ("none", 400, 38),
    ]
    assert decision.probabilities is not None
    assert decision.probabilities["b"] > 0.99
    stored_counts(store, {"a": (900, 400), "b": (900, 90), "none": (900, 38)})
    assert await check(store, store, model, START + timedelta(days=2)) == []  # it is final
    decisions = await read_decisions(store, model)
    assert decisions[("j", "subject_test")] == decision

    sim = Simulator(model, START)
    sim.engine.decisions.update(decisions)
    for index in range(20):
        sign_up(sim, f"u{index}")
    assert set(variants_of(sim).values()) == {"b"}

    experiment = model.journeys["j"].steps["subject_test"]
    assert isinstance(experiment, Experiment)
    stopped = await decide(
        store, store, model.journeys["j"], experiment, "a", "stopped", "ana", START
    )
    assert (await read_decisions(store, model))[("j", "subject_test")] == stopped
    report = journey_report(
        model.journeys["j"],
        await store.counters("j"),
        None,
        decisions={"subject_test": stopped},
    )
    assert report["experiments"][0]["decision"]["how"] == "stopped"


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("variants: [{profile: u1, step: subject_test, is: c}]", "has no variant 'c'"),
        ("variants: [{profile: u1, step: pause, is: a}]", "not an experiment"),
        ("variants: [{profile: u1, step: subject_tset, is: a}]", "no journey has a step"),
        ("variants: [{profile: u1, step: subject_test}]", "a forced variant needs 'is'"),
    ],
)
def test_a_journey_test_forcing_a_variant_names_a_real_one(
    load: Callable[..., object], written: str, message: str
) -> None:
    test = f"""
kind: test
name: t
{written}
events: []
expect:
  - {{variant: subject_test, is: a}}
"""
    loaded = load(BASE, TEMPLATES, experiment_journey(), test)
    errors = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any(message in error for error in errors), errors


def test_the_check_interval_is_a_setting_and_a_bad_one_names_the_variable() -> None:
    from journeyman.server import SettingError, experiment_check

    assert experiment_check({}) == 30.0
    assert experiment_check({"JOURNEYMAN_EXPERIMENT_CHECK": "0.5"}) == 0.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(SettingError, match="JOURNEYMAN_EXPERIMENT_CHECK must be a number"):
            experiment_check({"JOURNEYMAN_EXPERIMENT_CHECK": bad})


def test_each_variant_counts_its_messages_reactions_once_per_message(simulate: Simulate) -> None:
    sim = simulate(TEMPLATES, experiment_journey())
    for index in range(30):
        sign_up(sim, f"u{index:02}")
    got = variants_of(sim)
    bs = sorted(u for u, v in got.items() if v == "b")[:3]
    first_a = min(u for u, v in got.items() if v == "a")
    batches = [list(sim.tallies)]
    for user in bs:  # three b readers open twice, each in its own commit
        for _ in range(2):
            mark = len(sim.tallies)
            sim.react("opened", "subject_test", user)
            batches.append(sim.tallies[mark:])
    mark = len(sim.tallies)
    sim.react("clicked", "subject_test", bs[0])
    sim.react("clicked", "subject_test", bs[0])  # twice in one commit: one clicker
    sim.react("opened", "subject_test", first_a, machine=True)
    batches.append(sim.tallies[mark:])

    async def stored() -> list[Counter]:
        store = MemoryStore()
        await store.open()
        for tallies in batches:
            await store.commit(Changes(tallies=tallies))
        return await store.counters("j")

    report = journey_report(sim.workspace.journeys["j"], asyncio.run(stored()), None)
    row = next(s for s in report["steps"] if s["id"] == "subject_test")
    arms = {a["name"]: a["engagement"] for a in row["arms"]}
    sent = {v: sum(1 for x in got.values() if x == v) for v in ("a", "b")}
    assert (arms["b"]["sent"], arms["b"]["opened"], arms["b"]["clicked"]) == (sent["b"], 3, 1)
    assert arms["b"]["clicks"] == 2  # every click, a person clicking twice too
    assert arms["b"]["rates"]["opened"] == round(3 / sent["b"], 4)
    assert (arms["a"]["sent"], arms["a"]["opened"], arms["a"]["machine_opened"]) == (
        sent["a"],
        0,
        1,
    )
    assert arms["none"]["sent"] == 0  # a path, not a message
    everyone = row["engagement"]
    assert (everyone["sent"], everyone["opened"], everyone["clicked"]) == (sum(sent.values()), 3, 1)
    assert report_csv_cells(report)[("step", "subject_test", "b", "", "engagement:opened")] == "3"


def report_csv_cells(report: dict[str, Any]) -> dict[tuple[str, ...], str]:
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    return {tuple(r[:5]): r[5] for r in rows[1:]}
