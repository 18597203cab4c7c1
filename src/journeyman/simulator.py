"""Journeys on a virtual clock, in memory: the engine with nothing around it but time.

:class:`Simulator` keeps profiles, instances and timers in dicts and a heap, feeds events
and due timers to the same :class:`~journeyman.domain.engine.Engine` the server uses, and
keeps every message, call and step record. A 30-day journey runs in milliseconds and the
same inputs always give the same results.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from journeyman.domain.engine import Engine, Outcome
from journeyman.domain.ingest import (
    InvalidEvent,
    identity_of,
    normal_email,
    read_identify,
    read_track,
)
from journeyman.domain.merge import merge_profiles
from journeyman.domain.model import Workspace
from journeyman.domain.state import (
    CallAction,
    Event,
    Instance,
    Profile,
    SendMessage,
    StepRecord,
)

__all__ = ["Rejection", "Simulator"]


@dataclass(frozen=True, slots=True)
class Rejection:
    at: datetime
    event: str
    profile: str  # the userId or anonymousId the call named, if any
    error: InvalidEvent


class Simulator:
    """An in-memory, virtual-clock journey runtime.

    ``fail`` names steps (``step`` or ``journey.step``) whose messages and calls fail for
    good the moment they are handed over, to exercise ``on_error`` paths.
    """

    def __init__(self, workspace: Workspace, start: datetime, fail: Collection[str] = ()) -> None:
        self.workspace = workspace
        self.engine = Engine(workspace)
        self.start = start
        self.now = start
        self.fail = frozenset(fail)
        self.profiles: dict[str, Profile] = {}
        self.instances: dict[str, Instance] = {}
        self.records: list[StepRecord] = []
        self.messages: list[SendMessage] = []
        self.calls: list[CallAction] = []
        self.rejected: list[Rejection] = []
        self._active: dict[str, dict[str, Instance]] = {}  # profile id -> waiting instances
        self._timers: list[tuple[datetime, int, str]] = []
        self._sequence = 0
        self._emails: dict[str, str] = {}  # email trait -> profile id
        self._aliases: dict[str, str] = {}  # anonymous id -> the profile it signed in as

    # input

    def track(self, body: Mapping[str, Any], at: datetime | None = None) -> Event | None:
        """A `track` call at ``at`` (default: now); None if it was rejected."""
        self.run_until(at or self.now)
        body = {"timestamp": self.now.isoformat(), **body}
        try:
            event = read_track(body, self.workspace.events, self.now)
        except InvalidEvent as error:
            self.rejected.append(Rejection(self.now, str(body.get("event")), _named(body), error))
            return None
        event = self._resolve(event)
        self._deliver(event)
        return event

    def identify(self, body: Mapping[str, Any], at: datetime | None = None) -> Event | None:
        self.run_until(at or self.now)
        try:
            event = read_identify({"timestamp": self.now.isoformat(), **body}, self.now)
        except InvalidEvent as error:
            self.rejected.append(Rejection(self.now, "identify", _named(body), error))
            return None
        if event.user_id and event.anonymous_id and event.user_id != event.anonymous_id:
            self._merge(event.anonymous_id, event.user_id)
        self._deliver(event)
        return event

    def _merge(self, anonymous_id: str, known_id: str) -> None:
        """The anonymous visitor signed in: fold their profile into the known one."""
        self._aliases[anonymous_id] = known_id
        anonymous = self.profiles.pop(anonymous_id, None)
        if anonymous is None:
            return
        known = self.profile(known_id)
        merged = merge_profiles(
            known, self._running(known_id), anonymous, self._running(anonymous_id), self.now
        )
        self.profiles[known_id] = merged.profile
        self._active.pop(anonymous_id, None)
        for instance in merged.changed:
            self._store(instance)
        self.records.extend(merged.records)

    def _resolve(self, event: Event) -> Event:
        kind, value = identity_of(event, self.workspace.events.get(event.name))
        if kind != "email":
            owner = self._aliases.get(event.profile_id) if event.user_id is None else None
            return msgspec.structs.replace(event, profile_id=owner) if owner else event
        profile_id = self._emails.get(value, value)
        if profile_id not in self.profiles:
            self.profiles[profile_id] = Profile(id=profile_id, traits={"email": value})
            self._emails[value] = profile_id
        return msgspec.structs.replace(event, profile_id=profile_id)

    def _deliver(self, event: Event) -> None:
        profile = self.profile(event.profile_id)
        self._apply(self.engine.on_event(profile, self._running(profile.id), event, self.now))

    # time

    def run_until(self, until: datetime) -> None:
        """Fire every timer due up to ``until``, in time order, then set the clock to it."""
        while self._timers and self._timers[0][0] <= until:
            at, _, instance_id = heapq.heappop(self._timers)
            instance = self.instances[instance_id]
            if instance.status != "waiting" or instance.wake_at != at:
                continue  # the instance moved on since this timer was set
            self.now = max(self.now, at)
            profile = self.profile(instance.profile_id)
            running = self._running(profile.id)
            self._apply(self.engine.on_timer(profile, running, instance, self.now))
        self.now = max(self.now, until)

    def run(self, limit: timedelta | None = None) -> None:
        """Fire timers until none is left, or until ``limit`` after the start."""
        if limit is not None:
            self.run_until(self.start + limit)
            return
        while self._timers:
            self.run_until(self._timers[0][0])

    # operating journeys

    def pause(self, journey: str) -> None:
        """No new entries; running instances hold before their next step."""
        self.engine.stopped.discard(journey)
        self.engine.paused.add(journey)

    def resume(self, journey: str) -> None:
        """Take entries again, and run every held instance on from where it held."""
        self.engine.paused.discard(journey)
        self.engine.stopped.discard(journey)
        for instance in self._held(journey, "paused"):
            profile = self.profile(instance.profile_id)
            running = self._running(profile.id)
            self._apply(self.engine.on_resume(profile, running, instance, self.now))

    def stop(self, journey: str) -> None:
        """End every running instance of the journey as ``stopped``; take no new entries."""
        self.engine.paused.discard(journey)
        self.engine.stopped.add(journey)
        for instance in self._held(journey, None):
            self._apply(self.engine.on_stop(self.profile(instance.profile_id), instance, self.now))

    def _held(self, journey: str, waiting: str | None) -> list[Instance]:
        return [
            i
            for running in self._active.values()
            for i in running.values()
            if i.journey == journey and (waiting is None or i.waiting == waiting)
        ]

    @property
    def next_wake(self) -> datetime | None:
        return self._timers[0][0] if self._timers else None

    # state

    def profile(self, profile_id: str) -> Profile:
        found = self.profiles.get(profile_id)
        if found is None:
            found = self.profiles[profile_id] = Profile(id=profile_id)
        return found

    def _running(self, profile_id: str) -> list[Instance]:
        return list(self._active.get(profile_id, {}).values())

    def _apply(self, outcome: Outcome) -> None:
        if outcome.profile_changed:
            self._index_email(outcome.profile)
            self.profiles[outcome.profile.id] = outcome.profile
        for instance in outcome.instances.values():
            self._store(instance)
        self.records.extend(outcome.records)
        for effect in outcome.effects:
            if isinstance(effect, SendMessage):
                self.messages.append(effect)
            else:
                self.calls.append(effect)
        for effect in outcome.effects:
            self._hand_over(effect)

    def _hand_over(self, effect: SendMessage | CallAction) -> None:
        """Deliver at once: a step listed in ``fail`` fails for good, any other succeeds."""
        instance = self.instances[effect.instance_id]
        profile = self.profile(effect.profile_id)
        running = self._running(profile.id)
        if effect.step in self.fail or f"{effect.journey}.{effect.step}" in self.fail:
            reason = f"delivery failed ({effect.key})"
            outcome = self.engine.on_failure(
                profile, running, instance, effect.step, reason, self.now
            )
        elif instance.waiting == "delivery":
            outcome = self.engine.on_delivered(profile, running, instance, effect.step, self.now)
        else:
            return
        self._apply(outcome)

    def _index_email(self, profile: Profile) -> None:
        """Point the profile's email at it, and its previous email no longer."""
        before = self.profiles.get(profile.id)
        old = _email(before.traits.get("email")) if before is not None else None
        new = _email(profile.traits.get("email"))
        if old != new and isinstance(old, str) and self._emails.get(old) == profile.id:
            del self._emails[old]
        if isinstance(new, str):
            self._emails[new] = profile.id

    def _store(self, instance: Instance) -> None:
        self.instances[instance.id] = instance
        active = self._active.setdefault(instance.profile_id, {})
        if instance.status == "ended":
            active.pop(instance.id, None)
            return
        active[instance.id] = instance
        if instance.wake_at is not None:
            self._sequence += 1
            heapq.heappush(self._timers, (instance.wake_at, self._sequence, instance.id))


def _named(body: Mapping[str, Any]) -> str:
    """The profile a call names, for reporting a rejected call."""
    for key in ("userId", "anonymousId"):
        value = body.get(key) if isinstance(body, Mapping) else None
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return ""


def _email(value: Any) -> str | None:
    return normal_email(value) if isinstance(value, str) else None
