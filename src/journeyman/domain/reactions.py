"""What customers and providers do with a message, as events on the profile.

Each reaction is an ordinary event (it enters journeys, satisfies ``wait_for``, exits
journeys, and shows in the history and the trace) whose properties say which message it
is about: ``journey``, ``version``, ``step``, ``instance``, ``message`` (the message's
key) and ``channel``, plus what the reaction adds (``url`` for a click, ``user_agent`` and
``machine`` for an open, ``bounce`` for a bounce, ``topic`` for an unsubscribe), and
``arm``, the split arm or experiment variant of the instance that sent it, if any.

:func:`reaction_event` builds one from the message it answers. :func:`reaction_tallies`
are the report counters a reaction adds to: per send step, in all and in the message's
arm, how many messages were delivered, opened, clicked... each counted once per message
(the counter's ``once`` key), and every click.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from journeyman.domain.state import Event, SendMessage, StepRecord, Tally

__all__ = [
    "ENGAGEMENT",
    "MESSAGE_PROPERTIES",
    "REACTIONS",
    "REACTION_EVENTS",
    "REACTION_OUTCOMES",
    "REACTION_SCHEMAS",
    "reaction_event",
    "reaction_record",
    "reaction_tallies",
]

#: The short names authors write (``wait_for: {reaction: opened}``, ``opened: welcome`` in
#: a journey test) and the event each one is.
REACTIONS = {
    "sent": "message_sent",
    "delivered": "message_sent",
    "failed": "message_failed",
    "opened": "message_opened",
    "clicked": "message_clicked",
    "bounced": "message_bounced",
    "complained": "message_complained",
    "unsubscribed": "unsubscribed",
    "resubscribed": "resubscribed",
}
#: Every event name a reaction can have.
REACTION_EVENTS = frozenset(REACTIONS.values())
#: The outcome each reaction is counted as on its send step, in the order the console
#: shows them (a machine open, fetched by a mail provider's proxy, is counted apart).
ENGAGEMENT = (
    "delivered",
    "opened",
    "machine_opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
)
#: The outcomes a reaction notes on its send step's trace after the fact: no move of the
#: instance (a path drawn from the trace leaves them out).
REACTION_OUTCOMES = frozenset(ENGAGEMENT)
_OUTCOMES = {
    "message_sent": "delivered",
    "message_opened": "opened",
    "message_clicked": "clicked",
    "message_bounced": "bounced",
    "message_complained": "complained",
    "unsubscribed": "unsubscribed",
}
_DETAIL_LENGTH = 300
#: The properties that tie a reaction to its message.
MESSAGE_PROPERTIES = ("journey", "version", "step", "instance", "message", "channel", "arm")

_TEXT = {"type": "string"}
_MESSAGE_SCHEMA = {
    "journey": _TEXT,
    "version": {"type": "integer"},
    "step": _TEXT,
    "instance": _TEXT,
    "message": _TEXT,
    "channel": _TEXT,
    "arm": _TEXT,
}
_EXTRA_SCHEMA: dict[str, dict[str, Any]] = {
    "message_sent": {},
    "message_failed": {"reason": _TEXT},
    "message_opened": {"user_agent": _TEXT, "machine": {"type": "boolean"}},
    "message_clicked": {"url": _TEXT, "user_agent": _TEXT},
    "message_bounced": {"bounce": {"enum": ["hard", "soft"]}, "address": _TEXT, "reason": _TEXT},
    "message_complained": {"address": _TEXT},
    # `by`: the operator who changed it through the admin API (source `operator`).
    "unsubscribed": {"topic": _TEXT, "source": _TEXT, "by": _TEXT},
    "resubscribed": {"topic": _TEXT, "source": _TEXT, "by": _TEXT},
}
#: The JSON Schema of each reaction event's properties: the workspace defines these events
#: without a ``kind: event`` document. Nothing is required, as a reaction that answers no
#: message (an unsubscribe from the preference page) has none of the message's properties.
REACTION_SCHEMAS: dict[str, dict[str, Any]] = {
    name: {"type": "object", "properties": {**_MESSAGE_SCHEMA, **extra}}
    for name, extra in _EXTRA_SCHEMA.items()
}


def reaction_event(
    name: str,
    message: SendMessage,
    at: datetime,
    *,
    message_id: str | None = None,
    **extra: Any,
) -> Event:
    """The event ``name`` (one of :data:`REACTION_EVENTS`) about ``message``, at ``at``.

    ``message_id`` makes the event idempotent: the same id is applied once, as for any
    event (a provider that reports a bounce twice, a send recorded again after a crash).
    """
    properties: dict[str, Any] = {
        "journey": message.journey,
        "version": message.version,
        "step": message.step,
        "instance": message.instance_id,
        "message": message.key,
        "channel": message.channel,
    }
    if message.arm:
        properties["arm"] = message.arm
    properties.update(extra)
    return Event(
        name=name,
        profile_id=message.profile_id,
        timestamp=at,
        properties=properties,
        message_id=message_id,
    )


def reaction_record(event: Event) -> StepRecord | None:
    """The line a reaction adds to its message's instance trace, counted on the send step;
    None for any other event (an unsubscribe that answers no message included)."""
    outcome = _OUTCOMES.get(event.name)
    props = event.properties
    journey, step, instance = props.get("journey"), props.get("step"), props.get("instance")
    if outcome is None or not (
        isinstance(journey, str) and isinstance(step, str) and isinstance(instance, str)
    ):
        return None
    if outcome == "opened" and props.get("machine") is True:
        outcome = "machine_opened"
    detail = _detail(event.name, props)
    return StepRecord(
        at=event.timestamp,
        profile_id=event.profile_id,
        journey=journey,
        instance_id=instance,
        step=step,
        outcome=outcome,
        detail=detail[:_DETAIL_LENGTH],
    )


def _detail(name: str, props: dict[str, Any]) -> str:
    if name == "message_clicked":
        return str(props.get("url", ""))
    if name == "message_bounced":
        return f"{props.get('bounce', '')} bounce: {props.get('reason', '')}".strip(": ")
    if name == "unsubscribed" and props.get("topic"):
        return f"from {props['topic']}"
    return ""


def reaction_tallies(event: Event, record: StepRecord) -> list[Tally]:
    """The report counters a reaction (with its trace line, :func:`reaction_record`) adds
    to: ``reacted:<step>:<outcome>`` of the journey version, in all (arm "") and in the
    message's arm, once per message and outcome; ``reacted:<step>:clicks``, every click;
    and ``step:<step>:<outcome>``, every line of the step log (journeyman.domain.funnel).
    Nothing for a reaction that names no version."""
    props = event.properties
    version, arm = props.get("version"), props.get("arm")
    if isinstance(version, bool) or not isinstance(version, int) or record.step is None:
        return []
    message = props.get("message")
    key = message if isinstance(message, str) else f"{record.instance_id}:{record.step}"
    arms = ["", arm] if isinstance(arm, str) and arm else [""]
    metric = f"reacted:{record.step}:{record.outcome}"
    found = [
        Tally(record.journey, version, name, "", metric, once=f"{key}\x1f{record.outcome}")
        for name in arms
    ]
    lines = f"step:{record.step}:{record.outcome}"
    found += [Tally(record.journey, version, name, "", lines) for name in arms]
    if record.outcome == "clicked":
        clicks = f"reacted:{record.step}:clicks"
        found += [Tally(record.journey, version, name, "", clicks) for name in arms]
    return found
