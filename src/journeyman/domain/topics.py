"""Checks of subscription topics and of the templates that name them.

A template names its ``topic`` (a ``kind: subscription`` of the same channel) or says it is
``transactional``. A marketing email (neither) is sent, but with a warning; so is a
marketing email whose body offers no way out (neither ``{{ unsubscribe_url }}`` nor
``{{ preferences_url }}``).
"""

from __future__ import annotations

from journeyman.domain import model as m
from journeyman.domain.parse import Parsed
from journeyman.domain.reader import Reader, did_you_mean

__all__ = ["LINK_VARIABLES", "check_topics"]

# The variables that put a way to unsubscribe into a message's body.
LINK_VARIABLES = frozenset({("unsubscribe_url",), ("preferences_url",)})
_BODIES = ("html", "text")


def check_topics(parsed: Parsed) -> None:
    for template in parsed.templates.values():
        r = Reader(
            parsed.documents[("template", template.name)],
            "template",
            template.name,
            parsed.problems,
        )
        if template.topic is not None:
            _check_topic(r, template, parsed)
        elif template.channel == "email" and not template.transactional:
            r.report(
                "no-topic",
                (),
                "a marketing email names no 'topic': name a subscription topic, "
                "or say 'transactional: true' for a receipt or a password reset",
            )
        if template.channel == "email" and not template.transactional:
            _check_way_out(r, template)


def _check_topic(r: Reader, template: m.MessageTemplate, parsed: Parsed) -> None:
    topic = template.topic
    assert topic is not None
    defined = parsed.names["subscription"]
    if topic not in defined:
        hint = did_you_mean(topic, defined)
        r.report("reference", ("topic",), f"subscription '{topic}' is not defined{hint}")
        return
    found = parsed.subscriptions.get(topic)
    if found is not None and found.channel != template.channel:
        r.report(
            "topic-channel",
            ("topic",),
            f"subscription '{topic}' is for {found.channel}, not {template.channel}",
        )


def _check_way_out(r: Reader, template: m.MessageTemplate) -> None:
    bodies = [template.fields[key] for key in _BODIES if key in template.fields]
    if bodies and not any(part.paths & LINK_VARIABLES for part in bodies):
        r.report(
            "no-unsubscribe-link",
            (),
            "a marketing email has no '{{ unsubscribe_url }}' or '{{ preferences_url }}' "
            "in its body",
        )
