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

import calendar
import functools
import hashlib
import heapq
import math
import operator
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from journeyman.domain.expressions import month_and_day
from journeyman.domain.history import count as history_count
from journeyman.domain.history import total as history_total
from journeyman.domain.model import Segment
from journeyman.domain.state import Event, EventHistory, StepRecord

__all__ = [
    "DAYS_SINCE_HORIZON",
    "PROBES",
    "SEGMENT_EVENTS",
    "SEGMENT_SCHEMAS",
    "Readers",
    "backfill_reads",
    "changed_segments",
    "digest",
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


@dataclass(frozen=True, slots=True)
class Readers:
    """Which segments read what, worked out once per workspace: so that a trigger looks
    only at the segments that what it changed may move."""

    events: Mapping[str, frozenset[str]]  # event name -> the segments whose history it is
    traits: frozenset[str]  # the segments that read the profile's traits
    segments: Mapping[str, frozenset[str]]  # segment -> those that read in_segment(it)
    timely: frozenset[str]  # the segments that read ``now`` itself: every trigger
    order: Mapping[str, int]  # segment -> its place in the order they are evaluated in
    names: tuple[str, ...]  # the segments in that order
    # segment -> the answer an event it reads cannot change (Segment.held)
    held: Mapping[str, bool]

    @classmethod
    def of(cls, segments: Mapping[str, Segment]) -> Readers:
        events: dict[str, set[str]] = {}
        readers: dict[str, set[str]] = {}
        evaluated = {name: s for name, s in segments.items() if not s.listed}
        for name, segment in evaluated.items():
            for event in segment.events:
                events.setdefault(event, set()).add(name)
            for other in segment.segments:
                readers.setdefault(other, set()).add(name)
        return cls(
            events={event: frozenset(names) for event, names in events.items()},
            traits=frozenset(n for n, s in evaluated.items() if s.reads_traits),
            segments={name: frozenset(names) for name, names in readers.items()},
            timely=frozenset(n for n, s in evaluated.items() if s.timely),
            order={name: index for index, name in enumerate(segments)},
            names=tuple(segments),
            held={n: s.held for n, s in evaluated.items() if s.held is not None},
        )


def changed_segments(
    segments: Mapping[str, Segment],
    readers: Readers,
    scope: Mapping[str, Any],
    members: MutableMapping[str, datetime],
    traits_changed: bool,
    events: Collection[str],
    now: datetime,
    clock: Collection[str] = (),
    evaluated: list[str] | None = None,
    moved: Collection[str] = (),
    waking: Collection[str] = (),
) -> list[tuple[str, bool]]:
    """Evaluate the segments that what changed may move, in order, and update ``members``
    (name -> since when), which ``scope["_segments"]`` must be. ``readers`` are the
    segments' (:meth:`Readers.of`); ``clock`` names the segments whose answer time may have
    changed (their wake time came). Returns each change as (segment, True for entered,
    False for exited); the names of the segments evaluated are added to ``evaluated``.
    ``moved`` names segments that changed already (lists). ``waking`` names the segments
    with a wake time: one of them that only the events bring here, whose answer they cannot
    change (:attr:`Readers.held`), is not evaluated."""
    due = set(readers.timely)
    due.update(clock)
    if traits_changed:
        due.update(readers.traits)
    for name in moved:
        due.update(readers.segments.get(name, ()))
    held = readers.held
    for event in events:
        for name in readers.events.get(event, ()):
            # its answer stays, and its wake time is still never late (the held answer is
            # the one with a wake time; checked all the same, as one an earlier `when` left
            # may be there until the segment's backfill)
            if name in held and held[name] == (name in members) and name in waking:
                continue
            due.add(name)
    changes: list[tuple[str, bool]] = []
    if not due:
        return changes
    order, names = readers.order, readers.names
    # The places of the due segments, taken in order; only those (a few of the
    # workspace's, most often) are looked at.
    places = sorted(order[name] for name in due if name in order)
    while places:
        place = heapq.heappop(places)
        name = names[place]
        segment = segments[name]
        if segment.listed:
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
        for reader in readers.segments.get(name, ()):  # those after it read its new answer
            later = order[reader]
            if later > place and reader not in due:
                due.add(reader)
                heapq.heappush(places, later)
        changes.append((name, inside))
    return changes


def backfill_reads(segments: Mapping[str, Segment], names: Iterable[str]) -> frozenset[str]:
    """The events whose history a backfill of the segments ``names`` makes again from the
    event log: those their history functions read."""
    return frozenset(e for n in names if (s := segments.get(n)) is not None for e in s.events)


def digest(segment: Segment) -> str:
    """A short digest of what the segment computes (its ``when``): a backfill is for one,
    and a publish that changes it needs another."""
    source = "list" if segment.listed else segment.when.source
    return hashlib.sha256(source.encode()).hexdigest()[:16]


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
    scope: Mapping[str, Any],
    inside: bool,
    kept: Mapping[str, EventHistory],
    now: datetime,
    zone: tzinfo = UTC,
) -> datetime | None:
    """The earliest moment after ``now`` at which the segment's answer, ``inside`` now, can
    be other with no event: None if it cannot.

    Its answer moves with time only where what it reads does (see
    :attr:`~journeyman.domain.expressions.Expression.clock`): a ``days_since`` compared with
    a number where it crosses that number (else at each whole day after the last such
    event), a ``count`` or ``sum`` window when a day of events leaves it (at UTC midnight),
    ``hour(now_local)`` compared with a number at those hours of the profile's zone
    (``zone``), its weekday, date or an anniversary at its midnights, any other reading of
    ``now_local`` at each of its hours. Those moments are looked at in order (:data:`PROBES`
    at most) with the expression evaluated as of each, over ``scope`` (the one it was
    evaluated in now, whose history is ``kept``): the first whose answer differs is the
    one, never a moment late. A ``count``, ``sum`` or ``days_since`` compared with a number
    and nothing else (:attr:`~journeyman.domain.expressions.Expression.bound`) is looked at
    the same moments, reading only that function: the same answer, sooner; so is one that
    reads only the local hour (:attr:`~journeyman.domain.expressions.Expression.hours`,
    its answer at each hour known beforehand) or is one anniversary (true from the
    midnight that begins the day to the one that ends it)."""
    if not inside and segment.when.only_falls:
        return None  # false, and the time that passes can only make it false
    when = segment.when
    if when.bound is not None:
        return _bound_change(segment, when.bound, inside, kept, now)
    if when.hours is not None:
        return _hours_change(when.hours, _local_reads(when.clock)[1], inside, now, zone)
    if when.anniversary is not None:
        return _anniversary_change(_read(scope, when.anniversary), inside, now, zone)
    return _probe(segment, scope, inside, kept, now, zone)


def _probe(
    segment: Segment,
    scope: Mapping[str, Any],
    inside: bool,
    kept: Mapping[str, EventHistory],
    now: datetime,
    zone: tzinfo,
) -> datetime | None:
    """:func:`next_change` for any expression: evaluated as a whole at each moment."""
    looked: datetime | None = None
    at = dict(scope)  # the scope as of each moment in turn (a few keys: cheap to copy)
    local = segment.local
    test = segment.when.test
    for index, moment in enumerate(_moments(segment, scope, kept, now, zone)):
        if index == PROBES:
            return looked  # not changed yet: look again from there
        at["now"] = moment
        if local:  # only an expression over local time reads it
            at["now_local"] = moment.astimezone(zone)
        if test(at) != inside:
            return moment
        looked = moment
    return None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _bound_change(
    segment: Segment,
    bound: tuple[tuple[Any, ...], str, int | float, bool],
    inside: bool,
    kept: Mapping[str, EventHistory],
    now: datetime,
) -> datetime | None:
    """:func:`_probe` for one history function compared with a number: the same moments
    in the same order, at each only that function's value worked out (as
    :mod:`journeyman.domain.history` does) and compared as the expression compares numbers
    (Python's operators: its values are always int or float here)."""
    call, symbol, number, first = bound
    history = kept.get(call[1])
    if history is None:
        return None  # as _moments: nothing moves with no history
    if call[0] == "days_since":
        # days_since is d at last + d days exactly: its answer there is known beforehand
        for offset, answer in _days_since_answers(segment.days_since[0][1], symbol, number, first):
            if answer != inside and (moment := history.last + offset) > now:
                return moment
        return None
    compare = _COMPARE[symbol]
    days = call[-1]
    looked: datetime | None = None
    for index, gone in enumerate(_gone_days(history, days, _today(now))):
        if index == PROBES:
            return looked
        moment = _midnight(gone)
        if call[0] == "count":
            value: Any = history_count(history, days, moment)
        else:
            value = history_total(history, call[2], days, moment)
        if (compare(number, value) if first else compare(value, number)) != inside:
            return moment
        looked = moment
    return None


def _hours_change(
    answers: tuple[bool, ...], hours: tuple[int, ...], inside: bool, now: datetime, zone: tzinfo
) -> datetime | None:
    """:func:`_probe` for an expression of the local hour only: the same moments in the
    same order (:func:`_local_days`), at each the answer of its local hour looked up."""
    looked: datetime | None = None
    probes = 0
    day = now.astimezone(zone).date()
    while True:
        for moment, hour in _local_hours_of(day, zone, hours):
            if moment > now:
                if probes == PROBES:
                    return looked  # not changed yet: look again from there
                if answers[hour] != inside:
                    return moment
                looked = moment
                probes += 1
        day += _DAY


@functools.lru_cache(maxsize=4096)
def _local_hours_of(
    day: date, zone: tzinfo, hours: tuple[int, ...]
) -> tuple[tuple[datetime, int], ...]:
    """:func:`_hours_of`, each moment with its hour on the clocks of ``zone`` (another
    where the hour is skipped, as when summer time begins)."""
    return tuple((moment, moment.astimezone(zone).hour) for moment in _hours_of(day, zone, hours))


def _anniversary_change(value: Any, inside: bool, now: datetime, zone: tzinfo) -> datetime | None:
    """:func:`_probe` for ``is_anniversary`` of ``value``: the same moments (:func:`_local`),
    each start of an anniversary true, each end false."""
    found = month_and_day(value)
    if found is None:
        return None
    moments = _anniversaries(now.astimezone(zone).year, zone, *found)
    for index, moment in enumerate(moments):  # start, end, start, end, ...
        if moment > now and (index % 2 == 0) != inside:
            return moment
    return None


@functools.lru_cache(maxsize=1024)
def _days_since_answers(
    limits: frozenset[Any], symbol: str, number: int | float, first: bool
) -> tuple[tuple[timedelta, bool], ...]:
    """Each whole day after the last event at which ``days_since`` may cross ``number``
    (:func:`_offsets`), with the comparison's answer there: the same for every profile."""
    compare = _COMPARE[symbol]
    return tuple(
        (offset, compare(number, offset.days) if first else compare(offset.days, number))
        for offset in _offsets(limits) or ()
    )


def _gone_days(history: EventHistory, days: int, today: int) -> list[int]:
    """The days (ordinals) after ``today`` at whose UTC midnight a day of the history
    leaves a window of ``days`` days, in order."""
    return sorted(day + days for day, _, _ in history.days if day + days > today)


def _moments(
    segment: Segment,
    scope: Mapping[str, Any],
    kept: Mapping[str, EventHistory],
    now: datetime,
    zone: tzinfo,
) -> Iterable[datetime]:
    """The moments after ``now`` at which what the segment reads changes, in order, once."""
    streams: list[Iterable[datetime]] = []
    today = _today(now) if segment.windows else 0
    for event, days in segment.windows:
        history = kept.get(event)
        if history is not None and history.days:
            # a day leaves the window at the midnight that begins day + days: after now
            # when that day is after today
            gone = _gone_days(history, days, today)
            if gone:
                streams.append([_midnight(day) for day in gone])
    for event, limits in segment.days_since:
        history = kept.get(event)
        if history is not None:
            streams.append(_days_since(history.last, now, limits))
    if segment.local:
        streams.extend(_local(segment.when.clock, scope, now, zone))
    if len(streams) < 2:
        return streams[0] if streams else ()
    if all(type(stream) is list for stream in streams):  # finite: no merging one by one
        return sorted({moment for stream in streams for moment in stream})
    return _merged(streams)


def _merged(streams: list[Iterable[datetime]]) -> Iterator[datetime]:
    """The moments of the streams (each in order) in order, once."""
    previous = None
    for moment in heapq.merge(*streams):
        if moment != previous:
            yield moment
            previous = moment


def _days_since(last: datetime, now: datetime, limits: frozenset[Any]) -> Iterable[datetime]:
    """The moments ``days_since`` crosses the numbers it is compared with (every whole day
    after ``last`` if it is read otherwise), up to :data:`DAYS_SINCE_HORIZON` days."""
    offsets = _offsets(limits)
    if offsets is None:
        return _days_after(last, now)
    return [moment for moment in (last + offset for offset in offsets) if moment > now]


@functools.lru_cache(maxsize=1024)
def _offsets(limits: frozenset[Any]) -> tuple[timedelta, ...] | None:
    """The whole days after the last event at which ``days_since`` crosses the numbers, in
    order; None if it is read otherwise (then every day counts). The same for every
    profile: worked out once."""
    if None in limits:
        return None
    days = {d for k in limits for d in (math.floor(k), math.floor(k) + 1, math.ceil(k))}
    return tuple(d * _DAY for d in sorted(days) if 0 < d <= DAYS_SINCE_HORIZON)


def _local(
    clock: frozenset[tuple[Any, ...]], scope: Mapping[str, Any], now: datetime, zone: tzinfo
) -> list[Iterable[datetime]]:
    """The moments the profile's local time changes what the expression reads."""
    every_hour, hours, days, anniversaries = _local_reads(clock)
    if every_hour:
        return [_hours_after(now, zone)]
    streams: list[Iterable[datetime]] = []
    if hours:
        streams.append(_local_days(now, zone, hours))
    if days:
        streams.append(_local_days(now, zone, (0,)))
    for path in anniversaries:
        found = month_and_day(_read(scope, path))
        if found is not None:
            year = now.astimezone(zone).year
            moments = _anniversaries(year, zone, *found)
            streams.append([moment for moment in moments if moment > now])
    return streams


@functools.lru_cache(maxsize=1024)
def _local_reads(
    clock: frozenset[tuple[Any, ...]],
) -> tuple[bool, tuple[int, ...], bool, tuple[tuple[str, ...], ...]]:
    """What of the local time an expression reads (its :attr:`Expression.clock`), worked
    out once: whether each hour counts, the hours at which hour() crosses the numbers it is
    compared with (and midnight), whether its days count, the paths of its anniversaries."""
    kinds = {read[0] for read in clock}
    anniversaries = [read[1] for read in clock if read[0] == "anniversary"]
    if "local" in kinds or None in anniversaries:
        return True, (), False, ()
    limits = [read[1] for read in clock if read[0] == "hour"]
    hours: tuple[int, ...] = ()
    if limits:
        # hour() crosses k there, and wraps from 23 to 0 at midnight
        crossed = {h % 24 for k in limits for h in (math.floor(k), math.floor(k) + 1, math.ceil(k))}
        hours = tuple(sorted({0, *crossed}))
    return False, hours, "day" in kinds, tuple(anniversaries)


def _read(scope: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = scope
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _local_days(now: datetime, zone: tzinfo, hours: tuple[int, ...]) -> Iterator[datetime]:
    """Each of ``hours`` o'clock on the clocks of ``zone``, day after day from today."""
    day = now.astimezone(zone).date()
    while True:
        for moment in _hours_of(day, zone, hours):
            if moment > now:
                yield moment
        day += _DAY


@functools.lru_cache(maxsize=4096)
def _hours_of(day: date, zone: tzinfo, hours: tuple[int, ...]) -> tuple[datetime, ...]:
    """Each of ``hours`` o'clock of one day on the clocks of ``zone``, in UTC (the same
    for every profile in the zone: worked out once)."""
    return tuple(datetime.combine(day, time(hour), zone).astimezone(UTC) for hour in hours)


@functools.lru_cache(maxsize=4096)
def _anniversaries(year: int, zone: tzinfo, month: int, day: int) -> tuple[datetime, ...]:
    """The local midnights that begin and end the anniversaries of month-day in ``year``
    (local) and the two years after, in order."""
    moments = []
    for y in (year, year + 1, year + 2):
        on = day if (month, day) != (2, 29) or calendar.isleap(y) else 28
        start = datetime.combine(date(y, month, on), time(0), zone)
        moments += [start.astimezone(UTC), (start + _DAY).astimezone(UTC)]
    return tuple(sorted(moments))


def _days_after(last: datetime, now: datetime) -> Iterator[datetime]:
    """``last`` plus each whole number of days that comes after ``now``, up to
    :data:`DAYS_SINCE_HORIZON`."""
    for days in range(max((now - last) // _DAY, 0) + 1, DAYS_SINCE_HORIZON + 1):
        yield last + days * _DAY


@functools.lru_cache(maxsize=4096)
def _midnight(day: int) -> datetime:
    """The UTC midnight that begins the day (an ordinal): profiles share the days."""
    return datetime.fromordinal(day).replace(tzinfo=UTC)


def _today(now: datetime) -> int:
    """The ordinal of now's UTC day."""
    return (now if now.tzinfo is UTC or not now.tzinfo else now.astimezone(UTC)).toordinal()


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
