"""The numbers of a journey's steps: what they mean, and the report counters that keep them.

A step's numbers (:data:`STEP_NUMBERS`) are worked out by :func:`step_numbers` from its
counts by outcome, wherever those come from: the console's graph reads the step log's
(``ReadModel.step_counts``), the report reads its counters; both say the same.

The counters are kept in the commit of each instance (see :class:`Tally`), per journey
version and arm ("" for every instance, and the instance's arm when it has one):

- ``step:<id>:<outcome>``: one per line of the step log at the step (``sent``,
  ``skipped``, ``ended``, a reaction such as ``delivered``...);
- ``step:<id>:left``: the instances that ended at the step without completing it
  (:func:`leaves`);
- ``step:<id>:waiting_now``: a level, not a flow: one up when an instance starts waiting
  at the step, one down when it stops (moves on, or ends), in the same commit.
"""

from __future__ import annotations

from collections.abc import Mapping

from journeyman.domain import model as m
from journeyman.domain.state import Instance, Tally

__all__ = [
    "ISSUES",
    "LEFT",
    "PASSED",
    "STEP_NUMBERS",
    "WAITING",
    "leaves",
    "step_numbers",
    "step_tallies",
]

# Outcomes that mean an instance went past a step; 'ended' counts only at an end step.
PASSED = ("sent", "branched", "split", "waited", "event", "timeout", "called", "updated", "jumped")
ISSUES = ("skipped", "capped", "dropped", "failed")
LEFT = "left"  # the counts' key of instances that ended at a step without completing it
WAITING = "waiting_now"  # the counts' key of instances waiting at a step now

# What the numbers of a step mean: the same words on its box, in its panel, in the
# API's ``numbers`` (GET /v1/journeys/{name}) and in the report; docs/console.md says
# the same.
STEP_NUMBERS = {
    "entered": "instances that reached the step (each arrival: a loop arrives again)",
    "waiting": "waiting at the step now",
    "passed": "went on past the step (at an end step: completed the journey there)",
    "left": "ended at the step without completing it: exited, stopped, timed out, "
    "failed, reached a goal, merged into another profile's instance",
    "skipped": "skipped by the step (no consent, no address, a condition)",
    "capped": "held back by a frequency cap",
    "dropped": "dropped by quiet hours or a throttle",
    "failed": "messages and calls that failed after the step handed them over "
    "(those instances had passed)",
}


def step_numbers(step: m.Step | None, counts: Mapping[str, int]) -> dict[str, int]:
    """The numbers of one step (see :data:`STEP_NUMBERS`), from its counts by outcome
    (with :data:`LEFT` and :data:`WAITING`).

    Every arrival at the step is counted once in one of: passed, waiting, skipped, capped,
    dropped, left; entered is their sum. An instance that reaches an ``end`` step ends
    there, completed: it passed. ``failed`` counts deliveries that failed after the step
    handed them over: those instances passed.
    """
    passed = sum(counts.get(outcome, 0) for outcome in PASSED)
    left = counts.get(LEFT, 0)
    if isinstance(step, m.End):
        passed += counts.get("ended", 0) - left
    waiting = counts.get(WAITING, 0)
    issues = {outcome: counts.get(outcome, 0) for outcome in ISSUES}
    entered = passed + waiting + issues["skipped"] + issues["capped"] + issues["dropped"] + left
    numbers = {"entered": entered, "waiting": waiting, "passed": passed, "left": left, **issues}
    return {key: numbers[key] for key in STEP_NUMBERS}


def leaves(outcome: str, detail: str) -> bool:
    """Whether a line of the step log says its instance ended at the step without
    completing it: an end with a reason (an exit, a stop, a timeout, a failure, a goal),
    or a merge that ended it (``storage.base.LEFT`` is the same rule in SQL)."""
    if outcome == "ended":
        return ": " in detail
    return outcome == "merged" and detail.startswith("ended:")


def step_tallies(instance: Instance, step: str, what: str, n: int = 1) -> list[Tally]:
    """``n`` more of the counter ``step:<step>:<what>`` of ``instance``'s journey version,
    in all and in its arm: an outcome, :data:`LEFT`, or :data:`WAITING` (``n`` 1 when the
    instance starts waiting at the step, -1 when it stops)."""
    metric = f"step:{step}:{what}"
    j, v = instance.journey, instance.version
    if instance.arm:
        return [Tally(j, v, "", "", metric, n), Tally(j, v, instance.arm, "", metric, n)]
    return [Tally(j, v, "", "", metric, n)]
