"""The step engine: triggers in, new state and effects out.

:class:`Engine` answers each trigger for one profile at a time: an event arrived
(:meth:`Engine.on_event`), a wake-up time came (:meth:`Engine.on_timer`), a delivery
failed for good (:meth:`Engine.on_failure`), and a few more. Each returns an
:class:`Outcome`: the profile as it now is, every instance it created or changed, the
effects to carry out (messages to send, HTTP calls to make) and the step records that
explain what happened.

The engine is pure. It does no I/O, never reads the clock (``now`` comes in) and draws no
random numbers (a split hashes the profile id). It never raises for bad data: an
expression that cannot be evaluated is null, a template renders what it can, and a
journey that loops without waiting ends its instance ``failed``. Should a trigger method
raise all the same (a fault of the engine's), :meth:`Engine.on_crash` says what becomes of
the trigger, so that the fault costs that trigger only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from journeyman.domain import consent, funnel, goals, history
from journeyman.domain import model as m
from journeyman.domain.actions import render_call
from journeyman.domain.experiments import Decision
from journeyman.domain.expressions import Expression
from journeyman.domain.policies import decide_entry, decide_send
from journeyman.domain.schedules import entry_event, run_id, wind_local
from journeyman.domain.segments import (
    Readers,
    backfill_reads,
    changed_segments,
    next_change,
    segment_event,
    segment_record,
)
from journeyman.domain.state import (
    NEVER,
    Account,
    CallAction,
    Effect,
    Entries,
    Event,
    GoalWindow,
    Instance,
    Profile,
    SendMessage,
    StepRecord,
    Tally,
    differs,
)
from journeyman.domain.times import (
    TimeFormatError,
    format_duration,
    format_instant,
    next_local_time,
    parse_timestamp,
    parse_zone,
)

__all__ = ["MAX_STEPS", "Engine", "Outcome"]

# Steps one instance may run in one trigger: a guard against loops that validation allows
# through (a loop of waits of zero length), never reached by a sound journey.
MAX_STEPS = 1000
# Rounds of segment changes one trigger may cause (a journey entered on a segment may
# change traits that move another segment): a guard, never reached by a sound workspace.
MAX_SEGMENT_ROUNDS = 10
_replace = msgspec.structs.replace

Versions = Callable[[str, int], m.Journey | None]


@dataclass(slots=True)
class Outcome:
    profile: Profile
    profile_changed: bool = False
    instances: dict[str, Instance] = field(default_factory=dict)  # id -> new state
    effects: list[Effect] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    # Events the engine itself recorded on the profile (segment_entered, segment_exited),
    # to keep in its history after the trigger's own event.
    events: list[Event] = field(default_factory=list)
    # Report counters to add to (entries, arms, ends, goals: see journeyman.domain.goals).
    tallies: list[Tally] = field(default_factory=list)


class Engine:
    """Moves one profile's instances through the journeys of one workspace."""

    def __init__(self, workspace: m.Workspace, versions: Versions | None = None) -> None:
        self.workspace = workspace
        self._versions = versions
        self.readers = Readers.of(workspace.segments)  # which segments read what
        # now in each zone, for the now of the triggers being run (a batch's share one)
        self._local: tuple[datetime | None, dict[tzinfo, datetime]] = (None, {})
        # Paused journeys take no new entries, and their instances hold before each step.
        self.paused: set[str] = set()
        # Stopped journeys take no new entries, and an instance that comes to a step ends,
        # as ``stopped`` (one that a stop did not reach: it moved on while the stop ran).
        self.stopped: set[str] = set()
        # (journey, experiment step) -> its decision: every new profile gets its variant.
        self.decisions: dict[tuple[str, str], Decision] = {}
        # (profile id, step or journey.step) -> the variant a journey test forces on it.
        self.forced: dict[tuple[str, str], str] = {}

    def obey(self, states: Mapping[str, str]) -> None:
        """Take the journeys' states (name -> paused or stopped; the others are active)."""
        self.paused.clear()
        self.paused.update(name for name, state in states.items() if state == "paused")
        self.stopped.clear()
        self.stopped.update(name for name, state in states.items() if state == "stopped")

    def set_state(self, name: str, state: str) -> None:
        """Journey ``name`` is now ``state``: active, paused or stopped."""
        self.paused.discard(name)
        self.stopped.discard(name)
        if state == "paused":
            self.paused.add(name)
        elif state == "stopped":
            self.stopped.add(name)

    def local_time(self, now: datetime, zone: tzinfo) -> datetime:
        """``now`` on the clocks of ``zone``: worked out once per zone for the triggers of
        one moment (converting to a zone costs about as much as a step)."""
        cache = self._local
        if cache[0] is not now:
            cache = self._local = (now, {})
        found = cache[1].get(zone)
        if found is None:
            found = cache[1][zone] = now.astimezone(zone)
        return found

    def journey(self, name: str, version: int) -> m.Journey | None:
        current = self.workspace.journeys.get(name)
        if current is not None and current.version == version:
            return current
        return self._versions(name, version) if self._versions else None

    # triggers

    def on_event(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        event: Event,
        now: datetime,
        *,
        account: Account | None = None,
        filled: bool = False,
        merged: bool = False,
    ) -> Outcome:
        """An event for this profile: exits, waiting instances, then new entries.

        ``account`` is the profile's account (see :class:`Profile`), as expressions and
        templates read it; every trigger method takes it. ``filled``: the call's context
        gave the profile traits it did not have (its ``timezone``, ``context.traits``), so
        the segments that read traits are evaluated as after an identify; ``merged``: the
        call folded another profile into it (traits, history and segments of both), so
        every segment is evaluated."""
        run = _Run(self, profile, now, account)
        run.changed_before(filled, merged)
        if event.type == "identify":
            run.set_traits(event.properties, ())
            run.settle_segments(instances)
            return run.outcome
        if event.name in consent.CONSENT_EVENTS:
            run.take_consent(event)
        run.note_history(event)
        run.react(event, instances)
        run.settle_segments(instances)
        return run.outcome

    def on_record(
        self,
        profile: Profile,
        event: Event,
        now: datetime,
        *,
        filled: bool = False,
        merged: bool = False,
    ) -> Outcome:
        """An event that is only kept (an import): it sets traits (identify) and consent,
        goes in the history the history functions read, and moves the profile in and out
        of segments as any event does, but no journey is entered, resumed or exited by it
        (nor by the segment changes it makes). ``filled`` and ``merged`` as for
        :meth:`on_event`."""
        run = _Run(self, profile, now)
        run.changed_before(filled, merged)
        if event.type == "identify":
            run.set_traits(event.properties, ())
        else:
            if event.name in consent.CONSENT_EVENTS:
                run.take_consent(event)
            run.note_history(event)
        run.settle_segments((), react=False)
        return run.outcome

    def on_backfill(
        self, profile: Profile, segments: Collection[str], log: Sequence[Event], now: datetime
    ) -> Outcome:
        """A backfill of ``segments`` (a segment new, or whose ``when`` changed): the
        history of the events they read is made again from ``log``, the profile's stored
        events of those names (see :func:`backfill_reads`), and the segments are evaluated,
        with those that read what changed. Their changes are recorded as any segment's, but
        no journey is entered, resumed or exited by them: as an import's, they say what the
        profile was already, not what it just did."""
        run = _Run(self, profile, now)
        run.rebuild_history(backfill_reads(self.workspace.segments, segments), log)
        run.forced.update(name for name in segments if name in self.workspace.segments)
        run.settle_segments((), react=False)
        return run.outcome

    def on_timer(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        instance: Instance,
        now: datetime,
        *,
        account: Account | None = None,
    ) -> Outcome:
        """A wake-up time came: a wait ended, a wait_for timed out, quiet hours ended.

        ``instances`` are all of the profile's running instances (so that a jump does not
        enter a journey the profile is already in); ``instance`` is the one to wake.
        """
        run = _Run(self, profile, now, account)
        if (
            instance.status == "waiting"
            and instance.wake_at is not None
            and instance.wake_at <= now
        ):
            run.wake(instance)
            run.finish_jumps([*instances, instance])
            run.settle_segments([*instances, instance])
        return run.outcome

    def on_clock(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        now: datetime,
        *,
        account: Account | None = None,
    ) -> Outcome:
        """The profile's clock came (:attr:`Profile.wake_at`): the segments whose answer may
        have changed with time alone are evaluated again, and their wake times set anew."""
        run = _Run(self, profile, now, account)
        run.settle_segments(instances)
        return run.outcome

    def on_traits(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        now: datetime,
        *,
        account: Account | None = None,
        react: bool = True,
        merged: bool = False,
    ) -> Outcome:
        """The profile's traits changed with no event a journey reads (a group call or an
        alias whose context gave it traits it did not have, or that folded another profile
        into it: ``merged``): the segments that read traits (after a merge, every segment)
        are evaluated again; journeys react to their changes unless not ``react``."""
        run = _Run(self, profile, now, account)
        run.changed_before(True, merged)
        run.settle_segments(instances, react)
        return run.outcome

    def on_list(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        segment: str,
        entered: bool,
        now: datetime,
        *,
        account: Account | None = None,
    ) -> Outcome:
        """The profile was added to (``entered``) or removed from the static list
        ``segment``: a change is a segment event, as any segment's, and the segments that
        read ``in_segment(segment)`` are evaluated again. A list the workspace does not
        have, or a change that changes nothing, does nothing."""
        run = _Run(self, profile, now, account)
        found = self.workspace.segments.get(segment)
        if found is not None and found.listed and entered != (segment in profile.segments):
            run.change_segments([(segment, entered)], instances)
            run.settle_segments(instances)
        return run.outcome

    def on_resume(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        instance: Instance,
        now: datetime,
        *,
        account: Account | None = None,
    ) -> Outcome:
        """The instance's journey was resumed: run the step it was held before."""
        run = _Run(self, profile, now, account)
        journey = self.journey(instance.journey, instance.version)
        if journey is not None and instance.status == "waiting" and instance.waiting == "paused":
            run.advance(journey, instance, instance.step)
            run.finish_jumps([*instances, instance])
            run.settle_segments([*instances, instance])
        return run.outcome

    def on_stop(self, profile: Profile, instance: Instance, now: datetime) -> Outcome:
        """The instance's journey was stopped: it ends, in the state ``stopped``."""
        run = _Run(self, profile, now)
        if instance.status != "ended":
            run.end(instance, "stopped", "the journey was stopped")
        return run.outcome

    def on_delivered(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        instance: Instance,
        step: str,
        now: datetime,
        *,
        account: Account | None = None,
    ) -> Outcome:
        """A message or call from ``step`` was delivered: an instance waiting for it goes on."""
        run = _Run(self, profile, now, account)
        if (
            instance.status == "waiting"
            and instance.waiting == "delivery"
            and instance.step == step
        ):
            journey = self.journey(instance.journey, instance.version)
            if journey is not None:
                run.advance(journey, instance, journey.steps[step].next)
                run.finish_jumps([*instances, instance])
                run.settle_segments([*instances, instance])
        return run.outcome

    def on_failure(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        instance: Instance,
        step: str,
        reason: str,
        now: datetime,
        *,
        account: Account | None = None,
    ) -> Outcome:
        """A message or call from ``step`` failed for good: take its ``on_error`` path.

        Only a step with ``on_error`` waits for its delivery, so only then does the instance
        change course; otherwise the failure is recorded in the trace.
        """
        run = _Run(self, profile, now, account)
        run.fail(instance, step, reason)
        run.finish_jumps([*instances, instance])
        run.settle_segments([*instances, instance])
        return run.outcome

    def on_crash(
        self,
        profile: Profile,
        instances: Sequence[Instance],
        trigger: Event | Instance,
        reason: str,
        now: datetime,
    ) -> Outcome:
        """Another trigger method raised (a fault of the engine's, whatever the data): an
        outcome that records why, so that the trigger fails once rather than each time it
        comes back, and fails nothing else.

        ``trigger`` is the instance the trigger was for (a timer, a delivery outcome, an
        operator's command), which ends ``failed``; or an event, which is for no one
        instance: the reason goes to the trace of each instance and journey it might have
        moved, which go on as if it had not come.
        """
        run = _Run(self, profile, now)
        if isinstance(trigger, Instance):
            if trigger.status == "ended":
                run.record(trigger, trigger.step, "failed", reason)
            else:
                run.end(trigger, "failed", reason)
            return run.outcome
        detail = f"{trigger.name} could not be applied: {reason}"
        for instance in instances:
            if instance.status == "waiting":
                run.record(instance, instance.step, "failed", detail)
        for journey in self.workspace.journeys_entered_by(trigger.name):
            record = StepRecord(
                at=now,
                profile_id=profile.id,
                journey=journey.name,
                instance_id=None,
                step=None,
                outcome="not_entered",
                detail=detail,
            )
            run.outcome.records.append(record)
        return run.outcome


class _Run:
    """The working state of one trigger: a copy of the profile and what has happened."""

    def __init__(
        self, engine: Engine, profile: Profile, now: datetime, account: Account | None = None
    ) -> None:
        self.engine = engine
        self.workspace = engine.workspace
        self.now = now
        self.profile = profile
        # What `account` reads: empty when the profile has none, so every read is null.
        self.account_view = account.view() if account is not None else {}
        self.outcome = Outcome(profile)
        self.jumps: list[tuple[str, Event, str]] = []  # (to, entry event, from)
        self._profile_view: dict[str, Any] | None = None
        self._now_local: datetime | None = None  # now in the profile's zone (its view's)
        # What changed that segments may read: the traits, events added to the history.
        self.traits_changed = False
        self.recorded: set[str] = set()
        self.listed: set[str] = set()  # lists changed, whose readers are evaluated next
        self.forced: set[str] = set()  # segments evaluated whatever changed (a backfill)

    # profile

    def _own_profile(self) -> Profile:
        """Copy the profile before its first change: the caller's stays as it was."""
        if not self.outcome.profile_changed:
            p = self.profile
            self.profile = Profile(
                id=p.id,
                traits=dict(p.traits),
                entries=dict(p.entries),
                sends=list(p.sends),
                suppressed=dict(p.suppressed),
                history=dict(p.history),
                segments=dict(p.segments),
                wakes=dict(p.wakes),
                schedules=dict(p.schedules),
                account=p.account,
                goals=list(p.goals),
            )
            self.outcome.profile = self.profile
            self.outcome.profile_changed = True
        return self.profile

    def set_traits(self, values: dict[str, Any], unset: Iterable[str]) -> None:
        """Set (None: take out) and take out traits. The same traits again, as an SDK sends
        with each page, change nothing: the profile is not copied, nor written, and no
        segment that reads traits is evaluated."""
        current = self.profile.traits
        unset = [key for key in unset if key in current]
        if not unset and not any(differs(current, k, v) for k, v in values.items()):
            return
        traits = self._own_profile().traits
        for key, value in values.items():
            if value is None:
                traits.pop(key, None)
            else:
                traits[key] = value
        for key in unset:
            traits.pop(key, None)
        self._profile_view = None
        self._now_local = None
        self.traits_changed = True

    def take_consent(self, event: Event) -> None:
        """An unsubscribe, a resubscribe, a hard bounce or a complaint (domain.consent)."""
        changed = consent.apply(self.profile, event)
        if changed is not None:
            profile = self._own_profile()
            profile.traits, profile.suppressed = changed.traits, changed.suppressed
            self._profile_view = self._now_local = None
            self.traits_changed = True

    # history and segments

    def changed_before(self, filled: bool, merged: bool) -> None:
        """What changed before the trigger came to the engine: traits a call's context
        gave (``filled``), or another profile folded into this one (``merged``: its
        traits, history and segments joined this one's, so every segment is evaluated)."""
        self.traits_changed = filled or merged
        if merged:
            self.forced.update(self.workspace.segments)

    def note_history(self, event: Event) -> None:
        """Keep what the history functions need of the event (journeyman.domain.history)."""
        needs = self.workspace.needs
        if event.name not in needs:  # most often no expression reads it: nothing to keep
            return
        kept = history.record(self.profile.history, event, needs, self.now)
        if kept is not None:
            self._own_profile().history = kept
            self.recorded.add(event.name)

    def rebuild_history(self, names: Collection[str], log: Sequence[Event]) -> None:
        """Make the history of the events ``names`` again from ``log`` (in time order)."""
        needs = self.workspace.needs
        kept = {name: h for name, h in self.profile.history.items() if name not in names}
        for event in sorted(log, key=lambda e: e.timestamp):
            if event.name in names:
                kept = history.record(kept, event, needs, self.now) or kept
        if kept != self.profile.history:
            self._own_profile().history = kept
            self.recorded.update(names)

    def react(self, event: Event, instances: Sequence[Instance]) -> None:
        """An event for the profile's instances: exits, waits it answers, new entries."""
        waiting = [i for i in instances if i.status == "waiting"]
        for instance in waiting:
            self.exit_if_matched(instance, event)
        if self.profile.goals:
            self.check_goals(event, instances)
        for instance in waiting:
            current = self.outcome.instances.get(instance.id, instance)
            if current.status == "waiting" and current.waiting == "event":
                self.resume_if_awaited(current, event)
        for journey in self.workspace.journeys_entered_on(event.name, event.properties):
            self.enter(journey, event, instances, check_filter=True)
        self.finish_jumps(instances)

    def settle_segments(self, instances: Sequence[Instance], react: bool = True) -> None:
        """Evaluate the segments that what changed may move, and those whose wake time
        came; each change is an event on the profile (journeyman.domain.segments), which
        journeys then react to (unless not ``react``: an import's). Then wind the clocks
        of the schedules in the profile's own local time, which its segments decide."""
        self._settle_segments(instances, react)
        if self.workspace.local_schedules or self.profile.schedules:
            self.settle_schedules(instances, react)

    def settle_schedules(self, instances: Sequence[Instance], react: bool) -> None:
        """Enter the journeys whose ``timezone: profile`` moment has come for this profile
        (unless not ``react``), and set the instants of its next local moments."""
        local = [
            (j.name, j.entry_schedule, j.entry_segment)
            for j in self.workspace.local_schedules
            if j.entry_schedule is not None
        ]
        profile, zone = self.profile, self.zone()[0]
        clocks, due = wind_local(local, profile.schedules, profile.segments, zone, self.now)
        if clocks != self.profile.schedules:
            self._own_profile().schedules = clocks
        for name, at in due if react else ():
            event = entry_event(name, run_id(name, at), self.profile.id, self.now)
            current = self._current(instances)
            self.enter(self.workspace.journeys[name], event, current, check_filter=True)
            self.finish_jumps(current)

    def _settle_segments(self, instances: Sequence[Instance], react: bool) -> None:
        segments = self.workspace.segments
        if not segments:
            if self.profile.wakes:  # of segments no longer published
                self._own_profile().wakes = {}
            return
        for _ in range(MAX_SEGMENT_ROUNDS):
            clock = self._clock()
            if not (
                self.traits_changed
                or self.recorded
                or self.listed
                or clock
                or self.engine.readers.timely
            ):
                return
            traits_changed, recorded, listed = self.traits_changed, self.recorded, self.listed
            self.traits_changed, self.recorded, self.listed = False, set(), set()
            members = dict(self.profile.segments)
            scope = self._segment_scope(members)
            evaluated: list[str] = []
            changes = changed_segments(
                segments,
                self.engine.readers,
                scope,
                members,
                traits_changed,
                recorded,
                self.now,
                clock,
                evaluated,
                listed,
                self.profile.wakes,
            )
            self._wind(evaluated, clock, scope, members, changes)
            if not changes:
                return
            self._own_profile().segments = members
            self.change_segments(changes, instances, record_only=True, react=react)

    def _clock(self) -> set[str]:
        """The segments to evaluate whatever changed: those whose wake time came, those
        of local time the profile has no wake time for yet, and those forced."""
        wakes, now = self.profile.wakes, self.now
        # most often none has come: one min() says so, at C speed
        due = wakes and min(wakes.values()) <= now
        clock = {n for n, at in wakes.items() if at <= now} if due else set()
        for name in self.workspace.local_segments:
            if name not in wakes:
                clock.add(name)
        if self.forced:
            clock.update(self.forced)
            self.forced = set()
        return clock

    def change_segments(
        self,
        changes: Sequence[tuple[str, bool]],
        instances: Sequence[Instance],
        *,
        record_only: bool = False,
        react: bool = True,
    ) -> None:
        """Each (segment, entered) change becomes an event on the profile, which journeys
        react to (unless not ``react``); unless ``record_only`` (the profile's segments say
        it already), the profile's segments take it, and the segments that read it are
        evaluated next."""
        profile = self._own_profile()
        if not record_only:
            members = dict(profile.segments)
            for name, entered in changes:
                if entered:
                    members[name] = self.now
                else:
                    members.pop(name, None)
            profile.segments = members
            self.listed.update(name for name, _ in changes)
        for name, entered in changes:
            event = segment_event(profile.id, name, entered, self.now)
            self.outcome.events.append(event)
            self.outcome.records.append(segment_record(profile.id, name, entered, self.now))
            if react:
                current = self._current(instances)
                if self._heard(event, current):
                    self.react(event, current)

    def _heard(self, event: Event, instances: Sequence[Instance]) -> bool:
        """Whether :meth:`react` can do anything with the event: a journey enters on it, a
        waiting instance exits on it or waits for it, or the profile has goals to reach
        (or jumps to finish). Most segment changes concern no journey, and are only kept."""
        if self.profile.goals or self.jumps:
            return True
        if self.workspace.journeys_entered_on(event.name, event.properties):
            return True
        for instance in instances:
            if instance.status == "waiting":
                journey = self.engine.journey(instance.journey, instance.version)
                if journey is not None and event.name in journey.heard:
                    return True
        return False

    def _wind(
        self,
        evaluated: Sequence[str],
        clock: set[str],
        scope: Mapping[str, Any],
        members: Mapping[str, datetime],
        changes: Sequence[tuple[str, bool]],
    ) -> None:
        """Set the wake times of the segments just evaluated (those that move with time):
        the earliest moment each answer can change with no event. One that an event of its
        history brought here (not its clock), whose answer stayed, and whose answer an
        event can only make change later (:attr:`Segment.held` is not None) keeps the wake
        time it has."""
        segments, before = self.workspace.segments, self.profile.wakes
        wakes = dict(before)
        for name in clock:
            wakes.pop(name, None)
        if not segments.keys() >= before.keys():  # of segments no longer published
            wakes = {name: at for name, at in wakes.items() if name in segments}
        history, now = self.profile.history, self.now
        zone: tzinfo = UTC  # what only a segment of local time reads: looked up for one
        changed = {name for name, _ in changes} if changes else ()
        for name in evaluated:
            segment = segments[name]
            if (
                segment.held is not None
                and name in wakes  # not in the clock: its wake time is still to come
                and name not in changed  # one an earlier `when` left may be there
            ):
                continue
            wakes.pop(name, None)
            if segment.clocked:
                if segment.local:
                    zone = self.zone()[0]
                at = next_change(segment, scope, name in members, history, now, zone)
                if at is not None:
                    wakes[name] = at
                elif segment.local:  # evaluated: not again until what it reads changes
                    wakes[name] = NEVER
        if wakes != before:
            self._own_profile().wakes = wakes

    def _segment_scope(self, members: dict[str, datetime]) -> dict[str, Any]:
        if self._profile_view is None:
            self._profile_view = self.profile.view()
        return {
            "profile": self._profile_view,
            "now": self.now,
            "now_local": self.now_local(),
            "_history": self.profile.history,
            "_segments": members,
        }

    def now_local(self) -> datetime:
        """Now on the clock of the profile's time zone (see :meth:`zone`)."""
        if self._now_local is None:
            self._now_local = self.engine.local_time(self.now, self.zone()[0])
        return self._now_local

    def _current(self, instances: Sequence[Instance]) -> list[Instance]:
        """The profile's instances as this trigger has left them so far."""
        changed = self.outcome.instances
        if not changed:
            return list(instances)
        latest = {i.id: i for i in instances}
        latest.update(changed)
        return list(latest.values())

    def scope(self, instance: Instance, journey: m.Journey) -> dict[str, Any]:
        entry = instance.entry.view()
        event = instance.event.view() if instance.event is not None else entry
        return self._scope(event, entry, journey)

    def _scope(
        self, event: dict[str, Any], entry: dict[str, Any], journey: m.Journey
    ) -> dict[str, Any]:
        """What expressions and templates read; the profile's view is built once per change."""
        if self._profile_view is None:
            self._profile_view = self.profile.view()
        return {
            "profile": self._profile_view,
            "account": self.account_view,
            "event": event,
            "entry": entry,
            "journey": {"name": journey.name, "version": journey.version},
            "now": self.now,
            "now_local": self._now_local or self.now_local(),
            "_history": self.profile.history,
            "_segments": self.profile.segments,
        }

    def zone(self) -> tuple[ZoneInfo, str]:
        """The profile's time zone, and a note for the trace when its ``timezone`` trait is
        there but no zone: then the workspace's zone is used, as if the trait were absent."""
        name = self.profile.traits.get("timezone")
        default = self.workspace.settings.timezone
        if name is None or name == "":
            return default, ""
        found, problem = _zone(name) if isinstance(name, str) else (None, f"{name!r} is no name")
        if found is not None:
            return found, ""
        return default, f"the timezone trait is unusable ({problem}): {default.key} is used"

    # records

    def record(self, instance: Instance, step: str | None, outcome: str, detail: str = "") -> None:
        if step is not None:  # the report's step numbers, in all and in the arm
            self.outcome.tallies += funnel.step_tallies(instance, step, outcome)
        self.outcome.records.append(
            StepRecord(
                at=self.now,
                profile_id=instance.profile_id,
                journey=instance.journey,
                instance_id=instance.id,
                step=step,
                outcome=outcome,
                detail=detail,
            )
        )

    def save(self, instance: Instance) -> Instance:
        self.outcome.instances[instance.id] = instance
        return instance

    def wait(self, instance: Instance) -> None:
        """Keep the instance, waiting at its step: one more on the step's waiting level."""
        self.outcome.tallies += funnel.step_tallies(instance, instance.step, funnel.WAITING)
        self.outcome.instances[instance.id] = instance

    # entering

    def enter(
        self,
        journey: m.Journey,
        event: Event,
        known: Sequence[Instance],
        check_filter: bool,
        via: str = "",
    ) -> None:
        reason = self._refusal(journey, event, known, check_filter)
        if reason is not None:
            record = StepRecord(
                at=self.now,
                profile_id=self.profile.id,
                journey=journey.name,
                instance_id=None,
                step=None,
                outcome="not_entered",
                detail=reason,
            )
            self.outcome.records.append(record)
            return
        profile = self._own_profile()
        previous = profile.entries.get(journey.name)
        count = previous.count + 1 if previous else 1
        profile.entries[journey.name] = Entries(self.now, count)
        instance = Instance(
            id=f"{profile.id}:{journey.name}:{count}",
            journey=journey.name,
            version=journey.version,
            profile_id=profile.id,
            entered_at=self.now,
            entry=event,
            step=journey.first,
        )
        detail = f"by {event.name}" + (f", jumped from {via}" if via else "")
        if goals.held_out(journey, profile.id):
            instance.arm, instance.holdout = goals.HOLDOUT_ARM, True
            detail += f", held out ({journey.holdout:.4g} of entries get no messages)"
        self.record(instance, None, "entered", detail)
        self.tally_entry(journey, instance, "")
        if instance.arm:
            self.tally_entry(journey, instance, instance.arm)
        if journey.goals:
            window = goals.open_window(journey, instance)
            profile.goals = goals.with_window(profile.goals, window, self.now)
        self.advance(journey, instance, journey.first)

    def _refusal(
        self, journey: m.Journey, event: Event, known: Sequence[Instance], check_filter: bool
    ) -> str | None:
        if journey.name in self.engine.stopped:
            return "the journey is stopped"
        if journey.name in self.engine.paused:
            return "the journey is paused"
        if check_filter and journey.entry_when is not None:
            view = event.view()
            if not journey.entry_when.test(self._scope(view, view, journey)):
                return f"entry condition is false: {journey.entry_when.source}"
        latest = {i.id: i for i in known}
        latest.update(self.outcome.instances)
        active = any(i.journey == journey.name and i.status != "ended" for i in latest.values())
        last = self.profile.entries.get(journey.name)
        return decide_entry(journey.reentry, active, last.last if last else None, self.now)

    def finish_jumps(self, known: Sequence[Instance]) -> None:
        # Validation refuses jump loops, so this queue drains; the bound is a second guard.
        for _ in range(len(self.workspace.journeys) * 4 + 1):
            if not self.jumps:
                return
            (name, event, source), *self.jumps = self.jumps
            journey = self.workspace.journeys.get(name)
            if journey is not None:
                self.enter(journey, event, known, check_filter=False, via=source)

    # goals and report counters (journeyman.domain.goals)

    def tally(
        self, journey: str, version: int, arm: str, goal: str, metric: str, total: float = 0.0
    ) -> None:
        self.outcome.tallies.append(Tally(journey, version, arm, goal, metric, 1, total))

    def tally_entry(self, journey: m.Journey, instance: Instance, arm: str) -> None:
        """Count an entry into ``arm`` ("" for the journey): in all, and in its quarter hour
        (which a report sums into days of the zone it is read in)."""
        self.tally(journey.name, journey.version, arm, "", "entered")
        day = goals.day_metric(instance.entered_at, "entered")
        self.tally(journey.name, journey.version, arm, "", day)

    def note_window(self, journey: m.Journey, instance: Instance, **changes: Any) -> None:
        """Change the instance's goal window (its arm, its last message), if it has one."""
        if not journey.goals:
            return
        found = goals.update_window(self.profile.goals, instance.id, changes)
        if found is not None:
            self._own_profile().goals = found

    def check_goals(self, event: Event, instances: Sequence[Instance]) -> None:
        """Count the goals ``event`` reaches, once per instance, within their windows,
        running or ended; drop the windows that have passed or have nothing left to reach."""
        windows = self.profile.goals
        kept, changed = [], False
        for window in windows:
            if window.until <= self.now:
                changed = True
                continue
            journey = self.engine.journey(window.journey, window.version)
            if journey is None:
                changed = True
                continue
            after = self._reach_goals(journey, window, event, instances)
            changed = changed or after is not window
            if len(after.reached) < len(journey.goals):
                kept.append(after)
            else:
                changed = True
        if changed:
            self._own_profile().goals = kept

    def _reach_goals(
        self,
        journey: m.Journey,
        window: GoalWindow,
        event: Event,
        instances: Sequence[Instance],
    ) -> GoalWindow:
        """The window after ``event``: the goals it reaches added to ``reached``."""
        scope: dict[str, Any] | None = None
        for goal in journey.goals:
            if goal.event != event.name or goal.name in window.reached:
                continue
            after = self.now - window.entered_at
            if after > goal.within:
                continue
            if scope is None:
                scope = self._scope(event.view(), window.entry.view(), journey)
            if goal.when is not None and not goal.when.test(scope):
                continue
            value = goals.goal_value(goal.value.evaluate(scope)) if goal.value else None
            window = _replace(window, reached=[*window.reached, goal.name])
            self._reached(journey, window, goal, value, after, instances)
        return window

    def _reached(
        self,
        journey: m.Journey,
        window: GoalWindow,
        goal: m.Goal,
        value: float | None,
        after: timedelta,
        instances: Sequence[Instance],
    ) -> None:
        detail = goals.reached_detail(window, goal, value, after)
        running = next((i for i in self._current(instances) if i.id == window.instance_id), None)
        self.outcome.records.append(
            StepRecord(
                at=self.now,
                profile_id=self.profile.id,
                journey=window.journey,
                instance_id=window.instance_id,
                step=None,
                outcome=goals.GOAL_REACHED,
                detail=detail,
            )
        )
        self.outcome.tallies.extend(goals.reached_tallies(window, goal, value, after))
        if journey.exit_on_goal and running is not None and running.status != "ended":
            self.end(running, goals.GOAL_ENDED, f"goal {goal.name} reached")

    # events and timers for waiting instances

    def exit_if_matched(self, instance: Instance, event: Event) -> None:
        journey = self.engine.journey(instance.journey, instance.version)
        if journey is None:
            return
        for exit_ in journey.exits:
            if exit_.event != event.name:
                continue
            if exit_.segment is not None and event.properties.get("segment") != exit_.segment:
                continue
            scope = self.scope(_replace(instance, event=event), journey)
            if exit_.when is None or exit_.when.test(scope):
                self.end(instance, "exited", f"exit event {event.name}")
                return

    def resume_if_awaited(self, instance: Instance, event: Event) -> None:
        journey = self.engine.journey(instance.journey, instance.version)
        step = journey.steps.get(instance.step) if journey else None
        if journey is None or not isinstance(step, m.WaitFor) or step.event != event.name:
            return
        if step.reaction is not None and not _reacts(step, instance, event):
            return
        moved = _replace(instance, event=event)
        if step.when is not None and not step.when.test(self.scope(moved, journey)):
            return
        what = event.name if step.reaction is None else f"{event.name} of {step.to}"
        self.record(moved, step.id, "event", f"{what} arrived")
        self.advance(journey, moved, step.on_event or step.next)

    def wake(self, instance: Instance) -> None:
        journey = self.engine.journey(instance.journey, instance.version)
        if journey is None:
            self.end(instance, "failed", f"journey version {instance.version} is gone")
            return
        if self.now >= instance.entered_at + journey.timeout:
            detail = f"journey timeout of {_text(journey.timeout)} reached"
            self.end(instance, "timed_out", detail)
            return
        step = journey.steps.get(instance.step)
        if instance.waiting == "defer":
            self.advance(journey, instance, instance.step)
        elif isinstance(step, m.WaitFor):
            self.record(
                instance, step.id, "timeout", f"no {step.awaited} within {_text(step.timeout)}"
            )
            self.advance(journey, instance, step.on_timeout or step.next)
        elif step is not None:
            self.record(instance, step.id, "waited")
            self.advance(journey, instance, step.next)

    def fail(self, instance: Instance, step_id: str, reason: str) -> None:
        journey = self.engine.journey(instance.journey, instance.version)
        step = journey.steps.get(step_id) if journey else None
        self.record(instance, step_id, "failed", reason)
        waits = instance.status == "waiting" and instance.waiting == "delivery"
        if journey is not None and waits and instance.step == step_id:
            on_error = getattr(step, "on_error", None)
            self.advance(journey, instance, on_error)

    # running steps

    def end(self, instance: Instance, state: str, detail: str = "") -> None:
        arm = instance.arm or ""
        self.tally(instance.journey, instance.version, arm, "", f"ended:{state}")
        if instance.status == "waiting":
            self.outcome.tallies += funnel.step_tallies(instance, instance.step, funnel.WAITING, -1)
        if detail:  # it ends without completing the step (funnel.leaves)
            self.outcome.tallies += funnel.step_tallies(instance, instance.step, funnel.LEFT)
        ended = _replace(
            instance,
            status="ended",
            waiting=None,
            wake_at=None,
            end_state=state,
            ended_at=self.now,
        )
        self.save(ended)
        self.record(ended, instance.step, "ended", f"{state}" + (f": {detail}" if detail else ""))

    def advance(self, journey: m.Journey, instance: Instance, step_id: str | None) -> None:
        """Run steps from ``step_id`` until the instance waits or ends."""
        if instance.status == "waiting":
            self.outcome.tallies += funnel.step_tallies(instance, instance.step, funnel.WAITING, -1)
        instance = _replace(instance, status="active", waiting=None, wake_at=None)
        for _ in range(MAX_STEPS):
            if step_id is None:
                self.end(instance, "completed")
                return
            if journey.name in self.engine.stopped:
                self.end(_replace(instance, step=step_id), "stopped", "the journey was stopped")
                return
            if journey.name in self.engine.paused:
                self.record(instance, step_id, "held", "the journey is paused")
                deadline = instance.entered_at + journey.timeout
                held = _replace(instance, step=step_id, status="waiting", waiting="paused")
                self.wait(_replace(held, wake_at=deadline))
                return
            step = journey.steps[step_id]
            instance = _replace(instance, step=step_id, seq=instance.seq + 1)
            result = _RUNNERS[type(step)](self, journey, instance, step)
            if isinstance(result, Instance):  # it waits
                self.wait(result)
                return
            if result is _ENDED:
                return
            if isinstance(result, tuple):  # it goes on, changed (a split gave it its arm)
                instance, result = result
            step_id = result
        self.end(instance, "failed", f"ran {MAX_STEPS} steps without waiting")

    def wait_until(
        self,
        journey: m.Journey,
        instance: Instance,
        wake: datetime,
        waiting: str,
        detail: str = "",
        note: str = "",
    ) -> Instance:
        """The instance waiting until ``wake``, or the journey timeout if that comes first.

        With ``detail``, records a `waiting` line that says until when (and ``note``).
        """
        deadline = instance.entered_at + journey.timeout
        if detail:
            until = format_instant(min(wake, deadline))
            cut = " (the journey timeout comes first)" if deadline < wake else ""
            line = _noted(f"{detail} until {until}{cut}", note)
            self.record(instance, instance.step, "waiting", line)
        return _replace(instance, status="waiting", waiting=waiting, wake_at=min(wake, deadline))


# One function per step type. Each returns the next step's id (None: the path ran out),
# the waiting instance, or _ENDED.

_ENDED = object()
StepResult = Any


def _run_wait(run: _Run, journey: m.Journey, instance: Instance, step: m.Wait) -> StepResult:
    if step.duration is not None:
        wake = run.now + step.duration
    elif step.until_local is not None:
        zone, note = run.zone()
        wake = next_local_time(run.now, step.until_local, zone, step.days)
        return run.wait_until(journey, instance, wake, "timer", "wait", note)
    else:
        assert step.until is not None
        value = _as_time(step.until.evaluate(run.scope(instance, journey)))
        if value is None:
            run.record(instance, step.id, "skipped", f"'until' gave no time: {step.until.source}")
            return step.next
        if value <= run.now:
            run.record(instance, step.id, "waited", f"{format_instant(value)} has passed")
            return step.next
        wake = value
    return run.wait_until(journey, instance, wake, "timer", "wait")


def _run_wait_for(run: _Run, journey: m.Journey, instance: Instance, step: m.WaitFor) -> StepResult:
    deadline = instance.entered_at + journey.timeout
    wake = run.now + step.timeout if step.timeout is not None else deadline
    return run.wait_until(journey, instance, wake, "event", f"for {step.awaited}")


def _reacts(step: m.WaitFor, instance: Instance, event: Event) -> bool:
    """Whether a reaction event answers this instance's message from the step ``to``, as
    the short form asks: a person's open, when machine opens do not count; a click on a
    URL that matches the pattern, when there is one."""
    properties = event.properties
    if properties.get("instance") != instance.id or properties.get("step") != step.to:
        return False
    if not step.machine and properties.get("machine") is True:
        return False
    if step.url is None:
        return True
    url = properties.get("url")
    return isinstance(url, str) and _url_pattern(step.url).fullmatch(url) is not None


@lru_cache(maxsize=256)
def _url_pattern(pattern: str) -> re.Pattern[str]:
    """A ``clicked`` URL pattern as a regular expression: ``*`` is any text, even none;
    every other character stands for itself; the pattern matches the whole URL."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _run_branch(run: _Run, journey: m.Journey, instance: Instance, step: m.Branch) -> StepResult:
    scope = run.scope(instance, journey)
    for when, goto in step.cases:
        if when.test(scope):
            run.record(instance, step.id, "branched", f"{when.source} is true: to {goto}")
            return goto
    run.record(instance, step.id, "branched", f"no case is true: otherwise to {step.otherwise}")
    return step.otherwise


def _run_split(run: _Run, journey: m.Journey, instance: Instance, step: m.Split) -> StepResult:
    goto, arm, detail = _split_arm(instance, journey, step)
    if journey.holdout and instance.holdout:  # held out of the whole journey: it stays so
        run.record(instance, step.id, "split", f"{detail}; stays in arm {instance.arm}")
        return goto
    run.record(instance, step.id, "split", detail)
    run.tally_entry(journey, instance, arm)
    run.note_window(journey, instance, arm=arm)
    return _replace(instance, arm=arm, holdout=arm in step.holdouts), goto


def _split_arm(instance: Instance, journey: m.Journey, step: m.Split) -> tuple[str, str, str]:
    """(the step, the arm's name, the trace's words) of the arm the profile takes."""
    total = sum(weight for weight, _ in step.arms)
    point = split_point(instance.profile_id, journey.name, step.id) * total
    index = len(step.arms) - 1
    for index, (weight, _) in enumerate(step.arms):  # noqa: B007 - where the loop stops
        if point < weight:
            break
        point -= weight
    weight, goto = step.arms[index]
    arm = step.arm_name(index)
    holdout = arm in step.holdouts
    named = f"arm {arm}, " if arm != goto else ""
    held = ", a holdout" if holdout else ""
    return goto, arm, f"to {goto} ({named}weight {weight:g} of {total:g}{held})"


def split_point(profile_id: str, journey: str, step: str) -> float:
    """A stable number in [0, 1) for this profile at this step, the same in every process."""
    digest = hashlib.blake2b(f"{profile_id}\x1f{journey}\x1f{step}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def _run_experiment(
    run: _Run, journey: m.Journey, instance: Instance, step: m.Experiment
) -> StepResult:
    given = step.variant(instance.arm) if instance.arm else None
    if given is not None:  # back at the step (a deferred send, a loop): it keeps its variant
        variant, detail = given, f"{given.name} (kept)"
    else:
        variant, detail = _variant_of(run.engine, journey, instance, step)
    goto = variant.goto or step.next
    if given is not None:
        run.record(instance, step.id, "variant", detail)
    elif journey.holdout and instance.holdout:  # held out of the whole journey: it stays so
        run.record(instance, step.id, "variant", f"{detail}; stays in arm {instance.arm}")
    else:
        run.record(instance, step.id, "variant", detail)
        run.tally_entry(journey, instance, variant.name)
        run.note_window(journey, instance, arm=variant.name)
        instance = _replace(instance, arm=variant.name, holdout=False)
    if variant.template is None:
        return instance, goto
    send = m.Send(step.id, step.next, step.origin, template=variant.template)
    result = _run_send(run, journey, instance, send)
    return (instance, result) if isinstance(result, str | None) else result


def _variant_of(
    engine: Engine, journey: m.Journey, instance: Instance, step: m.Experiment
) -> tuple[m.Variant, str]:
    """The variant the profile gets, and the trace's words: a forced one (journey tests),
    the decision's, or one drawn by weight from the profile id as a split draws."""
    profile = instance.profile_id
    forced = engine.forced.get((profile, f"{journey.name}.{step.id}"))
    forced = forced or engine.forced.get((profile, step.id))
    chosen = step.variant(forced) if forced else None
    if chosen is not None:
        return chosen, f"{chosen.name} (forced by the test)"
    decision = engine.decisions.get((journey.name, step.id))
    chosen = step.variant(decision.variant) if decision is not None else None
    if decision is not None and chosen is not None:
        words = {"winner": "the winner", "chosen": "chosen", "stopped": "the experiment stopped"}
        by = f" by {decision.by}" if decision.by else ""
        return chosen, f"{chosen.name} ({words[decision.how]}{by}, {decision.at.isoformat()})"
    total = sum(v.weight for v in step.variants)
    point = split_point(profile, journey.name, step.id) * total
    chosen = step.variants[-1]
    for variant in step.variants:
        if point < variant.weight:
            chosen = variant
            break
        point -= variant.weight
    return chosen, f"{chosen.name} (weight {chosen.weight:g} of {total:g})"


def _run_send(run: _Run, journey: m.Journey, instance: Instance, step: m.Send) -> StepResult:
    if instance.holdout:  # its arm is measured without messages
        run.record(instance, step.id, "skipped", "holdout")
        return step.next
    templates = run.workspace.templates if journey.templates is None else journey.templates
    template = templates.get(step.template)
    if template is None:  # an old journey version naming a template since removed
        run.end(instance, "failed", f"template {step.template} is no longer defined")
        return _ENDED
    channel = template.channel
    scope = run.scope(instance, journey)
    reason, to = _destination(run.profile, template, scope)
    if not reason:
        reason = consent.refusal(run.profile, template, to, run.workspace.subscriptions)
    if reason:
        run.record(instance, step.id, "skipped", reason)
        return step.next
    note = ""
    if not journey.ignore_caps:
        zone, note = run.zone()
        decision = decide_send(run.workspace.rules, channel, run.now, zone, run.profile.sends)
        if decision.action == "defer" and decision.until is not None:
            run.record(
                instance,
                step.id,
                "deferred",
                _noted(f"{decision.reason}, until {format_instant(decision.until)}", note),
            )
            return run.wait_until(journey, instance, decision.until, "defer")
        if decision.action == "drop":
            run.record(instance, step.id, "dropped", _noted(decision.reason, note))
            return step.next
        if not any(channel in w.channels for w in run.workspace.rules.quiet_hours):
            note = ""  # the zone made no difference
        if decision.action == "cap":
            run.record(instance, step.id, "capped", decision.reason)
            return step.next
    scope["unsubscribe_url"] = consent.UNSUBSCRIBE_PLACEHOLDER
    scope["preferences_url"] = consent.PREFERENCES_PLACEHOLDER
    content = {key: part.render(scope) for key, part in template.fields.items()}
    message = SendMessage(
        key=f"{instance.id}:{step.id}:{instance.seq}",
        instance_id=instance.id,
        journey=journey.name,
        step=step.id,
        profile_id=instance.profile_id,
        channel=channel,
        template=template.name,
        to=to,
        content=content,
        at=run.now,
        awaited=step.on_error is not None,
        version=instance.version,
        topic=template.topic,
        transactional=template.transactional,
        arm=instance.arm or "",
    )
    run.outcome.effects.append(message)
    _note_send(run, channel)
    run.note_window(journey, instance, last_message=step.id)
    run.record(instance, step.id, "sent", _noted(f"{channel} to {to}" if to else channel, note))
    return _after_handover(run, journey, instance, step)


def _destination(
    profile: Profile, template: m.MessageTemplate, scope: dict[str, Any]
) -> tuple[str, str | None]:
    """(why it cannot be sent, or "", and the address); consent is asked after."""
    traits = profile.traits
    channel = template.channel
    if template.to is not None:
        to = template.to.render(scope).strip()
        return ("", to) if to else (f"'to' of template {template.name} rendered empty", None)
    trait = m.DESTINATION_TRAITS[channel]
    if trait is None:
        return "", None
    value = traits.get(trait)
    if not isinstance(value, str) or not value.strip():
        return f"the profile has no {trait}", None
    return "", value


def _note_send(run: _Run, channel: str) -> None:
    """Remember the send for frequency caps, forgetting what no cap can count any more."""
    longest = run.workspace.rules.longest_cap
    if longest <= timedelta(0):
        return
    profile = run._own_profile()
    since = run.now - longest
    profile.sends = [(at, c) for at, c in profile.sends if at > since]
    profile.sends.append((run.now, channel))


def _run_call(run: _Run, journey: m.Journey, instance: Instance, step: m.Call) -> StepResult:
    action = run.workspace.actions.get(step.action)
    if action is None:
        run.end(instance, "failed", f"action {step.action} is no longer defined")
        return _ENDED
    scope = run.scope(instance, journey)
    rendered = render_call(action.url, action.headers, action.body, scope)
    if isinstance(rendered, str):
        # Never made, as a call refused for good would be: on to on_error, if any.
        run.record(instance, step.id, "failed", f"{action.name}: {rendered}")
        return step.on_error or step.next
    call = CallAction(
        key=f"{instance.id}:{step.id}:{instance.seq}",
        instance_id=instance.id,
        journey=journey.name,
        step=step.id,
        profile_id=instance.profile_id,
        action=action.name,
        method=action.method,
        url=rendered.url,
        headers=rendered.headers,
        body=rendered.body,
        timeout=action.timeout.total_seconds(),
        at=run.now,
        awaited=step.on_error is not None,
    )
    run.outcome.effects.append(call)
    run.record(instance, step.id, "called", f"{action.method} {call.url}")
    return _after_handover(run, journey, instance, step)


def _after_handover(
    run: _Run, journey: m.Journey, instance: Instance, step: m.Send | m.Call
) -> StepResult:
    """A step with ``on_error`` waits to learn whether its delivery worked; others go on."""
    if step.on_error is None:
        return step.next
    return run.wait_until(journey, instance, instance.entered_at + journey.timeout, "delivery")


def _run_update(
    run: _Run, journey: m.Journey, instance: Instance, step: m.UpdateProfile
) -> StepResult:
    scope = run.scope(instance, journey)
    values = {
        key: _json_value(value.evaluate(scope) if isinstance(value, Expression) else value)
        for key, value in step.set.items()
    }
    run.set_traits(values, step.unset)
    changed = [*values, *(f"-{key}" for key in step.unset)]
    run.record(instance, step.id, "updated", ", ".join(changed))
    return step.next


def _run_jump(run: _Run, journey: m.Journey, instance: Instance, step: m.Jump) -> StepResult:
    run.jumps.append((step.journey, instance.entry, journey.name))
    run.record(instance, step.id, "jumped", f"to journey {step.journey}")
    return step.next


def _run_end(run: _Run, journey: m.Journey, instance: Instance, step: m.End) -> StepResult:
    run.end(instance, step.state)
    return _ENDED


def _run_broken(run: _Run, journey: m.Journey, instance: Instance, step: m.Step) -> StepResult:
    run.end(instance, "failed", f"step {step.id} cannot run")  # never in a valid workspace
    return _ENDED


_RUNNERS: dict[type, Callable[..., StepResult]] = {
    m.Wait: _run_wait,
    m.WaitFor: _run_wait_for,
    m.Branch: _run_branch,
    m.Split: _run_split,
    m.Experiment: _run_experiment,
    m.Send: _run_send,
    m.Call: _run_call,
    m.UpdateProfile: _run_update,
    m.Jump: _run_jump,
    m.End: _run_end,
    m.Step: _run_broken,
}


# values


def _as_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        return parse_timestamp(value)
    except TimeFormatError:
        return None


def _json_value(value: Any) -> Any:
    """Traits are JSON: times become ISO text, durations seconds."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


@lru_cache(maxsize=512)
def _zone(name: str) -> tuple[ZoneInfo | None, str]:
    """The zone ``name`` names, or None and why not (a cache: traits repeat)."""
    try:
        return parse_zone(name), ""
    except TimeFormatError as error:
        return None, str(error)


def _noted(detail: str, note: str) -> str:
    return f"{detail}; {note}" if note else detail


def _text(value: timedelta | None) -> str:
    return format_duration(value) if value is not None else "ever"
