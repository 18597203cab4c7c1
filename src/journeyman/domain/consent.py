"""A profile's consent: what it agreed to receive, and the addresses no message may reach.

Consent lives in three traits, so that a Segment ``identify`` sets it as well as the events
below do:

- ``unsubscribed: true`` - from everything that is not transactional, on every channel;
- ``consent: {<channel>: false}`` - from everything that is not transactional on a channel;
- ``subscriptions: {<topic>: true | false}`` - the profile's choice per topic; a topic it
  has not chosen follows the topic's default (``opt_out``: sent; ``opt_in``: not sent).

The events ``unsubscribed`` and ``resubscribed`` change them (:func:`apply`): with a
``topic``, that topic; with a ``channel`` and no topic, the whole channel; with neither,
everything. A hard ``message_bounced`` and a ``message_complained`` put their ``address``
on the profile's suppression list (:attr:`Profile.suppressed`), which no message passes,
transactional or not; ``address_suppressed`` puts one there for any ``reason`` (an
operator's, say) and ``address_unsuppressed`` takes one off. :func:`refusal` says why a
send may not go, if it may not; :func:`change` says what one of these events changes, and
who made it, for the audit of a profile's consent.

Pure: the time comes in with the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from journeyman.domain import model as m
from journeyman.domain.state import Event, Profile, Suppression
from journeyman.domain.times import format_instant

__all__ = [
    "CONSENT_EVENTS",
    "CONSENT_SCHEMAS",
    "CONSENT_TRAITS",
    "PREFERENCES_PLACEHOLDER",
    "UNSUBSCRIBE_PLACEHOLDER",
    "address_key",
    "apply",
    "change",
    "consent_channels",
    "refusal",
    "topic_wanted",
]

CONSENT_EVENTS = frozenset(
    {
        "unsubscribed",
        "resubscribed",
        "message_bounced",
        "message_complained",
        "address_suppressed",
        "address_unsuppressed",
    }
)
_TEXT = {"type": "string"}
#: The JSON Schema of the properties of the consent events that are no reaction to a
#: message (those are in :data:`journeyman.domain.reactions.REACTION_SCHEMAS`): every
#: workspace has them, and no ``kind: event`` document may define them.
CONSENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "address_suppressed": {
        "type": "object",
        "required": ["address"],
        "properties": {"address": _TEXT, "reason": _TEXT, "source": _TEXT, "by": _TEXT},
    },
    "address_unsuppressed": {
        "type": "object",
        "required": ["address"],
        "properties": {"address": _TEXT, "source": _TEXT, "by": _TEXT},
    },
}
# What `{{ unsubscribe_url }}` and `{{ preferences_url }}` render in the engine, which does
# not know the sender's public URL; the sending process puts the recipient's own signed
# links in their place (runtime.unsubscribe). Nothing in them is changed by HTML escaping.
UNSUBSCRIBE_PLACEHOLDER = "https://journeyman.invalid/unsubscribe-link"
PREFERENCES_PLACEHOLDER = "https://journeyman.invalid/preferences-link"

_replace = msgspec.structs.replace


def address_key(address: str) -> str:
    """How an address is kept on the suppression list: trimmed, in lower case."""
    return address.strip().lower()


def apply(profile: Profile, event: Event) -> Profile | None:
    """The profile after a consent event (see the module), or None if it changes nothing."""
    if event.name in ("unsubscribed", "resubscribed"):
        traits = _choice(profile.traits, event.properties, event.name == "unsubscribed")
        return None if traits is None else _replace(profile, traits=traits)
    if event.name == "address_unsuppressed":
        return _unsuppressed(profile, event.properties.get("address"))
    reason = _suppression_reason(event)
    address = event.properties.get("address")
    if not reason or not isinstance(address, str) or not address.strip():
        return None
    key = address_key(address)
    if key in profile.suppressed:
        return None  # the first reason is kept
    # An address_suppressed without a source came in as any event does: by the API.
    default = "api" if event.name == "address_suppressed" else "bounce"
    entry = Suppression(
        reason=reason,
        source=_text(event.properties, "source") or default,
        at=event.timestamp,
        by=_text(event.properties, "by"),
    )
    return _replace(profile, suppressed={**profile.suppressed, key: entry})


def _unsuppressed(profile: Profile, address: Any) -> Profile | None:
    key = address_key(address) if isinstance(address, str) else ""
    if key not in profile.suppressed:
        return None
    kept = {k: v for k, v in profile.suppressed.items() if k != key}
    return _replace(profile, suppressed=kept)


def _text(properties: Mapping[str, Any], name: str) -> str:
    value = properties.get(name)
    return value if isinstance(value, str) else ""


def _suppression_reason(event: Event) -> str:
    if event.name == "address_suppressed":
        return _text(event.properties, "reason") or "suppressed"
    if event.name == "message_complained":
        return "complaint"
    if event.name == "message_bounced" and event.properties.get("bounce") == "hard":
        return "hard bounce"
    return ""


def _choice(
    traits: Mapping[str, Any], properties: Mapping[str, Any], unsubscribe: bool
) -> dict[str, Any] | None:
    """The traits after an (un|re)subscription; None when they stay as they are."""
    topic, channel = properties.get("topic"), properties.get("channel")
    updated = dict(traits)
    if isinstance(topic, str) and topic:
        updated["subscriptions"] = {**_mapping(traits, "subscriptions"), topic: not unsubscribe}
    elif isinstance(channel, str) and channel:
        consent = _mapping(traits, "consent")
        if unsubscribe:
            consent[channel] = False
        else:
            consent.pop(channel, None)  # allowed, as a channel nobody chose is
        updated["consent"] = consent
    elif unsubscribe:
        updated["unsubscribed"] = True
    else:
        updated.pop("unsubscribed", None)
    return None if updated == traits else updated


def _mapping(traits: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = traits.get(name)
    return dict(value) if isinstance(value, dict) else {}


#: The traits that hold consent: an ``identify`` that sets one changes consent too.
CONSENT_TRAITS = ("subscriptions", "consent", "unsubscribed")


def change(event: Event) -> dict[str, Any] | None:
    """What ``event`` asks of the profile's consent, and who asked, for an audit:
    ``{"change": {...}, "summary": "...", "source": "...", "by": "..." | None}``; None for
    an event that changes no consent (a soft bounce, a purchase).

    ``source`` is who made the change: ``one-click``, ``preferences``, ``sms``,
    ``operator`` (with ``by``), ... as the event says; ``bounce`` or ``complaint`` for a
    provider's report; ``identify`` for traits set by an identify; ``api`` for an event
    sent in without one.
    """
    props = event.properties
    if event.type == "identify":
        traits = {k: props[k] for k in CONSENT_TRAITS if k in props}
        if not traits:
            return None
        return _changed({"traits": traits}, f"set {', '.join(traits)}", "identify", props)
    found = _what(event)
    if found is None:
        return None
    what, summary = found
    if event.name in ("message_bounced", "message_complained"):
        source = "bounce" if event.name == "message_bounced" else "complaint"
        entry = _changed(what, summary, source, props)
        via = _text(props, "source")
        return {**entry, "via": via} if via else entry
    return _changed(what, summary, _text(props, "source") or "api", props)


def _what(event: Event) -> tuple[dict[str, Any], str] | None:
    """What a consent event changes, and that in words."""
    props, name = event.properties, event.name
    if name in ("unsubscribed", "resubscribed"):
        wanted = name == "resubscribed"
        topic, channel = _text(props, "topic"), _text(props, "channel")
        if topic:
            where = "to" if wanted else "from"
            return {"topic": topic, "subscribed": wanted}, f"{name} {where} topic {topic}"
        if channel:
            said = f"{channel} allowed again" if wanted else f"nothing more by {channel}"
            return {"channel": channel, "consent": wanted}, said
        said = "resubscribed to everything" if wanted else "unsubscribed from everything"
        return {"unsubscribed": not wanted}, said
    address = _text(props, "address")
    if name == "address_unsuppressed" and address:
        return {"address": address, "suppressed": False}, f"{address} no longer suppressed"
    reason = _suppression_reason(event)
    if not (reason and address):
        return None
    return {"address": address, "suppressed": True, "reason": reason}, (
        f"{address} suppressed ({reason})"
    )


def _changed(
    what: dict[str, Any], summary: str, source: str, props: Mapping[str, Any]
) -> dict[str, Any]:
    return {"change": what, "summary": summary, "source": source, "by": _text(props, "by") or None}


def consent_channels(workspace: m.Workspace) -> list[str]:
    """The channels a profile may say no to: those of the workspace's topics and of its
    templates that are not transactional."""
    found = {t.channel for t in workspace.templates.values() if not t.transactional}
    found.update(s.channel for s in workspace.subscriptions.values())
    return sorted(found)


def topic_wanted(
    traits: Mapping[str, Any], topic: str, subscriptions: Mapping[str, m.Subscription]
) -> bool:
    """Whether the profile receives ``topic``: its own choice, else the topic's default."""
    chosen = _mapping(traits, "subscriptions").get(topic)
    if isinstance(chosen, bool):
        return chosen
    found = subscriptions.get(topic)
    return found is None or found.default == "opt_out"


def refusal(
    profile: Profile,
    template: m.MessageTemplate,
    address: str | None,
    subscriptions: Mapping[str, m.Subscription],
) -> str:
    """Why a send of ``template`` to ``address`` may not go, or "" when it may."""
    if address is not None:
        suppressed = profile.suppressed.get(address_key(address))
        if suppressed is not None:
            return f"{address} is suppressed ({suppressed.reason}, {format_instant(suppressed.at)})"
    if template.transactional:
        return ""  # receipts and password resets go whatever the profile chose
    traits = profile.traits
    if traits.get("unsubscribed") is True:
        return "the profile is unsubscribed"
    if _mapping(traits, "consent").get(template.channel) is False:
        return f"no consent for {template.channel}"
    topic = template.topic
    if topic is None or topic_wanted(traits, topic, subscriptions):
        return ""
    if _mapping(traits, "subscriptions").get(topic) is False:
        return f"unsubscribed from topic {topic}"
    return f"no opt-in to topic {topic}"
