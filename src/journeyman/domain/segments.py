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
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from journeyman.domain.model import Segment
from journeyman.domain.state import Event, StepRecord

__all__ = [
    "SEGMENT_EVENTS",
    "SEGMENT_SCHEMAS",
    "changed_segments",
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
) -> list[tuple[str, bool]]:
    """Evaluate the segments that what changed may move, in order, and update ``members``
    (name -> since when), which ``scope["_segments"]`` must be. Returns each change as
    (segment, True for entered, False for exited)."""
    changes: list[tuple[str, bool]] = []
    moved: set[str] = set()
    for name, segment in segments.items():
        due = (
            segment.timely
            or (traits_changed and segment.reads_traits)
            or not segment.events.isdisjoint(events)
            or not segment.segments.isdisjoint(moved)
        )
        if not due:
            continue
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
