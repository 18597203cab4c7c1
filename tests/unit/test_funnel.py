"""The steps' numbers kept as report counters (journeyman.domain.funnel): at every moment,
what the counters say, in all and per arm, is what the step log and the instances say;
the waiting level goes up and down in the same outcome as the instance; a merge counts as
an end that left its step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from journeyman.domain.funnel import LEFT, STEP_NUMBERS, WAITING, leaves, step_numbers
from journeyman.domain.state import Instance, StepRecord
from journeyman.report import journey_report
from journeyman.simulator import Simulator
from tests.engine_helpers import after, journey
from tests.unit.test_goals import counters

Simulate = Callable[..., Simulator]

STEPS = """
- id: route
  branch:
    - when: event.plan == "pro"
      goto: greet
    - otherwise: free_end
- id: greet
  send: hello_email
- id: pause
  wait: 1d
- id: done
  end: converted
- id: free_end
  end: free
"""
USERS = [f"u{index:02}" for index in range(24)]


def flow(sim: Simulator) -> None:
    for index, user in enumerate(USERS):
        plan = "pro" if index % 2 == 0 else "free"
        sim.identify({"userId": user, "traits": {"email": f"{user}@x.test"}})
        sim.track({"userId": user, "event": "signed_up", "properties": {"plan": plan}})


def log_counts(
    records: Iterable[StepRecord], instances: Iterable[Instance], held: bool | None = None
) -> dict[str, dict[str, int]]:
    """Per step, what the step log holds by outcome, those that left, and the instances
    waiting there now (of the held-out instances only, or the others, if ``held``)."""
    of = {i.id: i for i in instances}
    found: dict[str, Counter[str]] = {}
    for r in records:
        instance = of.get(r.instance_id or "")
        if r.step is None or instance is None or (held is not None and instance.holdout != held):
            continue
        counts = found.setdefault(r.step, Counter())
        counts[r.outcome] += 1
        if leaves(r.outcome, r.detail):
            counts[LEFT] += 1
    for i in of.values():
        if i.status == "waiting" and (held is None or i.holdout == held):
            found.setdefault(i.step, Counter())[WAITING] += 1
    return {step: dict(counts) for step, counts in found.items()}


def check(sim: Simulator) -> dict[str, dict[str, int]]:
    """The report's numbers, in all and per arm, are the step log's; answers them."""
    model = sim.workspace.journeys["j"]
    report = journey_report(model, counters(sim.tallies), None)
    log = log_counts(sim.records, sim.instances.values())
    numbers = {s["id"]: s["numbers"] for s in report["steps"]}
    for step in model.steps.values():
        assert numbers[step.id] == step_numbers(step, log.get(step.id, {})), step.id
        assert {s["id"]: s["reached"] for s in report["steps"]}[step.id] == (
            numbers[step.id]["entered"]
        )
    for row in report["steps"]:
        step = model.steps[row["id"]]
        for arm in row["arms"]:
            held = log_counts(sim.records, sim.instances.values(), arm["name"] == "holdout")
            assert arm["numbers"] == step_numbers(step, held.get(row["id"], {})), arm["name"]
    return numbers


def levels(sim: Simulator, step: str) -> list[int]:
    """The waiting level of ``step`` after each increment, in order."""
    level, found = 0, []
    for t in sim.tallies:
        if t.metric == f"step:{step}:{WAITING}" and t.arm == "":
            level += t.n
            found.append(level)
    return found


def test_the_counters_give_the_step_logs_numbers_at_every_turn(simulate: Simulate) -> None:
    sim = simulate(journey(STEPS, holdout="25%", exit="[{event: purchased}]"))
    flow(sim)
    assert 0 < sum(i.holdout for i in sim.instances.values()) < len(USERS)
    first = check(sim)
    pro = len(USERS) // 2
    assert first["pause"]["waiting"] == pro
    assert first["free_end"]["passed"] == len(USERS) - pro
    for user in USERS[:8:2]:  # four of the pro users exit while waiting
        sim.track({"userId": user, "event": "purchased"}, after("1h"))
    assert check(sim)["pause"] == {**first["pause"], "waiting": pro - 4, "left": 4}
    sim.pause("j")
    sim.run_until(after("1d1h"))  # the waits end, and the instances hold before `done`
    held = check(sim)
    assert (held["pause"]["passed"], held["done"]["waiting"]) == (pro - 4, pro - 4)
    sim.resume("j")
    sim.run()
    last = check(sim)
    assert last["done"] == {**dict.fromkeys(STEP_NUMBERS, 0), "entered": 8, "passed": 8}
    assert all(level >= 0 for level in levels(sim, "pause"))
    assert levels(sim, "pause")[-1] == levels(sim, "done")[-1] == 0


def test_the_waiting_level_goes_up_and_down_with_the_instance(simulate: Simulate) -> None:
    sim = simulate(journey(STEPS))
    sim.track({"userId": "ana", "event": "signed_up", "properties": {"plan": "pro"}})
    assert levels(sim, "pause") == [1]
    sim.run()
    assert levels(sim, "pause") == [1, 0]
    sim.track({"userId": "bob", "event": "signed_up", "properties": {"plan": "pro"}})
    sim.stop("j")
    assert levels(sim, "pause") == [1, 0, 1, 0]
    assert check(sim)["pause"]["left"] == 1  # stopped while waiting


def test_a_merge_ends_the_anonymous_instance_as_left_and_no_longer_waiting(
    simulate: Simulate,
) -> None:
    sim = simulate(journey(STEPS))
    for user in ("known", "anon"):
        sim.track({"userId": user, "event": "signed_up", "properties": {"plan": "pro"}})
    sim.identify({"userId": "known", "anonymousId": "anon"}, after("1h"))
    numbers = check(sim)
    assert (numbers["pause"]["waiting"], numbers["pause"]["left"]) == (1, 1)
    report = journey_report(sim.workspace.journeys["j"], counters(sim.tallies), None)
    assert report["ended"] == {"merged": 1}
