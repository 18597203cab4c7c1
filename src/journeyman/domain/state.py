"""What the engine reads and writes: events, profiles, instances, effects and records.

These are msgspec structs so that the runtime can store them compactly; an instance is
kept for every waiting profile, so it carries only what the next step needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = [
    "ACCOUNT_UPDATED",
    "Account",
    "CallAction",
    "Effect",
    "Entries",
    "Event",
    "EventHistory",
    "GoalWindow",
    "Instance",
    "Profile",
    "SendMessage",
    "StepRecord",
    "Suppression",
    "Tally",
]


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A `track` (something the profile did), `page` or `screen` (a page or screen it
    viewed), an `identify` (new traits), an `alias` (two ids of one person) or a `group`
    (the profile belongs to the account ``group_id``; its properties are the account's
    traits)."""

    name: str
    profile_id: str
    timestamp: datetime
    properties: dict[str, Any] = {}
    type: str = "track"
    message_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    # What is kept of the call's context: ip, userAgent, timezone, locale, traits.
    context: dict[str, Any] = {}
    group_id: str | None = None  # a group call's account (and account_updated's)

    def view(self) -> dict[str, Any]:
        """The event as expressions and templates read it: properties plus the envelope."""
        view = dict(self.properties)
        view.update(
            properties=self.properties,
            name=self.name,
            timestamp=self.timestamp,
            messageId=self.message_id,
            userId=self.user_id,
            anonymousId=self.anonymous_id,
            context=self.context,
        )
        if self.group_id is not None:
            view["groupId"] = self.group_id
        return view


class Entries(msgspec.Struct, array_like=True):
    """How often, and when last, a profile entered one journey."""

    last: datetime
    count: int


class Suppression(msgspec.Struct, frozen=True, kw_only=True):
    """Why an address gets no more messages (see journeyman.domain.consent)."""

    reason: str  # hard bounce, complaint, or an operator's words
    source: str  # who said so: bounce, smtp, operator, ...
    at: datetime
    by: str = ""  # the operator who put it there (none for a bounce); kept before: ""


class EventHistory(msgspec.Struct, kw_only=True):
    """What a profile keeps of one event's history, for the history functions of
    expressions (see journeyman.domain.history): only what the workspace's expressions
    read, and days only as far back as their longest window."""

    first: datetime
    last: datetime
    properties: dict[str, Any] | None = None  # the last event's, when last(...) reads them
    # [UTC day ordinal, count, {property: sum}], oldest first, inside the longest window
    days: list[tuple[int, int, dict[str, float]]] = []


# The event a group call records on its profile when it changes its account's traits.
ACCOUNT_UPDATED = "account_updated"


def differs(traits: Mapping[str, Any], key: str, value: Any) -> bool:
    """Whether setting ``key`` to ``value`` (None: taking it out) changes ``traits``
    (``True`` is not ``1``)."""
    if value is None:
        return key in traits
    old = traits.get(key)
    return old is None or type(old) is not type(value) or old != value


class Account(msgspec.Struct, kw_only=True):
    """An account (a company, a team: Segment's group) that profiles belong to, with the
    traits its members share. A `group` call sets them, key by key."""

    id: str
    traits: dict[str, Any] = {}

    def view(self) -> dict[str, Any]:
        """The account as expressions and templates read it: ``account.plan``, ``account.id``."""
        view = dict(self.traits)
        view["id"] = self.id
        return view

    def patched(self, changes: Mapping[str, Any]) -> Account:
        """The account with ``changes`` made to its traits, key by key; None removes one."""
        traits = {**self.traits, **changes}
        return Account(id=self.id, traits={k: v for k, v in traits.items() if v is not None})


class GoalWindow(msgspec.Struct, kw_only=True):
    """One instance's goals, open from its entry until the longest ``within`` has passed,
    whether the instance still runs or has ended (see journeyman.domain.goals). Kept on
    the profile, so that an event after the end still finds it."""

    instance_id: str
    journey: str
    version: int
    entered_at: datetime
    until: datetime
    entry: Event  # what a goal's `when` and `value` read as `entry`
    arm: str | None = None  # the split arm the instance took last, if any
    last_message: str | None = None  # the send step that last sent the profile a message
    reached: list[str] = []  # the goals reached already: each counts once


#: The wake time of a segment over local time whose answer cannot change with time alone
#: for now (an anniversary of a date the profile does not have): evaluated, never due.
NEVER = datetime.max.replace(tzinfo=UTC)


class Profile(msgspec.Struct, kw_only=True):
    id: str
    traits: dict[str, Any] = {}
    # The account the profile belongs to: the groupId of its latest group call.
    account: str | None = None
    entries: dict[str, Entries] = {}  # journey name -> entries
    sends: list[tuple[datetime, str]] = []  # (when, channel) inside the longest cap window
    # Addresses (trimmed, lower case) no message may go to, and why.
    suppressed: dict[str, Suppression] = {}
    # event name -> what the history functions need of it (journeyman.domain.history)
    history: dict[str, EventHistory] = {}
    segments: dict[str, datetime] = {}  # segment name -> since when the profile is in it
    # The goal windows still open, oldest first (at most goals.MAX_WINDOWS).
    goals: list[GoalWindow] = []
    # segment name -> the earliest time its answer can change with no event (the profile's
    # clock: see journeyman.domain.segments.next_change); the earliest is a timer
    wakes: dict[str, datetime] = {}
    # journey name -> the instant of the profile's next local moment of the journey's
    # `timezone: profile` schedule (journeyman.domain.schedules.wind_local): also a wake
    schedules: dict[str, datetime] = {}

    @property
    def wake_at(self) -> datetime | None:
        """When the profile's segments must be evaluated again, or a schedule in its own
        local time enters it, with no event."""
        # NEVER is the latest time there is: the earliest wake is NEVER only if all are.
        wake = min(self.wakes.values()) if self.wakes else None
        if wake == NEVER:
            wake = None
        if self.schedules:
            scheduled = min(self.schedules.values())
            return scheduled if wake is None or scheduled < wake else wake
        return wake

    def view(self) -> dict[str, Any]:
        view = dict(self.traits)
        view["id"] = self.id
        return view


class Instance(msgspec.Struct, kw_only=True):
    """One profile's pass through one journey version."""

    id: str
    journey: str
    version: int
    profile_id: str
    entered_at: datetime
    entry: Event
    step: str
    status: str = "active"  # active (only inside the engine), waiting, ended
    # What it waits for: timer (a wait), event (a wait_for), defer (quiet hours),
    # delivery (a send or call with on_error, until its result is known), or paused (its
    # journey is paused; it runs its step when the journey resumes).
    waiting: str | None = None
    wake_at: datetime | None = None
    event: Event | None = None  # the last event that moved it on, if not the entry event
    seq: int = 0  # steps run so far; part of every idempotency key
    end_state: str | None = None
    ended_at: datetime | None = None
    arm: str | None = None  # the split arm it took last (its name), if it went through one
    holdout: bool = False  # that arm is a holdout: its sends are skipped


class SendMessage(msgspec.Struct, frozen=True, kw_only=True, tag="send"):
    key: str  # idempotency key: the same for every retry of this send
    instance_id: str
    journey: str
    step: str
    profile_id: str
    channel: str
    template: str
    to: str | None
    content: dict[str, str]
    at: datetime
    awaited: bool = False  # the instance waits for the outcome (the step has on_error)
    version: int = 0  # the journey version the instance runs (0: sent before it was kept)
    # Headers added at send time (an email's List-Unsubscribe, say), never by the engine.
    headers: dict[str, str] = {}
    topic: str | None = None  # the template's subscription topic
    transactional: bool = False  # the template's: no List-Unsubscribe, no topic applies
    arm: str = ""  # the instance's split arm or experiment variant: its reactions count there


class CallAction(msgspec.Struct, frozen=True, kw_only=True, tag="call"):
    key: str
    instance_id: str
    journey: str
    step: str
    profile_id: str
    action: str
    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    timeout: float  # seconds
    at: datetime
    awaited: bool = False


Effect = SendMessage | CallAction


class Tally(msgspec.Struct, frozen=True, array_like=True):
    """One increment of a report counter (see journeyman.domain.goals): ``n`` more of
    ``metric``, and ``total`` added to its sum, for a journey version, an arm ("" for
    none) and a goal ("" for the journey itself). Stores add them up in the commit that
    keeps the instance."""

    journey: str
    version: int
    arm: str
    goal: str
    metric: str
    n: int = 1
    total: float = 0.0
    # A key that counts once: the first commit with it adds this counter; any later tally
    # of the same counter with the same key (an email opened again) adds nothing.
    once: str = ""


class StepRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One line of an instance's trace: what happened at a step, when, and why."""

    at: datetime
    profile_id: str
    journey: str
    instance_id: str | None  # None when no instance was created (a refused entry)
    step: str | None
    outcome: str
    detail: str = ""
