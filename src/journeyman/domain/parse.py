"""Workspace documents to the model, one kind at a time.

Each ``_read_<kind>`` function reads one document and returns a model object, or None when
the document is too broken to use; either way every problem it finds is recorded.
Cross-document checks (references, reachability, cycles) live in :mod:`checks`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from journeyman.domain import model as m
from journeyman.domain.actions import Allow, AllowError, allowed_literal, literal_target, url_origin
from journeyman.domain.consent import CONSENT_EVENTS, CONSENT_SCHEMAS
from journeyman.domain.documents import Document, Path
from journeyman.domain.expressions import compile_expression
from journeyman.domain.fields import (
    BRANCH_CASE_FIELDS,
    ENTRY_FIELDS,
    EXIT_FIELDS,
    GOAL_FIELDS,
    JOURNEY_FIELDS,
    SCHEDULE_FIELDS,
    SPLIT_ARM_FIELDS,
    STEP_COMMON,
    STEP_KINDS,
    VARIANT_FIELDS,
    WAIT_FIELDS,
    WAIT_FOR_FIELDS,
    WAIT_REACTIONS,
    WINNER_FIELDS,
)
from journeyman.domain.goals import GOAL_REACHED, HOLDOUT_ARM, TREATED_ARM
from journeyman.domain.problems import Problem
from journeyman.domain.reactions import REACTION_EVENTS, REACTION_SCHEMAS, REACTIONS
from journeyman.domain.reader import Reader, describe, did_you_mean
from journeyman.domain.schedules import (
    DEFAULT_RATE,
    SCHEDULED_EVENT,
    Schedule,
    ScheduleError,
    read_cron,
    read_every,
    read_zone,
)
from journeyman.domain.schemas import quick_check
from journeyman.domain.segments import SEGMENT_EVENTS, SEGMENT_SCHEMAS
from journeyman.domain.state import ACCOUNT_UPDATED
from journeyman.domain.times import DAY_NAMES, TimeFormatError, parse_timestamp, parse_zone

__all__ = [
    "CHANNEL_FIELDS",
    "DEFAULT_TEST_START",
    "KINDS",
    "STEP_TYPES",
    "Parsed",
    "parse_documents",
]

KINDS = (
    "event",
    "template",
    "action",
    "journey",
    "rules",
    "settings",
    "channel",
    "test",
    "subscription",
    "segment",
)
# The step types, and the keys each may carry: domain.fields, which the editor reads too.
STEP_TYPES = tuple(STEP_KINDS)
# The fields of each channel's templates (the editor's template form reads them too).
CHANNEL_FIELDS = {
    "email": ("subject", "html", "text"),
    "sms": ("body",),
    "push": ("title", "body"),
    "webhook": ("body",),
}
# The fields that make HTML: the values they output are escaped (`| safe` marks trusted HTML).
_ESCAPED_FIELDS = frozenset({"html"})
# When the channel cannot be read, no field is called unknown for it.
_ANY_CHANNEL_FIELDS = tuple(sorted({key for keys in CHANNEL_FIELDS.values() for key in keys}))
_SECRET_HEADER = re.compile(r"auth|token|secret|key|password|signature", re.IGNORECASE)
_ENV_REFERENCE = re.compile(r"\$\{[A-Z_][A-Z0-9_]*\}")
_URL_USERINFO = re.compile(r"\s*\w+://[^/?#\s]*@")
_QUERY_PARAMETER = re.compile(r"[?&]([^=&#\s]+)=([^&#]*)")
# Words of a query parameter's name (api_key, apiKey, access-token) that mark a secret.
_SECRET_WORDS = frozenset(
    ("apikey", "auth", "key", "passwd", "password", "secret", "sig", "signature", "token")
)
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
    "entered_segment",
    "exited_segment",
    "reached",
    "variant",
    "run",
)
_EXPECT_FILTERS = ("profile", "journey", "to", "channel", "subject", "body_contains", "is")
DEFAULT_TEST_START = datetime.fromisoformat("2026-01-05T00:00:00+00:00")  # a Monday
# What each reaction of a `wait_for` may add to `reaction` and `to`.
_REACTION_OPTIONS = {"clicked": ("url",), "opened": ("machine",)}
# What a group call records when it changes its account's traits: the changed traits.
ACCOUNT_UPDATED_SCHEMA: dict[str, Any] = {"type": "object"}
# The events journeyman defines itself: every workspace has them, and no document may.
_BUILTIN_EVENTS = {
    name: m.EventDefinition(
        name,
        "userId",
        schema,
        Draft202012Validator(schema),
        m.Origin("(built in)", 0),
        quick_check(schema),
        builtin=True,
    )
    for name, schema in {
        **REACTION_SCHEMAS,
        **CONSENT_SCHEMAS,
        **SEGMENT_SCHEMAS,
        ACCOUNT_UPDATED: ACCOUNT_UPDATED_SCHEMA,
    }.items()
}


class Parsed:
    """Everything read from a workspace's documents, good or not."""

    def __init__(self) -> None:
        self.events: dict[str, m.EventDefinition] = dict(_BUILTIN_EVENTS)
        self.templates: dict[str, m.MessageTemplate] = {}
        self.subscriptions: dict[str, m.Subscription] = {}
        self.actions: dict[str, m.Action] = {}
        self.journeys: dict[str, m.Journey] = {}
        self.caps: list[m.Cap] = []
        self.quiet_hours: list[m.QuietHours] = []
        self.settings = m.Settings()
        self.channels: dict[str, dict[str, Any]] = {}  # name -> its document, checked later
        self.tests: list[m.TestCase] = []
        self.segments: dict[str, m.Segment] = {}
        self.documents: dict[tuple[str, str], Document] = {}  # (kind, name) -> its document
        self.names: dict[str, set[str]] = {kind: set() for kind in KINDS}  # defined, or broken
        self.names["event"].update(_BUILTIN_EVENTS)
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
        top.report("kind", (), f"a document must be a mapping with a 'kind', not {describe(data)}")
        return
    kind = data.get("kind")
    if "kind" not in data:
        top.report("kind", (), f"a document needs a 'kind': one of {', '.join(KINDS)}")
        return
    if kind not in KINDS:
        hint = did_you_mean(kind, KINDS) if isinstance(kind, str) else ""
        top.report(
            "kind", ("kind",), f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}{hint}"
        )
        return
    name = data.get("name")
    label = name if isinstance(name, str) and name.strip() else ""
    reader = Reader(document, kind, label, parsed.problems)
    if name is None and kind in ("rules", "settings"):
        name = ""  # optional: problems then read `rules: ...`
    elif name is None and kind != "test":
        reader.report("missing-key", (), f"{_a(kind)} needs a 'name'")
        return
    elif kind == "test":
        if not isinstance(name, str) or not name.strip():
            reader.report(
                "missing-key", ("name",), "a test needs a 'name' that says what it checks"
            )
            return
    elif kind == "event":
        if reader.text(name, ("name",)) is None:
            return
        if name in SEGMENT_EVENTS:
            reader.report(
                "reserved-event",
                ("name",),
                f"event name '{name}' is reserved: journeyman records it when a profile "
                "enters or leaves a segment; give your event another name",
            )
            return
        if name in REACTION_EVENTS or name in CONSENT_EVENTS:
            what = "reaction" if name in REACTION_EVENTS else "consent"
            reader.report(
                "reserved-event",
                ("name",),
                f"event name '{name}' is reserved: journeyman defines this {what} event "
                "and its properties itself; give your event another name",
            )
            return
        if name == GOAL_REACHED:
            reader.report(
                "reserved-event",
                ("name",),
                f"event name '{name}' is reserved: journeyman records it when an instance "
                "reaches one of its journey's goals; give your event another name",
            )
            return
        if name == ACCOUNT_UPDATED:
            reader.report(
                "reserved-event",
                ("name",),
                f"event name '{name}' is reserved: a group call that changes its account's "
                "traits records it, with the changed traits; give your event another name",
            )
            return
    elif reader.name_of(name, ("name",), "'name'") is None:
        return
    assert isinstance(name, str)
    key = (kind, "" if kind == "settings" else name)  # settings apply to the whole workspace
    if key in parsed.documents:
        _duplicate(reader, parsed.documents[key])
        # Its own problems are still worth reporting; its definitions are not kept.
        scratch = Parsed()
        scratch.problems = parsed.problems
        _READERS[kind](reader, data, scratch)
        return
    parsed.documents[key] = document
    parsed.names[kind].add(name)
    _READERS[kind](reader, data, parsed)


def _duplicate(r: Reader, first: Document) -> None:
    where = f"{first.file}:{first.line}"
    if r.kind == "settings":
        r.report(
            "duplicate", (), f"a workspace has one settings document (the first is at {where})"
        )
    elif r.kind == "rules" and not r.name:
        r.report("duplicate", (), f"give each rules document a 'name' (another is at {where})")
    else:
        r.report("duplicate", ("name",), f"duplicate {r.kind} name (first defined at {where})")


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _origin(reader: Reader, path: Path = ()) -> m.Origin:
    return m.Origin(reader.document.file, reader.line(path))


# event


def _read_event(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    r.mapping(data, (), ("kind", "name", "description", "identity", "schema", *_VIEWS))
    identity = r.choice(data.get("identity", "userId"), ("identity",), m.IDENTITIES)
    view = _event_view(r, data, parsed)
    schema = data.get("schema", {"type": "object"})
    validator = None
    if not isinstance(schema, dict):
        r.report("type", ("schema",), "'schema' must be a JSON Schema mapping")
    else:
        try:
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(schema) if _refs_resolve(r, schema) else None
        except SchemaError as error:
            where = ("schema", *error.absolute_path)
            r.report("schema", where, f"'schema' is not a valid JSON Schema: {error.message}")
    if identity is not None and validator is not None:
        parsed.events[r.name] = m.EventDefinition(
            r.name, identity, schema, validator, _origin(r), quick_check(schema), view=view
        )


_VIEWS = ("page", "screen")


def _event_view(r: Reader, data: dict[str, Any], parsed: Parsed) -> tuple[str, str] | None:
    """``page: <name>`` or ``screen: <name>``: the page or screen call the event stands for."""
    given = [key for key in _VIEWS if key in data]
    if len(given) > 1:
        r.report("one-of", ("screen",), "an event is a 'page' or a 'screen', not both")
    if not given:
        return None
    key, name = given[0], data[given[0]]
    if not isinstance(name, str) or not name.strip():
        r.report("type", (key,), f"'{key}' must name the {key} (a non-empty string)")
        return None
    for other in parsed.events.values():
        if other.view == (key, name):
            where = f"{other.origin.file}:{other.origin.line}"
            message = f"event {other.name} is the {key} {name!r} already ({where})"
            r.report("duplicate", (key,), message)
            return None
    return key, name


def _refs_resolve(r: Reader, schema: dict[str, Any]) -> bool:
    """Whether every ``$ref`` points inside the schema: no schema is ever fetched."""
    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(schema))
    sound = True
    for path, ref in _refs(schema, ("schema",)):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            r.report("schema", path, f"'$ref' {ref!r} points to nothing in this schema")
            sound = False
    return sound


def _refs(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("$ref", "$dynamicRef") and isinstance(item, str):
                yield (*path, key), item
            elif key not in ("const", "enum", "default", "examples"):  # data, not schemas
                yield from _refs(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _refs(item, (*path, index))


# template


def _read_template(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    channel = r.choice(data.get("channel"), ("channel",), m.CHANNELS)
    allowed_fields = CHANNEL_FIELDS[channel] if channel else _ANY_CHANNEL_FIELDS
    keys = ("kind", "name", "description", "channel", "to", "tracking", "topic", "transactional")
    r.mapping(data, (), (*keys, *allowed_fields))
    if channel is None:
        return
    fields = {}
    for key in allowed_fields:
        if key in data:
            template = r.template(data[key], (key,), escape=key in _ESCAPED_FIELDS)
            if template is not None:
                fields[key] = template
    if channel == "email" and "subject" not in data:
        r.report("missing-key", (), "an email template needs a 'subject'")
    if channel == "email" and not ("html" in data or "text" in data):
        r.report("missing-key", (), "an email template needs 'html' or 'text'")
    if channel in ("sms", "push") and "body" not in data:
        r.report(
            "missing-key",
            (),
            f"{'an' if channel == 'sms' else 'a'} {channel} template needs a 'body'",
        )
    to = r.template(data["to"], ("to",)) if "to" in data else None
    topic = r.name_of(data["topic"], ("topic",), "'topic'") if "topic" in data else None
    transactional = bool(r.boolean(data.get("transactional", False), ("transactional",)))
    tracking = r.boolean(data.get("tracking", not transactional), ("tracking",))
    if topic is not None and transactional:
        r.report("value", ("topic",), "a transactional template has no 'topic'")
    parsed.templates[r.name] = m.MessageTemplate(
        r.name,
        channel,
        fields,
        to,
        _origin(r),
        tracking=tracking is True,
        topic=topic,
        transactional=transactional,
    )


# subscription


def _read_subscription(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    keys = ("kind", "name", "description", "channel", "default")
    r.mapping(data, (), keys, required=("channel", "default"), what="a subscription")
    channel = r.choice(data["channel"], ("channel",), m.CHANNELS) if "channel" in data else None
    default = (
        r.choice(data["default"], ("default",), ("opt_in", "opt_out"))
        if "default" in data
        else None
    )
    description = data.get("description", "")
    if not isinstance(description, str):
        r.report("type", ("description",), "'description' must be a string")
        description = ""
    if channel is not None and default is not None:
        chosen: Literal["opt_in", "opt_out"] = "opt_in" if default == "opt_in" else "opt_out"
        parsed.subscriptions[r.name] = m.Subscription(
            r.name, channel, description, chosen, _origin(r)
        )


# action


def _read_action(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    keys = ("kind", "name", "description", "method", "url", "headers", "body", "timeout", "allow")
    r.mapping(data, (), keys, required=("url",))
    method = data.get("method", "POST")
    method = r.choice(
        method.upper() if isinstance(method, str) else method,
        ("method",),
        ("GET", "POST", "PUT", "PATCH", "DELETE"),
    )
    url = r.template(data["url"], ("url",)) if "url" in data else None
    allow = _allow(r, data)
    if url is not None:
        _check_url_secrets(r, url.source)
        origin, problem = url_origin(url.source)
        if origin is None:
            r.report("url", ("url",), f"'url' {problem}")
        elif allow is not None:
            _check_target(r, ("url",), origin, allow)
    headers = {}
    raw_headers = data.get("headers", {})
    if r.mapping(raw_headers, ("headers",), raw_headers if isinstance(raw_headers, dict) else ()):
        for key, value in raw_headers.items():
            path = ("headers", key)
            if _SECRET_HEADER.search(key) and not _ENV_REFERENCE.search(str(value)):
                r.report("secret", path, f"header '{key}' looks secret: write it as ${{ENV_VAR}}")
            template = r.template(value, path)
            if template is not None:
                headers[key] = template
    body = r.template(data["body"], ("body",)) if "body" in data else None
    timeout = r.duration(data.get("timeout", "10s"), ("timeout",), positive=True)
    if method and url and timeout is not None and allow is not None:
        action = m.Action(r.name, method, url, headers, body, timeout, _origin(r), allow)
        parsed.actions[r.name] = action


def _allow(r: Reader, data: dict[str, Any]) -> Allow | None:
    """The document's ``allow`` list (none is an empty one), or None when it is broken."""
    try:
        return Allow.parse(data.get("allow"))
    except AllowError as error:
        r.report("value", ("allow",), f"'allow' {error}")
        return None


def _check_target(r: Reader, path: Path, url: str, allow: Allow) -> None:
    """Calls to loopback, private or link-local hosts written in a document need 'allow'."""
    found = literal_target(url)
    if found is None:
        return
    host, what = found
    field = path[-1]
    if allowed_literal(allow, host):
        r.report("allowed-address", path, f"'{field}' calls {host}, {what}, which 'allow' permits")
    else:
        r.report(
            "private-address",
            path,
            f"'{field}' calls {host}, {what}: calls to loopback, private and link-local "
            f"addresses are refused unless 'allow' names them, such as allow: [{host}]",
        )


def _check_url_secrets(r: Reader, url: str) -> None:
    if _URL_USERINFO.match(url):
        r.report(
            "secret", ("url",), "'url' must not carry credentials: use a header with ${ENV_VAR}"
        )
    for name, value in _QUERY_PARAMETER.findall(url):
        words = {w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)}
        literal = not _ENV_REFERENCE.search(value) and "{{" not in value  # not profile data
        if words & _SECRET_WORDS and literal:
            r.report(
                "secret",
                ("url",),
                f"query parameter '{name}' looks secret: write it as ${{ENV_VAR}}",
            )


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
        most = r.count(cap["max"], (*path, "max"), 0) if "max" in cap else None
        per = r.duration(cap["per"], (*path, "per"), positive=True) if "per" in cap else None
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
        start = r.clock(window["from"], (*path, "from")) if "from" in window else None
        end = r.clock(window["to"], (*path, "to")) if "to" in window else None
        chosen = r.names(window.get("channels", list(m.CHANNELS)), (*path, "channels"), channels)
        action = r.choice(window.get("action", "defer"), (*path, "action"), ("defer", "drop"))
        if start is not None and start == end:
            message = f"quiet hours from {start:%H:%M} to {end:%H:%M} cover no time"
            r.report("zero-duration", (*path, "to"), message)
        if start and end and chosen and action in ("defer", "drop"):
            parsed.quiet_hours.append(m.QuietHours(start, end, chosen, action))  # type: ignore[arg-type]


def _read_settings(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    keys = ("kind", "name", "description", "timezone", "traits", "storage", "mode", "browser")
    r.mapping(data, (), keys)
    storage = data.get("storage")
    if storage is not None and r.text(storage, ("storage",)) is None:
        storage = None
    mode = r.choice(data.get("mode", "development"), ("mode",), ("development", "production"))
    zone = parsed.settings.timezone
    if "timezone" in data:
        try:
            zone = parse_zone(data["timezone"])
        except TimeFormatError as error:
            r.report("time", ("timezone",), f"'timezone': {error}")
    names = _trait_names(r, data.get("traits"), ("traits",))
    browser = _read_browser(r, data["browser"]) if "browser" in data else m.BrowserPolicy()
    parsed.settings = m.Settings(zone, names, storage, mode or "development", browser)


def _trait_names(r: Reader, value: Any, path: Path) -> frozenset[str]:
    traits = r.sequence(value, path) or []
    names = frozenset(t for t in traits if isinstance(t, str) and t)
    if len(names) != len(traits):
        r.report("type", path, f"'{path[-1]}' must be a list of trait names")
    return names


def _read_browser(r: Reader, data: Any) -> m.BrowserPolicy:
    """``browser:``: what calls sent with the client key may do (see BrowserPolicy)."""
    path: Path = ("browser",)
    found = r.mapping(data, path, ("traits", "user_id", "rate", "burst"))
    if found is None:
        return m.BrowserPolicy()
    default = m.BrowserPolicy()
    traits = _trait_names(r, found.get("traits"), (*path, "traits"))
    user_id = r.choice(found.get("user_id", "anonymous"), (*path, "user_id"), _USER_IDS)
    rate = r.number(found["rate"], (*path, "rate")) if "rate" in found else default.rate
    if rate == 0:
        r.report("value", (*path, "rate"), "'browser.rate' must be above 0 calls a second")
    burst = r.count(found["burst"], (*path, "burst"), 1) if "burst" in found else default.burst
    return m.BrowserPolicy(
        traits, user_id == "trusted", rate or default.rate, burst or default.burst
    )


_USER_IDS = ("anonymous", "trusted")


def _read_channel(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    # A channel's keys depend on its type and belong to the delivery adapters, which check
    # them when the workspace loads (journeyman.workspace); here it only needs a type.
    r.text(data.get("type"), ("type",))
    _check_channel_target(r, data)
    if data.get("name") not in m.CHANNELS:
        r.report(
            "unused-channel",
            ("name",),
            f"no template can use channel '{r.name}': templates use {', '.join(m.CHANNELS)}",
        )
    parsed.channels[r.name] = data


def _check_channel_target(r: Reader, data: dict[str, Any]) -> None:
    # A broken 'allow' is reported when the channel is built (journeyman.workspace).
    try:
        allow = Allow.parse(data.get("allow"))
    except AllowError:
        return
    for key in ("url", "base_url"):
        if isinstance(data.get(key), str):
            _check_target(r, (key,), data[key], allow)


# journey


def digest(data: Any) -> str:
    """A stable hash of a document's data: equal for documents that read the same."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _read_journey(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    r.mapping(data, (), JOURNEY_FIELDS, required=("entry", "steps"))
    written = data.get("entry")
    entry: dict[str, Any] = written if isinstance(written, dict) else {}
    if "schedule" in entry:
        entry_event, entry_segment, schedule = _scheduled_entry(r, entry)
    else:
        (entry_event, entry_segment), schedule = _entry(r, written), None
    entry_when = r.expression(entry["when"], ("entry", "when")) if "when" in entry else None
    reentry = _reentry(r, data.get("reentry", "after 5m"))
    timeout = r.duration(data.get("timeout", "91d"), ("timeout",), positive=True)
    exits = []
    for index, item in enumerate(r.sequence(data.get("exit"), ("exit",)) or ()):
        path: Path = ("exit", index)
        exit_ = _exit(r, item, path)
        if exit_ is not None:
            exits.append(exit_)
    ignore_caps = r.boolean(data.get("ignore_caps", False), ("ignore_caps",))
    goals = _goals(r, data.get("goals"))
    exit_on_goal = _exit_on_goal(r, data, goals)
    holdout = _holdout(r, data["holdout"]) if "holdout" in data else 0.0
    steps = _read_steps(r, data["steps"]) if "steps" in data else {}
    if not steps:
        return
    if holdout:
        _check_holdout_arms(r, steps)
    # A journey with a broken field is kept all the same, so that its steps and references
    # are checked in this pass too; its errors keep it out of any workspace. A timeout that
    # cannot be read is taken as endless, so that no wait is measured against it.
    journey = m.Journey(
        name=r.name,
        entry_event=entry_event or "",
        entry_when=entry_when,
        reentry=reentry or m.Reentry("always"),
        timeout=timedelta.max if timeout is None else timeout,
        exits=tuple(exits),
        ignore_caps=bool(ignore_caps),
        steps=steps,
        origin=_origin(r),
        digest=digest(data),
        document=data,
        entry_segment=entry_segment,
        goals=goals,
        exit_on_goal=exit_on_goal,
        holdout=holdout,
        entry_schedule=schedule,
    )
    parsed.journeys[r.name] = journey


def _entry(r: Reader, value: Any) -> tuple[str | None, str | None]:
    """(the entry event, the segment) of ``entry: {event: ...}`` or ``entry: {segment: ...}``."""
    entry = r.mapping(value, ("entry",), [k for k in ENTRY_FIELDS if k != "schedule"]) or {}
    if ("event" in entry) == ("segment" in entry):
        if isinstance(value, dict):
            message = "'entry' needs exactly one of 'event' (an event name) or 'segment'"
            r.report("one-of", ("entry",), message)
        return None, None
    if "segment" in entry:
        segment = r.name_of(entry["segment"], ("entry", "segment"), "'segment'")
        return ("segment_entered" if segment else None), segment
    return r.text(entry["event"], ("entry", "event")), None


def _scheduled_entry(
    r: Reader, entry: dict[str, Any]
) -> tuple[str | None, str | None, Schedule | None]:
    """``entry: {segment: NAME, schedule: {...}}``, or with no segment (every profile)."""
    r.mapping(entry, ("entry",), [k for k in ENTRY_FIELDS if k != "event"])
    segment = None
    if "segment" in entry:
        segment = r.name_of(entry["segment"], ("entry", "segment"), "'segment'")
    return SCHEDULED_EVENT, segment, _schedule(r, entry["schedule"])


def _schedule(r: Reader, value: Any) -> Schedule | None:
    """``"0 9 * * 1"`` (cron) or ``{every | cron | at, timezone, rate}``."""
    path: Path = ("entry", "schedule")
    written = {"cron": value} if isinstance(value, str) else value
    found = r.mapping(written, path, SCHEDULE_FIELDS)
    if found is None:
        return None
    kinds = [key for key in ("every", "cron", "at") if key in found]
    if len(kinds) != 1:
        message = "'schedule' needs exactly one of 'every', 'cron' or 'at'"
        r.report("one-of", path, message)
        return None
    kind = kinds[0]
    try:
        zone = read_zone(str(found["timezone"])) if "timezone" in found else ""
    except ScheduleError as error:
        r.report("time", (*path, "timezone"), f"'timezone': {error}")
        return None
    rate = _rate(r, found.get("rate", DEFAULT_RATE), (*path, "rate"))
    try:
        return _schedule_of(kind, found[kind], zone, rate)
    except ScheduleError as error:
        r.report("value", (*path, kind), f"'{kind}': {error}")
        return None


def _schedule_of(kind: str, value: Any, zone: str, rate: float) -> Schedule:
    source = str(value)
    if kind == "at":
        at = value if isinstance(value, datetime) else _local_datetime(source)
        return Schedule(source, zone, rate, at=at.replace(tzinfo=None, microsecond=0))
    if not isinstance(value, str):
        raise ScheduleError(f"{value!r} must be text")
    if kind == "cron":
        return Schedule(source, zone, rate, cron=read_cron(value))
    days, clock = read_every(value)
    return Schedule(source, zone, rate, days=days, time=clock)


def _local_datetime(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"{text!r} is no date and time (write 2027-01-04T09:00)") from None


def _rate(r: Reader, value: Any, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        r.report(
            "value", path, f"'rate' must be a number of profiles a second above 0, not {value!r}"
        )
        return DEFAULT_RATE
    return float(value)


def _exit(r: Reader, item: Any, path: Path) -> m.Exit | None:
    """One exit criterion: ``{event: name, when: ...}`` or ``{segment_exited: segment}``."""
    found = r.mapping(item, path, EXIT_FIELDS, (), "an exit")
    if found is None:
        return None
    if ("event" in found) == ("segment_exited" in found):
        message = "an exit needs exactly one of 'event' or 'segment_exited' (a segment)"
        r.report("one-of", path, message)
        return None
    when = r.expression(found["when"], (*path, "when")) if "when" in found else None
    if "segment_exited" in found:
        segment = r.name_of(found["segment_exited"], (*path, "segment_exited"), "'segment_exited'")
        return m.Exit("segment_exited", when, segment) if segment else None
    if not r.text(found["event"], (*path, "event")):
        return None
    return m.Exit(found["event"], when)


# goals

_GOAL_KEYS = tuple(GOAL_FIELDS)


def _goals(r: Reader, value: Any) -> tuple[m.Goal, ...]:
    """``goals:``: each a name, an event, a window after entry, and optionally a ``when``,
    a ``value`` and ``primary: true`` (on one goal at most)."""
    found: list[m.Goal] = []
    for index, item in enumerate(r.sequence(value, ("goals",)) or ()):
        goal = _goal(r, item, ("goals", index))
        if goal is None:
            continue
        if any(other.name == goal.name for other in found):
            r.report("duplicate", ("goals", index, "name"), f"duplicate goal name '{goal.name}'")
            continue
        found.append(goal)
    if sum(goal.primary for goal in found) > 1:
        r.report("value", ("goals",), "only one goal may be 'primary: true'")
    return tuple(found)


def _goal(r: Reader, item: Any, path: Path) -> m.Goal | None:
    spec = r.mapping(item, path, _GOAL_KEYS, ("name", "event", "within"), "a goal")
    if spec is None or not {"name", "event", "within"} <= spec.keys():
        return None
    name = r.name_of(spec["name"], (*path, "name"), "a goal's 'name'")
    reader = r.within(f"goal {name}: ") if name else r
    event = reader.name_of(spec["event"], (*path, "event"), "a goal's 'event'")
    within = reader.duration(spec["within"], (*path, "within"), positive=True)
    when = reader.expression(spec["when"], (*path, "when")) if "when" in spec else None
    worth = reader.expression(spec["value"], (*path, "value")) if "value" in spec else None
    primary = reader.boolean(spec.get("primary", False), (*path, "primary"))
    description = spec.get("description", "")
    if not isinstance(description, str):
        reader.report("type", (*path, "description"), "'description' must be text")
    if name is None or event is None or within is None or not within:
        return None
    if ("when" in spec and when is None) or ("value" in spec and worth is None):
        return None
    return m.Goal(name, event, within, when, worth, bool(primary))


def _exit_on_goal(r: Reader, data: dict[str, Any], goals: tuple[m.Goal, ...]) -> bool:
    if "exit_on_goal" not in data:
        return False
    found = r.boolean(data["exit_on_goal"], ("exit_on_goal",))
    if found and not goals and not data.get("goals"):
        r.report("value", ("exit_on_goal",), "'exit_on_goal' needs 'goals' to reach")
    return bool(found)


_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


def _holdout(r: Reader, value: Any) -> float:
    """``holdout: 10%``: the share of entries held out of the journey, as a fraction."""
    text = value.strip() if isinstance(value, str) else None
    found = _PERCENT.fullmatch(text) if text is not None else None
    if found is None:
        message = "'holdout' must be a percentage of entries, such as 10%"
        r.report("type", ("holdout",), message)
        return 0.0
    percent = float(found.group(1))
    if not 0 < percent < 100:
        message = f"'holdout' must be above 0% and below 100%, not {text}"
        r.report("value", ("holdout",), message)
        return 0.0
    return percent / 100


def _check_holdout_arms(r: Reader, steps: Mapping[str, m.Step]) -> None:
    """A journey-level holdout is the journey's one holdout: no split arm may be another,
    nor take the names the report gives the held out and the rest."""
    for index, step in enumerate(steps.values()):
        if not isinstance(step, m.Split):
            continue
        path: Path = ("steps", index, "split")
        if step.holdouts:
            message = (
                "a split arm cannot be 'holdout: true' in a journey with 'holdout: N%': "
                "the journey-level holdout is its one holdout"
            )
            r.report("value", path, message)
        for name in set(step.names) & {HOLDOUT_ARM, TREATED_ARM}:
            message = f"a split arm cannot be named '{name}' in a journey with 'holdout: N%'"
            r.report("value", path, message)


# segment


def _read_segment(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    r.mapping(data, (), ("kind", "name", "description", "when", "list"))
    description = data.get("description", "")
    if not isinstance(description, str):
        r.report("type", ("description",), "'description' must be text")
        description = ""
    listed = data.get("list", False)
    if not isinstance(listed, bool):
        r.report("type", ("list",), "'list' must be true or false")
        return
    if listed == ("when" in data):
        message = "a segment needs exactly one of 'when' (a condition) or 'list: true'"
        r.report("one-of", ("list",) if listed else ("when",), message)
        return
    if listed:  # its members are uploaded; no condition moves them
        never = compile_expression("false")
        parsed.segments[r.name] = m.Segment(r.name, description, never, _origin(r), True)
        return
    when = r.expression(data["when"], ("when",))
    if when is not None:
        parsed.segments[r.name] = m.Segment(r.name, description, when, _origin(r))


def _reentry(r: Reader, value: Any) -> m.Reentry | None:
    if value in ("never", "always"):
        return m.Reentry(value)
    if isinstance(value, str) and value.startswith("after "):
        period = r.duration(value[6:].strip(), ("reentry",))
        if period is not None and not period:
            message = "'reentry': a window of 0s lets a profile in again at once: write always"
            r.report("zero-duration", ("reentry",), message)
        return m.Reentry("after", period) if period is not None else None
    r.report(
        "value",
        ("reentry",),
        f"'reentry' must be never, always or 'after <duration>', not {value!r}",
    )
    return None


def _read_steps(r: Reader, value: Any) -> dict[str, m.Step]:
    items = r.sequence(value, ("steps",))
    if not items:
        if items is not None:
            r.report("missing-key", ("steps",), "'steps' must list at least one step")
        return {}
    ids: list[str | None] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        step_id = _step_id(r, item, ("steps", index), seen)
        ids.append(step_id)
        if step_id is not None:
            seen.add(step_id)
    # The step below each one (the next usable one), read from the bottom up: a journey of
    # thousands of steps is read in time proportional to its length.
    below: list[str | None] = []
    following: str | None = None
    for step_id in reversed(ids):
        below.append(following)
        following = step_id or following
    below.reverse()
    steps: dict[str, m.Step] = {}
    for index, item in enumerate(items):
        step_id = ids[index]
        if step_id is None:
            continue
        reader = r.within(f"step {step_id}: ")
        steps[step_id] = _read_step(reader, item, ("steps", index), below[index])
    return steps


def _step_id(r: Reader, item: Any, path: Path, earlier: set[str]) -> str | None:
    """The id of a step, or None (with a problem) when the step cannot be used."""
    if not isinstance(item, dict):
        r.report("type", path, f"a step must be a mapping with an 'id', not {describe(item)}")
        return None
    if "id" not in item:
        r.report("missing-key", path, "a step needs an 'id'")
        return None
    step_id = r.name_of(item["id"], (*path, "id"), "a step's 'id'")
    if step_id is not None and step_id in earlier:
        r.report("duplicate", (*path, "id"), f"duplicate step id '{step_id}'")
        return None
    return step_id


def _read_step(r: Reader, item: dict[str, Any], path: Path, below: str | None) -> m.Step:
    """One step; a step too broken to use becomes a plain :class:`Step` with its links."""
    types = [key for key in STEP_TYPES if key in item]
    origin = _origin(r, path)
    written_next = item.get("next")
    fallback = m.Step(item["id"], written_next if isinstance(written_next, str) else below, origin)
    if len(types) != 1:
        problem = "has none" if not types else f"has {', '.join(types)}"
        r.report(
            "one-of", path, f"a step needs exactly one of {', '.join(STEP_TYPES)}; it {problem}"
        )
        if "goto" in item:
            r.report("unknown-key", (*path, "goto"), "use 'next' to name the step that follows")
        return fallback
    kind = types[0]
    step_kind = STEP_KINDS[kind]
    common = [key for key in STEP_COMMON if key != "next" or step_kind.goes_on]
    allowed = (*common, *step_kind.fields)
    if "goto" in item:  # a common slip, with a better hint than "unknown key"
        r.report("unknown-key", (*path, "goto"), "use 'next' to name the step that follows")
    written = {key: value for key, value in item.items() if key != "goto"}
    r.mapping(written, path, allowed, what=f"{_a(kind)} step")
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
        duration = r.duration(value, where, positive=True)
        return m.Wait(**base, duration=duration) if duration is not None else None
    if not isinstance(value, dict):
        r.report("type", where, f"'wait' must be a duration or a mapping, not {describe(value)}")
        return None
    spec = r.mapping(value, where, WAIT_FIELDS, what="'wait'")
    if spec is None:
        return None
    if ("until" in spec) == ("until_local" in spec):
        r.report("missing-key", where, "'wait' needs a duration, 'until' or 'until_local'")
        return None
    if "until" in spec:
        if "days" in spec:
            r.report("unknown-key", (*where, "days"), "'days' goes with 'until_local'")
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
    spec = r.mapping(item["wait_for"], where, WAIT_FOR_FIELDS, what="'wait_for'")
    if spec is None:
        return None
    reaction = _reaction(r, spec, where) if "reaction" in spec else {}
    if ("event" in spec) == ("reaction" in spec):
        r.report("one-of", where, "'wait_for' needs exactly one of 'event' or 'reaction'")
        return None
    event = r.text(spec.get("event"), (*where, "event")) if "event" in spec else None
    when = r.expression(spec["when"], (*where, "when")) if "when" in spec else None
    timeout = None
    if "timeout" in spec:
        timeout = r.duration(spec["timeout"], (*where, "timeout"), positive=True)
    on_event = _target(r, item["on_event"], (*path, "on_event")) if "on_event" in item else None
    on_timeout = (
        _target(r, item["on_timeout"], (*path, "on_timeout")) if "on_timeout" in item else None
    )
    if "on_timeout" in item and "timeout" not in spec:
        r.report(
            "missing-key", (*path, "on_timeout"), "'on_timeout' needs a 'timeout' in 'wait_for'"
        )
    if reaction is None or (event is None and not reaction):
        return None
    return m.WaitFor(
        **base,
        event=event or REACTIONS[reaction["reaction"]],
        when=when,
        timeout=timeout,
        on_event=on_event,
        on_timeout=on_timeout,
        **reaction,
    )


def _reaction(r: Reader, spec: dict[str, Any], where: Path) -> dict[str, Any] | None:
    """The short form's fields (``reaction``, ``to``, ``url``, ``machine``), or None."""
    reaction = r.choice(spec["reaction"], (*where, "reaction"), WAIT_REACTIONS)
    to = r.name_of(spec["to"], (*where, "to"), "'to'") if "to" in spec else None
    if "to" not in spec:
        r.report("missing-key", where, "'reaction' needs 'to': the send step whose message it is")
    fields: dict[str, Any] = {"reaction": reaction, "to": to}
    for key in ("url", "machine"):
        if key not in spec:
            continue
        if key not in _REACTION_OPTIONS.get(str(reaction), ()):
            which = "clicked" if key == "url" else "opened"
            r.report("unknown-key", (*where, key), f"'{key}' goes with 'reaction: {which}'")
            return None
        if key == "url":
            fields["url"] = r.text(spec["url"], (*where, "url"))
        else:
            fields["machine"] = r.boolean(spec["machine"], (*where, "machine"))
    if reaction is None or to is None or any(value is None for value in fields.values()):
        return None
    return fields


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
                r.report("branch-otherwise", at, "'otherwise' must be the last case of a branch")
            otherwise = _target(r, case["otherwise"], (*at, "otherwise"))
            continue
        found = r.mapping(case, at, BRANCH_CASE_FIELDS, ("when", "goto"), "a case")
        if found is None or "when" not in found or "goto" not in found:
            continue
        when = r.expression(found["when"], (*at, "when"))
        goto = _target(r, found["goto"], (*at, "goto"))
        if when is not None and goto is not None:
            cases.append((when, goto))
    if otherwise is None and not any(isinstance(c, dict) and "otherwise" in c for c in items):
        r.report("branch-otherwise", where, "a branch needs a final {otherwise: <step>} case")
    # Kept without a usable `otherwise` (already an error), so its cases are checked too.
    return m.Branch(**base, cases=tuple(cases), otherwise=otherwise or "")


def _split(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    where = (*path, "split")
    arms = []
    names: list[str] = []
    holdouts: set[str] = set()
    unweighted: list[tuple[Path, str]] = []  # arms of weight 0: where, and where they go
    for index, arm in enumerate(r.sequence(item["split"], where) or ()):
        at = (*where, index)
        found = r.mapping(arm, at, SPLIT_ARM_FIELDS, ("weight", "goto"), "a split arm")
        if found is None:
            continue
        if "weight" not in found or "goto" not in found:
            continue
        weight = r.number(found["weight"], (*at, "weight"))
        goto = _target(r, found["goto"], (*at, "goto"))
        name = _arm_name(r, found, at, goto, names)
        holdout = r.boolean(found.get("holdout", False), (*at, "holdout"))
        if weight is not None and goto is not None and name is not None:
            arms.append((weight, goto))
            names.append(name)
            if holdout:
                holdouts.add(name)
            if not weight:
                unweighted.append(((*at, "weight"), goto))
    if not arms or sum(weight for weight, _ in arms) <= 0:
        r.report("split-weights", where, "a split needs at least one arm with a weight above 0")
        return None
    for at, goto in unweighted:
        r.report("zero-weight", at, f"the arm to {goto} has weight 0: no profile takes it")
    return m.Split(**base, arms=tuple(arms), names=tuple(names), holdouts=frozenset(holdouts))


def _arm_name(
    r: Reader, found: dict[str, Any], at: Path, goto: str | None, earlier: list[str]
) -> str | None:
    """A split arm's name: its ``name``, else the step it goes to; unique in the split."""
    name = goto
    if "name" in found:
        name = r.name_of(found["name"], (*at, "name"), "an arm's 'name'")
    # Unnamed arms to one step were always allowed: they are one arm, unless one of them
    # is a holdout, which must be told apart.
    if name is not None and name in earlier and ("name" in found or found.get("holdout")):
        what = "name" if "name" in found else "goto"
        message = f"two arms are named '{name}': give each arm of a split its own 'name'"
        r.report("duplicate", (*at, what), message)
        return None
    return name


def _experiment(r: Reader, item: dict[str, Any], path: Path, base: dict[str, Any]) -> m.Step | None:
    """``experiment: [{name, weight, send | goto}, ...]`` and an optional ``winner:``."""
    where = (*path, "experiment")
    variants: list[m.Variant] = []
    broken = False
    for index, written in enumerate(r.sequence(item["experiment"], where) or ()):
        variant = _variant(r, written, (*where, index), [v.name for v in variants])
        broken = broken or variant is None
        if variant is not None:
            variants.append(variant)
    if not broken and len(variants) < 2:
        r.report("experiment-variants", where, "an experiment needs at least two variants")
        return None
    winner = _winner(r, item["winner"], (*path, "winner")) if "winner" in item else None
    if broken or ("winner" in item and winner is None):
        return None
    return m.Experiment(**base, variants=tuple(variants), winner=winner)


def _variant(r: Reader, written: Any, at: Path, earlier: list[str]) -> m.Variant | None:
    found = r.mapping(written, at, VARIANT_FIELDS, ("name", "weight"), "a variant")
    if found is None or "name" not in found or "weight" not in found:
        return None
    name = r.name_of(found["name"], (*at, "name"), "a variant's 'name'")
    if name is not None and name in earlier:
        message = f"two variants are named '{name}': give each variant its own 'name'"
        r.report("duplicate", (*at, "name"), message)
        return None
    weight = r.number(found["weight"], (*at, "weight"))
    if weight is not None and weight <= 0:
        r.report("value", (*at, "weight"), f"a variant's 'weight' must be above 0, not {weight:g}")
        return None
    if ("send" in found) == ("goto" in found):
        r.report("one-of", at, "a variant needs exactly one of 'send' (a template) or 'goto'")
        return None
    template = goto = None
    if "send" in found:
        template = r.name_of(found["send"], (*at, "send"), "'send'")
    else:
        goto = _target(r, found["goto"], (*at, "goto"))
    if name is None or weight is None or (template is None and goto is None):
        return None
    return m.Variant(name, weight, template, goto)


def _winner(r: Reader, written: Any, at: Path) -> m.WinnerPolicy | None:
    found = r.mapping(written, at, WINNER_FIELDS, what="'winner'")
    if found is None:
        return None
    metric = ""
    if "metric" in found:
        metric = r.name_of(found["metric"], (*at, "metric"), "'metric'") or ""
    least = r.count(found.get("min_per_variant", 100), (*at, "min_per_variant"), minimum=1)
    min_time = r.duration(found.get("min_time", "0s"), (*at, "min_time"))
    confidence = r.number(found.get("confidence", 0.95), (*at, "confidence"))
    if confidence is not None and not 0.5 < confidence < 1:
        message = f"'confidence' must be above 0.5 and below 1, such as 0.95, not {confidence:g}"
        r.report("value", (*at, "confidence"), message)
        return None
    if ("metric" in found and not metric) or least is None or min_time is None:
        return None
    if confidence is None:
        return None
    return m.WinnerPolicy(metric, least, min_time, confidence)


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
    keys = STEP_KINDS["update_profile"].fields["update_profile"].fields
    spec = r.mapping(item["update_profile"], where, keys, what="'update_profile'")
    if spec is None:
        return None
    values: dict[str, Any] = {}
    raw = spec.get("set", {})
    if r.mapping(raw, (*where, "set"), raw if isinstance(raw, dict) else ()) is not None:
        for key, value in raw.items():
            if key in ("id",):
                r.report(
                    "reserved-trait",
                    (*where, "set", key),
                    "'id' is the profile's key and cannot be set",
                )
            elif isinstance(value, dict):
                found = r.mapping(value, (*where, "set", key), ("expr",), ("expr",), "a value")
                if found and "expr" in found:
                    values[key] = r.expression(found["expr"], (*where, "set", key, "expr"))
            else:
                values[key] = value
    unset = r.sequence(spec.get("unset"), (*where, "unset")) or []
    if not all(isinstance(u, str) for u in unset):
        r.report("type", (*where, "unset"), "'unset' must be a list of trait names")
        return None
    if not values and not unset:
        r.report("missing-key", where, "'update_profile' needs 'set' or 'unset'")
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
    "experiment": _experiment,
    "send": _send,
    "call": _call,
    "update_profile": _update,
    "jump": _jump,
    "end": _end,
}


# test


def _read_test(r: Reader, data: dict[str, Any], parsed: Parsed) -> None:
    keys = ("kind", "name", "description", "start", "until", "events", "expect", "fail")
    r.mapping(data, (), (*keys, "variants"), required=("events", "expect"))
    start = _test_start(r, data["start"]) if "start" in data else DEFAULT_TEST_START
    until = r.duration(data["until"], ("until",)) if "until" in data else None
    events = [
        _test_event(r, item, ("events", i)) for i, item in enumerate(_list(r, data, "events"))
    ]
    expect = [
        _expectation(r, item, ("expect", i)) for i, item in enumerate(_list(r, data, "expect"))
    ]
    fail = r.sequence(data.get("fail"), ("fail",)) or []
    if not all(isinstance(f, str) for f in fail):
        r.report("type", ("fail",), "'fail' must be a list of steps (step or journey.step)")
    test = m.TestCase(
        name=r.name,
        start=start,
        until=until,
        events=tuple(e for e in events if e is not None),
        expect=tuple(x for x in expect if x is not None),
        fail=frozenset(f for f in fail if isinstance(f, str)),
        origin=_origin(r),
        variants=_test_variants(r, data.get("variants")),
    )
    parsed.tests.append(test)


def _test_variants(r: Reader, value: Any) -> tuple[tuple[str, str, str], ...]:
    """``variants: [{profile: u1, step: subject_test, is: b}]``: forced variants."""
    found = []
    for index, item in enumerate(r.sequence(value, ("variants",)) or ()):
        at: Path = ("variants", index)
        keys = ("profile", "step", "is")
        written = r.mapping(item, at, keys, keys, "a forced variant")
        if written is None or any(key not in written for key in keys):
            continue
        profile = written["profile"]
        profile = (
            str(profile) if isinstance(profile, int) and not isinstance(profile, bool) else profile
        )
        texts = [r.text(profile, (*at, "profile")), r.text(written["step"], (*at, "step"))]
        texts.append(r.name_of(written["is"], (*at, "is"), "'is'"))
        if all(texts):
            found.append((str(texts[0]), str(texts[1]), str(texts[2])))
    return tuple(found)


def _test_start(r: Reader, value: Any) -> datetime:
    try:
        start = parse_timestamp(value)
    except TimeFormatError as error:
        r.report("time", ("start",), f"'start': {error}")
        return DEFAULT_TEST_START
    if start.year >= 9000:  # leaves room for every timeout and wait after it
        r.report("time", ("start",), f"'start': {value!r} is too far in the future")
        return DEFAULT_TEST_START
    return start


def _list(r: Reader, data: dict[str, Any], key: str) -> list[Any]:
    return r.sequence(data.get(key), (key,)) or []


_TEST_CALLS = ("track", "identify", "page", "screen", "alias", "group")
# What a reaction in a test's events may add to the step it names.
_TEST_REACTION_OPTIONS = {"clicked": ("url",), "opened": ("machine",), "bounced": ("bounce",)}


def _test_event(r: Reader, item: Any, path: Path) -> m.TestEvent | None:
    allowed = ("at", *_TEST_CALLS, *REACTIONS, "profile", "url", "machine", "bounce")
    found = r.mapping(item, path, allowed, ("at",), "a test event")
    if found is None:
        return None
    at = r.duration(found["at"], (*path, "at")) if "at" in found else None
    types = [t for t in (*_TEST_CALLS, *REACTIONS) if t in found]
    if len(types) != 1:
        r.report(
            "one-of",
            path,
            f"a test event needs exactly one of {', '.join(_TEST_CALLS)} or a reaction "
            f"({', '.join(REACTIONS)})",
        )
        return None
    if types[0] in REACTIONS:
        reaction = _test_reaction(r, found, path, types[0])
        if at is None or reaction is None:
            return None
        return m.TestEvent(at, "reaction", reaction, r.line(path))
    for key in ("profile", "url", "machine", "bounce"):
        if key in found:
            r.report("unknown-key", (*path, key), f"'{key}' goes with a reaction, such as opened")
    payload = found[types[0]]
    if not isinstance(payload, dict):
        r.report(
            "type", (*path, types[0]), f"'{types[0]}' must be a mapping, not {describe(payload)}"
        )
        return None
    if at is None:
        return None
    return m.TestEvent(at, types[0], payload, r.line(path))


def _test_reaction(
    r: Reader, found: dict[str, Any], path: Path, name: str
) -> dict[str, Any] | None:
    """``{reaction, step, ...}`` for a test event such as ``opened: welcome``, or None."""
    step = found[name]
    if not isinstance(step, str) or not step.strip():
        r.report("type", (*path, name), f"'{name}' must name a send step, not {describe(step)}")
        return None
    reaction: dict[str, Any] = {"reaction": name, "step": step}
    sound = True
    for key in ("profile", "url", "machine", "bounce"):
        if key not in found:
            continue
        value = found[key]
        if key != "profile" and key not in _TEST_REACTION_OPTIONS.get(name, ()):
            owner = next(k for k, keys in _TEST_REACTION_OPTIONS.items() if key in keys)
            r.report("unknown-key", (*path, key), f"'{key}' goes with '{owner}', not '{name}'")
            value = None
        elif key == "machine":
            value = r.boolean(value, (*path, key))
        elif key == "bounce":
            value = r.choice(value, (*path, key), ("hard", "soft"))
        elif isinstance(value, int) and not isinstance(value, bool) and key == "profile":
            value = str(value)  # a numeric user id, as expectations read it
        else:
            value = r.text(value, (*path, key))
        sound = sound and value is not None
        reaction[key] = value
    return reaction if sound else None


def _expectation(r: Reader, item: Any, path: Path) -> m.Expectation | None:
    allowed = (*_EXPECTATIONS, "at", "times", *_EXPECT_FILTERS)
    found = r.mapping(item, path, allowed, what="an expectation")
    if found is None:
        return None
    whats = [w for w in _EXPECTATIONS if w in found]
    if len(whats) != 1:
        r.report("one-of", path, f"an expectation needs exactly one of {', '.join(_EXPECTATIONS)}")
        return None
    what = whats[0]
    target = found[what]
    if target is True and what in ("exited", "timed_out"):
        target = ""
    if not isinstance(target, str):
        r.report("type", (*path, what), f"'{what}' must name what it expects, not {target!r}")
        return None
    at = r.duration(found["at"], (*path, "at")) if "at" in found else None
    times = r.count(found["times"], (*path, "times")) if "times" in found else None
    filters = _filters(r, found, path)
    return m.Expectation(what, target, at, times, filters, r.line(path))


def _filters(r: Reader, found: dict[str, Any], path: Path) -> dict[str, str]:
    filters = {}
    for key in _EXPECT_FILTERS:
        value = found.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            filters[key] = str(value)  # a number, such as a numeric user id, reads as text
        elif key in found:
            r.report("type", (*path, key), f"'{key}' must be a string, not {describe(value)}")
    return filters


_READERS: dict[str, Callable[[Reader, dict[str, Any], Parsed], None]] = {
    "event": _read_event,
    "template": _read_template,
    "subscription": _read_subscription,
    "action": _read_action,
    "journey": _read_journey,
    "rules": _read_rules,
    "settings": _read_settings,
    "channel": _read_channel,
    "test": _read_test,
    "segment": _read_segment,
}


def compile_journey(data: dict[str, Any], label: str) -> m.Journey | None:
    """A journey from its stored document, as published earlier; None if it cannot be read.

    Used for the versions that running instances entered: they were sound when they were
    published, so only the document itself is read again (references are not checked).
    """
    parsed = parse_documents([Document(file=label, line=1, data=data)])
    # Zero durations were allowed once: a version published then still runs as it did.
    if any(p.is_error and p.code != "zero-duration" for p in parsed.problems):
        return None
    return parsed.journeys.get(str(data.get("name")))
