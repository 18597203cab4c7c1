"""Trying a journey before it is published: its tests, a real profile, a template, a text.

Everything here runs on a virtual clock, in memory, and changes nothing anywhere:

- :func:`with_journey` puts a journey document (a draft) in place of the workspace's own
  (or beside the others, for a new journey), keeping every other file and document as
  written; :func:`load_with` loads the result as ``journeyman validate`` would.
- :func:`test_results` runs the workspace's ``kind: test`` documents with
  :func:`journeyman.journey_tests.run_test`, so failures read as ``journeyman test``
  prints them.
- :func:`replay` gives one stored profile (its traits, identities and account) and its
  stored events, in the order they came, to a :class:`~journeyman.simulator.Simulator`,
  and answers the path it takes through the journey, its end state, the messages it
  would get and the trace with its reasons. The simulator hands every message to nobody.
- :func:`preview` renders a template for a profile, with an SMS's size
  (:func:`sms_size`) and the variables the profile lacks.
- :func:`check_text` gives the message ``journeyman validate`` prints for an expression
  or a Liquid text that does not compile, with its column.

Each of the first three runs against a :class:`Deadline` when given one (a server gives
:data:`TEST_SECONDS`, :data:`TRY_SECONDS` and :data:`PREVIEW_SECONDS`): the simulator
and every template render check it as they go, and :class:`TooSlow` stops them once it
has passed. A journey that waits in a loop has timers forever, and a template's loops can
keep a thread busy for seconds; a server must not give a request its worker for that long.
A test run and a replay also stop (:class:`TooLong`) once they have made more trace lines
than they may (see :data:`~journeyman.journey_tests.TRACE_LIMIT`), so that what they keep
in memory stays bounded.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from journeyman.deadline import Deadline, TooSlow
from journeyman.domain import model as m
from journeyman.domain.core import Snapshot, recorded_by_journeyman
from journeyman.domain.documents import read_documents
from journeyman.domain.expressions import ExpressionError, compile_expression
from journeyman.domain.parse import parse_documents
from journeyman.domain.problems import Problem
from journeyman.domain.reactions import REACTION_EVENTS, REACTION_OUTCOMES
from journeyman.domain.schedules import SCHEDULED_EVENT
from journeyman.domain.state import Account, Event, Profile, SendMessage, StepRecord
from journeyman.domain.templates import TemplateError, compile_template, guarded
from journeyman.journey_tests import TooLong, both, bounded, format_trace, run_test
from journeyman.simulator import Simulator
from journeyman.web.layout import ENTRY
from journeyman.web.views import SAMPLE_PROFILE
from journeyman.workspace import Loaded, load_texts, workspace_files

__all__ = [
    "HORIZON",
    "PREVIEW_SECONDS",
    "TEST_SECONDS",
    "TRY_SECONDS",
    "Deadline",
    "Replay",
    "TooLong",
    "TooSlow",
    "check_text",
    "folder_texts",
    "load_with",
    "preview",
    "read_template",
    "replay",
    "replayed",
    "sample_profile",
    "sms_size",
    "test_results",
    "with_journey",
]

T = TypeVar("T")

HORIZON = timedelta(days=400)  # how far past now a replay to the end may look
TEST_SECONDS = 10.0  # how long the workspace's tests may run, all of them together
TRY_SECONDS = 10.0  # how long a try may replay a profile
PREVIEW_SECONDS = 2.0  # how long a preview may render a template


try:  # libyaml finds the documents several times faster
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment,misc,unused-ignore]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


# ---------------------------------------------------------------- a workspace with a draft


def folder_texts(root: Path) -> tuple[dict[str, str], list[Problem]]:
    """Every workspace file below ``root`` and its text, as ``load_workspace`` reads them,
    and a problem for each file that cannot be read."""
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for path in workspace_files(root):
        name = path.relative_to(root).as_posix()
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            message = f"cannot read the file: {error}"
            problems.append(Problem.of("unreadable-file", name, 1, "", "", message))
    return texts, problems


def with_journey(
    texts: Mapping[str, str], name: str, document: Mapping[str, Any]
) -> tuple[dict[str, str], str]:
    """``texts`` with journey ``name``'s document replaced by ``document`` (written as
    YAML), and the file it is in; every other document and file stays as written. A
    journey no file holds goes in a file of its own, ``journeys/<name>.yaml``."""
    text = yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)
    for file, source in texts.items():
        span = _journey_span(source, name)
        if span is not None:
            start, end = span
            # A document that began on its `---` line now begins on a line of its own.
            before = "\n" if start and source[start - 1] != "\n" else ""
            return {**texts, file: source[:start] + before + text + source[end:]}, file
    file = f"journeys/{name}.yaml"
    for number in itertools.count(2):
        if file not in texts:
            break
        file = f"journeys/{name}-{number}.yaml"
    return {**texts, file: text}, file


def _journey_span(source: str, name: str) -> tuple[int, int] | None:
    """Where in ``source`` the journey ``name``'s document is written, if it is."""
    try:
        nodes = list(yaml.compose_all(source, Loader=_Loader))
    except yaml.YAMLError:
        return None  # the file's own problem, which loading it reports
    for node in nodes:
        if not isinstance(node, yaml.MappingNode):
            continue
        keys = {
            k.value: v.value
            for k, v in node.value
            if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)
        }
        if keys.get("kind") == "journey" and keys.get("name") == name:
            return node.start_mark.index, node.end_mark.index
    return None


def load_with(
    texts: Mapping[str, str],
    problems: Sequence[Problem],
    root: Path | None,
    env: Mapping[str, str],
    name: str,
    document: Mapping[str, Any] | None,
) -> Loaded:
    """The workspace of ``texts`` with ``document`` as journey ``name`` (the workspace's
    own when None), loaded and checked as ``journeyman validate`` does."""
    if document is not None:
        texts, _ = with_journey(texts, name, document)
    return load_texts(texts, root, problems, env)


# ---------------------------------------------------------------- the workspace's tests


def test_results(workspace: m.Workspace, journey: str, deadline: Deadline | None) -> dict[str, Any]:
    """Every journey test of ``workspace``, run as ``journeyman test`` runs it; each checks
    ``deadline`` as it runs."""
    results: list[dict[str, Any]] = []
    check = deadline.check if deadline is not None else None
    for test in workspace.tests:
        if deadline is not None:
            deadline.done = f" ({len(results)} of {len(workspace.tests)} tests ran)"
        result = _checked(check, run_test, workspace, test, check)
        entered = sorted({r.journey for r in result.simulator.records if r.outcome == "entered"})
        results.append(
            {
                "name": test.name,
                "file": test.origin.file,
                "line": test.origin.line,
                # The journey tried, when the test runs it; else the first it runs.
                "journey": journey if journey in entered else next(iter(entered), None),
                "journeys": entered,
                "passed": result.passed,
                "failures": list(result.failures),
                "trace": format_trace(result.simulator),
            }
        )
    failed = sum(not r["passed"] for r in results)
    return {"passed": len(results) - failed, "failed": failed, "results": results}


# ---------------------------------------------------------------- a real profile


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay starts from: a stored profile as the store has it now."""

    profile: Profile
    identities: Sequence[tuple[str, str]]  # (kind, value): how events find the profile
    events: Sequence[tuple[Event, datetime]]  # each with when it was received, any order
    account: Account | None = None


class _Seeded(Simulator):
    """A simulator in which one profile exists before the first event, as stored."""

    def seed(self, replay: Replay) -> None:
        stored = replay.profile
        profile = Profile(
            id=stored.id,
            traits=dict(stored.traits),
            account=stored.account,
            suppressed=dict(stored.suppressed),
        )
        self._states[stored.id] = Snapshot(profile, [], new=False)
        for identity in replay.identities:
            self._identities[identity] = stored.id
            self._owned.setdefault(stored.id, set()).add(identity)
        if replay.account is not None:
            self._known.accounts[replay.account.id] = replay.account


def replayed(event: Event) -> bool:
    """Whether a stored event is one of the profile's own calls, which a replay gives the
    draft again. Reactions (deliveries, opens, clicks) answer messages the draft did not
    send, and what journeyman recorded itself (segment changes, scheduled runs' entries)
    the simulator records again as it happens."""
    return not (
        event.name in REACTION_EVENTS
        or event.name == SCHEDULED_EVENT
        or recorded_by_journeyman(event)
    )


def replay(
    workspace: m.Workspace,
    journey: str,
    given: Replay,
    now: datetime,
    until: Literal["now", "end"] = "now",
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """Replay ``given`` through ``workspace`` on a virtual clock, from its first event to
    ``now`` (or, with ``until="end"``, until no timer is left, within :data:`HORIZON`),
    and answer what journey ``journey`` did with the profile. The simulator checks
    ``deadline`` before each batch, and stops (:class:`TooLong`) at the trace limit."""
    events = sorted(((e, at) for e, at in given.events if replayed(e)), key=lambda pair: pair[1])
    start = min(events[0][1], now) if events else now
    sim = _Seeded(workspace, start)
    sim.check = bounded(sim) if deadline is None else both(deadline.check, bounded(sim))
    sim.seed(given)

    def run() -> None:
        for at, batch in itertools.groupby(events, key=lambda pair: pair[1]):
            sim.accept([event for event, _ in batch], at)
        sim.run_until(max(sim.now, now))
        horizon = sim.now + HORIZON
        while until == "end" and sim.next_wake is not None and sim.next_wake <= horizon:
            sim.run_until(sim.next_wake)

    _checked(sim.check, run)
    return _answer(sim, journey, given.profile.id, len(events))


def _checked(check: Callable[[], None] | None, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)``, with every template it renders checking ``check`` as it goes."""
    if check is None:
        return func(*args)
    with guarded(check):
        found = func(*args)
    check()  # a render it stopped rendered empty: say so rather than answer that
    return found


def _answer(sim: Simulator, journey: str, profile_id: str, events: int) -> dict[str, Any]:
    mine = sorted(
        (i for i in sim.instances.values() if i.journey == journey and i.profile_id == profile_id),
        key=lambda i: i.entered_at,
    )
    records = [r for r in sim.records if r.journey == journey and r.profile_id == profile_id]
    latest = mine[-1] if mine else None
    steps = [
        r.step
        for r in records
        if latest and r.instance_id == latest.id and r.step and r.outcome not in REACTION_OUTCOMES
    ]
    taken = [(a, b) for a, b in itertools.pairwise([ENTRY, *steps]) if a != b]
    messages = [
        _message(message)
        for message in sim.messages
        if message.journey == journey and message.profile_id == profile_id
    ]
    return {
        "profile": profile_id,
        "journey": journey,
        "events": events,
        "from": _iso(sim.start),
        "until": _iso(sim.now),
        "visited": [ENTRY, *dict.fromkeys(steps)] if latest else [],
        "taken": [list(pair) for pair in dict.fromkeys(taken)],
        "state": latest.status if latest else "not_entered",
        "end_state": latest.end_state if latest else None,
        "step": latest.step if latest and latest.status != "ended" else None,
        "wake_at": _iso(latest.wake_at) if latest and latest.wake_at else None,
        "instances": len(mine),
        "messages": messages,
        "trace": [_line(record) for record in records],
        "sent": False,
    }


def _message(message: SendMessage) -> dict[str, Any]:
    content = message.content
    return {
        "step": message.step,
        "at": _iso(message.at),
        "channel": message.channel,
        "template": message.template,
        "to": message.to,
        "subject": content.get("subject", content.get("title")),
        "text": content.get("text", content.get("body", "")),
        "html": content.get("html"),
    }


def _line(record: StepRecord) -> str:
    where = f"{record.journey}.{record.step}" if record.step else record.journey
    reason = f": {record.detail}" if record.detail else ""
    return f"{_iso(record.at)} {where} {record.outcome}{reason}"


def _iso(at: datetime) -> str:
    """A moment to the second, in UTC, as the console shows it."""
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- template preview


def read_template(
    document: Mapping[str, Any], file: str = "template.yaml"
) -> tuple[m.MessageTemplate | None, list[Problem]]:
    """A ``kind: template`` document, compiled as a workspace's are (None if it has an
    error), and its problems."""
    text = yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True)
    documents, problems = read_documents(text, file)
    parsed = parse_documents(documents)
    problems += parsed.problems
    name = document.get("name")
    template = parsed.templates.get(name) if isinstance(name, str) else None
    if any(p.is_error for p in problems):
        template = None
    if document.get("kind") != "template":
        message = f"'kind' must be template, not {document.get('kind')!r}"
        problems.insert(0, Problem.of("kind", file, 1, "", "", message))
        template = None
    return template, problems


def sample_profile(traits: Iterable[str]) -> dict[str, Any]:
    """A profile to preview with when none is named: the console's sample, and a sample
    value of every other trait the workspace declares."""
    profile = dict(SAMPLE_PROFILE)
    for trait in sorted(traits):
        profile.setdefault(trait, f"sample {trait}")
    return profile


def preview(
    template: m.MessageTemplate,
    profile: Mapping[str, Any],
    now: datetime,
    account: Mapping[str, Any] | None = None,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """``template`` rendered for ``profile`` (its view: traits and ``id``): each field,
    what an SMS takes, and the profile and account variables it reads that are missing;
    the render checks ``deadline`` as it goes."""
    if deadline is not None:
        return _checked(deadline.check, preview, template, profile, now, account)
    entry = Event(name="preview", profile_id=str(profile.get("id", "")), timestamp=now)
    scope = {
        "profile": profile,
        "account": account or {},
        "event": entry.view(),
        "entry": entry.view(),
        "journey": {"name": "", "version": 0},
        "now": now,
    }
    fields = {name: field.render(scope) for name, field in template.fields.items()}
    paths = {p for f in [*template.fields.values(), template.to] if f is not None for p in f.paths}
    missing = sorted(
        ".".join(path)
        for path in paths
        if len(path) > 1 and path[0] in ("profile", "account") and _lacks(scope[path[0]], path[1:])
    )
    return {
        "template": template.name,
        "channel": template.channel,
        "profile": profile.get("id"),
        "to": template.to.render(scope) if template.to is not None else _address(template, profile),
        "subject": fields.get("subject", fields.get("title")),
        "html": fields.get("html"),
        "text": fields.get("text", fields.get("body")),
        "fields": fields,
        "sms": sms_size(fields.get("body", "")) if template.channel == "sms" else None,
        "missing": missing,
    }


def _address(template: m.MessageTemplate, profile: Mapping[str, Any]) -> Any:
    key = {"email": "email", "sms": "phone", "push": "pushToken"}.get(template.channel)
    return profile.get(key) if key else None


def _lacks(value: Any, path: Sequence[str]) -> bool:
    for key in path:
        if not isinstance(value, Mapping) or value.get(key) is None:
            return True
        value = value[key]
    return False


# GSM 03.38: the basic set takes one septet, the extension set two (an escape, then it).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("\f^{}\\[~]|€")
# (one message, each part of a longer one): a part's header takes room from its text
_ROOM = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


def sms_size(text: str) -> dict[str, Any]:
    """How an SMS of ``text`` travels: its encoding (GSM-7 when every character is in the
    GSM 03.38 set, else UCS-2), its length in characters, the units it takes (septets, or
    UTF-16 code units) and the number of segments. A character is never split across two
    segments: an extension character's escape stays with it, as does a surrogate pair."""
    gsm = all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text)
    encoding = "GSM-7" if gsm else "UCS-2"
    costs = [_cost(c, gsm) for c in text]
    units = sum(costs)
    single, part = _ROOM[encoding]
    segments = 0 if units == 0 else 1
    if units > single:
        segments, used = 1, 0
        for cost in costs:
            if used + cost > part:
                segments, used = segments + 1, 0
            used += cost
    return {"length": len(text), "units": units, "segments": segments, "encoding": encoding}


def _cost(character: str, gsm: bool) -> int:
    if gsm:
        return 2 if character in _GSM_EXTENDED else 1
    return 2 if ord(character) > 0xFFFF else 1


# ---------------------------------------------------------------- checking a text


def check_text(
    kind: Literal["expression", "liquid"], text: str, field: str = ""
) -> list[dict[str, Any]]:
    """What ``journeyman validate`` says of ``text`` as an expression or a Liquid
    template, for a field named ``field`` (its message then starts ``'field': ``): no
    problem, or one with its column (and, for Liquid, its line)."""
    label = f"'{field}': " if field else ""
    if kind == "expression":
        try:
            compile_expression(text)
        except ExpressionError as error:
            return [
                {
                    "message": f"{label}expression error at {error}",
                    "line": 1,
                    "column": error.column,
                }
            ]
        return []
    try:
        compile_template(text)
    except TemplateError as error:
        message = f"{label}Liquid error at {error}"
        return [{"message": message, "line": error.line, "column": error.column}]
    return []
