"""The workspace as the engine sees it: definitions after parsing and compilation.

Every value here is immutable and already compiled (expressions, templates, JSON Schema
validators, time zones), so nothing is parsed again on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from journeyman.domain.actions import Allow
from journeyman.domain.expressions import Expression
from journeyman.domain.history import needs_of
from journeyman.domain.schedules import SCHEDULED_EVENT, Schedule
from journeyman.domain.templates import Template

__all__ = [
    "CHANNELS",
    "DESTINATION_TRAITS",
    "IDENTITIES",
    "Action",
    "Branch",
    "BrowserPolicy",
    "Call",
    "Cap",
    "End",
    "EventDefinition",
    "Exit",
    "Expectation",
    "Experiment",
    "Goal",
    "Journey",
    "Jump",
    "MessageTemplate",
    "QuietHours",
    "Reentry",
    "Rules",
    "Segment",
    "Send",
    "Settings",
    "Split",
    "Step",
    "Subscription",
    "TestCase",
    "TestEvent",
    "UpdateProfile",
    "Variant",
    "Wait",
    "WaitFor",
    "WinnerPolicy",
    "Workspace",
]

CHANNELS = ("email", "sms", "push", "webhook")
IDENTITIES = ("userId", "anonymousId", "email")
# The trait that holds a profile's address on each channel; webhooks need none.
DESTINATION_TRAITS: Mapping[str, str | None] = {
    "email": "email",
    "sms": "phone",
    "push": "pushToken",
    "webhook": None,
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a definition was written."""

    file: str
    line: int


@dataclass(frozen=True, slots=True)
class EventDefinition:
    name: str
    identity: str
    schema: Mapping[str, Any]
    validator: Any  # a jsonschema validator: .iter_errors(properties)
    origin: Origin
    # True only for properties the schema certainly accepts; None: ask the validator
    quick: Callable[[Any], bool] | None = None
    builtin: bool = False  # a reaction event, defined by journeyman rather than a document
    # ("page", name) or ("screen", name): the page or screen call this event stands for
    view: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    name: str
    channel: str
    fields: Mapping[str, Template]  # subject, html, text (email); body (sms, push, webhook)
    to: Template | None
    origin: Origin
    # Email opens and clicks are tracked unless the template says `tracking: false` or is
    # `transactional: true` (a receipt, a password reset), which tracks nothing by default.
    tracking: bool = True
    topic: str | None = None  # the subscription topic it belongs to
    transactional: bool = False  # a receipt, a password reset: no topic, no unsubscribe


@dataclass(frozen=True, slots=True)
class Subscription:
    """A topic profiles subscribe to or unsubscribe from (``kind: subscription``)."""

    name: str
    channel: str
    description: str
    default: Literal["opt_in", "opt_out"]
    origin: Origin


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    method: str
    url: Template
    headers: Mapping[str, Template]
    body: Template | None
    timeout: timedelta
    origin: Origin
    allow: Allow = field(default_factory=Allow)  # non-public addresses it may call


@dataclass(frozen=True, slots=True)
class Cap:
    channels: frozenset[str]
    max: int
    per: timedelta


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    channels: frozenset[str]
    action: Literal["defer", "drop"]


@dataclass(frozen=True, slots=True)
class Rules:
    caps: tuple[Cap, ...] = ()
    quiet_hours: tuple[QuietHours, ...] = ()
    # How far back a profile's sends can still count against a cap; kept, as every send
    # asks for it.
    longest_cap: timedelta = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        longest = max((cap.per for cap in self.caps), default=timedelta(0))
        object.__setattr__(self, "longest_cap", longest)


@dataclass(frozen=True, slots=True)
class BrowserPolicy:
    """What a call sent with the client key (from a web page) may do (``browser:`` in the
    settings document): the traits it may set, whether its ``userId`` is believed, and how
    many calls a second one client address may send (a token bucket of ``burst``)."""

    traits: frozenset[str] = frozenset()
    trusted_user_id: bool = False
    rate: float = 10.0
    burst: int = 50


@dataclass(frozen=True, slots=True)
class Settings:
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    traits: frozenset[str] = frozenset()
    storage: str | None = None  # a storage URL; the command line and environment come first
    mode: str = "development"  # production refuses channels that fall back to a file
    browser: BrowserPolicy = field(default_factory=BrowserPolicy)


# Steps. Every step knows the step that follows it (`next`), already resolved: an explicit
# `next:`, else the step written below it, else None, which ends the instance `completed`.


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    next: str | None
    origin: Origin

    kind = "step"

    def targets(self) -> tuple[str, ...]:
        """Every step this one can lead to."""
        return (self.next,) if self.next else ()


@dataclass(frozen=True, slots=True)
class Wait(Step):
    duration: timedelta | None = None
    until: Expression | None = None
    until_local: time | None = None
    days: frozenset[int] | None = None

    kind = "wait"


@dataclass(frozen=True, slots=True)
class WaitFor(Step):
    event: str = ""
    when: Expression | None = None
    timeout: timedelta | None = None
    on_event: str | None = None
    on_timeout: str | None = None
    # The short form `reaction: opened, to: welcome`: `event` is then the reaction's event,
    # and only a reaction to this instance's message from the send step `to` counts.
    reaction: str | None = None
    to: str | None = None
    url: str | None = None  # for clicked: a pattern the clicked URL must match (* is any text)
    machine: bool = True  # for opened: whether opens by a mail client's prefetcher count

    kind = "wait_for"

    def targets(self) -> tuple[str, ...]:
        found = (self.on_event or self.next, self.on_timeout or self.next)
        return tuple(dict.fromkeys(t for t in found if t))

    @property
    def awaited(self) -> str:
        """What it waits for, as the trace says it: an event, or `opened of welcome`."""
        if self.reaction is None:
            return self.event
        url = f" on {self.url}" if self.url is not None else ""
        human = "" if self.machine else " by a person"
        return f"{self.reaction} of {self.to}{url}{human}"


@dataclass(frozen=True, slots=True)
class Branch(Step):
    cases: tuple[tuple[Expression, str], ...] = ()
    otherwise: str = ""

    kind = "branch"

    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*(goto for _, goto in self.cases), self.otherwise]))


@dataclass(frozen=True, slots=True)
class Split(Step):
    arms: tuple[tuple[float, str], ...] = ()
    # Each arm's name, in the order of ``arms`` (its ``name:``, else the step it goes to),
    # and the names of the arms marked ``holdout: true``, which get no messages.
    names: tuple[str, ...] = ()
    holdouts: frozenset[str] = frozenset()

    kind = "split"

    def arm_name(self, index: int) -> str:
        return self.names[index] if index < len(self.names) else self.arms[index][1]

    def targets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(goto for _, goto in self.arms))


@dataclass(frozen=True, slots=True)
class Variant:
    """One variant of an experiment: it sends ``template`` and goes on to the step's
    ``next``, or goes to the step ``goto``."""

    name: str
    weight: float
    template: str | None = None
    goto: str | None = None


@dataclass(frozen=True, slots=True)
class WinnerPolicy:
    """When an experiment picks its winner by itself (see journeyman.domain.experiments):
    once every variant has ``min_per_variant`` profiles and ``min_time`` has passed since
    its first, the variant whose probability to be best on ``metric`` (a goal's name; ""
    for the journey's primary goal) reaches ``confidence``."""

    metric: str = ""
    min_per_variant: int = 100
    min_time: timedelta = timedelta(0)
    confidence: float = 0.95


@dataclass(frozen=True, slots=True)
class Experiment(Step):
    variants: tuple[Variant, ...] = ()
    winner: WinnerPolicy | None = None

    kind = "experiment"

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def targets(self) -> tuple[str, ...]:
        found = [v.goto if v.goto else self.next for v in self.variants]
        return tuple(dict.fromkeys(t for t in found if t))


@dataclass(frozen=True, slots=True)
class Send(Step):
    template: str = ""
    on_error: str | None = None

    kind = "send"

    def targets(self) -> tuple[str, ...]:
        return tuple(t for t in (self.next, self.on_error) if t)


@dataclass(frozen=True, slots=True)
class Call(Step):
    action: str = ""
    on_error: str | None = None

    kind = "call"

    def targets(self) -> tuple[str, ...]:
        return tuple(t for t in (self.next, self.on_error) if t)


@dataclass(frozen=True, slots=True)
class UpdateProfile(Step):
    set: Mapping[str, Any] = field(default_factory=dict)  # a value, or an Expression
    unset: tuple[str, ...] = ()

    kind = "update_profile"


@dataclass(frozen=True, slots=True)
class Jump(Step):
    journey: str = ""

    kind = "jump"


@dataclass(frozen=True, slots=True)
class End(Step):
    state: str = "completed"

    kind = "end"

    def targets(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Reentry:
    mode: Literal["never", "always", "after"]
    period: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class Exit:
    event: str
    when: Expression | None
    segment: str | None = None  # `segment_exited: vip`: only the exit from this segment


@dataclass(frozen=True, slots=True)
class Goal:
    """What the journey is for: ``event`` (matching ``when``) within ``within`` of entry."""

    name: str
    event: str
    within: timedelta
    when: Expression | None = None
    value: Expression | None = None  # what one conversion is worth, such as event.total
    primary: bool = False


@dataclass(frozen=True, slots=True)
class Journey:
    name: str
    entry_event: str
    entry_when: Expression | None
    reentry: Reentry
    timeout: timedelta
    exits: tuple[Exit, ...]
    ignore_caps: bool
    steps: Mapping[str, Step]  # in the order written; the first is where instances start
    origin: Origin
    version: int = 1
    # A hash of the document as written: a publish makes a new version when it changes.
    digest: str = ""
    document: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # The templates of the workspace version this journey version was published with: an
    # instance sends what its version sent, whatever was published since. None: the
    # running workspace's (journey tests, the simulator).
    templates: Mapping[str, MessageTemplate] | None = field(default=None, repr=False, compare=False)
    # `entry: {segment: vip}`: entered on segment_entered of this segment only
    entry_segment: str | None = None
    goals: tuple[Goal, ...] = ()
    exit_on_goal: bool = False  # a goal reached ends a running instance, as goal_reached
    # `holdout: 10%`: the share (0..1) of entries held out of the whole journey, as the
    # arm goals.HOLDOUT_ARM, which gets no messages; 0 for none.
    holdout: float = 0.0
    # `entry: {schedule: ...}`: entered by scheduled runs (journeyman.domain.schedules), of
    # the members of entry_segment, or of every profile with none
    entry_schedule: Schedule | None = None
    # The events that can move a waiting instance: its exits' and its wait_for steps'.
    heard: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        waited = (step.event for step in self.steps.values() if isinstance(step, WaitFor))
        heard = frozenset({*(exit_.event for exit_ in self.exits), *waited})
        object.__setattr__(self, "heard", heard)

    @property
    def first(self) -> str:
        return next(iter(self.steps))

    @property
    def primary_goal(self) -> Goal | None:
        """The goal marked ``primary``, else the first; None without goals."""
        return next((g for g in self.goals if g.primary), self.goals[0] if self.goals else None)

    @property
    def goal_window(self) -> timedelta:
        """How long after entry a goal can still be reached: the longest ``within``."""
        return max((goal.within for goal in self.goals), default=timedelta(0))

    def expressions(self) -> list[Expression]:
        """Every compiled expression of the journey: entry, exits and steps."""
        found = [self.entry_when] + [exit_.when for exit_ in self.exits]
        found += [e for goal in self.goals for e in (goal.when, goal.value)]
        for step in self.steps.values():
            if isinstance(step, Wait):
                found.append(step.until)
            elif isinstance(step, WaitFor):
                found.append(step.when)
            elif isinstance(step, Branch):
                found.extend(when for when, _ in step.cases)
            elif isinstance(step, UpdateProfile):
                found.extend(v for v in step.set.values() if isinstance(v, Expression))
        return [expression for expression in found if expression is not None]


# Segments

# The history functions whose answer changes as time passes, with no event: the moments
# it can change are known (a day boundary), so a timer wakes the profile then.
_CLOCKED = frozenset({"count", "sum", "days_since"})
# Each ordering comparison, its sides swapped: ``k < f(...)`` is ``f(...) > k``.
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True, slots=True)
class Segment:
    """``kind: segment``: the profiles for which ``when`` is true, kept up to date."""

    name: str
    description: str
    when: Expression
    origin: Origin
    # A static list (``list: true``): members are added and removed by the API and
    # ``journeyman import segment``, never by a condition (``when`` is always false).
    listed: bool = False
    # What its answer depends on, so that it is evaluated again only when that changes.
    events: frozenset[str] = field(init=False, repr=False, compare=False)
    segments: frozenset[str] = field(init=False, repr=False, compare=False)
    reads_traits: bool = field(init=False, repr=False, compare=False)
    # Its answer moves with time at moments the profile's clock can know (windows,
    # days_since, local time): evaluated again then (see domain.segments.next_change).
    clocked: bool = field(init=False, repr=False, compare=False)
    # It reads the local time (``now_local``, is_anniversary): its answer can change with
    # no history at all, so a profile it has never been evaluated for is evaluated.
    local: bool = field(init=False, repr=False, compare=False)
    # It reads ``now`` itself, whose moments of change cannot be known: evaluated again on
    # every trigger of the profile.
    timely: bool = field(init=False, repr=False, compare=False)
    # What of the history moves its answer with time, looked up on each of its wake-time
    # computations: (event, days) of each count or sum window; (event, the numbers
    # days_since(event) is compared with, None where it is read otherwise).
    windows: frozenset[tuple[str, int]] = field(init=False, repr=False, compare=False)
    days_since: tuple[tuple[str, frozenset[Any]], ...] = field(
        init=False, repr=False, compare=False
    )
    # Where it is a ``count`` or ``days_since`` compared with a number by <, <=, > or >=:
    # the answer an event it reads cannot change (true for a count at least a number, or a
    # days_since under one; false the other way round); None otherwise. Such an event can
    # only move the moment its answer next changes later (a count only grows with it,
    # days_since only shrinks), so while its answer stays, the wake time it has is still
    # never late and need not be worked out again (at worst it is early: the profile wakes,
    # sees no change, and looks further); with the held answer, it need not be evaluated.
    held: bool | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        calls = self.when.calls
        set_ = object.__setattr__
        set_(self, "events", frozenset(c[1] for c in calls if c[0] != "in_segment"))
        set_(self, "segments", frozenset(c[1] for c in calls if c[0] == "in_segment"))
        local = any(path[0] == "now_local" for path in self.when.paths)
        set_(self, "local", local)
        # Local time is the profile's ``timezone`` trait's: a new zone can move the answer.
        reads_traits = local or any(path[0] == "profile" for path in self.when.paths)
        set_(self, "reads_traits", reads_traits)
        set_(self, "clocked", local or any(c[0] in _CLOCKED for c in calls))
        set_(self, "timely", any(path[0] == "now" for path in self.when.paths))
        set_(self, "windows", frozenset((c[1], c[-1]) for c in calls if c[0] in ("count", "sum")))
        reads = [read for read in self.when.clock if read[0] == "days_since"]
        since = {event: frozenset(r[2] for r in reads if r[1] == event) for _, event, _ in reads}
        set_(self, "days_since", tuple(sorted(since.items())))
        held: bool | None = None
        if (bound := self.when.bound) is not None:
            (function, *_), symbol, _, first = bound
            if function in ("count", "days_since") and symbol in _FLIPPED:
                above = (_FLIPPED[symbol] if first else symbol) in (">", ">=")  # f(...) > k
                held = above if function == "count" else not above
        set_(self, "held", held)


# Journey tests


@dataclass(frozen=True, slots=True)
class TestEvent:
    at: timedelta
    # track, identify, page, screen or alias; or reaction, whose payload is {reaction, step}
    # (opened: welcome) and what the test added: profile, url (clicked), machine (opened),
    # bounce (bounced).
    type: str
    payload: Mapping[str, Any]
    line: int


@dataclass(frozen=True, slots=True)
class Expectation:
    what: str  # sent, ended, never, capped, skipped, deferred, dropped, entered, exited, ...
    target: str  # a step, `journey.step`, an end state, a journey or an event name
    at: timedelta | None
    times: int | None
    filters: Mapping[str, str]  # profile, journey, to, channel, subject, body_contains
    line: int


@dataclass(frozen=True, slots=True)
class TestCase:
    __test__ = False  # not a pytest test class

    name: str
    start: Any  # datetime (UTC)
    until: timedelta | None
    events: tuple[TestEvent, ...]
    expect: tuple[Expectation, ...]
    fail: frozenset[str]  # steps whose deliveries fail permanently
    origin: Origin
    # (profile, experiment step or journey.step, variant): the variants the test forces
    variants: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Workspace:
    """A whole, valid workspace."""

    events: Mapping[str, EventDefinition]
    templates: Mapping[str, MessageTemplate]
    actions: Mapping[str, Action]
    journeys: Mapping[str, Journey]
    rules: Rules
    settings: Settings
    tests: tuple[TestCase, ...] = ()
    channels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> document
    subscriptions: Mapping[str, Subscription] = field(default_factory=dict)  # topics by name
    # The files it was read from, as written (file name -> text): what a publish stores.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # Segments by name, each after the segments its in_segment(...) reads.
    segments: Mapping[str, Segment] = field(default_factory=dict)

    entries: Mapping[str, tuple[Journey, ...]] = field(init=False, repr=False)
    # segment name -> the journeys `entry: {segment: ...}` enters when a profile joins it
    segment_entries: Mapping[str, tuple[Journey, ...]] = field(init=False, repr=False)
    # event name -> what the history functions of every expression need kept of it
    needs: Mapping[str, Any] = field(init=False, repr=False)
    # The segments over local time (Segment.local): evaluated for a profile that has no
    # wake time for them yet.
    local_segments: tuple[str, ...] = field(init=False, repr=False)
    # The journeys a `timezone: profile` schedule enters, each member at their own time
    # (journeyman.domain.schedules.wind_local).
    local_schedules: tuple[Journey, ...] = field(init=False, repr=False)
    # ("page" | "screen", the page's name) -> the event a page or screen call of it is
    views: Mapping[tuple[str, str], EventDefinition] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        views = {d.view: d for d in self.events.values() if d.view is not None}
        object.__setattr__(self, "views", views)
        # Which journeys each event name can start, looked up once per incoming event.
        index: dict[str, list[Journey]] = {}
        by_segment: dict[str, list[Journey]] = {}
        for journey in self.journeys.values():
            if journey.entry_schedule is not None:
                continue  # entered by its runs only (see journeys_entered_on)
            if journey.entry_segment is not None:
                by_segment.setdefault(journey.entry_segment, []).append(journey)
            else:
                index.setdefault(journey.entry_event, []).append(journey)
        object.__setattr__(self, "entries", {k: tuple(v) for k, v in index.items()})
        object.__setattr__(self, "segment_entries", {k: tuple(v) for k, v in by_segment.items()})
        expressions = [e for j in self.journeys.values() for e in j.expressions()]
        expressions += [segment.when for segment in self.segments.values()]
        object.__setattr__(self, "needs", needs_of(c for e in expressions for c in e.calls))
        local_schedules = tuple(
            j for j in self.journeys.values() if j.entry_schedule and j.entry_schedule.per_profile
        )
        object.__setattr__(self, "local_schedules", local_schedules)
        local = tuple(name for name, segment in self.segments.items() if segment.local)
        object.__setattr__(self, "local_segments", local)

    def journeys_entered_by(self, event: str) -> tuple[Journey, ...]:
        return self.entries.get(event, ())

    def journeys_entered_on(self, event: str, properties: Mapping[str, Any]) -> tuple[Journey, ...]:
        """The journeys an event can start: by its name, and for a segment_entered, those
        that enter on that segment."""
        found = self.entries.get(event, ())
        segment = properties.get("segment") if event == "segment_entered" else None
        if isinstance(segment, str):
            found = (*found, *self.segment_entries.get(segment, ()))
        if event == SCHEDULED_EVENT:
            # A `timezone: profile` schedule's members are entered by their own clocks;
            # its run's events only wind them (see Workspace.local_schedules).
            journey = self.journeys.get(str(properties.get("journey")))
            schedule = journey.entry_schedule if journey is not None else None
            if journey is not None and schedule is not None and not schedule.per_profile:
                found = (*found, journey)
        return found

    def scheduled(self) -> list[Journey]:
        """The journeys entered by scheduled runs."""
        return [j for j in self.journeys.values() if j.entry_schedule is not None]
