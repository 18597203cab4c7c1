"""``kind: test`` documents: run each on a virtual clock and check what it expects.

A test replays its events through a :class:`~journeyman.simulator.Simulator` (those at
the same moment together, as one batch), runs the clock until no timer is left (or until
its ``until``), then checks every expectation against what happened: messages, step
records, instance end states, rejected events. The simulator runs the server's core, so a
test passes or fails as the same calls would on the server.

A journey that waits in a loop never runs out of timers, and a schedule makes runs until
the clock stops; with a ``time_limit`` a test stops after that many seconds of wall-clock
time (the simulator checks a :class:`~journeyman.deadline.Deadline` before each batch) and
fails, saying how far its virtual clock got and what was still running. A test also stops
and fails once it has made more trace lines than it may (:data:`TRACE_LIMIT`, or
:data:`TRACE_PER_PROFILE` for each of its profiles when that is more): what it keeps to
check its expectations against stays bounded (a journey that loops makes about 80,000 a
second, some 60 MB).
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from journeyman.deadline import Deadline, TooSlow
from journeyman.domain.goals import GOAL_REACHED
from journeyman.domain.model import Expectation, TestCase, TestEvent, Workspace
from journeyman.domain.templates import guarded
from journeyman.domain.times import format_duration
from journeyman.errors import JourneymanError
from journeyman.simulator import NoMessage, Simulator

__all__ = [
    "TRACE_LIMIT",
    "TRACE_PER_PROFILE",
    "TestResult",
    "TooLong",
    "both",
    "bounded",
    "format_trace",
    "run_test",
    "run_tests",
]

#: The trace lines (step records) a test may make before it stops and fails, or, when that
#: is more, :data:`TRACE_PER_PROFILE` for each profile it has: about 80 MB of what a test
#: keeps per 100,000. A test of 10,000 profiles through a 30-day journey makes 155,000.
TRACE_LIMIT = 100_000
TRACE_PER_PROFILE = 10_000


@dataclass(slots=True)
class TestResult:
    """What one test did. ``stopped`` names the limit that stopped it (``time``: its time
    limit; ``trace``: :data:`TRACE_LIMIT`), or is empty: its expectations were not
    checked, and its failures say how far it got."""

    __test__ = False  # not a pytest test class

    test: TestCase
    simulator: Simulator
    failures: list[str] = field(default_factory=list)
    stopped: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures


def run_tests(workspace: Workspace, time_limit: float | None = None) -> list[TestResult]:
    return [run_test(workspace, test, time_limit=time_limit) for test in workspace.tests]


def run_test(
    workspace: Workspace,
    test: TestCase,
    check: Callable[[], None] | None = None,
    *,
    time_limit: float | None = None,
    trace_limit: int | None = None,
) -> TestResult:
    """Run ``test``; ``check`` is the simulator's (see :class:`Simulator`): what it raises
    stops the test and goes on to the caller.

    With ``time_limit``, in seconds of wall-clock time, a test still running by then stops
    and fails (``stopped``), with the virtual time it reached and the instances still
    running: a journey that waits in a loop, or a schedule, never settles by itself. So
    does a test that has made more than ``trace_limit`` trace lines (:data:`TRACE_LIMIT`
    unless given), or than :data:`TRACE_PER_PROFILE` for each of its profiles when that
    is more.
    """
    simulator = Simulator(workspace, test.start, fail=test.fail)
    for profile, step, variant in test.variants:
        simulator.engine.forced[(profile, step)] = variant
    result = TestResult(test, simulator)
    deadline = None if time_limit is None else Deadline(time_limit, f"the test {test.name!r}")
    checks = [c for c in (check, deadline.check if deadline else None) if c is not None]
    simulator.check = functools.reduce(both, [*checks, bounded(simulator, trace_limit)])
    try:
        if deadline is None:
            _play(result)  # renders check what the caller guards them with, if anything
        else:
            with guarded(simulator.check):
                _play(result)
            deadline.check()  # a render it stopped rendered empty: say so rather than pass
    except TooSlow:
        if deadline is None or not deadline.passed:
            raise  # the caller's check stopped it
        result.stopped = "time"
        result.failures.extend(_stopped(simulator, f"at the time limit of {time_limit:g} s"))
    except TooLong as error:
        result.stopped = "trace"
        result.failures.extend(_stopped(simulator, f"at the trace limit of {error.limit:,} lines"))
    return result


class TooLong(JourneymanError):
    """A run on the virtual clock that made more trace lines than it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"it made more than {limit:,} trace lines, the most a run may make")
        self.limit = limit


def bounded(simulator: Simulator, limit: int | None = None) -> Callable[[], None]:
    """A check that stops the simulator (:class:`TooLong`) once it has made more than
    ``limit`` trace lines (:data:`TRACE_LIMIT` unless given), or than
    :data:`TRACE_PER_PROFILE` for each of its profiles when that is more."""
    floor = TRACE_LIMIT if limit is None else limit
    per_profile = TRACE_PER_PROFILE

    def check() -> None:
        lines = simulator.trace_lines
        if lines > floor:
            allowed = max(floor, per_profile * simulator.profile_count)
            if lines > allowed:
                raise TooLong(allowed)

    return check


def both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def check() -> None:
        first()
        second()

    return check


def _play(result: TestResult) -> None:
    """Give the test's events to its simulator, run the clock, check what it expects."""
    test, simulator = result.test, result.simulator
    # Events at the same moment arrive together: the server would take them in one batch.
    # Reactions come after them, each answering a message sent by then.
    for at, group in itertools.groupby(sorted(test.events, key=lambda e: e.at), lambda e: e.at):
        events = list(group)
        calls = [(e.type, e.payload) for e in events if e.type != "reaction"]
        if calls:
            simulator.receive(calls, test.start + at)
        for event in (e for e in events if e.type == "reaction"):
            problem = _react(simulator, event, test.start + at)
            if problem:
                result.failures.append(f"line {event.line}: {problem}")
    simulator.run(test.until)
    for expectation in test.expect:
        if simulator.check is not None:  # a long run leaves many records to look through
            simulator.check()
        problem = _check(simulator, expectation)
        if problem:
            result.failures.append(f"line {expectation.line}: {problem}")


_SHOWN = 3  # instances (and scheduled journeys) a stopped test names


def _stopped(sim: Simulator, why: str) -> list[str]:
    """What a test stopped at a limit says: which (``why``), how far its clock got, and
    what still ran there, busiest first."""
    reached = format_duration(sim.now - sim.start)
    lines = [f"stopped {why}, {reached} into the test's virtual time"]
    running = sorted(
        (i for i in sim.instances.values() if i.status != "ended"), key=lambda i: -i.seq
    )
    for instance in running[:_SHOWN]:
        steps = f"{instance.seq:,} step" + ("" if instance.seq == 1 else "s")
        lines.append(
            f"still running: journey {instance.journey}, profile {instance.profile_id}, "
            f"at step {instance.step}, after {steps}"
        )
    if len(running) > _SHOWN:
        lines.append(f"and {len(running) - _SHOWN:,} more instances still running")
    for journey, runs in Counter(run.journey for run in sim.runs).most_common(_SHOWN):
        lines.append(f"scheduled journey {journey}: {runs:,} runs by then")
    return lines


def _react(simulator: Simulator, event: TestEvent, at: datetime) -> str:
    """Send a reaction such as ``opened: welcome``; what is wrong with it, or ''."""
    reaction = dict(event.payload)
    name, step = reaction.pop("reaction"), reaction.pop("step")
    try:
        simulator.react(name, step, at=at, **reaction)
    except NoMessage as error:
        when = format_duration(at - simulator.start)
        return f"{name}: {step} at {when}: {error}; a reaction answers a message already sent"
    return ""


# matching


@dataclass(frozen=True, slots=True)
class _Happening:
    """One thing that happened, flattened for matching: a message, record or end."""

    at: datetime
    profile: str
    journey: str
    step: str | None
    fields: dict[str, str]

    def describe(self, start: datetime) -> str:
        where = f"{self.journey}.{self.step}" if self.step else self.journey
        extra = "".join(f", {k} {v!r}" for k, v in self.fields.items() if v)
        return f"{where} at {format_duration(self.at - start)} for {self.profile}{extra}"


def _check(sim: Simulator, expectation: Expectation) -> str:
    candidates = list(_happenings(sim, expectation))
    matches = [h for h in candidates if not _mismatches(sim, expectation, h)]
    wanted = _describe(expectation)
    if expectation.what == "never":
        if matches:
            return f"expected {wanted}, but it ran: {matches[0].describe(sim.start)}"
        return ""
    if expectation.times is not None and len(matches) != expectation.times:
        return (
            f"expected {wanted} {expectation.times} time(s), but it happened {len(matches)} time(s)"
        )
    if expectation.times is not None or matches:
        return ""
    if not candidates:
        return f"expected {wanted}, but nothing like it happened"
    closest = min(candidates, key=lambda h: len(_mismatches(sim, expectation, h)))
    differences = "; ".join(_mismatches(sim, expectation, closest))
    return f"expected {wanted}, but got {closest.describe(sim.start)} ({differences})"


def _happenings(sim: Simulator, expectation: Expectation) -> Iterator[_Happening]:
    what = expectation.what
    if what == "sent":
        return _messages(sim, expectation.target)
    if what in ("ended", "exited", "timed_out"):
        state = expectation.target if what == "ended" else what
        return _ends(sim, state, "" if what == "ended" else expectation.target)
    if what == "rejected":
        return (
            _Happening(r.at, r.profile, r.event, None, {"error": str(r.error)})
            for r in sim.rejected
            if r.event == expectation.target
        )
    if what == "entered":
        return (
            _Happening(r.at, r.profile_id, r.journey, None, {})
            for r in sim.records
            if r.outcome == "entered" and r.journey == expectation.target
        )
    if what in ("entered_segment", "exited_segment"):
        outcome = "segment_entered" if what == "entered_segment" else "segment_exited"
        return (
            _Happening(r.at, r.profile_id, r.detail, None, {})
            for r in sim.records
            if r.outcome == outcome and r.detail == expectation.target
        )
    if what == "run":
        return _runs(sim, expectation.target, expectation.filters.get("profile"))
    if what == "reached":
        return _goals(sim, expectation.target)
    if what == "variant":
        return _variants(sim, expectation.target)
    return _step_records(sim, expectation.target, None if what == "never" else what)


def _runs(sim: Simulator, journey: str, profile: str | None) -> Iterator[_Happening]:
    """The scheduled runs of ``journey``; with ``profile``, those that entered it."""
    for run in sim.runs:
        if run.journey == journey and (profile is None or profile in run.profiles):
            shown = profile if profile is not None else f"{len(run.profiles)} profile(s)"
            yield _Happening(run.at, shown, run.journey, None, {"run": run.id})


def _goals(sim: Simulator, target: str) -> Iterator[_Happening]:
    """The goals reached of the name ``target`` (``goal`` or ``journey.goal``)."""
    journey, _, goal = target.rpartition(".")
    for record in sim.records:
        if record.outcome != GOAL_REACHED or journey not in ("", record.journey):
            continue
        if record.detail.split(" ", 1)[0] == goal:
            yield _Happening(record.at, record.profile_id, record.journey, None, {})


def _variants(sim: Simulator, target: str) -> Iterator[_Happening]:
    """The variants an experiment step (``step`` or ``journey.step``) gave."""
    journey, _, step = target.rpartition(".")
    for record in sim.records:
        if record.outcome == "variant" and record.step == step and journey in ("", record.journey):
            fields = {"is": record.detail.split(" ", 1)[0]}
            yield _Happening(record.at, record.profile_id, record.journey, step, fields)


def _messages(sim: Simulator, target: str) -> Iterator[_Happening]:
    journey, _, step = target.rpartition(".")
    for message in sim.messages:
        if message.step == step and journey in ("", message.journey):
            content = message.content
            fields = {
                "to": message.to or "",
                "channel": message.channel,
                "subject": content.get("subject", content.get("title", "")),
                "body": " ".join(content.values()),
            }
            yield _Happening(message.at, message.profile_id, message.journey, step, fields)


def _ends(sim: Simulator, state: str, journey: str) -> Iterator[_Happening]:
    for instance in sim.instances.values():
        if instance.end_state == state and journey in ("", instance.journey):
            assert instance.ended_at is not None
            yield _Happening(instance.ended_at, instance.profile_id, instance.journey, None, {})


def _step_records(sim: Simulator, target: str, outcome: str | None) -> Iterator[_Happening]:
    """Records of a step: every one (``never``), or those with ``outcome``."""
    journey, _, step = target.rpartition(".")
    for record in sim.records:
        if record.step != step or journey not in ("", record.journey):
            continue
        if outcome is None or record.outcome == outcome:
            fields = {"reason": record.detail}
            yield _Happening(record.at, record.profile_id, record.journey, step, fields)


def _mismatches(sim: Simulator, expectation: Expectation, happening: _Happening) -> list[str]:
    found = []
    if expectation.at is not None and happening.at - sim.start != expectation.at:
        found.append(f"at {format_duration(happening.at - sim.start)}")
    filters = expectation.filters
    if "profile" in filters and happening.profile != filters["profile"]:
        found.append(f"profile {happening.profile}")
    if "journey" in filters and happening.journey != filters["journey"]:
        found.append(f"journey {happening.journey}")
    for key in ("to", "channel", "subject", "is"):
        if key in filters and happening.fields.get(key) != filters[key]:
            found.append(f"{key} {happening.fields.get(key)!r}")
    if "body_contains" in filters and filters["body_contains"] not in happening.fields.get(
        "body", ""
    ):
        found.append("body without the text")
    return found


def _describe(expectation: Expectation) -> str:
    parts = [f"{expectation.what} {expectation.target}".rstrip()]
    if expectation.at is not None:
        parts.append(f"at {format_duration(expectation.at)}")
    parts.extend(f"{key} {value!r}" for key, value in expectation.filters.items())
    return " ".join(parts)


# traces


def format_trace(sim: Simulator, last: int | None = None) -> list[str]:
    """Each profile's timeline: every step record, message and rejection, by time; with
    ``last``, only each profile's latest ``last`` of them."""
    lines = []
    by_profile: dict[str, list[tuple[datetime, int, str]]] = {}
    for index, record in enumerate(sim.records):
        where = f"{record.journey}.{record.step}" if record.step else record.journey
        text = f"{where} {record.outcome}" + (f": {record.detail}" if record.detail else "")
        by_profile.setdefault(record.profile_id, []).append((record.at, index, text))
    for index, rejection in enumerate(sim.rejected):
        text = f"rejected {rejection.event}: {rejection.error}"
        by_profile.setdefault(rejection.profile or "(none)", []).append((rejection.at, index, text))
    for profile, entries in by_profile.items():
        lines.append(f"  profile {profile}")
        entries.sort()
        if last is not None and len(entries) > last:
            lines.append(f"    ... {len(entries) - last:,} earlier entries")
            entries = entries[-last:]
        for at, _, text in entries:
            lines.append(f"    +{format_duration(at - sim.start):<8} {text}")
    return lines
