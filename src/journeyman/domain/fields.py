"""The fields of a journey document, in tables the parser and the editor both read.

:mod:`journeyman.domain.parse` takes the keys it allows from these tables, and the
editor's form schema (``GET /v1/editor/schema``, :func:`journeyman.drafts.form_schema`)
is made from them, so a field added here is both accepted and shown in the form. Each
:class:`Field` says what kind of value it holds (which also says what to complete it
with: an event name, a template, a step id...), whether it is required, and a line of
help.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from journeyman.domain.reactions import REACTIONS

__all__ = [
    "BRANCH_CASE_FIELDS",
    "ENTRY_FIELDS",
    "EXIT_FIELDS",
    "GOAL_FIELDS",
    "JOURNEY_FIELDS",
    "SCHEDULE_FIELDS",
    "SPLIT_ARM_FIELDS",
    "STEP_COMMON",
    "STEP_KINDS",
    "VARIANT_FIELDS",
    "WAIT_FIELDS",
    "WAIT_FOR_FIELDS",
    "WAIT_REACTIONS",
    "WINNER_FIELDS",
    "Field",
    "StepKind",
]

# The reactions a `wait_for` can wait for, by the names authors write.
WAIT_REACTIONS = tuple(name for name in REACTIONS if name != "resubscribed")

# string, duration, expression, liquid, integer, number, boolean, enum, object, list, and
# names of what the workspace defines: event, template, step, segment, action, journey.
FieldType = str


@dataclass(frozen=True, slots=True)
class Field:
    type: FieldType
    help: str
    required: bool = False
    enum: tuple[str, ...] = ()
    fields: Mapping[str, Field] = field(default_factory=dict)  # of an object, or a list's items
    items: FieldType = ""  # a list's items: "object" (with ``fields``) or a scalar type

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"type": self.type, "required": self.required, "help": self.help}
        if self.enum:
            found["enum"] = list(self.enum)
        if self.items:
            found["items"] = self.items
        if self.fields:
            found["fields"] = {name: f.as_json() for name, f in self.fields.items()}
        return found


@dataclass(frozen=True, slots=True)
class StepKind:
    """A step type: its own fields (the type key first) and the keys that lead on from
    it (``next``, ``on_timeout``, ``branch[].goto``...)."""

    fields: Mapping[str, Field]
    edges: tuple[str, ...]
    help: str

    @property
    def goes_on(self) -> bool:
        """Whether it takes a ``next``: branch, split and end never go on by themselves."""
        return "next" in self.edges


def _f(kind: FieldType, help: str, **options: Any) -> Field:
    return Field(kind, help, **options)


SCHEDULE_FIELDS = {
    "every": _f("string", "When it runs, in words: 'day at 09:00', 'monday at 10:00'"),
    "cron": _f("string", "When it runs, as a cron line: '0 9 * * 1'"),
    "at": _f("string", "One moment it runs once, local time: 2027-01-04T09:00"),
    "timezone": _f("string", "The time zone its times are in (default: the workspace's)"),
    "rate": _f("number", "Profiles entered a second at most"),
}
ENTRY_FIELDS = {
    "event": _f("event", "The event that starts the journey (or give 'segment')"),
    "segment": _f("segment", "Enter when a profile joins this segment, or on schedule"),
    "when": _f("expression", "Only events for which this holds start the journey"),
    "schedule": _f("object", "Enter on a schedule instead of an event", fields=SCHEDULE_FIELDS),
}
EXIT_FIELDS = {
    "event": _f("event", "An event that takes the profile out of the journey"),
    "segment_exited": _f("segment", "Leaving this segment takes the profile out"),
    "when": _f("expression", "Only when this holds"),
}
GOAL_FIELDS = {
    "name": _f("string", "The goal's name, as the report shows it", required=True),
    "event": _f("event", "The event that reaches the goal", required=True),
    "when": _f("expression", "Only events for which this holds"),
    "within": _f("duration", "How long after entry the goal counts", required=True),
    "value": _f("expression", "What reaching it is worth, such as event.total"),
    "primary": _f("boolean", "The goal the report leads with (one at most)"),
    "description": _f("string", "What the goal means"),
}
JOURNEY_FIELDS = {
    "kind": _f("enum", "Always journey", required=True, enum=("journey",)),
    "name": _f("string", "The journey's name", required=True),
    "description": _f("string", "What the journey is for"),
    "entry": _f("object", "How profiles enter", required=True, fields=ENTRY_FIELDS),
    "reentry": _f("string", "never, always or 'after <duration>' (default after 5m)"),
    "timeout": _f("duration", "Longest time one profile may spend in it (default 91d)"),
    "exit": _f("list", "Events that take a profile out", items="object", fields=EXIT_FIELDS),
    "ignore_caps": _f("boolean", "Send even past the workspace's frequency caps"),
    "goals": _f("list", "What the journey aims at", items="object", fields=GOAL_FIELDS),
    "exit_on_goal": _f("boolean", "End a profile's journey once it reaches a goal"),
    "holdout": _f("string", "A share of entries held out, to measure lift: 10%"),
    "steps": _f("list", "The steps, in order", required=True, items="object"),
}

STEP_COMMON = {
    "id": _f("string", "The step's id, unique in the journey", required=True),
    "next": _f("step", "The step that follows (default: the one below)"),
    "description": _f("string", "What the step is for"),
}
WAIT_FIELDS = {
    "until": _f("expression", "A moment to wait until, such as entry.starts_at"),
    "until_local": _f("string", "A time of day in the profile's time zone: 09:00"),
    "days": _f("list", "Days allowed with until_local", items="string"),
}
WAIT_FOR_FIELDS = {
    "event": _f("event", "The event to wait for (or give 'reaction')"),
    "reaction": _f("enum", "A reaction to a message sent earlier", enum=WAIT_REACTIONS),
    "to": _f("step", "The send step whose message the reaction is to"),
    "url": _f("string", "With clicked: only clicks on this link"),
    "machine": _f("boolean", "With opened: whether opens by mail machines count"),
    "when": _f("expression", "Only events for which this holds"),
    "timeout": _f("duration", "How long to wait at most"),
}
BRANCH_CASE_FIELDS = {
    "when": _f("expression", "The condition of this case"),
    "goto": _f("step", "Where profiles for whom it holds go"),
    "otherwise": _f("step", "The last case: where everyone else goes"),
}
SPLIT_ARM_FIELDS = {
    "weight": _f("number", "The arm's share of profiles", required=True),
    "goto": _f("step", "Where the arm's profiles go", required=True),
    "name": _f("string", "The arm's name in the report (default: its step)"),
    "holdout": _f("boolean", "The arm is a holdout: compared, not treated"),
}
VARIANT_FIELDS = {
    "name": _f("string", "The variant's name", required=True),
    "weight": _f("number", "Its share of profiles", required=True),
    "send": _f("template", "The template it sends (or give goto)"),
    "goto": _f("step", "Where its profiles go (or give send)"),
}
WINNER_FIELDS = {
    "metric": _f("string", "The goal that decides the winner"),
    "min_per_variant": _f("integer", "Profiles each variant needs before a decision"),
    "min_time": _f("duration", "How long the experiment runs at least"),
    "confidence": _f("number", "How sure the decision must be: 0.95"),
}


def _kind(help: str, fields: dict[str, Field], *edges: str) -> StepKind:
    return StepKind(fields, edges, help)


STEP_KINDS: dict[str, StepKind] = {
    "wait": _kind(
        "Wait a while, or until a moment",
        {
            "wait": _f(
                "duration", "20s, 2d; or until / until_local", required=True, fields=WAIT_FIELDS
            )
        },
        "next",
    ),
    "wait_for": _kind(
        "Wait for an event or a reaction, at most a while",
        {
            "wait_for": _f("object", "What to wait for", required=True, fields=WAIT_FOR_FIELDS),
            "on_timeout": _f("step", "Where to go when the timeout passes"),
            "on_event": _f("step", "Where to go when it comes (default: next)"),
        },
        "next",
        "on_event",
        "on_timeout",
    ),
    "branch": _kind(
        "Go one way or another, by conditions",
        {
            "branch": _f(
                "list",
                "Cases, the last one 'otherwise'",
                required=True,
                items="object",
                fields=BRANCH_CASE_FIELDS,
            )
        },
        "branch[].goto",
        "branch[].otherwise",
    ),
    "split": _kind(
        "Send shares of profiles different ways, at random",
        {"split": _f("list", "The arms", required=True, items="object", fields=SPLIT_ARM_FIELDS)},
        "split[].goto",
    ),
    "experiment": _kind(
        "Try variants against each other and keep the winner",
        {
            "experiment": _f(
                "list", "The variants", required=True, items="object", fields=VARIANT_FIELDS
            ),
            "winner": _f("object", "When a winner is chosen", fields=WINNER_FIELDS),
        },
        "next",
        "experiment[].goto",
    ),
    "send": _kind(
        "Send a message",
        {
            "send": _f("template", "The template to send", required=True),
            "on_error": _f("step", "Where to go when it cannot be sent"),
        },
        "next",
        "on_error",
    ),
    "call": _kind(
        "Call an action (a webhook)",
        {
            "call": _f("action", "The action to call", required=True),
            "on_error": _f("step", "Where to go when the call fails"),
        },
        "next",
        "on_error",
    ),
    "update_profile": _kind(
        "Set or unset traits of the profile",
        {
            "update_profile": _f(
                "object",
                "set: {trait: value or {expr: ...}}, unset: [traits]",
                required=True,
                fields={
                    "set": _f("object", "Traits to set"),
                    "unset": _f("list", "Traits to remove", items="string"),
                },
            )
        },
        "next",
    ),
    "jump": _kind(
        "Go on in another journey",
        {"jump": _f("journey", "The journey to go on in", required=True)},
        "next",
    ),
    "end": _kind(
        "End the journey in a named state",
        {"end": _f("string", "The end state (empty: completed)", required=True)},
    ),
}
