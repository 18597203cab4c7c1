"""What a profile keeps of its event history, for the history functions of expressions.

``count("order_completed", "30d")``, ``sum("order_completed", "total", "90d")``,
``last("order_completed")``, ``first_seen("app_opened")`` and ``days_since("app_opened")``
read per-profile aggregates, never the event log. :func:`needs_of` works out, from the
workspace's compiled expressions, what to keep of which event (:class:`HistoryNeed`), and
:func:`record` folds each event into the profile's :class:`~journeyman.domain.state.EventHistory`:

- the time of the first and of the last such event (for ``first_seen``, ``days_since``);
- the last event's properties, only for an event that ``last(...)`` reads;
- for an event a window counts, one bucket per UTC day that had one: the number of events
  and the sum of each property a ``sum`` reads, kept only for the longest window that
  reads that event (at most :data:`MAX_WINDOW_DAYS` days).

A window of N days is today (UTC) and the N - 1 days before it: ``count(e, "1d")`` counts
today's events. Events of an event no expression reads are not kept at all.

Everything here is pure: ``now`` comes in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from journeyman.domain.state import Event, EventHistory

__all__ = [
    "MAX_WINDOW_DAYS",
    "HistoryNeed",
    "count",
    "days_since",
    "last_view",
    "merged",
    "needs_of",
    "record",
    "total",
]

#: The longest window an expression may count over, in days.
MAX_WINDOW_DAYS = 400
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class HistoryNeed:
    """What the workspace's expressions read of one event."""

    days: int = 0  # the longest window over it, in days; 0: no daily buckets
    sums: frozenset[str] = field(default_factory=frozenset)  # properties a sum(...) reads
    properties: bool = False  # whether last(...) reads it


def needs_of(calls: Iterable[tuple[Any, ...]]) -> dict[str, HistoryNeed]:
    """Event name -> what to keep of it, from the history calls of compiled expressions
    (:attr:`~journeyman.domain.expressions.Expression.calls`)."""
    days: dict[str, int] = {}
    sums: dict[str, set[str]] = {}
    last: set[str] = set()
    names: set[str] = set()
    for call in calls:
        function, event = call[0], call[1]
        if function == "in_segment":
            continue
        names.add(event)
        if function == "count":
            days[event] = max(days.get(event, 0), call[2])
        elif function == "sum":
            days[event] = max(days.get(event, 0), call[3])
            sums.setdefault(event, set()).add(call[2])
        elif function == "last":
            last.add(event)
    return {
        name: HistoryNeed(days.get(name, 0), frozenset(sums.get(name, ())), name in last)
        for name in sorted(names)
    }


def _day(at: datetime) -> int:
    if at.tzinfo is UTC or not at.tzinfo:
        return at.toordinal()
    return at.astimezone(UTC).toordinal()


def record(
    history: Mapping[str, EventHistory],
    event: Event,
    needs: Mapping[str, HistoryNeed],
    now: datetime,
) -> dict[str, EventHistory] | None:
    """The history with ``event`` in it, or None when nothing reads that event.

    The caller's history is left as it was. Days that no window reaches any more, and
    events that no expression reads any more, are dropped on the way.
    """
    need = needs.get(event.name)
    if need is None:
        return None
    at = min(event.timestamp, now)  # a clock ahead of ours does not put events in the future
    if history.keys() <= needs.keys():  # most often: nothing to drop, no loop
        kept = dict(history)
    else:
        kept = {name: h for name, h in history.items() if name in needs}
    before = kept.get(event.name)
    properties = dict(event.properties) if need.properties else None
    if before is None:
        first, last = at, at
    else:
        first, last = min(before.first, at), max(before.last, at)
        if need.properties and at < before.last:
            properties = before.properties
    days = _days(before.days if before else [], at, event.properties, need, now)
    kept[event.name] = EventHistory(first=first, last=last, properties=properties, days=days)
    return kept


def _days(
    days: list[tuple[int, int, dict[str, float]]],
    at: datetime,
    properties: Mapping[str, Any],
    need: HistoryNeed,
    now: datetime,
) -> list[tuple[int, int, dict[str, float]]]:
    if need.days <= 0:
        return []
    oldest = _day(now) - need.days + 1
    if days and days[0][0] >= oldest:  # most often: no day has left the window
        kept = list(days)
    else:
        kept = [bucket for bucket in days if bucket[0] >= oldest]
    day = _day(at)
    if day < oldest:
        return kept
    added = {
        name: value
        for name in need.sums
        if isinstance(value := properties.get(name), int | float) and not isinstance(value, bool)
    }
    # most often the event is of the last day kept, or of a later one: no search
    if not kept or kept[-1][0] < day:
        kept.append((day, 1, added))
        return kept
    start = len(kept) - 1 if kept[-1][0] == day else 0
    for index, (bucket_day, number, sums) in enumerate(kept[start:], start):
        if bucket_day == day:
            merged = dict(sums)
            for name, value in added.items():
                merged[name] = merged.get(name, 0) + value
            kept[index] = (day, number + 1, merged)
            return kept
        if bucket_day > day:
            kept.insert(index, (day, 1, added))
            return kept
    kept.append((day, 1, added))
    return kept


def merged(
    known: Mapping[str, EventHistory], other: Mapping[str, EventHistory]
) -> dict[str, EventHistory]:
    """The history of two profiles that are one person (a merge): of each event, the first
    and last times of either, the properties of the later last one (the known profile's
    on a tie), and each day's count and sums added up."""
    found = dict(known)
    for name, theirs in other.items():
        mine = found.get(name)
        if mine is None:
            found[name] = theirs
            continue
        days: dict[int, tuple[int, dict[str, float]]] = {}
        for day, number, sums in (*mine.days, *theirs.days):
            before_number, before_sums = days.get(day, (0, {}))
            added = dict(before_sums)
            for key, value in sums.items():
                added[key] = added.get(key, 0) + value
            days[day] = (before_number + number, added)
        found[name] = EventHistory(
            first=min(mine.first, theirs.first),
            last=max(mine.last, theirs.last),
            properties=theirs.properties if theirs.last > mine.last else mine.properties,
            days=[(day, number, sums) for day, (number, sums) in sorted(days.items())],
        )
    return found


def count(history: EventHistory | None, days: int, now: datetime) -> int:
    """How many of the events happened today (UTC) or in the ``days - 1`` days before."""
    if history is None:
        return 0
    oldest = _day(now) - days + 1
    return sum(number for day, number, _ in history.days if day >= oldest)


def total(history: EventHistory | None, name: str, days: int, now: datetime) -> int | float:
    """The sum of the property ``name`` over the events of the window (numbers only)."""
    if history is None:
        return 0
    oldest = _day(now) - days + 1
    return sum(sums.get(name, 0) for day, _, sums in history.days if day >= oldest)


def last_view(name: str, history: EventHistory | None) -> dict[str, Any] | None:
    """The last event as ``last(...)`` gives it: its name, timestamp and properties."""
    if history is None:
        return None
    properties = history.properties or {}
    return {**properties, "name": name, "timestamp": history.last, "properties": properties}


def days_since(history: EventHistory | None, now: datetime) -> int | None:
    """Whole days since the last event (0 within a day of it); None if it never happened."""
    if history is None:
        return None
    return max((now - history.last) // _DAY, 0)
