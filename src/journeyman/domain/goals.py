"""Goals: whether a journey worked, counted once per instance, and the report counters.

A journey's ``goals`` each name an event that counts as a conversion when it comes within
``within`` of the instance's entry (and its ``when`` holds). The window is kept on the
profile as a :class:`~journeyman.domain.state.GoalWindow` from the entry until the longest
``within`` has passed, whether the instance still runs or has ended: an event after the
end still finds it, with no look-up of ended instances. A profile keeps at most
:data:`MAX_WINDOWS` of them; a new entry beyond that forgets the oldest window.

Each goal reached is a ``goal_reached`` step record, and adds to the report counters
(:class:`~journeyman.domain.state.Tally`), as do entries, split arms and ends, so that a
report reads a few counter rows and never scans instances. Time to convert is counted
in a fixed histogram (:func:`time_bucket`), from which the report estimates its median and
90th percentile.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from journeyman.domain import model as m
from journeyman.domain.state import GoalWindow, Instance, Tally
from journeyman.domain.times import format_duration

__all__ = [
    "BUCKETS_PER_DOUBLING",
    "GOAL_ENDED",
    "GOAL_REACHED",
    "HOLDOUT_ARM",
    "MAX_WINDOWS",
    "TREATED_ARM",
    "bucket_bounds",
    "day_metric",
    "goal_value",
    "held_out",
    "open_window",
    "reached_detail",
    "reached_tallies",
    "time_bucket",
    "update_window",
    "with_window",
]

#: The outcome of a goal's step record, and a reserved event name.
GOAL_REACHED = "goal_reached"
#: The end state of an instance that ``exit_on_goal`` ended.
GOAL_ENDED = "goal_reached"
#: The arm of the entries a journey-level ``holdout: 10%`` holds out, and the name the
#: report gives everyone else (both reserved as split arm names in such a journey).
HOLDOUT_ARM = "holdout"
TREATED_ARM = "treated"
#: Goal windows one profile keeps open at most; the oldest goes first.
MAX_WINDOWS = 32
#: Time-to-convert buckets per doubling of the duration: each bucket is 2^(1/4) (about
#: 19%) wider than the one before, from 1 s up; bucket 0 is under a second.
BUCKETS_PER_DOUBLING = 4

_replace = msgspec.structs.replace


def open_window(journey: m.Journey, instance: Instance) -> GoalWindow:
    """The goal window of an instance that just entered ``journey``."""
    return GoalWindow(
        instance_id=instance.id,
        journey=journey.name,
        version=journey.version,
        entered_at=instance.entered_at,
        until=instance.entered_at + journey.goal_window,
        entry=instance.entry,
        arm=instance.arm,
    )


def held_out(journey: m.Journey, profile_id: str) -> bool:
    """Whether a journey-level ``holdout`` holds this profile's entries out: a stable hash
    of the profile and the journey, as a split's, below the holdout's share."""
    if not journey.holdout:
        return False
    digest = hashlib.blake2b(f"{profile_id}\x1f{journey.name}\x1fholdout".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64 < journey.holdout


def day_metric(at: datetime, metric: str) -> str:
    """A counter by quarter hour (UTC) of entry: ``at:2026-12-01T23:45:entered``. Every
    time zone's offset is a whole number of quarter hours, so a quarter falls on one day in
    any zone: a report sums them into the days of the zone it is read in. Kept only for
    entries and goals reached (a row per quarter with entries, arm and goal), so the rows
    grow with time, never with profiles. (Counters kept before by UTC day are
    ``day:2026-12-01:entered``.)"""
    utc = at.astimezone(UTC)
    return f"at:{utc:%Y-%m-%dT%H}:{utc.minute - utc.minute % 15:02}:{metric}"


def with_window(windows: Iterable[GoalWindow], new: GoalWindow, now: datetime) -> list[GoalWindow]:
    """The profile's windows with ``new`` added: those past their end dropped, and the
    oldest ones beyond :data:`MAX_WINDOWS`."""
    kept = [w for w in windows if w.until > now]
    kept.append(new)
    return kept[-MAX_WINDOWS:]


def goal_value(value: Any) -> float | None:
    """A goal's value as a number, or None when its expression gave no number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def time_bucket(seconds: float) -> int:
    """The histogram bucket of a time to convert: 0 under 1 s, then bucket ``i`` holds
    [2^((i-1)/4), 2^(i/4)) seconds."""
    if seconds < 1:
        return 0
    index = math.floor(BUCKETS_PER_DOUBLING * math.log2(seconds)) + 1
    low, _ = bucket_bounds(index)
    return index - 1 if seconds < low else index  # guard against rounding at the edge


def bucket_bounds(index: int) -> tuple[float, float]:
    """The seconds bucket ``index`` holds, from (inclusive) and to (exclusive)."""
    if index <= 0:
        return 0.0, 1.0
    return 2 ** ((index - 1) / BUCKETS_PER_DOUBLING), 2 ** (index / BUCKETS_PER_DOUBLING)


def reached_tallies(
    window: GoalWindow, goal: m.Goal, value: float | None, after: timedelta
) -> list[Tally]:
    """The counters a goal reached adds to: conversions (with the value), valued ones,
    the time-to-convert bucket, and the message it is attributed to (last touch)."""
    j, v, arm, name = window.journey, window.version, window.arm or "", goal.name
    seconds = max(after.total_seconds(), 0.0)
    found = [
        Tally(j, v, arm, name, "reached", 1, value or 0.0),
        Tally(j, v, arm, name, f"time:{time_bucket(seconds)}", 1, seconds),
        Tally(j, v, arm, name, f"touch:{window.last_message or ''}", 1, 0.0),
    ]
    if value is not None:
        found.append(Tally(j, v, arm, name, "valued", 1, value))
    found.append(Tally(j, v, arm, name, day_metric(window.entered_at, "reached"), 1, value or 0.0))
    return found


def reached_detail(window: GoalWindow, goal: m.Goal, value: float | None, after: timedelta) -> str:
    """The trace's words for a goal reached; the goal's name comes first."""
    parts = [f"{goal.name} after {format_duration(after) if after else '0s'}"]
    if value is not None:
        parts.append(f"value {value:g}")
    parts.append(f"arm {window.arm}" if window.arm else "no arm")
    last = window.last_message
    parts.append(f"last message {last}" if last else "no message before it")
    return ", ".join(parts)


def update_window(
    windows: list[GoalWindow], instance_id: str, changes: Mapping[str, Any]
) -> list[GoalWindow] | None:
    """The windows with the instance's one changed, or None if it has none open."""
    for index, window in enumerate(windows):
        if window.instance_id == instance_id:
            found = list(windows)
            found[index] = _replace(window, **changes)
            return found
    return None
