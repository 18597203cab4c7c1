"""Checks across documents: references, reachability, cycles, jumps, waits and tests.

These run after every document is read (:mod:`parse`) and add problems to the same list.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import timedelta

from journeyman.domain import goals
from journeyman.domain import model as m
from journeyman.domain.documents import Path
from journeyman.domain.expressions import Expression
from journeyman.domain.parse import Parsed
from journeyman.domain.reactions import REACTIONS
from journeyman.domain.reader import Reader, did_you_mean
from journeyman.domain.segments import ordered
from journeyman.domain.templates import Template
from journeyman.domain.times import format_duration
from journeyman.domain.topics import check_topics

__all__ = ["BUILTIN_END_STATES", "STANDARD_TRAITS", "build_workspace", "check"]

# Segment's reserved traits, and the ones journeyman itself reads.
STANDARD_TRAITS = frozenset(
    {
        *("id", "email", "phone", "firstName", "lastName", "name", "title", "username"),
        *("website", "address", "age", "avatar", "birthday", "company", "createdAt"),
        *("description", "gender", "timezone", "consent", "unsubscribed", "pushToken"),
        "subscriptions",
    }
)
BUILTIN_END_STATES = frozenset(
    {"completed", "exited", "timed_out", "stopped", "failed", "goal_reached"}
)
# Fields every event has besides its properties (see the expression docs).
ENVELOPE = frozenset({"name", "timestamp", "messageId", "userId", "anonymousId", "properties"})


def build_workspace(parsed: Parsed) -> m.Workspace | None:
    """Run every check; the workspace if it has no errors (warnings are allowed)."""
    check(parsed)
    if any(problem.is_error for problem in parsed.problems):
        return None
    return m.Workspace(
        events=parsed.events,
        templates=parsed.templates,
        actions=parsed.actions,
        journeys=parsed.journeys,
        rules=m.Rules(tuple(parsed.caps), tuple(parsed.quiet_hours)),
        settings=parsed.settings,
        tests=tuple(parsed.tests),
        channels=parsed.channels,
        subscriptions=parsed.subscriptions,
        segments=ordered(parsed.segments),
    )


def check(parsed: Parsed) -> None:
    for journey in parsed.journeys.values():
        reader = _JourneyReader(parsed, journey.name)
        linked = _check_references(reader, journey, parsed)
        # A step that could not be read has lost its links, and a link to no step was meant
        # for some step: judging such a graph would only repeat those errors, as steps no
        # path reaches or waits reached too late. A missing link never makes a loop.
        if any(type(step) is m.Step for step in journey.steps.values()):
            continue
        _check_instant_cycles(reader, journey)
        _check_reaction_targets(reader, journey, linked)
        if linked:
            _check_reachable(reader, journey)
            _check_waits_fit(reader, journey)
    _check_jump_loops(parsed)
    _check_segments(parsed)
    _check_fields(parsed)
    check_topics(parsed)
    for test in parsed.tests:
        _check_test(_reader(parsed, "test", test.name), test, parsed)


def _reader(parsed: Parsed, kind: str, name: str) -> Reader:
    return Reader(parsed.documents[(kind, name)], kind, name, parsed.problems)


class _JourneyReader(Reader):
    """A journey document's reader that also knows where each step is written."""

    def __init__(self, parsed: Parsed, name: str) -> None:
        super().__init__(parsed.documents[("journey", name)], "journey", name, parsed.problems)
        self._places: dict[str, Path] | None = None

    def step_path(self, step: m.Step) -> Path:
        """The document path of a step, found by its id (the first step of that id).
        The steps are indexed once, so that a journey's checks take linear time."""
        if self._places is None:
            self._places = {}
            for index, item in enumerate(self.document.data.get("steps") or ()):
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    self._places.setdefault(item["id"], ("steps", index))
        return self._places.get(step.id, ("steps",))


# references


def _check_references(r: _JourneyReader, journey: m.Journey, parsed: Parsed) -> bool:
    """Check what the journey names; whether every link leads to a step."""
    linked = True
    if journey.entry_segment is not None:
        _known(r, ("entry", "segment"), "segment", journey.entry_segment, parsed)
    elif (
        journey.entry_event and journey.entry_schedule is None
    ):  # else it could not be read, which is already an error
        _known(r, ("entry", "event"), "event", journey.entry_event, parsed)
    for index, exit_ in enumerate(journey.exits):
        if exit_.segment is not None:
            _known(r, ("exit", index, "segment_exited"), "segment", exit_.segment, parsed)
        else:
            _known(r, ("exit", index, "event"), "event", exit_.event, parsed)
    for index, goal in enumerate(journey.goals):
        _known(r, ("goals", index, "event"), "event", goal.event, parsed)
    for step in journey.steps.values():
        path = r.step_path(step)
        inner = r.within(f"step {step.id}: ")
        for key, target in _links(step):
            if target not in journey.steps:
                linked = False
                hint = did_you_mean(target, journey.steps)
                where = _link_path(r, path, key, target)
                inner.report("link", where, f"{key} '{target}' names no step{hint}")
        if isinstance(step, m.Send):
            _known(inner, (*path, "send"), "template", step.template, parsed)
        elif isinstance(step, m.Call):
            _known(inner, (*path, "call"), "action", step.action, parsed)
        elif isinstance(step, m.Jump):
            _known(inner, (*path, "jump"), "journey", step.journey, parsed)
        elif isinstance(step, m.WaitFor):
            _known(inner, (*path, "wait_for", "event"), "event", step.event, parsed)
        elif isinstance(step, m.Branch) and not step.otherwise:
            linked = False
        elif isinstance(step, m.Experiment):
            _check_experiment(inner, journey, step, path, parsed)
    return linked


def _check_experiment(
    r: Reader, journey: m.Journey, step: m.Experiment, path: Path, parsed: Parsed
) -> None:
    """An experiment's templates exist, its ``winner.metric`` names a goal of the journey,
    and its variant names are no other arm's (the report counts them as arms)."""
    for index, variant in enumerate(step.variants):
        if variant.template is not None:
            at = (*path, "experiment", index, "send")
            _known(r, at, "template", variant.template, parsed)
    others = {goals.HOLDOUT_ARM, goals.TREATED_ARM} if journey.holdout else set()
    for other in journey.steps.values():
        if isinstance(other, m.Split):
            others |= {other.arm_name(i) for i in range(len(other.arms))}
        elif isinstance(other, m.Experiment) and other.id != step.id:
            others |= {v.name for v in other.variants}
    for index, variant in enumerate(step.variants):
        if variant.name in others:
            message = f"variant '{variant.name}' is also the name of another arm or variant"
            r.report("duplicate", (*path, "experiment", index, "name"), message)
    if step.winner is None:
        return
    names = [goal.name for goal in journey.goals]
    metric = step.winner.metric
    if metric and metric not in names:
        hint = did_you_mean(metric, names)
        message = f"'metric' must name a goal of the journey; '{metric}' is none{hint}"
        r.report("reference", (*path, "winner", "metric"), message)
    elif not names:
        message = "'winner' needs a goal to measure: the journey declares no 'goals'"
        r.report("reference", (*path, "winner"), message)


def _known(r: Reader, path: Path, kind: str, name: str, parsed: Parsed) -> None:
    """Report ``name`` unless a document of ``kind`` defines it (even a broken one)."""
    defined = parsed.names[kind]
    if name not in defined:
        r.report("reference", path, f"{kind} '{name}' is not defined{did_you_mean(name, defined)}")


def _link_path(r: Reader, step_path: Path, key: str, target: str) -> Path:
    """Where a link is written: in a case of a branch, an arm of a split, or the step."""
    item = r.document.data["steps"][step_path[-1]] if len(step_path) == 2 else {}
    for container in ("branch", "split", "experiment"):
        cases = item.get(container)
        for index, case in enumerate(cases if isinstance(cases, list) else ()):
            if isinstance(case, dict) and case.get(key) == target:
                return (*step_path, container, index, key)
    return (*step_path, key)


def _links(step: m.Step) -> Iterator[tuple[str, str]]:
    """(key as written, target step) for every link a step has."""
    if step.next:
        yield "next", step.next
    if isinstance(step, m.WaitFor):
        yield from (("on_event", step.on_event),) if step.on_event else ()
        yield from (("on_timeout", step.on_timeout),) if step.on_timeout else ()
    elif isinstance(step, m.Send | m.Call) and step.on_error:
        yield "on_error", step.on_error
    elif isinstance(step, m.Branch):
        yield from (("goto", goto) for _, goto in step.cases)
        yield from (("otherwise", step.otherwise),) if step.otherwise else ()
    elif isinstance(step, m.Split):
        yield from (("goto", goto) for _, goto in step.arms)
    elif isinstance(step, m.Experiment):
        yield from (("goto", v.goto) for v in step.variants if v.goto)


# graph


def _check_reachable(r: _JourneyReader, journey: m.Journey) -> None:
    seen = {journey.first}
    todo = [journey.first]
    while todo:
        for target in journey.steps[todo.pop()].targets():
            if target in journey.steps and target not in seen:
                seen.add(target)
                todo.append(target)
    for step in journey.steps.values():
        if step.id not in seen:
            r.report(
                "unreachable-step",
                r.step_path(step),
                f"step {step.id}: no path leads to this step",
            )


def _reached_from(journey: m.Journey, start: str) -> set[str]:
    """Every step a path from ``start`` leads to, ``start`` itself included."""
    seen = {start}
    todo = [start]
    while todo:
        for target in journey.steps[todo.pop()].targets():
            if target in journey.steps and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _check_reaction_targets(r: _JourneyReader, journey: m.Journey, linked: bool) -> None:
    """A ``wait_for`` reaction's ``to`` names a send step that a path passes before it."""
    for step in journey.steps.values():
        if not isinstance(step, m.WaitFor) or step.to is None:
            continue
        inner = r.within(f"step {step.id}: ")
        where = (*r.step_path(step), "wait_for", "to")
        target = journey.steps.get(step.to)
        if target is None:
            hint = did_you_mean(step.to, journey.steps)
            inner.report("reaction-to", where, f"'to' names no step '{step.to}'{hint}")
        elif not isinstance(target, m.Send | m.Experiment):
            article = "an" if target.kind[0] in "aeiou" else "a"
            message = f"'to' must name a send step, and {step.to} is {article} {target.kind} step"
            inner.report("reaction-to", where, message)
        elif linked and (
            step.to not in _reached_from(journey, journey.first)
            or step.id not in _reached_from(journey, step.to)
        ):
            message = f"no path passes the send step {step.to} before this wait: it waits in vain"
            inner.report("reaction-to", where, message)


def _is_wait(step: m.Step) -> bool:
    return isinstance(step, m.Wait | m.WaitFor)


def _check_instant_cycles(r: _JourneyReader, journey: m.Journey) -> None:
    """A loop of steps with no wait in it would run forever in one instant."""
    graph = {
        step.id: [
            t for t in step.targets() if t in journey.steps and not _is_wait(journey.steps[t])
        ]
        for step in journey.steps.values()
        if not _is_wait(step)
    }
    for component in _cycles(graph):
        first = next(s for s in journey.steps if s in component)
        loop = " -> ".join([*sorted(component, key=list(journey.steps).index), first])
        message = f"step {first}: the steps {loop} form a loop with no wait in it"
        r.report("instant-loop", r.step_path(journey.steps[first]), message)


def _cycles(graph: dict[str, list[str]]) -> list[set[str]]:
    """Strongly connected components that contain a cycle (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(component)
    return found


def _check_waits_fit(r: _JourneyReader, journey: m.Journey) -> None:
    """Waits measured against the journey's timeout, from the earliest a step is reached.

    A wait that cannot end before the timeout stops every path through it: an error. A
    wait_for's timeout that cannot come first only closes its timeout path, while the
    event still moves the instance on: a warning naming that path. A step reached only
    after the timeout is left alone: what delays it is reported already.
    """
    earliest = _earliest_arrivals(journey)
    for step in journey.steps.values():
        start = earliest.get(step.id)
        if start is None or start >= journey.timeout:
            continue
        inner = r.within(f"step {step.id}: ")
        path = r.step_path(step)
        limit = format_duration(journey.timeout)
        if isinstance(step, m.Wait) and step.duration is not None:
            ends = start + step.duration
            if ends >= journey.timeout:
                message = (
                    f"this wait ends {format_duration(ends)} after entry at the earliest, "
                    f"never before the journey's timeout of {limit}"
                )
                inner.report("wait-too-long", (*path, "wait"), message)
        elif isinstance(step, m.WaitFor) and step.timeout is not None:
            ends = start + step.timeout
            if ends >= journey.timeout:
                _report_timeout_path(inner, path, step, format_duration(ends), limit)


def _report_timeout_path(r: Reader, path: Path, step: m.WaitFor, ends: str, limit: str) -> None:
    target = step.on_timeout or step.next
    where: Path = (*path, "on_timeout") if step.on_timeout else (*path, "wait_for", "timeout")
    way = "the on_timeout path" if step.on_timeout else "the timeout path"
    way += f" to step {target}" if target else ", which completes the instance,"
    r.report(
        "timeout-never-taken",
        where,
        f"{way} is never taken: the timeout ends {ends} after entry at the earliest, never "
        f"before the journey's timeout of {limit}, which ends the instance first",
    )


def _earliest_arrivals(journey: m.Journey) -> dict[str, timedelta]:
    """Dijkstra over the steps, each edge weighted by the shortest time it can take."""
    best: dict[str, timedelta] = {journey.first: timedelta(0)}
    queue = [(timedelta(0), journey.first)]
    while queue:
        elapsed, step_id = heapq.heappop(queue)
        if elapsed > best.get(step_id, elapsed):
            continue
        step = journey.steps[step_id]
        for target, cost in _edge_costs(step):
            if target not in journey.steps:
                continue
            arrival = elapsed + cost
            if arrival < best.get(target, timedelta.max):
                best[target] = arrival
                heapq.heappush(queue, (arrival, target))
    return best


def _edge_costs(step: m.Step) -> Iterable[tuple[str, timedelta]]:
    zero = timedelta(0)
    if isinstance(step, m.Wait):
        return [(t, step.duration or zero) for t in step.targets()]
    if isinstance(step, m.WaitFor):
        paths = [(step.on_event or step.next, zero)]
        paths.append((step.on_timeout or step.next, step.timeout or zero))
        return [(t, cost) for t, cost in paths if t]
    return [(t, zero) for t in step.targets()]


def _check_jump_loops(parsed: Parsed) -> None:
    graph = {
        name: [
            s.journey
            for s in j.steps.values()
            if isinstance(s, m.Jump) and s.journey in parsed.journeys
        ]
        for name, j in parsed.journeys.items()
    }
    for component in _cycles(graph):
        for name in sorted(component):
            r = _JourneyReader(parsed, name)
            loop = " -> ".join([*sorted(component), sorted(component)[0]])
            steps = parsed.journeys[name].steps.values()
            jump = next(s for s in steps if isinstance(s, m.Jump) and s.journey in component)
            inner = r.within(f"step {jump.id}: ")
            inner.report(
                "jump-loop", r.step_path(jump), f"jumps form a loop between journeys: {loop}"
            )


# fields read by templates and expressions


def _check_fields(parsed: Parsed) -> None:
    traits = set(STANDARD_TRAITS | parsed.settings.traits)
    for journey in parsed.journeys.values():
        for step in journey.steps.values():
            if isinstance(step, m.UpdateProfile):
                traits.update(step.set)
    properties = set(ENVELOPE)
    for event in parsed.events.values():
        properties.update((event.schema.get("properties") or {}).keys())
    for template in parsed.templates.values():
        r = _reader(parsed, "template", template.name)
        for key, compiled in [*template.fields.items(), ("to", template.to)]:
            if compiled is not None:
                _warn_unknown(r, (key,), compiled.paths, traits, properties)
    for action in parsed.actions.values():
        r = _reader(parsed, "action", action.name)
        fields: list[tuple[Path, Template | None]] = [
            (("url",), action.url),
            (("body",), action.body),
        ]
        fields += [(("headers", key), value) for key, value in action.headers.items()]
        for path, compiled in fields:
            if compiled is not None:
                _warn_unknown(r, path, compiled.paths, traits, properties)
    for journey in parsed.journeys.values():
        r = _JourneyReader(parsed, journey.name)
        for path, expression in _expressions(r, journey):
            _warn_unknown(r, path, expression.paths, traits, properties)
            _check_history_calls(r, path, expression, parsed)
    for segment in parsed.segments.values():
        r = _reader(parsed, "segment", segment.name)
        _warn_unknown(r, ("when",), segment.when.paths, traits, properties)
        _check_history_calls(r, ("when",), segment.when, parsed)


def _check_history_calls(r: Reader, path: Path, expression: Expression, parsed: Parsed) -> None:
    """The events and segments history functions name are defined; a sum reads a property
    of its event's schema."""
    for call in sorted(expression.calls):
        function, name = call[0], call[1]
        if function == "in_segment":
            _known(r, path, "segment", name, parsed)
            continue
        _known(r, path, "event", name, parsed)
        definition = parsed.events.get(name)
        if function == "sum" and definition is not None:
            declared = (definition.schema.get("properties") or {}).keys()
            if call[2] not in declared:
                hint = did_you_mean(call[2], declared)
                message = f"sum(): '{call[2]}' is no property of event {name}{hint}"
                r.report("unknown-property", path, message)


# segments

# What a segment's condition may read: the profile, and the time.
_SEGMENT_ROOTS = ("profile", "now", "now_local")


def _check_segments(parsed: Parsed) -> None:
    """A segment reads only the profile and the time, and in_segment(...) makes no loop."""
    for segment in parsed.segments.values():
        r = _reader(parsed, "segment", segment.name)
        roots = sorted({path[0] for path in segment.when.paths} - set(_SEGMENT_ROOTS))
        if roots:
            r.report(
                "expression",
                ("when",),
                f"'when' reads {', '.join(roots)}: a segment's condition reads only "
                "profile, now, now_local and history functions such as count(...)",
            )
    graph = {
        name: sorted(s.segments & parsed.segments.keys()) for name, s in parsed.segments.items()
    }
    for component in _cycles(graph):
        loop = " -> ".join([*sorted(component), sorted(component)[0]])
        for name in sorted(component):
            r = _reader(parsed, "segment", name)
            r.report("segment-loop", ("when",), f"in_segment(...) forms a loop: {loop}")


def _warn_unknown(
    r: Reader,
    path: Path,
    paths: Iterable[tuple[str, ...]],
    traits: set[str],
    properties: set[str],
) -> None:
    for found in sorted(paths):
        if len(found) < 2:
            continue
        root, field = found[0], found[1]
        if root in ("event", "entry") and field == "properties" and len(found) > 2:
            field = found[2]
        if root == "profile" and field not in traits:
            hint = did_you_mean(field, traits)
            r.report(
                "unknown-trait",
                path,
                f"'profile.{field}' is not a known trait{hint}; declare it in settings traits",
            )
        elif root in ("event", "entry") and field not in properties:
            hint = did_you_mean(field, properties)
            r.report("unknown-property", path, f"'{root}.{field}' is in no event schema{hint}")


def _expressions(r: _JourneyReader, journey: m.Journey) -> Iterator[tuple[Path, Expression]]:
    if journey.entry_when is not None:
        yield ("entry", "when"), journey.entry_when
    for index, exit_ in enumerate(journey.exits):
        if exit_.when is not None:
            yield ("exit", index, "when"), exit_.when
    for index, goal in enumerate(journey.goals):
        for key, found in (("when", goal.when), ("value", goal.value)):
            if found is not None:
                yield ("goals", index, key), found
    for step in journey.steps.values():
        path = r.step_path(step)
        if isinstance(step, m.Wait) and step.until is not None:
            yield (*path, "wait", "until"), step.until
        elif isinstance(step, m.WaitFor) and step.when is not None:
            yield (*path, "wait_for", "when"), step.when
        elif isinstance(step, m.Branch):
            for index, (when, _) in enumerate(step.cases):
                yield (*path, "branch", index, "when"), when
        elif isinstance(step, m.UpdateProfile):
            for key, value in step.set.items():
                if isinstance(value, Expression):
                    yield (*path, "update_profile", "set", key), value


# tests


def _check_test(r: Reader, test: m.TestCase, parsed: Parsed) -> None:
    # When a journey could not be read, its steps and end states are unknown: only
    # names that say which journey they are in can be checked.
    complete = parsed.names["journey"] <= parsed.journeys.keys()
    states = set(BUILTIN_END_STATES)
    for journey in parsed.journeys.values():
        states.update(s.state for s in journey.steps.values() if isinstance(s, m.End))
    for index, expectation in enumerate(test.expect):
        path: Path = ("expect", index, expectation.what)
        target = expectation.target
        if expectation.what in ("sent", "never", "capped", "skipped", "deferred", "dropped"):
            _check_step_name(r, path, target, parsed, complete)
        elif expectation.what in ("entered", "exited", "timed_out", "run") and target:
            _known(r, path, "journey", target, parsed)
        elif expectation.what in ("entered_segment", "exited_segment"):
            _known(r, path, "segment", target, parsed)
        elif expectation.what == "reached" and complete:
            _check_goal_name(r, path, target, parsed)
        elif expectation.what == "ended" and complete and target not in states:
            r.report(
                "reference", path, f"no journey ends in '{target}'{did_you_mean(target, states)}"
            )
        journey_name = expectation.filters.get("journey")
        if journey_name is not None:
            _known(r, ("expect", index, "journey"), "journey", journey_name, parsed)
    _check_test_reactions(r, parsed, complete)
    written = r.document.data.get("fail")
    for name in sorted(test.fail):
        _check_step_name(r, ("fail", written.index(name)), name, parsed, complete)
    for index, (_, step, variant) in enumerate(test.variants):
        _check_variant(r, ("variants", index), step, variant, parsed, complete, "step")


def _check_variant(
    r: Reader,
    at: Path,
    name: str,
    variant: str | None,
    parsed: Parsed,
    complete: bool,
    key: str,
) -> None:
    """A forced or expected variant names an experiment step (``step`` or
    ``journey.step``) and, when given, one of its variants."""
    before = len(r.problems)
    _check_step_name(r, (*at, key), name, parsed, complete)
    if len(r.problems) != before:
        return
    journey_name, _, step_id = name.rpartition(".")
    journeys = [parsed.journeys[journey_name]] if journey_name in parsed.journeys else []
    steps = [j.steps[step_id] for j in journeys or parsed.journeys.values() if step_id in j.steps]
    experiments = [s for s in steps if isinstance(s, m.Experiment)]
    if steps and not experiments:
        r.report(
            "reference", (*at, key), f"step {name} is a {steps[0].kind} step, not an experiment"
        )
        return
    names = {v.name for s in experiments for v in s.variants}
    if variant is not None and experiments and variant not in names:
        hint = did_you_mean(variant, names)
        r.report("reference", (*at, "is"), f"step {name} has no variant '{variant}'{hint}")


def _check_goal_name(r: Reader, path: Path, target: str, parsed: Parsed) -> None:
    """``reached: goal`` or ``reached: journey.goal`` names a goal of some journey."""
    journey, _, goal = target.rpartition(".")
    journeys = [parsed.journeys[journey]] if journey in parsed.journeys else []
    if not journey:
        journeys = list(parsed.journeys.values())
    names = {g.name for j in journeys for g in j.goals}
    if goal not in names:
        where = f"journey {journey}" if journey else "any journey"
        hint = did_you_mean(goal, names)
        r.report("reference", path, f"goal '{goal}' is not a goal of {where}{hint}")


def _check_test_reactions(r: Reader, parsed: Parsed, complete: bool) -> None:
    """Each reaction in a test's events (``opened: welcome``) names a send step."""
    events = r.document.data.get("events")
    for index, item in enumerate(events if isinstance(events, list) else ()):
        written = [k for k in REACTIONS if isinstance(item, dict) and k in item]
        if len(written) != 1 or not isinstance(item[written[0]], str):
            continue  # reported as the test was read
        path: Path = ("events", index, written[0])
        name = item[written[0]]
        before = len(r.problems)
        _check_step_name(r, path, name, parsed, complete)
        journey_name, _, step_id = name.rpartition(".")
        journeys = [parsed.journeys[journey_name]] if journey_name in parsed.journeys else []
        steps = [
            j.steps[step_id] for j in journeys or parsed.journeys.values() if step_id in j.steps
        ]
        if len(r.problems) == before and steps and not any(isinstance(s, m.Send) for s in steps):
            r.report("reference", path, f"step {name} is a {steps[0].kind} step, not a send step")


def _check_step_name(r: Reader, path: Path, name: str, parsed: Parsed, complete: bool) -> None:
    journey_name, _, step = name.rpartition(".")
    if journey_name:
        journey = parsed.journeys.get(journey_name)
        if journey is None:
            _known(r, path, "journey", journey_name, parsed)
        elif step not in journey.steps:
            hint = did_you_mean(step, journey.steps)
            r.report("reference", path, f"journey {journey_name} has no step '{step}'{hint}")
        return
    every = {s for j in parsed.journeys.values() for s in j.steps}
    if complete and step not in every:
        r.report("reference", path, f"no journey has a step '{step}'{did_you_mean(step, every)}")
