"""A journey's report: entries, ends, goals and their lift against the holdout arm.

Built from the report counters alone (:meth:`ReadModel.counters`: a few rows per arm and
goal, kept in the commit of each instance), never from the instances, so a report costs
the same for ten profiles as for ten million.

The statistics, for each arm against the holdout arm of the journey's splits:

- absolute lift, the difference of the conversion rates, with a 95% Wald interval
  (unpooled standard error);
- relative lift, the ratio of the rates less one, with a 95% interval from the normal
  approximation of the log of the ratio (Katz's log method);
- the two-sided p-value of the pooled two-proportion z-test (the same as Pearson's
  chi-square test of the 2x2 table without continuity correction).

The normal quantiles and tail areas come from scipy, imported when a report first
needs them: it is no cost of the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from journeyman.domain import model as m
from journeyman.domain.goals import bucket_bounds
from journeyman.domain.times import format_duration
from journeyman.storage.base import Counter

__all__ = ["CONFIDENCE", "METHOD", "Lift", "journey_report", "lift", "quantile"]

CONFIDENCE = 0.95
METHOD = {
    "absolute_lift": "difference of rates, 95% Wald interval (unpooled standard error)",
    "relative_lift": "ratio of rates less one, 95% interval on the log of the ratio (Katz)",
    "p_value": "two-sided pooled two-proportion z-test (chi-square without correction)",
    "time_to_convert": "median and 90th percentile estimated from a histogram of "
    "buckets 2^(1/4) wide (within 19%); the mean is exact",
    "attribution": "last touch: the last message the journey sent the profile before the goal",
}


@dataclass(frozen=True, slots=True)
class Lift:
    """One arm's conversion rate against the holdout's."""

    absolute: float
    absolute_interval: tuple[float, float]
    relative: float | None  # None when the holdout converted no one
    relative_interval: tuple[float, float] | None  # None when either arm has no conversion
    p_value: float

    def as_json(self) -> dict[str, Any]:
        return {
            "absolute": self.absolute,
            "absolute_interval": list(self.absolute_interval),
            "relative": self.relative,
            "relative_interval": list(self.relative_interval) if self.relative_interval else None,
            "p_value": self.p_value,
        }


def lift(converted: int, entered: int, held_converted: int, held_entered: int) -> Lift:
    """The lift of an arm (``converted`` of ``entered``) over the holdout's; both arms
    must have entries."""
    from scipy.stats import norm  # imported when the first report is asked for

    z = float(norm.ppf(1 - (1 - CONFIDENCE) / 2))
    rate, held = converted / entered, held_converted / held_entered
    difference = rate - held
    spread = math.sqrt(rate * (1 - rate) / entered + held * (1 - held) / held_entered)
    pooled = (converted + held_converted) / (entered + held_entered)
    pooled_spread = math.sqrt(pooled * (1 - pooled) * (1 / entered + 1 / held_entered))
    p_value = float(2 * norm.sf(abs(difference) / pooled_spread)) if pooled_spread else 1.0
    relative = rate / held - 1 if held else None
    interval = None
    if converted and held_converted:
        log_spread = math.sqrt(1 / converted - 1 / entered + 1 / held_converted - 1 / held_entered)
        ratio = math.log(rate / held)
        interval = (
            math.exp(ratio - z * log_spread) - 1,
            math.exp(ratio + z * log_spread) - 1,
        )
    return Lift(
        difference,
        (difference - z * spread, difference + z * spread),
        relative,
        interval,
        min(p_value, 1.0),
    )


def quantile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of the durations in a time-to-convert histogram (bucket
    index -> count), in seconds, interpolated within its bucket; None if it is empty."""
    count = sum(histogram.values())
    if not count:
        return None
    rank = q * count
    seen = 0
    for index in sorted(histogram):
        here = histogram[index]
        if here and seen + here >= rank:
            low, high = bucket_bounds(index)
            share = (rank - seen) / here
            if index == 0:
                return low + (high - low) * share
            return float(low * (high / low) ** share)
        seen += here
    return bucket_bounds(max(histogram))[1]


@dataclass(slots=True)
class _Tally:
    """The counters of one arm (or of all) for the journey or one goal."""

    n: dict[str, int] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)

    def add(self, counter: Counter) -> None:
        self.n[counter.metric] = self.n.get(counter.metric, 0) + counter.n
        self.total[counter.metric] = self.total.get(counter.metric, 0.0) + counter.total

    def ended(self) -> dict[str, int]:
        return {k[6:]: v for k, v in sorted(self.n.items()) if k.startswith("ended:")}

    def histogram(self) -> dict[int, int]:
        return {int(k[5:]): v for k, v in self.n.items() if k.startswith("time:")}

    def touches(self) -> dict[str, int]:
        return {k[6:] or "none": v for k, v in sorted(self.n.items()) if k.startswith("touch:")}


def journey_report(
    journey: m.Journey, counters: Iterable[Counter], version: int | None
) -> dict[str, Any]:
    """The report of ``journey`` (the model whose goals and splits it reads) from its
    counters, of one version or of all (``version`` None)."""
    by_key: dict[tuple[str, str], _Tally] = {}
    for counter in counters:
        by_key.setdefault((counter.arm, counter.goal), _Tally()).add(counter)
        by_key.setdefault(("*", counter.goal), _Tally()).add(counter)
    holdouts = _holdouts(journey)
    arms = sorted({arm for arm, _ in by_key if arm not in ("", "*")} | set(_arm_names(journey)))
    held = next((arm for arm in arms if arm in holdouts), None)
    journey_all = by_key.get(("", ""), _Tally())
    report: dict[str, Any] = {
        "journey": journey.name,
        "version": "all" if version is None else version,
        "entries": journey_all.n.get("entered", 0),
        "ended": by_key.get(("*", ""), _Tally()).ended(),
        "holdout_arm": held,
        "arms": [_arm(name, by_key.get((name, ""), _Tally()), holdouts) for name in arms],
        "goals": [],
        "confidence": CONFIDENCE,
        "method": METHOD,
    }
    entries = {name: by_key.get((name, ""), _Tally()).n.get("entered", 0) for name in arms}
    for goal in journey.goals:
        report["goals"].append(_goal(goal, by_key, report["entries"], arms, entries, held))
    return report


def _holdouts(journey: m.Journey) -> set[str]:
    return {
        name
        for step in journey.steps.values()
        if isinstance(step, m.Split)
        for name in step.holdouts
    }


def _arm_names(journey: m.Journey) -> list[str]:
    names = []
    for step in journey.steps.values():
        if isinstance(step, m.Split):
            names += [step.arm_name(index) for index in range(len(step.arms))]
    return names


def _arm(name: str, tally: _Tally, holdouts: set[str]) -> dict[str, Any]:
    return {
        "name": name,
        "holdout": name in holdouts,
        "entries": tally.n.get("entered", 0),
        "ended": tally.ended(),
    }


def _goal(
    goal: m.Goal,
    by_key: Mapping[tuple[str, str], _Tally],
    entered: int,
    arms: list[str],
    entries: Mapping[str, int],
    held: str | None,
) -> dict[str, Any]:
    total = by_key.get(("*", goal.name), _Tally())
    found = _conversions(total, entered)
    found.update(
        name=goal.name,
        event=goal.event,
        within=format_duration(goal.within),
        primary=goal.primary,
        last_touch=total.touches(),
        arms=[],
    )
    held_tally = by_key.get((held, goal.name), _Tally()) if held is not None else None
    for arm in arms:
        tally = by_key.get((arm, goal.name), _Tally())
        row = _conversions(tally, entries[arm])
        row["name"] = arm
        row["holdout"] = arm == held
        row["lift"] = None
        if held_tally is not None and arm != held and entries[arm] and entries[held or ""]:
            held_conversions = held_tally.n.get("reached", 0)
            result = lift(row["conversions"], entries[arm], held_conversions, entries[held or ""])
            row["lift"] = result.as_json()
        found["arms"].append(row)
    return found


def _conversions(tally: _Tally, entered: int) -> dict[str, Any]:
    conversions = tally.n.get("reached", 0)
    histogram = tally.histogram()
    seconds = sum(tally.total.get(f"time:{index}", 0.0) for index in histogram)
    return {
        "entries": entered,
        "conversions": conversions,
        "rate": conversions / entered if entered else None,
        "value": tally.total.get("valued", 0.0),
        "valued": tally.n.get("valued", 0),
        "time_to_convert": {
            "median_seconds": quantile(histogram, 0.5),
            "p90_seconds": quantile(histogram, 0.9),
            "mean_seconds": seconds / conversions if conversions else None,
        },
    }
