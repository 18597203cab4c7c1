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
transactional or not. :func:`refusal` says why a send may not go, if it may not.

Pure: the time comes in with the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from journeyman.domain import model as m
from journeyman.domain.state import Event, Profile, Suppression

__all__ = [
    "CONSENT_EVENTS",
    "PREFERENCES_PLACEHOLDER",
    "UNSUBSCRIBE_PLACEHOLDER",
    "address_key",
    "apply",
    "refusal",
    "topic_wanted",
]

CONSENT_EVENTS = frozenset(
    {"unsubscribed", "resubscribed", "message_bounced", "message_complained"}
)
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
    reason = _suppression_reason(event)
    address = event.properties.get("address")
    if not reason or not isinstance(address, str) or not address.strip():
        return None
    key = address_key(address)
    if key in profile.suppressed:
        return None  # the first reason is kept
    source = event.properties.get("source")
    entry = Suppression(
        reason=reason,
        source=source if isinstance(source, str) and source else "bounce",
        at=event.timestamp,
    )
    return _replace(profile, suppressed={**profile.suppressed, key: entry})


def _suppression_reason(event: Event) -> str:
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
            return f"{address} is suppressed ({suppressed.reason}, {suppressed.at.isoformat()})"
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
