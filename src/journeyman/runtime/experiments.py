"""Experiments' decisions: made in one place, stored where every process reads them.

The winner check (:func:`check`) runs in ``journeyman serve`` only, every
:data:`CHECK_EVERY` seconds (``JOURNEYMAN_EXPERIMENT_CHECK`` sets another), never in a
worker: with any number of workers on NATS there is one decision per experiment, not one
per worker. It reads the report counters (the
variants' profiles and goal conversions, summed over the journey's versions), applies the
step's ``winner:`` policy (:mod:`journeyman.domain.experiments`) and stores the decision
in the settings store under ``experiment:<journey>:<step>``. A decision once stored is
final: the check reads it again before writing and never replaces it (an operator may).

Every process applies the stored decisions: ``serve`` at once when it decides or an
operator picks, workers when they next read the journeys' states (as they learn of a
paused journey). Until a process has read a decision, it assigns by weight.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime

from journeyman.domain import model as m
from journeyman.domain.experiments import (
    Arm,
    Decision,
    How,
    choose,
    decision_key,
    started_key,
)
from journeyman.storage.base import Counter, ReadModel, Store

__all__ = ["CHECK_EVERY", "check", "decide", "experiments_of", "read_decisions", "variant_data"]

log = logging.getLogger("journeyman.experiments")

CHECK_EVERY = 30.0  # seconds between two winner checks in serve


def experiments_of(workspace: m.Workspace) -> Iterator[tuple[m.Journey, m.Experiment]]:
    for journey in workspace.journeys.values():
        for step in journey.steps.values():
            if isinstance(step, m.Experiment):
                yield journey, step


async def read_decisions(store: Store, workspace: m.Workspace) -> dict[tuple[str, str], Decision]:
    """The stored decisions of the workspace's experiments."""
    found = {}
    for journey, step in experiments_of(workspace):
        decision = await read_decision(store, journey.name, step.id)
        if decision is not None:
            found[(journey.name, step.id)] = decision
    return found


async def read_decision(store: Store, journey: str, step: str) -> Decision | None:
    text = await store.get_setting(decision_key(journey, step))
    if not text:
        return None
    try:
        return Decision.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError):  # written by no version of this module
        log.warning("the decision of experiment %s.%s cannot be read", journey, step)
        return None


def variant_data(step: m.Experiment, goal: str, counters: list[Counter]) -> tuple[Arm, ...]:
    """Each variant's profiles and conversions on ``goal``, from the report counters."""
    n = dict.fromkeys((v.name for v in step.variants), 0)
    converted = dict(n)
    for counter in counters:
        if counter.arm not in n:
            continue
        if counter.goal == "" and counter.metric == "entered":
            n[counter.arm] += counter.n
        elif counter.goal == goal and counter.metric == "reached":
            converted[counter.arm] += counter.n
    return tuple(Arm(name, n[name], converted[name]) for name in n)


def metric_of(journey: m.Journey, step: m.Experiment) -> str:
    """The goal an experiment is judged on: its ``winner.metric``, else the primary goal."""
    if step.winner is not None and step.winner.metric:
        return step.winner.metric
    primary = journey.primary_goal
    return primary.name if primary is not None else ""


async def check(
    store: Store, reads: ReadModel, workspace: m.Workspace, now: datetime
) -> list[Decision]:
    """Apply every undecided experiment's winner policy; the decisions it stored."""
    made = []
    for journey, step in experiments_of(workspace):
        if step.winner is None or await read_decision(store, journey.name, step.id):
            continue
        metric = metric_of(journey, step)
        arms = variant_data(step, metric, await reads.counters(journey.name))
        started = await _started(store, journey.name, step.id, arms, now)
        winner, probabilities = choose(step.winner, arms, started, now)
        if winner is None:
            continue
        decision = Decision(
            journey.name, step.id, winner, "winner", now, "policy", metric, arms, probabilities
        )
        if await read_decision(store, journey.name, step.id):  # an operator came first
            continue
        await store.set_setting(decision_key(journey.name, step.id), json.dumps(decision.as_json()))
        log.info("experiment %s.%s: %s won", journey.name, step.id, winner)
        made.append(decision)
    return made


async def _started(
    store: Store, journey: str, step: str, arms: tuple[Arm, ...], now: datetime
) -> datetime | None:
    """When the check first saw a profile in the experiment (stored), or None yet."""
    key = started_key(journey, step)
    text = await store.get_setting(key)
    if text:
        return datetime.fromisoformat(text)
    if not any(a.n for a in arms):
        return None
    await store.set_setting(key, now.isoformat())
    return now


async def decide(
    store: Store,
    reads: ReadModel,
    journey: m.Journey,
    step: m.Experiment,
    variant: str,
    how: How,
    by: str,
    now: datetime,
) -> Decision:
    """Store an operator's decision (``chosen`` or ``stopped``), replacing any before it,
    with the data of the moment."""
    metric = metric_of(journey, step)
    arms = variant_data(step, metric, await reads.counters(journey.name))
    decision = Decision(journey.name, step.id, variant, how, now, by, metric, arms, None)
    await store.set_setting(decision_key(journey.name, step.id), json.dumps(decision.as_json()))
    return decision
