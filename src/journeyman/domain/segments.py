"""Segment membership: which segments a profile is in, kept up to date as it changes.

The engine asks :func:`changed_segments` after each trigger, saying what changed: the
profile's traits, which events went into its history (see
:mod:`journeyman.domain.history`). Only the segments that read what changed are evaluated
again (and those whose answer moves with time alone, which are evaluated on every trigger
of the profile), in the order :func:`ordered` gives, so that a segment that reads
``in_segment(...)`` sees the other segment's new answer. Each change becomes an event on
the profile, ``segment_entered`` or ``segment_exited``, whose property ``segment`` names
the segment (:func:`segment_event`): it enters and exits journeys, and is kept in the
history, as any event.

A segment whose answer moves with time alone (a ``days_since``, a window that closes, the
local time) also has a wake time on the profile (:attr:`Profile.wakes`): the earliest
moment its answer can change (:func:`next_change`). The earliest of them is the profile's
clock, a timer like a wait's; when it comes, those segments are evaluated again.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, MutableMapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from journeyman.domain.model import Segment
from journeyman.domain.state import Event, EventHistory, StepRecord

__all__ = [
    "DAYS_SINCE_HORIZON",
    "PROBES",
    "SEGMENT_EVENTS",
    "SEGMENT_SCHEMAS",
    "changed_segments",
    "next_change",
    "ordered",
    "segment_event",
    "segment_record",
]

#: The events journeyman records when a profile enters or leaves a segment.
SEGMENT_EVENTS = ("segment_entered", "segment_exited")
#: Their properties' JSON Schema: the workspace defines them without a document.
SEGMENT_SCHEMAS: dict[str, dict[str, Any]] = {
    name: {
        "type": "object",
        "required": ["segment"],
        "properties": {"segment": {"type": "string"}},
    }
    for name in SEGMENT_EVENTS
}


def ordered(segments: Mapping[str, Segment]) -> dict[str, Segment]:
    """The segments, each after those it reads with ``in_segment`` (a loop, which
    validation refuses, is broken where it closes)."""
    done: dict[str, Segment] = {}
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name in visiting or name not in segments:
            return
        visiting.add(name)
        for other in sorted(segments[name].segments):
            visit(other)
        visiting.discard(name)
        done[name] = segments[name]

    for name in segments:
        visit(name)
    return done


def changed_segments(
    segments: Mapping[str, Segment],
    scope: Mapping[str, Any],
    members: MutableMapping[str, datetime],
    traits_changed: bool,
    events: Collection[str],
    now: datetime,
    clock: Collection[str] = (),
    evaluated: list[str] | None = None,
    moved: Collection[str] = (),
) -> list[tuple[str, bool]]:
    """Evaluate the segments that what changed may move, in order, and update ``members``
    (name -> since when), which ``scope["_segments"]`` must be. ``clock`` names the
    segments whose answer time may have changed (their wake time came). Returns each change
    as (segment, True for entered, False for exited); the names of the segments evaluated
    are added to ``evaluated``. ``moved`` names segments that changed already (lists)."""
    changes: list[tuple[str, bool]] = []
    moved = set(moved)
    for name, segment in segments.items():
        if segment.listed:
            continue
        due = (
            segment.timely
            or name in clock
            or (traits_changed and segment.reads_traits)
            or not segment.events.isdisjoint(events)
            or not segment.segments.isdisjoint(moved)
        )
        if not due:
            continue
        if evaluated is not None:
            evaluated.append(name)
        inside = segment.when.test(scope)
        if inside == (name in members):
            continue
        if inside:
            members[name] = now
        else:
            del members[name]
        moved.add(name)
        changes.append((name, inside))
    return changes


def segment_event(profile_id: str, segment: str, entered: bool, now: datetime) -> Event:
    """The event that says the profile entered (or left) ``segment`` at ``now``."""
    return Event(
        name=SEGMENT_EVENTS[0] if entered else SEGMENT_EVENTS[1],
        profile_id=profile_id,
        timestamp=now,
        properties={"segment": segment},
    )


def segment_record(profile_id: str, segment: str, entered: bool, now: datetime) -> StepRecord:
    """The trace line of a change: no journey's, its outcome the event, its detail the
    segment."""
    return StepRecord(
        at=now,
        profile_id=profile_id,
        journey="",
        instance_id=None,
        step=None,
        outcome=SEGMENT_EVENTS[0] if entered else SEGMENT_EVENTS[1],
        detail=segment,
    )


# the profile's clock

#: Moments looked at, at most, for the next change of a segment's answer; if it has not
#: changed by the last, the profile wakes then and looks further.
PROBES = 64
#: How long after the last such event a ``days_since`` is followed by the clock, in days;
#: a threshold further away is seen at the profile's next trigger only.
DAYS_SINCE_HORIZON = 1000
_DAY = timedelta(days=1)


def next_change(
    segment: Segment,
    scope_at: Callable[[datetime], Mapping[str, Any]],
    inside: bool,
    kept: Mapping[str, EventHistory],
    now: datetime,
    zone: tzinfo = UTC,
) -> datetime | None:
    """The earliest moment after ``now`` at which the segment's answer, ``inside`` now, can
    be other with no event: None if it cannot.

    Its answer moves with time only where what it reads does: a ``days_since`` at each
    whole day after the last such event, a ``count`` or ``sum`` window when a day of events
    leaves it (at UTC midnight), ``now_local`` at each hour of the profile's zone
    (``zone``). Those moments are looked at in order (:data:`PROBES` at most) with the
    expression evaluated as of each (``scope_at``): the first whose answer differs is the
    one, never a moment late."""
    looked: datetime | None = None
    for index, moment in enumerate(_moments(segment, kept, now, zone)):
        if index == PROBES:
            return looked  # not changed yet: look again from there
        if segment.when.test(scope_at(moment)) != inside:
            return moment
        looked = moment
    return None


def _moments(
    segment: Segment, kept: Mapping[str, EventHistory], now: datetime, zone: tzinfo
) -> Iterator[datetime]:
    """The moments after ``now`` at which what the segment reads changes, in order, once."""
    streams: list[Iterable[datetime]] = []
    for call in segment.when.calls:
        history = kept.get(call[1]) if call[0] != "in_segment" else None
        if history is None:
            continue
        if call[0] == "days_since":
            streams.append(_days_after(history.last, now))
        elif call[0] in ("count", "sum"):
            days = call[-1]
            leaving = (_midnight(day + days) for day, _, _ in history.days)
            streams.append(sorted(m for m in leaving if m > now))
    if any(path[0] == "now_local" for path in segment.when.paths):
        streams.append(_hours_after(now, zone))
    previous = None
    for moment in heapq.merge(*streams):
        if moment != previous:
            yield moment
            previous = moment


def _days_after(last: datetime, now: datetime) -> Iterator[datetime]:
    """``last`` plus each whole number of days that comes after ``now``, up to
    :data:`DAYS_SINCE_HORIZON`."""
    for days in range(max((now - last) // _DAY, 0) + 1, DAYS_SINCE_HORIZON + 1):
        yield last + days * _DAY


def _midnight(day: int) -> datetime:
    return datetime.combine(date.fromordinal(day), datetime.min.time(), UTC)


def _hours_after(now: datetime, zone: tzinfo) -> Iterator[datetime]:
    """Each start of an hour on the clocks of ``zone`` after ``now``, in UTC."""
    local = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    moment = local.astimezone(UTC)
    while True:
        # Step in UTC (a local hour may be skipped or repeated); half-hour zones have their
        # hours start at :30 or :45 past a UTC hour, which the offset keeps.
        moment += timedelta(hours=1)
        if moment > now:
            yield moment
