"""Journeys on a virtual clock, in memory: the server's core with nothing around it but time.

:class:`Simulator` keeps profiles, instances and identities in dicts and wake-up times in a
heap, and feeds events, due timers, delivery outcomes and operators' commands to
:func:`journeyman.domain.core.apply`, the function the server runs on each batch: profiles
are found, repeated ``messageId``\\ s dropped, anonymous profiles merged and outcomes
carried exactly as ``journeyman serve`` does. What the server would commit, it keeps:
every message, call and step record. A 30-day journey runs in milliseconds and the same
inputs always give the same results.

Every message and call is handed over the moment it is made: it is delivered, or, for a
step listed in ``fail``, fails for good, and the engine learns the outcome as the server's
dispatcher would tell it.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec

from journeyman.domain.core import (
    Changes,
    DeliveryResult,
    Known,
    Operate,
    Snapshot,
    TimerDue,
    Trigger,
    apply,
    clock_id,
    list_change,
    recorded_by_journeyman,
)
from journeyman.domain.engine import Engine
from journeyman.domain.feedback import delivery_events
from journeyman.domain.ingest import InvalidEvent, call_of, read_call
from journeyman.domain.model import Workspace
from journeyman.domain.reactions import REACTIONS, reaction_event
from journeyman.domain.schedules import entry_event, next_run, run_id
from journeyman.domain.state import (
    Account,
    CallAction,
    Event,
    Instance,
    Profile,
    SendMessage,
    StepRecord,
    Tally,
)
from journeyman.errors import JourneymanError

__all__ = ["NoMessage", "Rejection", "ScheduledRun", "Simulator"]

# The first web address in a message: what a simulated click follows unless told otherwise.
_FIRST_URL = re.compile(r"""https?://[^\s"'<>]+""")


class NoMessage(JourneymanError, LookupError):
    """A reaction names a message that was never sent: no message from that step (for that
    profile) was handed over by then, or several profiles got one and none was named."""


@dataclass(frozen=True, slots=True)
class Rejection:
    at: datetime
    event: str
    profile: str  # the userId or anonymousId the call named, if any
    error: InvalidEvent


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """A run of a scheduled journey, as the server's scheduler makes it: its id, the
    moment it was for, and the profiles it gave the entry event to, in id order."""

    id: str
    journey: str
    at: datetime
    profiles: tuple[str, ...]


class _States(dict[str, Snapshot]):
    """Every profile by id; one never seen is new and empty, as the store loads it."""

    def __missing__(self, profile_id: str) -> Snapshot:
        state = self[profile_id] = Snapshot(Profile(id=profile_id), [], new=True)
        return state


class Simulator:
    """An in-memory, virtual-clock journey runtime.

    ``fail`` names steps (``step`` or ``journey.step``) whose messages and calls fail for
    good the moment they are handed over, to exercise ``on_error`` paths.

    ``check``, when set, is called before each batch the core runs and each scheduled
    run: whatever it raises stops the simulation (a server stops a try that takes too long
    with it, and ``journeyman test`` a test; a journey that waits in a loop has timers
    forever, and a schedule makes runs until the clock stops).
    """

    check: Callable[[], None] | None = None

    def __init__(self, workspace: Workspace, start: datetime, fail: Collection[str] = ()) -> None:
        self.workspace = workspace
        self.engine = Engine(workspace)
        self.start = start
        self.now = start
        self.fail = frozenset(fail)
        self.rejected: list[Rejection] = []
        self._states = _States()
        self._instances: dict[str, Instance] = {}
        self._records: list[StepRecord] = []
        self._events: list[Event] = []
        self._messages: list[SendMessage] = []
        self._calls: list[CallAction] = []
        self._tallies: list[Tally] = []
        self._timers: list[tuple[datetime, int, str]] = []
        self._sequence = 0
        self._identities: dict[tuple[str, str], str] = {}  # (kind, value) -> profile id
        self._owned: dict[str, set[tuple[str, str]]] = {}  # profile id -> its identities
        self._known = Known(self._identities, instances=self._instances)
        self._merged: dict[str, str] = {}  # anonymous id -> known id, rows not moved yet
        # (moment, journey) of the next run of each scheduled journey
        self._schedules: list[tuple[datetime, str]] = []
        self._runs: list[ScheduledRun] = []
        for journey in workspace.scheduled():
            # A `timezone: profile` schedule makes no runs: each member's clock enters them.
            if journey.entry_schedule is not None and not journey.entry_schedule.per_profile:
                self._next_run(journey.name, start)

    # input

    def track(self, body: Mapping[str, Any], at: datetime | None = None) -> Event | None:
        """A `track` call at ``at`` (default: now): the event as taken, for the profile it
        reached; None if it was rejected or came before (by its ``messageId``)."""
        return self.receive([("track", body)], at)[0]

    def identify(self, body: Mapping[str, Any], at: datetime | None = None) -> Event | None:
        """An `identify` call at ``at`` (default: now); as :meth:`track`."""
        return self.receive([("identify", body)], at)[0]

    def list_member(
        self,
        segment: str,
        entered: bool = True,
        at: datetime | None = None,
        *,
        user_id: str = "",
        email: str = "",
    ) -> None:
        """Add the profile of ``user_id`` (or ``email``) to the static list ``segment``
        at ``at`` (default: now), or remove it, as the members API does."""
        self.run_until(at or self.now)
        self._run([list_change(segment, entered, self.now, user_id, email)])

    def receive(
        self, calls: Iterable[tuple[str, Mapping[str, Any]]], at: datetime | None = None
    ) -> list[Event | None]:
        """Calls that arrive together at ``at`` (default: now), each ``("track", body)``,
        ``("identify", body)`` (or ``page``, ``screen``, ``alias``, ``group``): they are
        taken in one batch, in order, as the server takes calls that come at once. Each
        one's event as :meth:`track` says."""
        self.run_until(at or self.now)
        now, definitions = self.now, self.workspace.events
        calls = list(calls)
        events: list[Event] = []
        taken: list[int] = []  # the position of each event that was not rejected
        for position, (kind, body) in enumerate(calls):
            try:
                call = call_of(kind, body)
                events.append(read_call(call, definitions, now, self.workspace.views))
            except InvalidEvent as error:
                name = _event_name(body) if kind == "track" else kind
                self.rejected.append(Rejection(now, name, _named(body), error))
            else:
                taken.append(position)
        answers: list[Event | None] = [None] * len(calls)
        if events:
            results, changes = self._run(events)
            accepted = _taken(changes.events)
            for position, result in zip(taken, results, strict=True):
                answers[position] = next(accepted) if result == "accepted" else None
        return answers

    def react(
        self,
        reaction: str,
        step: str,
        profile: str | None = None,
        at: datetime | None = None,
        **extra: Any,
    ) -> Event | None:
        """The reaction (``opened``, ``clicked``, ``bounced``, ... see
        :data:`~journeyman.domain.reactions.REACTIONS`) to the latest message that
        ``step`` (``step`` or ``journey.step``) sent to ``profile`` (a profile id; may be
        left out when one profile got such a message), at ``at`` (default: now).

        The event is built from that message as the server builds it from the message a
        link, pixel or provider names (:func:`~journeyman.domain.reactions.reaction_event`),
        with what ``extra`` adds or overrides (``url``, ``machine``, ``bounce``). Raises
        :class:`NoMessage` when no such message was sent by then.
        """
        self.run_until(at or self.now)
        message = self._message_of(step, profile)
        name = REACTIONS[reaction]
        defaults: dict[str, Any] = {}
        if name == "message_opened":
            defaults = {"machine": False}
        elif name == "message_clicked":
            found = _FIRST_URL.search(" ".join(message.content.values()))
            defaults = {"url": found.group()} if found else {}
        elif name == "message_bounced":
            defaults = {"bounce": "hard", "address": message.to, "reason": "a simulated bounce"}
        elif name == "message_complained":
            defaults = {"address": message.to}
        elif name == "message_failed":
            defaults = {"reason": "a simulated failure"}
        elif name in ("unsubscribed", "resubscribed"):
            defaults = {"source": "link"}
        # A provider reports a message's acceptance once, as the dispatcher records it.
        once = f"sent:{message.key}" if name == "message_sent" else None
        event = reaction_event(name, message, self.now, message_id=once, **(defaults | extra))
        return self.accept([event])[0]

    def accept(self, events: Iterable[Event], at: datetime | None = None) -> list[Event | None]:
        """Events recorded from outside the Segment API (a click, an open, a provider's
        callback), at ``at`` (default: now), in one batch, as the server's
        ``runtime.accept`` takes them: each as taken, or None if it came before."""
        self.run_until(at or self.now)
        results, changes = self._run(events)
        accepted = _taken(changes.events)
        return [next(accepted) if result == "accepted" else None for result in results]

    def _message_of(self, step: str, profile: str | None) -> SendMessage:
        journey, _, step_id = step.rpartition(".")
        latest: dict[str, SendMessage] = {}
        for message in self.messages:
            mine = profile is None or message.profile_id == profile
            if message.step == step_id and journey in ("", message.journey) and mine:
                latest[message.profile_id] = message
        whom = f" to profile {profile}" if profile is not None else ""
        if not latest:
            raise NoMessage(f"no message from step {step} was sent{whom} by then")
        if len(latest) > 1:
            names = ", ".join(sorted(latest))
            raise NoMessage(
                f"messages from step {step} went to several profiles ({names}): "
                "name one with 'profile'"
            )
        return next(iter(latest.values()))

    # time

    def run_until(self, until: datetime) -> None:
        """Fire every timer due up to ``until``, in time order, then set the clock to it.

        Timers due at the same moment fire together, as one batch of the server's would.
        """
        timers, instances = self._timers, self._instances
        while True:
            self._runs_until(min(until, timers[0][0]) if timers else until)
            if not (timers and timers[0][0] <= until):
                break
            at = timers[0][0]
            due: dict[str, TimerDue] = {}
            while timers and timers[0][0] == at:
                instance_id = heapq.heappop(timers)[2]
                if instance_id.startswith("\x00"):  # a profile's clock
                    profile = self._states.get(instance_id[1:])
                    if profile is not None and profile.profile.wake_at == at:
                        due[instance_id] = TimerDue(instance_id, profile.profile.id)
                    continue
                instance = instances[instance_id]
                # Not if the instance moved on since this timer was set.
                if instance.wake_at == at and instance.status == "waiting":
                    due[instance_id] = TimerDue(instance_id, instance.profile_id)
            if due:
                self.now = max(self.now, at)
                self._run(due.values())
        self.now = max(self.now, until)

    def _next_run(self, journey: str, after: datetime) -> None:
        schedule = self.workspace.journeys[journey].entry_schedule
        assert schedule is not None
        moment = next_run(schedule, after, self.workspace.settings.timezone)
        if moment is not None:
            heapq.heappush(self._schedules, (moment, journey))

    def _runs_until(self, until: datetime) -> None:
        """Make the scheduled runs due up to ``until``, as the scheduler would: each enters
        the members at its moment, in profile id order."""
        while self._schedules and self._schedules[0][0] <= until:
            # A run that enters nobody runs no batch; a schedule of every minute still
            # makes millions of them over a long test, so each one checks the time too.
            if self.check is not None:
                self.check()
            at, name = heapq.heappop(self._schedules)
            self.now = max(self.now, at)
            journey = self.workspace.journeys[name]
            segment = journey.entry_segment
            run = run_id(name, at)
            events = [
                entry_event(name, run, profile_id, self.now)
                for profile_id, state in sorted(self._states.items())
                if not state.new and (segment is None or segment in state.profile.segments)
            ]
            self._runs.append(ScheduledRun(run, name, at, tuple(e.profile_id for e in events)))
            if events:
                self._run(events)
            self._next_run(name, at)

    def run(self, limit: timedelta | None = None) -> None:
        """Fire timers until none is left, or until ``limit`` after the start."""
        if limit is not None:
            self.run_until(self.start + limit)
            return
        while self._timers:
            self.run_until(self._timers[0][0])

    @property
    def next_wake(self) -> datetime | None:
        return self._timers[0][0] if self._timers else None

    # operating journeys

    def pause(self, journey: str) -> None:
        """No new entries; running instances hold before their next step."""
        self.engine.stopped.discard(journey)
        self.engine.paused.add(journey)

    def resume(self, journey: str) -> None:
        """Take entries again, and run every held instance on from where it held."""
        self.engine.paused.discard(journey)
        self.engine.stopped.discard(journey)
        held = self._running_in(journey)
        self._run(
            [Operate(i.id, i.profile_id, "resume", i.seq) for i in held if i.waiting == "paused"]
        )

    def stop(self, journey: str) -> None:
        """End every running instance of the journey as ``stopped``; take no new entries."""
        self.engine.paused.discard(journey)
        self.engine.stopped.add(journey)
        self._run([Operate(i.id, i.profile_id, "stop") for i in self._running_in(journey)])

    def _running_in(self, journey: str) -> list[Instance]:
        return [i for s in self._states.values() for i in s.running if i.journey == journey]

    # state, as the server would show it

    @property
    def profiles(self) -> dict[str, Profile]:
        """Every profile that an event made, by id."""
        return {pid: s.profile for pid, s in self._states.items() if not s.new}

    def profile(self, profile_id: str) -> Profile:
        return self._states[profile_id].profile

    @property
    def accounts(self) -> dict[str, Account]:
        """Every account a group call named, by id, with its traits."""
        return self._known.accounts

    @property
    def instances(self) -> dict[str, Instance]:
        """Every instance, running and ended, by id."""
        self._move_merged()
        return self._instances

    @property
    def records(self) -> list[StepRecord]:
        self._move_merged()
        return self._records

    @property
    def trace_lines(self) -> int:
        """How many step records the run has made so far."""
        return len(self._records)

    @property
    def profile_count(self) -> int:
        """How many profiles the run has (made, or about to be by the batch running)."""
        return len(self._states)

    @property
    def events(self) -> list[Event]:
        """Every event taken, in order, as the store keeps them in profiles' histories
        (with what the core recorded beside the calls, such as account_updated)."""
        self._move_merged()
        return self._events

    @property
    def messages(self) -> list[SendMessage]:
        self._move_merged()
        return self._messages

    @property
    def runs(self) -> list[ScheduledRun]:
        """Every scheduled run made, in time order."""
        return self._runs

    @property
    def tallies(self) -> list[Tally]:
        """Every report counter increment, in order (a store adds them up)."""
        return self._tallies

    @property
    def calls(self) -> list[CallAction]:
        self._move_merged()
        return self._calls

    # the core, and keeping what it changed

    def _run(self, triggers: Iterable[Trigger]) -> tuple[list[str], Changes]:
        if self.check is not None:
            self.check()
        results, changes = apply(self.engine, self._states, triggers, self.now, self._known)
        if changes.merges or changes.identities or changes.forgotten:
            self._index(changes)
        timers = self._timers
        for instance in changes.instances.values():
            self._instances[instance.id] = instance
            if instance.wake_at is not None:
                self._sequence += 1
                heapq.heappush(timers, (instance.wake_at, self._sequence, instance.id))
        for profile in changes.profiles.values():
            if profile.wake_at is not None:  # the profile's clock (segments over time)
                self._sequence += 1
                heapq.heappush(timers, (profile.wake_at, self._sequence, clock_id(profile.id)))
        self._records.extend(changes.records)
        self._events.extend(changes.events)
        self._tallies.extend(changes.tallies)
        if changes.effects:
            self._hand_over(changes.effects)
        return results, changes

    def _hand_over(self, effects: list[SendMessage | CallAction]) -> None:
        """Deliver at once: a step listed in ``fail`` fails for good, any other succeeds.
        The engine learns what the dispatcher would tell it: each message's outcome as an
        event (``message_sent`` or ``message_failed``), then a failure, or the delivery of
        an effect whose instance waits for it."""
        told: list[Trigger] = []
        outcomes: list[Trigger] = []
        for effect in effects:
            if isinstance(effect, SendMessage):
                self._messages.append(effect)
            else:
                self._calls.append(effect)
            failed = effect.step in self.fail or f"{effect.journey}.{effect.step}" in self.fail
            detail = f"delivery failed ({effect.key})" if failed else ""
            outcomes.extend(delivery_events(effect, not failed, detail, self.now))
            if failed:
                told.append(DeliveryResult(effect, False, detail))
            elif effect.awaited:
                told.append(DeliveryResult(effect, True))
        if outcomes or told:
            self._run([*outcomes, *told])

    def _index(self, changes: Changes) -> None:
        """Keep the identities as the store does: merged ones move, forgotten ones go, new
        ones come (in that order)."""
        identities, owned = self._identities, self._owned
        for anonymous, known in changes.merges:
            for identity in owned.pop(anonymous, ()):
                identities[identity] = known
                owned.setdefault(known, set()).add(identity)
            self._merged[anonymous] = known
        for kind, value, profile_id in changes.forgotten:
            if identities.get((kind, value)) == profile_id:
                del identities[(kind, value)]
                owned[profile_id].discard((kind, value))
        for identity, profile_id in changes.identities.items():
            before = identities.get(identity)
            if before != profile_id:
                if before is not None:
                    owned[before].discard(identity)
                identities[identity] = profile_id
                owned.setdefault(profile_id, set()).add(identity)

    def _move_merged(self) -> None:
        """Give the rows of each merged anonymous profile to the known one, as the store
        does in the commit of the merge (here only once they are read)."""
        if not self._merged:
            return
        merged = self._merged
        owner = {a: _last(merged, a) for a in merged}
        instances = self._instances
        for instance_id, instance in instances.items():
            if instance.profile_id in owner:
                instances[instance_id] = _moved(instance, owner)
        _move_rows(self._records, owner)
        _move_rows(self._events, owner)
        _move_rows(self._messages, owner)
        _move_rows(self._calls, owner)
        merged.clear()


def _last(merged: Mapping[str, str], profile_id: str) -> str:
    """The profile that ``profile_id`` was merged into, at the end of the chain."""
    seen = {profile_id}
    while profile_id in merged and merged[profile_id] not in seen:
        profile_id = merged[profile_id]
        seen.add(profile_id)
    return profile_id


_Row = TypeVar("_Row", Instance, StepRecord, Event, SendMessage, CallAction)


def _moved(row: _Row, owner: Mapping[str, str]) -> _Row:
    return msgspec.structs.replace(row, profile_id=owner[row.profile_id])


def _move_rows(rows: list[_Row], owner: Mapping[str, str]) -> None:
    rows[:] = [_moved(r, owner) if r.profile_id in owner else r for r in rows]


def _taken(events: list[Event]) -> Iterator[Event]:
    """The events a batch took, without those journeyman recorded itself (segment
    changes, a group call's account_updated): one for each trigger accepted, in order."""
    return (event for event in events if not recorded_by_journeyman(event))


def _event_name(body: Mapping[str, Any]) -> str:
    return str(body.get("event")) if isinstance(body, Mapping) else "None"


def _named(body: Mapping[str, Any]) -> str:
    """The profile a call names, for reporting a rejected call."""
    for key in ("userId", "anonymousId"):
        value = body.get(key) if isinstance(body, Mapping) else None
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return ""
