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

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from journeyman.domain import funnel
from journeyman.domain import model as m
from journeyman.domain.experiments import METHOD as EXPERIMENT_METHOD
from journeyman.domain.experiments import Arm, Decision, probability_best
from journeyman.domain.goals import HOLDOUT_ARM, TREATED_ARM, bucket_bounds
from journeyman.domain.reactions import ENGAGEMENT
from journeyman.domain.times import format_duration
from journeyman.runtime.experiments import metric_of, variant_data
from journeyman.storage.base import Counter

__all__ = [
    "CONFIDENCE",
    "CSV_COLUMNS",
    "METHOD",
    "Days",
    "Lift",
    "in_range",
    "journey_report",
    "lift",
    "quantile",
    "report_csv",
    "wilson",
]

CONFIDENCE = 0.95
METHOD = {
    "absolute_lift": "difference of rates, 95% Wald interval (unpooled standard error)",
    "relative_lift": "ratio of rates less one, 95% interval on the log of the ratio (Katz)",
    "p_value": "two-sided pooled two-proportion z-test (chi-square without correction)",
    "time_to_convert": "median and 90th percentile estimated from a histogram of "
    "buckets 2^(1/4) wide (within 19%); the mean is exact",
    "attribution": "last touch: the last message the journey sent the profile before the goal",
    "over_time": "cumulative conversion rate by day of entry in the report's time zone, "
    "95% Wilson score interval",
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

    def minus(self, other: _Tally) -> _Tally:
        """These counters less ``other``'s (the treated: everyone less the held out)."""
        n = {k: v - other.n.get(k, 0) for k, v in self.n.items()}
        total = {k: v - other.total.get(k, 0.0) for k, v in self.total.items()}
        return _Tally(n, total)

    def ended(self) -> dict[str, int]:
        return {k[6:]: v for k, v in sorted(self.n.items()) if k.startswith("ended:") and v}

    def histogram(self) -> dict[int, int]:
        return {int(k[5:]): v for k, v in self.n.items() if k.startswith("time:")}

    def touches(self) -> dict[str, int]:
        return {k[6:] or "none": v for k, v in sorted(self.n.items()) if k.startswith("touch:")}

    def days(self, metric: str) -> dict[str, int]:
        """``metric`` by day of entry (``day:<date>:<metric>`` counters, as
        :func:`in_range` makes them in the report's zone)."""
        return {k[4:14]: v for k, v in self.n.items() if k.startswith("day:") and k[15:] == metric}

    def steps(self) -> dict[str, dict[str, int]]:
        """Per step, its counts by outcome from the ``step:<id>:<outcome>`` counters (see
        journeyman.domain.funnel), those above zero."""
        found: dict[str, dict[str, int]] = {}
        for key, value in self.n.items():
            if key.startswith("step:") and value > 0:
                step, _, outcome = key[5:].rpartition(":")
                if outcome != _ARRIVALS:
                    found.setdefault(step, {})[outcome] = value
        return found


# Arrivals at a step, counted before the steps' numbers were: the numbers' ``entered``
# (every arrival, in one of passed, waiting, skipped, capped, dropped, left) replaces them.
_ARRIVALS = "reached"


@dataclass(frozen=True, slots=True)
class Days:
    """A range of days of entry (in the report's time zone), both ends included (None:
    unbounded)."""

    start: date | None = None
    end: date | None = None

    def __bool__(self) -> bool:
        return self.start is not None or self.end is not None

    def holds(self, day: str) -> bool:
        return (self.start is None or day >= self.start.isoformat()) and (
            self.end is None or day <= self.end.isoformat()
        )

    def as_json(self) -> dict[str, str | None]:
        return {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }


_BY_DAY = ("entered", "reached")


def in_range(counters: Iterable[Counter], days: Days, zone: tzinfo = UTC) -> list[Counter]:
    """The counters as if only the entries of ``days`` (days in ``zone``) had been counted:
    entries and goals reached from their counters by quarter hour of entry, which become
    ``day:<day in zone>:<metric>`` counters; every other counter (ends, times, steps) as
    kept."""
    found = []
    for counter in counters:
        moment = _day_of(counter.metric, zone)
        if moment is not None:
            day, metric = moment
            if days.holds(day):
                found.append(counter._replace(metric=f"day:{day}:{metric}"))
                if days:
                    found.append(counter._replace(metric=metric))
        elif not days or counter.metric not in _BY_DAY:
            found.append(counter)
    return found


def _day_of(metric: str, zone: tzinfo) -> tuple[str, str] | None:
    """(the day in ``zone``, the metric) of a counter by time of entry, else None: a
    quarter hour ``at:2026-12-01T23:45:<metric>``, or a UTC day ``day:2026-12-01:<metric>``
    (kept before quarters were; a UTC day is taken as starting at midnight UTC)."""
    if metric.startswith("at:"):
        start = datetime.fromisoformat(metric[3:19]).replace(tzinfo=UTC)
        return start.astimezone(zone).date().isoformat(), metric[20:]
    if metric.startswith("day:"):
        start = datetime.fromisoformat(metric[4:14]).replace(tzinfo=UTC)
        return start.astimezone(zone).date().isoformat(), metric[15:]
    return None


def journey_report(
    journey: m.Journey,
    counters: Iterable[Counter],
    version: int | None,
    days: Days = Days(),
    decisions: Mapping[str, Decision] | None = None,
    zone: tzinfo = UTC,
) -> dict[str, Any]:
    """The report of ``journey`` (the model whose goals, splits and steps it reads) from
    its counters alone, of one version or of all (``version`` None); with ``days``, of the
    entries of those days only (see :func:`in_range`). ``decisions`` are the experiments'
    stored decisions, by step. Days (``days``, and ``over_time``) are days in ``zone``."""
    counters = in_range(counters, days, zone)
    by_key = _by_key(journey, counters)
    holdouts = _holdouts(journey)
    arms = _arms(journey, by_key)
    held = next((arm for arm in arms if arm in holdouts), None)
    journey_all = by_key.get(("", ""), _Tally())
    report: dict[str, Any] = {
        "journey": journey.name,
        "version": "all" if version is None else version,
        "range": days.as_json(),
        "timezone": getattr(zone, "key", None) or str(zone),
        "holdout": journey.holdout or None,
        "entries": journey_all.n.get("entered", 0),
        "ended": by_key.get(("*", ""), _Tally()).ended(),
        "holdout_arm": held,
        "arms": [_arm(name, by_key.get((name, ""), _Tally()), holdouts) for name in arms],
        "goals": [],
        "steps": _steps(journey, by_key, arms),
        "confidence": CONFIDENCE,
        "method": METHOD,
    }
    entries = {name: by_key.get((name, ""), _Tally()).n.get("entered", 0) for name in arms}
    for goal in journey.goals:
        found = _goal(goal, by_key, report["entries"], arms, entries, held)
        found["over_time"] = _over_time(goal.name, by_key, arms or [""], days)
        report["goals"].append(found)
    report["experiments"] = _experiments(journey, counters, decisions or {})
    return report


def _experiments(
    journey: m.Journey, counters: list[Counter], decisions: Mapping[str, Decision]
) -> list[dict[str, Any]]:
    """Each experiment step: its variants' profiles, conversions on its metric and
    probability to be best now, its winner policy, and its decision if one is stored."""
    found = []
    for step in journey.steps.values():
        if not isinstance(step, m.Experiment):
            continue
        metric = metric_of(journey, step)
        arms = variant_data(step, metric, counters)
        measured = bool(metric) and all(arm.n for arm in arms)
        best = probability_best(arms) if measured else {}
        decision = decisions.get(step.id)
        found.append(
            {
                "step": step.id,
                "metric": metric or None,
                "variants": [
                    _variant(v, a, best.get(v.name))
                    for v, a in zip(step.variants, arms, strict=True)
                ],
                "winner_policy": _policy(step.winner),
                "decision": decision.as_json() if decision is not None else None,
                "method": EXPERIMENT_METHOD,
            }
        )
    return found


def _variant(variant: m.Variant, arm: Arm, best: float | None) -> dict[str, Any]:
    return {
        "name": variant.name,
        "weight": variant.weight,
        "send": variant.template,
        "goto": variant.goto,
        "entries": arm.n,
        "conversions": arm.conversions,
        "rate": arm.conversions / arm.n if arm.n else None,
        "probability_best": best,
    }


def _policy(policy: m.WinnerPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "metric": policy.metric or None,
        "min_per_variant": policy.min_per_variant,
        "min_time": format_duration(policy.min_time) if policy.min_time else "0s",
        "confidence": policy.confidence,
    }


def _by_key(journey: m.Journey, counters: Iterable[Counter]) -> dict[tuple[str, str], _Tally]:
    """The counters added up by (arm, goal); arm "*" is every arm's, and with a
    journey-level holdout, :data:`TREATED_ARM` is everyone's less the held out."""
    by_key: dict[tuple[str, str], _Tally] = {}
    for counter in counters:
        by_key.setdefault((counter.arm, counter.goal), _Tally()).add(counter)
        by_key.setdefault(("*", counter.goal), _Tally()).add(counter)
    if journey.holdout:
        for goal in ["", *(goal.name for goal in journey.goals)]:
            everyone = by_key.get(("*", goal), _Tally())
            if not goal:  # entries and arrivals are counted without an arm too
                journey_only = by_key.get(("", ""), _Tally())
                ends = {k: v for k, v in everyone.n.items() if k.startswith("ended:")}
                everyone = _Tally({**journey_only.n, **ends}, dict(journey_only.total))
            by_key[(TREATED_ARM, goal)] = everyone.minus(by_key.get((HOLDOUT_ARM, goal), _Tally()))
    return by_key


def _holdouts(journey: m.Journey) -> set[str]:
    found = {
        name
        for step in journey.steps.values()
        if isinstance(step, m.Split)
        for name in step.holdouts
    }
    return found | {HOLDOUT_ARM} if journey.holdout else found


def _arms(journey: m.Journey, by_key: Mapping[tuple[str, str], _Tally]) -> list[str]:
    names = {arm for arm, _ in by_key if arm not in ("", "*")}
    for step in journey.steps.values():
        if isinstance(step, m.Split):
            names |= {step.arm_name(index) for index in range(len(step.arms))}
    if journey.holdout:
        names |= {HOLDOUT_ARM, TREATED_ARM}
    return sorted(names)


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
        "value": tally.total.get("reached", 0.0),
        "valued": tally.n.get("valued", 0),
        "time_to_convert": {
            "median_seconds": quantile(histogram, 0.5),
            "p90_seconds": quantile(histogram, 0.9),
            "mean_seconds": seconds / conversions if conversions else None,
        },
    }


# steps and conversion over time


def _steps(
    journey: m.Journey, by_key: Mapping[tuple[str, str], _Tally], arms: list[str]
) -> list[dict[str, Any]]:
    """Per step, from the counters: its counts by outcome, its numbers (as the console's
    graph works them out: journeyman.domain.funnel), ``reached`` (the numbers' entered:
    the funnel) and, for a step that sends, its engagement; in all and per arm."""
    everyone = by_key.get(("", ""), _Tally()).steps()
    per_arm = {arm: by_key.get((arm, ""), _Tally()).steps() for arm in arms}
    rows = []
    for step in journey.steps.values():
        counts = everyone.get(step.id, {})
        numbers = funnel.step_numbers(step, counts)
        row: dict[str, Any] = {
            "id": step.id,
            "type": step.kind,
            "reached": numbers["entered"],
            "numbers": numbers,
            "counts": dict(sorted(counts.items())),
        }
        if isinstance(step, m.Send):
            row["template"] = step.template
        sends = _sends(step)
        row["engagement"] = _engagement(step.id, by_key.get(("", ""))) if sends else None
        row["arms"] = [
            _step_arm(arm, step, per_arm[arm].get(step.id, {}), by_key, sends) for arm in arms
        ]
        rows.append(row)
    return rows


def _sends(step: m.Step) -> bool:
    """Whether the step sends messages: a send, or an experiment with a message variant."""
    if isinstance(step, m.Experiment):
        return any(v.template for v in step.variants)
    return isinstance(step, m.Send)


def _step_arm(
    arm: str,
    step: m.Step,
    counts: Mapping[str, int],
    by_key: Mapping[tuple[str, str], _Tally],
    sends: bool,
) -> dict[str, Any]:
    numbers = funnel.step_numbers(step, counts)
    return {
        "name": arm,
        "reached": numbers["entered"],
        "numbers": numbers,
        "counts": dict(sorted(counts.items())),
        "engagement": _engagement(step.id, by_key.get((arm, ""))) if sends else None,
    }


def _engagement(step: str, tally: _Tally | None) -> dict[str, Any]:
    """What customers did with the step's messages (in all, or in one arm), from the
    counters: how many were sent, and of those how many were delivered, opened (by a
    person; apart, by a mail provider's proxy), clicked, bounced, complained or
    unsubscribed, each message counted once, with its rate of the sent; and every click."""
    n = tally.n if tally is not None else {}
    sent = max(n.get(f"step:{step}:sent", 0), 0)
    found: dict[str, Any] = {"sent": sent}
    rates: dict[str, float | None] = {}
    for outcome in ENGAGEMENT:
        count = max(n.get(f"reacted:{step}:{outcome}", 0), 0)
        found[outcome] = count
        rates[outcome] = round(count / sent, 4) if sent else None
    found["clicks"] = max(n.get(f"reacted:{step}:clicks", 0), 0)
    found["rates"] = rates
    return found


def _over_time(
    goal: str, by_key: Mapping[tuple[str, str], _Tally], arms: list[str], days: Days
) -> list[dict[str, Any]]:
    """Per arm ("" when there is none: everyone), per day of entry from the first to
    the last with entries: the day's entries and conversions, and the cumulative rate
    with its 95% Wilson interval."""
    entered = {arm: by_key.get((arm, ""), _Tally()).days("entered") for arm in arms}
    reached = {arm: by_key.get((arm, goal), _Tally()).days("reached") for arm in arms}
    seen = sorted({day for found in entered.values() for day in found if days.holds(day)})
    if not seen:
        return [{"name": arm or "all", "points": []} for arm in arms]
    first, last = date.fromisoformat(seen[0]), date.fromisoformat(seen[-1])
    every = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    return [
        {"name": arm or "all", "points": _points(every, entered[arm], reached[arm])} for arm in arms
    ]


def _points(every: list[str], entered: Mapping[str, int], reached: Mapping[str, int]) -> list[Any]:
    points, entries, conversions = [], 0, 0
    for day in every:
        entries += max(entered.get(day, 0), 0)
        conversions += max(reached.get(day, 0), 0)
        low, high = wilson(conversions, entries) if entries else (None, None)
        points.append(
            {
                "day": day,
                "entries": max(entered.get(day, 0), 0),
                "conversions": max(reached.get(day, 0), 0),
                "cumulative_entries": entries,
                "cumulative_conversions": conversions,
                "rate": conversions / entries if entries else None,
                "low": low,
                "high": high,
            }
        )
    return points


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (``trials`` above 0)."""
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - CONFIDENCE) / 2))
    rate = successes / trials
    scale = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / scale
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / scale
    return max(centre - half, 0.0), min(centre + half, 1.0)


# CSV

#: The columns of :func:`report_csv`: one number per row, in a long format that a
#: spreadsheet pivots.
CSV_COLUMNS = ("section", "name", "arm", "day", "metric", "value")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def report_csv(report: Mapping[str, Any]) -> str:
    """The report as CSV (:data:`CSV_COLUMNS`): the journey, its arms, each goal (and per
    arm, with lift), each goal's conversion over time per arm and day, and each step."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in _csv_rows(report):
        text = [_cell(str(cell)) for cell in row[:5]]
        writer.writerow([*text, _number(row[5])])
    return out.getvalue()


def _csv_rows(report: Mapping[str, Any]) -> Iterable[tuple[Any, ...]]:
    name = report["journey"]
    yield ("journey", name, "", "", "entries", report["entries"])
    for state, n in report["ended"].items():
        yield ("journey", name, "", "", f"ended:{state}", n)
    for arm in report["arms"]:
        yield ("arm", arm["name"], arm["name"], "", "entries", arm["entries"])
        for state, n in arm["ended"].items():
            yield ("arm", arm["name"], arm["name"], "", f"ended:{state}", n)
    for goal in report["goals"]:
        yield from _goal_rows(goal)
    for step in report["steps"]:
        for row in [step, *step["arms"]]:
            arm = row["name"] if row is not step else ""
            yield ("step", step["id"], arm, "", "reached", row["reached"])
            for key, n in row["numbers"].items():
                yield ("step", step["id"], arm, "", f"numbers:{key}", n)
            for outcome, n in sorted(row["counts"].items()):
                yield ("step", step["id"], arm, "", outcome, n)
            yield from _engagement_rows(step["id"], arm, row.get("engagement"))
    for experiment in report.get("experiments", ()):
        yield from _experiment_rows(experiment)


def _engagement_rows(
    step: str, arm: str, engagement: Mapping[str, Any] | None
) -> Iterable[tuple[Any, ...]]:
    """A send step's engagement (in all, or in an arm) as ``engagement:<outcome>`` rows."""
    for key, value in (engagement or {}).items():
        if key != "rates":
            yield ("step", step, arm, "", f"engagement:{key}", value)


def _experiment_rows(experiment: Mapping[str, Any]) -> Iterable[tuple[Any, ...]]:
    """Per variant: profiles, conversions, rate, probability to be best; the decision."""
    step = experiment["step"]
    for variant in experiment["variants"]:
        for metric in ("entries", "conversions", "rate", "probability_best"):
            yield ("experiment", step, variant["name"], "", metric, variant[metric])
    decision = experiment["decision"]
    if decision is not None:
        day = decision["at"][:10]
        yield ("experiment", step, decision["variant"], day, f"decision:{decision['how']}", 1)


def _goal_rows(goal: Mapping[str, Any]) -> Iterable[tuple[Any, ...]]:
    name = goal["name"]
    for row in [goal, *goal["arms"]]:
        arm = row.get("name", "") if row is not goal else ""
        for metric in ("entries", "conversions", "rate", "value"):
            yield ("goal", name, arm, "", metric, row[metric])
        times = row["time_to_convert"]
        for metric in ("median_seconds", "p90_seconds", "mean_seconds"):
            yield ("goal", name, arm, "", f"time_to_convert_{metric}", times[metric])
        lifted = row.get("lift") if row is not goal else None
        for metric, value in _lift_cells(lifted):
            yield ("goal", name, arm, "", metric, value)
    for series in goal["over_time"]:
        for point in series["points"]:
            for metric in ("entries", "conversions", "rate", "low", "high"):
                yield ("day", name, series["name"], point["day"], metric, point[metric])


def _lift_cells(lifted: Mapping[str, Any] | None) -> Iterable[tuple[str, Any]]:
    if lifted is None:
        return
    absolute = lifted["absolute_interval"]
    relative = lifted["relative_interval"] or (None, None)
    yield "lift_absolute", lifted["absolute"]
    yield "lift_absolute_low", absolute[0]
    yield "lift_absolute_high", absolute[1]
    yield "lift_relative", lifted["relative"]
    yield "lift_relative_low", relative[0]
    yield "lift_relative_high", relative[1]
    yield "p_value", lifted["p_value"]


def _cell(text: str) -> str:
    """Text a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith(_FORMULA) else text


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(int(value))
