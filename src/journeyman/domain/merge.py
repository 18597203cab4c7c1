"""Merging an anonymous profile into the known one, when an identify names both.

Segment's clients send events under an ``anonymousId`` until the visitor signs in; the
``identify`` that carries both ids says they are one person. The anonymous profile's
traits, journey history, event history (what the history functions read), segments and
running instances move over. A journey both profiles are in
keeps the known profile's instance; the anonymous one ends as ``merged``, so that no
profile is ever in a journey twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from journeyman.domain import history
from journeyman.domain.funnel import LEFT, WAITING, step_tallies
from journeyman.domain.goals import MAX_WINDOWS
from journeyman.domain.state import Entries, Instance, Profile, StepRecord, Tally

__all__ = ["Merged", "merge_profiles"]


@dataclass(frozen=True, slots=True)
class Merged:
    profile: Profile
    running: list[Instance]  # the known profile's running instances, moved ones included
    changed: list[Instance]  # every instance to store: moved and ended
    records: list[StepRecord]
    tallies: list[Tally]  # the report counters of the moves and ends


def merge_profiles(
    known: Profile,
    known_running: Sequence[Instance],
    anonymous: Profile,
    anonymous_running: Sequence[Instance],
    now: datetime,
    call: str = "identify",
) -> Merged:
    """``anonymous`` folded into ``known``; what ``known`` already has wins. ``call`` is the
    call that linked them (``identify`` or ``alias``), said in the trace of an alias."""
    why = " (an alias named them one person)" if call == "alias" else ""
    entries = dict(anonymous.entries)
    for journey, entry in known.entries.items():
        other = entries.get(journey)
        entries[journey] = entry if other is None else _later(entry, other)
    profile = Profile(
        id=known.id,
        traits={**anonymous.traits, **known.traits},
        entries=entries,
        sends=sorted([*known.sends, *anonymous.sends]),
        suppressed={**anonymous.suppressed, **known.suppressed},
        account=known.account if known.account is not None else anonymous.account,
        history=history.merged(known.history, anonymous.history),
        # both profiles' segments (the known one's since when it has one): the engine then
        # evaluates every segment, and the person leaves those it no longer qualifies for
        segments={**anonymous.segments, **known.segments},
        wakes=dict(known.wakes),
        schedules=dict(known.schedules),
        # both profiles' goal windows, oldest first: a goal of either counts for its instance
        goals=sorted([*known.goals, *anonymous.goals], key=lambda w: w.entered_at)[-MAX_WINDOWS:],
    )
    running = list(known_running)
    taken = {i.journey for i in known_running}
    changed, records, tallies = [], [], []
    for instance in anonymous_running:
        tallies += step_tallies(instance, instance.step, "merged")
        if instance.journey in taken:
            tallies += _ended_tallies(instance)
            ended = msgspec.structs.replace(
                instance,
                status="ended",
                waiting=None,
                wake_at=None,
                end_state="merged",
                ended_at=now,
            )
            changed.append(ended)
            records.append(_record(ended, now, f"ended: merged into profile {known.id}{why}"))
        else:
            moved = msgspec.structs.replace(instance, profile_id=known.id)
            changed.append(moved)
            running.append(moved)
            taken.add(instance.journey)
            source = "profile" if call == "alias" else "anonymous profile"
            records.append(_record(moved, now, f"moved from {source} {anonymous.id}{why}"))
    return Merged(profile, running, changed, records, tallies)


def _ended_tallies(instance: Instance) -> list[Tally]:
    """What an instance ended by a merge takes from the report counters and adds to."""
    found = [Tally(instance.journey, instance.version, instance.arm or "", "", "ended:merged")]
    found += step_tallies(instance, instance.step, LEFT)
    if instance.status == "waiting":
        found += step_tallies(instance, instance.step, WAITING, -1)
    return found


def _later(one: Entries, other: Entries) -> Entries:
    return Entries(max(one.last, other.last), one.count + other.count)


def _record(instance: Instance, now: datetime, detail: str) -> StepRecord:
    return StepRecord(
        at=now,
        profile_id=instance.profile_id,
        journey=instance.journey,
        instance_id=instance.id,
        step=instance.step,
        outcome="merged",
        detail=detail,
    )
