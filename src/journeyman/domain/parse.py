"""Workspace documents to the model, one kind at a time.

Each ``_read_<kind>`` function reads one document and returns a model object, or None when
the document is too broken to use; either way every problem it finds is recorded.
Cross-document checks (references, reachability, cycles) live in :mod:`checks`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from journeyman.domain import model as m
from journeyman.domain.documents import Document, Path
from journeyman.domain.problems import Problem
from journeyman.domain.reader import Reader, did_you_mean
from journeyman.domain.times import DAY_NAMES, TimeFormatError, parse_timestamp, parse_zone

__all__ = ["DEFAULT_TEST_START", "KINDS", "STEP_TYPES", "Parsed", "parse_documents"]

KINDS = ("event", "template", "action", "journey", "rules", "settings", "test")
STEP_TYPES = (
    "wait",
    "wait_for",
    "branch",
    "split",
    "send",
    "call",
    "update_profile",
    "jump",
    "end",
)
# Keys a step may carry besides its type key.
_STEP_EXTRAS = {
    "wait_for": ("on_timeout", "on_event"),
    "send": ("on_error",),
    "call": ("on_error",),
}
_STEP_COMMON = ("id", "next", "description")
_CHANNEL_FIELDS = {
    "email": ("subject", "html", "text"),
    "sms": ("body",),
    "push": ("title", "body"),
    "webhook": ("body",),
}
_SECRET_HEADER = re.compile(r"auth|token|secret|key|password|signature", re.IGNORECASE)
_ENV_REFERENCE = re.compile(r"\$\{[A-Z_][A-Z0-9_]*\}")
_EXPECTATIONS = (
    "sent",
    "ended",
    "never",
    "capped",
    "skipped",
    "deferred",
    "dropped",
    "entered",
    "exited",
    "timed_out",
    "rejected",
)
_EXPECT_FILTERS = ("profile", "journey", "to", "channel", "subject", "body_contains")
DEFAULT_TEST_START = datetime.fromisoformat("2026-01-05T00:00:00+00:00")  # a Monday


class Parsed:
    """Everything read from a workspace's documents, good or not."""

    def __init__(self) -> None:
        self.events: dict[str, m.EventDefinition] = {}
        self.templates: dict[str, m.MessageTemplate] = {}
        self.actions: dict[str, m.Action] = {}
        self.journeys: dict[str, m.Journey] = {}
        self.caps: list[m.Cap] = []
        self.quiet_hours: list[m.QuietHours] = []
        self.settings = m.Settings()
        self.tests: list[m.TestCase] = []
        self.documents: dict[tuple[str, str], Document] = {}  # (kind, name) -> its document
        self.problems: list[Problem] = []


def parse_documents(documents: Iterable[Document]) -> Parsed:
    parsed = Parsed()
    for document in documents:
        _read_document(document, parsed)
    return parsed


def _read_document(document: Document, parsed: Parsed) -> None:
    data = document.data
    top = Reader(document, "", "", parsed.problems)
    if not isinstance(data, dict):
        top.error((), "a document must be a mapping with a 'kind'")
        return
    kind = data.get("kind")
    if kind not in KINDS:
        hint = did_you_mean(kind, KINDS) if isinstance(kind, str) else ""
        top.error(("kind",), f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}{hint}")
        return
    name = data.get("name")
    if name is None and kind in ("rules", "settings"):
        name = kind
    reader = Reader(document, kind, name if isinstance(name, str) else "", parsed.problems)
    if kind == "test":
        if not isinstance(name, str) or not name.strip():
            reader.error(("name",), "a test needs a 'name' that says what it checks")
            return
    elif kind == "event":
        if reader.text(name, ("name",)) is None:
            return
    elif reader.name_of(name, ("name",), "'name'") is None:
        return
    assert isinstance(name, str)
    if (kind, name) in parsed.documents:
        first = parsed.documents[(kind, name)]
        reader.error(
            ("name",), f"duplicate {kind} name (first defined at {first.file}:{first.line})"
        )
        return
    parsed.documents[(kind, name)] = document
    _READERS[kind](reader, data, parsed)


def _origin(reader: Reader, path: Path = ()) -> m.Origin:
    return m.Origin(reader.document.file, reader.line(path))


# event


def _read_event(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    r.mapping(data, (), ("kind", "name", "description", "identity", "schema"))
    identity = r.choice(data.get("identity", "userId"), ("identity",), m.IDENTITIES)
    schema = data.get("schema", {"type": "object"})
    validator = None
    if not isinstance(schema, dict):
        r.error(("schema",), "'schema' must be a JSON Schema mapping")
    else:
        try:
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(schema)
        except SchemaError as error:
            where = ("schema", *error.absolute_path)
            r.error(where, f"'schema' is not a valid JSON Schema: {error.message}")
    if identity is not None and validator is not None:
        parsed.events[r.name] = m.EventDefinition(r.name, identity, schema, validator, _origin(r))


# template


def _read_template(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    channel = r.choice(data.get("channel"), ("channel",), m.CHANNELS)
    allowed_fields = _CHANNEL_FIELDS.get(channel or "", ())
    r.mapping(data, (), ("kind", "name", "description", "channel", "to", *allowed_fields))
    if channel is None:
        return
    fields = {}
    for key in allowed_fields:
        if key in data:
            template = r.template(data[key], (key,))
            if template is not None:
                fields[key] = template
    if channel == "email" and "subject" not in data:
        r.error((), "an email template needs a 'subject'")
    if channel == "email" and not ("html" in data or "text" in data):
        r.error((), "an email template needs 'html' or 'text'")
    if channel in ("sms", "push") and "body" not in data:
        r.error((), f"an {channel} template needs a 'body'")
    to = r.template(data["to"], ("to",)) if "to" in data else None
    parsed.templates[r.name] = m.MessageTemplate(r.name, channel, fields, to, _origin(r))


# action


def _read_action(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    keys = ("kind", "name", "description", "method", "url", "headers", "body", "timeout")
    r.mapping(data, (), keys, required=("url",))
    method = r.choice(
        str(data.get("method", "POST")).upper(),
        ("method",),
        ("GET", "POST", "PUT", "PATCH", "DELETE"),
    )
    url = r.template(data.get("url"), ("url",))
    if isinstance(data.get("url"), str) and re.match(r"\w+://[^/@\s]+:[^/@\s]+@", data["url"]):
        r.error(("url",), "'url' must not carry credentials: use a header with ${ENV_VAR}")
    headers = {}
    raw_headers = data.get("headers", {})
    if r.mapping(raw_headers, ("headers",), raw_headers if isinstance(raw_headers, dict) else ()):
        for key, value in raw_headers.items():
            path = ("headers", key)
            if _SECRET_HEADER.search(key) and not _ENV_REFERENCE.search(str(value)):
                r.error(path, f"header '{key}' looks secret: write it as ${{ENV_VAR}}")
            template = r.template(value, path)
            if template is not None:
                headers[key] = template
    body = r.template(data["body"], ("body",)) if "body" in data else None
    timeout = r.duration(data.get("timeout", "10s"), ("timeout",))
    if method and url and timeout is not None:
        action = m.Action(r.name, method, url, headers, body, timeout, _origin(r))
        parsed.actions[r.name] = action


# rules and settings


def _read_rules(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    r.mapping(data, (), ("kind", "name", "description", "caps", "quiet_hours"))
    channels = {c: c for c in m.CHANNELS}
    for index, item in enumerate(r.sequence(data.get("caps"), ("caps",)) or ()):
        path: Path = ("caps", index)
        cap = r.mapping(item, path, ("channels", "max", "per"), ("max", "per"), "a cap")
        if cap is None:
            continue
        chosen = r.names(cap.get("channels", list(m.CHANNELS)), (*path, "channels"), channels)
        most = r.count(cap.get("max"), (*path, "max"), 0)
        per = r.duration(cap.get("per"), (*path, "per"))
        if chosen and most is not None and per is not None:
            parsed.caps.append(m.Cap(chosen, most, per))
    quiet = data.get("quiet_hours")
    items = [quiet] if isinstance(quiet, dict) else r.sequence(quiet, ("quiet_hours",)) or ()
    for index, item in enumerate(items):
        path = ("quiet_hours",) if isinstance(quiet, dict) else ("quiet_hours", index)
        allowed = ("from", "to", "channels", "action")
        window = r.mapping(item, path, allowed, ("from", "to"), "quiet hours")
        if window is None:
            continue
        start = r.clock(window.get("from"), (*path, "from"))
        end = r.clock(window.get("to"), (*path, "to"))
        chosen = r.names(window.get("channels", list(m.CHANNELS)), (*path, "channels"), channels)
        action = r.choice(window.get("action", "defer"), (*path, "action"), ("defer", "drop"))
        if start and end and chosen and action in ("defer", "drop"):
            parsed.quiet_hours.append(m.QuietHours(start, end, chosen, action))  # type: ignore[arg-type]


def _read_settings(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    r.mapping(data, (), ("kind", "name", "description", "timezone", "traits"))
    zone = parsed.settings.timezone
    if "timezone" in data:
        try:
            zone = parse_zone(data["timezone"])
        except TimeFormatError as error:
            r.error(("timezone",), f"'timezone': {error}")
    traits = r.sequence(data.get("traits"), ("traits",)) or []
    names = frozenset(t for t in traits if isinstance(t, str))
    if len(names) != len(traits):
        r.error(("traits",), "'traits' must be a list of trait names")
    parsed.settings = m.Settings(zone, names)


# journey


def _read_journey(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    keys = ("kind", "name", "description", "entry", "reentry", "timeout", "exit", "ignore_caps")
    r.mapping(data, (), (*keys, "steps"), required=("entry", "steps"))
    entry = r.mapping(data.get("entry"), ("entry",), ("event", "when"), ("event",)) or {}
    entry_event = r.text(entry.get("event"), ("entry", "event")) if entry else None
    entry_when = r.expression(entry["when"], ("entry", "when")) if "when" in entry else None
    reentry = _reentry(r, data.get("reentry", "after 5m"))
    timeout = r.duration(data.get("timeout", "91d"), ("timeout",))
    exits = []
    for index, item in enumerate(r.sequence(data.get("exit"), ("exit",)) or ()):
        path: Path = ("exit", index)
        found = r.mapping(item, path, ("event", "when"), ("event",), "an exit")
        if found is not None and r.text(found.get("event"), (*path, "event")):
            when = r.expression(found["when"], (*path, "when")) if "when" in found else None
            exits.append(m.Exit(found["event"], when))
    ignore_caps = r.boolean(data.get("ignore_caps", False), ("ignore_caps",))
    steps = _read_steps(r, data.get("steps"))
    if entry_event is None or reentry is None or timeout is None or not steps:
        return
    journey = m.Journey(
        name=r.name,
        entry_event=entry_event,
        entry_when=entry_when,
        reentry=reentry,
        timeout=timeout,
        exits=tuple(exits),
        ignore_caps=bool(ignore_caps),
        steps=steps,
        origin=_origin(r),
    )
    parsed.journeys[r.name] = journey


def _reentry(r: Reader, value: Any) -> m.Reentry | None:
    if value in ("never", "always"):
        return m.Reentry(value)
    if isinstance(value, str) and value.startswith("after "):
        period = r.duration(value[6:].strip(), ("reentry",))
        return m.Reentry("after", period) if period is not None else None
    r.error(("reentry",), f"'reentry' must be never, always or 'after <duration>', not {value!r}")
    return None


def _read_steps(r: Reader, value: Any) -> dict[str, m.Step]:
    items = r.sequence(value, ("steps",))
    if not items:
        if items is not None:
            r.error(("steps",), "'steps' must list at least one step")
        return {}
    ids: list[str | None] = []
    for index, item in enumerate(items):
        step_id = item.get("id") if isinstance(item, dict) else None
        if r.name_of(step_id, ("steps", index, "id"), "a step's 'id'") and step_id in ids:
            r.error(("steps", index, "id"), f"duplicate step id '{step_id}'")
            step_id = None
        ids.append(step_id)
    steps: dict[str, m.Step] = {}
    for index, item in enumerate(items):
        step_id = ids[index]
        if step_id is None:
            continue
        below = next((later for later in ids[index + 1 :] if later), None)
        steps[step_id] = _read_step(r.within(f"step {step_id}: "), item, ("steps", index), below)
    return steps


def _read_step(r: Reader, item: dict[str, Any], path: Path, below: str | None) -> m.Step:
    """One step; a step too broken to use becomes a plain :class:`Step` with its links."""
    types = [key for key in STEP_TYPES if key in item]
    origin = _origin(r, path)
    written_next = item.get("next")
    fallback = m.Step(item["id"], written_next if isinstance(written_next, str) else below, origin)
    if len(types) != 1:
        problem = "has none" if not types else f"has {', '.join(types)}"
        r.error(path, f"a step needs exactly one of {', '.join(STEP_TYPES)}; it {problem}")
        if "goto" in item:
            r.error((*path, "goto"), "use 'next' to name the step that follows")
        return fallback
    kind = types[0]
    allowed = (*_STEP_COMMON, kind, *_STEP_EXTRAS.get(kind, ()))
    if kind == "end":
        allowed = ("id", "description", "end")
    r.mapping(item, path, allowed, what=f"a {kind} step")
    if "goto" in item:
        r.error((*path, "goto"), "use 'next' to name the step that follows")
    following = below
    if "next" in item:
        following = r.name_of(item["next"], (*path, "next"), "'next'") or below
    base = {"id": item["id"], "next": following, "origin": origin}
    step = _STEP_READERS[kind](r, item, path, base)
    return step if step is not None else fallback


def _target(r: Reader, value: Any, path: Path) -> str | None:
    return r.name_of(value, path, f"'{path[-1]}'")


def _wait(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    value = item["wait"]
    where = (*path, "wait")
    if isinstance(value, str):
        duration = r.duration(value, where)
        return m.Wait(**base, duration=duration) if duration is not None else None
    spec = r.mapping(value, where, ("until", "until_local", "days"), what="'wait'")
    if spec is None:
        return None
    if ("until" in spec) == ("until_local" in spec):
        r.error(where, "'wait' needs a duration, 'until' or 'until_local'")
        return None
    if "until" in spec:
        if "days" in spec:
            r.error((*where, "days"), "'days' goes with 'until_local'")
        until = r.expression(spec["until"], (*where, "until"))
        return m.Wait(**base, until=until) if until is not None else None
    at = r.clock(spec["until_local"], (*where, "until_local"))
    days = None
    if "days" in spec:
        weekdays = {name: number for number, name in enumerate(DAY_NAMES)}
        days = r.names(spec["days"], (*where, "days"), weekdays)
    return m.Wait(**base, until_local=at, days=days) if at is not None else None


def _wait_for(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    where = (*path, "wait_for")
    spec = r.mapping(
        item["wait_for"], where, ("event", "when", "timeout"), ("event",), "'wait_for'"
    )
    if spec is None:
        return None
    event = r.text(spec.get("event"), (*where, "event"))
    when = r.expression(spec["when"], (*where, "when")) if "when" in spec else None
    timeout = r.duration(spec["timeout"], (*where, "timeout")) if "timeout" in spec else None
    on_event = _target(r, item["on_event"], (*path, "on_event")) if "on_event" in item else None
    on_timeout = (
        _target(r, item["on_timeout"], (*path, "on_timeout")) if "on_timeout" in item else None
    )
    if "on_timeout" in item and "timeout" not in spec:
        r.error((*path, "on_timeout"), "'on_timeout' needs a 'timeout' in 'wait_for'")
    if event is None:
        return None
    return m.WaitFor(
        **base,
        event=event,
        when=when,
        timeout=timeout,
        on_event=on_event,
        on_timeout=on_timeout,
    )


def _branch(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    where = (*path, "branch")
    cases = []
    otherwise = None
    items = r.sequence(item["branch"], where) or []
    for index, case in enumerate(items):
        at = (*where, index)
        if isinstance(case, dict) and "otherwise" in case:
            r.mapping(case, at, ("otherwise",), what="'otherwise'")
            if index != len(items) - 1:
                r.error(at, "'otherwise' must be the last case of a branch")
            otherwise = _target(r, case["otherwise"], (*at, "otherwise"))
            continue
        found = r.mapping(case, at, ("when", "goto", "otherwise"), ("when", "goto"), "a case")
        if found is None or "when" not in found or "goto" not in found:
            continue
        when = r.expression(found["when"], (*at, "when"))
        goto = _target(r, found["goto"], (*at, "goto"))
        if when is not None and goto is not None:
            cases.append((when, goto))
    if otherwise is None:
        if not any(isinstance(c, dict) and "otherwise" in c for c in items):
            r.error(where, "a branch needs a final {otherwise: <step>} case")
        return None
    return m.Branch(**base, cases=tuple(cases), otherwise=otherwise)


def _split(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    where = (*path, "split")
    arms = []
    for index, arm in enumerate(r.sequence(item["split"], where) or ()):
        at = (*where, index)
        found = r.mapping(arm, at, ("weight", "goto"), ("weight", "goto"), "a split arm")
        if found is None:
            continue
        weight = r.number(found.get("weight"), (*at, "weight"))
        goto = _target(r, found.get("goto"), (*at, "goto"))
        if weight is not None and goto is not None:
            arms.append((weight, goto))
    if not arms or sum(weight for weight, _ in arms) <= 0:
        r.error(where, "a split needs at least one arm with a weight above 0")
        return None
    return m.Split(**base, arms=tuple(arms))


def _send(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    template = r.name_of(item["send"], (*path, "send"), "'send'")
    on_error = _target(r, item["on_error"], (*path, "on_error")) if "on_error" in item else None
    return m.Send(**base, template=template, on_error=on_error) if template else None


def _call(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    action = r.name_of(item["call"], (*path, "call"), "'call'")
    on_error = _target(r, item["on_error"], (*path, "on_error")) if "on_error" in item else None
    return m.Call(**base, action=action, on_error=on_error) if action else None


def _update(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    where = (*path, "update_profile")
    spec = r.mapping(item["update_profile"], where, ("set", "unset"), what="'update_profile'")
    if spec is None:
        return None
    values: dict[str, Any] = {}
    raw = spec.get("set", {})
    if r.mapping(raw, (*where, "set"), raw if isinstance(raw, dict) else ()) is not None:
        for key, value in raw.items():
            if key in ("id",):
                r.error((*where, "set", key), "'id' is the profile's key and cannot be set")
            elif isinstance(value, dict):
                found = r.mapping(value, (*where, "set", key), ("expr",), ("expr",), "a value")
                if found and "expr" in found:
                    values[key] = r.expression(found["expr"], (*where, "set", key, "expr"))
            else:
                values[key] = value
    unset = r.sequence(spec.get("unset"), (*where, "unset")) or []
    if not all(isinstance(u, str) for u in unset):
        r.error((*where, "unset"), "'unset' must be a list of trait names")
        return None
    if not values and not unset:
        r.error(where, "'update_profile' needs 'set' or 'unset'")
    return m.UpdateProfile(**base, set=values, unset=tuple(unset))


def _jump(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    journey = r.name_of(item["jump"], (*path, "jump"), "'jump'")
    return m.Jump(**base, journey=journey) if journey else None


def _end(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    state = item["end"] if item["end"] is not None else "completed"
    state = r.name_of(state, (*path, "end"), "an end state")
    return m.End(**base, state=state) if state else None


_STEP_READERS: dict[str, Callable[[Reader, dict[str, Any], Path, dict[str, Any]], m.Step | None]]
_STEP_READERS = {
    "wait": _wait,
    "wait_for": _wait_for,
    "branch": _branch,
    "split": _split,
    "send": _send,
    "call": _call,
    "update_profile": _update,
    "jump": _jump,
    "end": _end,
}


# test


def _read_test(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    keys = ("kind", "name", "description", "start", "until", "events", "expect", "fail")
    r.mapping(data, (), keys, required=("events", "expect"))
    start = DEFAULT_TEST_START
    if "start" in data:
        try:
            start = parse_timestamp(data["start"])
        except TimeFormatError as error:
            r.error(("start",), f"'start': {error}")
    until = r.duration(data["until"], ("until",)) if "until" in data else None
    events = [
        _test_event(r, item, ("events", i)) for i, item in enumerate(_list(r, data, "events"))
    ]
    expect = [
        _expectation(r, item, ("expect", i)) for i, item in enumerate(_list(r, data, "expect"))
    ]
    fail = r.sequence(data.get("fail"), ("fail",)) or []
    if not all(isinstance(f, str) for f in fail):
        r.error(("fail",), "'fail' must be a list of steps (step or journey.step)")
    test = m.TestCase(
        name=r.name,
        start=start,
        until=until,
        events=tuple(e for e in events if e is not None),
        expect=tuple(x for x in expect if x is not None),
        fail=frozenset(f for f in fail if isinstance(f, str)),
        origin=_origin(r),
    )
    parsed.tests.append(test)


def _list(r: Reader, data: dict[str, Any], key: str) -> list[Any]:
    return r.sequence(data.get(key), (key,)) or []


def _test_event(r: Reader, item: Any, path: Path) -> m.TestEvent | None:
    found = r.mapping(item, path, ("at", "track", "identify"), ("at",), "a test event")
    if found is None:
        return None
    at = r.duration(found.get("at"), (*path, "at"))
    types = [t for t in ("track", "identify") if t in found]
    if len(types) != 1:
        r.error(path, "a test event needs exactly one of track or identify")
        return None
    payload = found[types[0]]
    if not isinstance(payload, dict):
        r.error((*path, types[0]), f"'{types[0]}' must be a mapping")
        return None
    if at is None:
        return None
    kind: Literal["track", "identify"] = "track" if types[0] == "track" else "identify"
    return m.TestEvent(at, kind, payload, r.line(path))


def _expectation(r: Reader, item: Any, path: Path) -> m.Expectation | None:
    allowed = (*_EXPECTATIONS, "at", "times", *_EXPECT_FILTERS)
    found = r.mapping(item, path, allowed, what="an expectation")
    if found is None:
        return None
    whats = [w for w in _EXPECTATIONS if w in found]
    if len(whats) != 1:
        r.error(path, f"an expectation needs exactly one of {', '.join(_EXPECTATIONS)}")
        return None
    what = whats[0]
    target = found[what]
    if target is True and what in ("exited", "timed_out"):
        target = ""
    if not isinstance(target, str):
        r.error((*path, what), f"'{what}' must name what it expects, not {target!r}")
        return None
    at = r.duration(found["at"], (*path, "at")) if "at" in found else None
    times = r.count(found["times"], (*path, "times")) if "times" in found else None
    filters = {key: str(found[key]) for key in _EXPECT_FILTERS if key in found}
    return m.Expectation(what, target, at, times, filters, r.line(path))


_READERS: dict[str, Callable[[Reader, dict[str, Any], Parsed], None]] = {
    "event": _read_event,
    "template": _read_template,
    "action": _read_action,
    "journey": _read_journey,
    "rules": _read_rules,
    "settings": _read_settings,
    "test": _read_test,
}
