"""What a call sent with the client key may do: the rules of the workspace's ``browser:``
settings, applied to an event already read (:func:`journeyman.domain.ingest.read_call`).

The client key is public: it sits in a web page, and anyone can send with it. So a call
made with it

- is an event the workspace defines (``kind: event``, not one of journeyman's own
  reactions such as ``message_opened``): a ``track`` of a defined name, or a ``page`` or
  ``screen`` call whose event (``page``, ``screen`` or the one defined with ``page: <name>``)
  is defined;
- names its profile by ``anonymousId`` only, unless ``browser.user_id: trusted``: a
  ``userId``, an ``alias``, and an event defined with ``identity: email`` (its
  ``properties.email`` names the profile) would let anyone write to any customer's profile;
- sets only the traits ``browser.traits`` lists, in an identify's ``traits`` and in any
  call's ``context.traits`` (an ``email`` trait moves the email identity to the profile
  that sets it, so list it only when that is meant).

A call that breaks one is refused with :class:`NotForBrowsers`, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from journeyman.domain.ingest import Call, InvalidEvent, Track
from journeyman.domain.model import BrowserPolicy, EventDefinition
from journeyman.domain.state import Event

__all__ = ["NotForBrowsers", "check_browser_call", "check_browser_event", "from_browser"]

RULE = "browser"  # the rule a refusal names


class NotForBrowsers(InvalidEvent):
    """A call the client key may not make (the API answers 403)."""

    RULE = RULE

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, RULE, message)


def check_browser_call(
    event: Event, definitions: Mapping[str, EventDefinition], policy: BrowserPolicy
) -> None:
    """Refuse ``event`` (read from a call sent with the client key) if ``policy`` does not
    let a browser send it."""
    if event.type == "group":
        raise NotForBrowsers(
            "type",
            "an account's traits are shared by all its members: send group calls from a "
            "server, with the write key",
        )
    if not policy.trusted_user_id:
        _check_anonymous(event, definitions)
    if event.type in ("track", "page", "screen"):
        check_browser_event(event.name, definitions, "event" if event.type == "track" else "name")
    elif event.type == "identify":
        _check_traits(event.properties, "traits", policy)
    _check_traits(event.context.get("traits") or {}, "context.traits", policy)


def from_browser(call: Call, definitions: Mapping[str, EventDefinition]) -> Call:
    """A call sent with the client key, before it is read: without the empty ``userId``
    RudderStack's JavaScript SDK sends for every visitor it does not know (``""`` with an
    ``anonymousId`` means no user id there, and only there); a ``track`` of an event
    browsers may not send is refused now, so that the answer says so rather than what the
    event's definition would need."""
    if call.user_id == "" and call.anonymous_id is not None:
        call = msgspec.structs.replace(call, user_id=None)
    if isinstance(call, Track) and isinstance(call.event, str):
        check_browser_event(call.event, definitions)
    return call


def check_browser_event(
    name: str, definitions: Mapping[str, EventDefinition], field: str = "event"
) -> None:
    """Refuse an event ``name`` the workspace does not define for browsers to send."""
    definition = definitions.get(name)
    if definition is None or definition.builtin:
        raise NotForBrowsers(
            field,
            f"event {name[:100]!r} has no definition (kind: event) in the workspace; "
            "the client key sends only defined events",
        )


def _check_anonymous(event: Event, definitions: Mapping[str, EventDefinition]) -> None:
    why = "the client key names a profile by 'anonymousId' only (browser.user_id: anonymous)"
    if event.type == "alias":
        raise NotForBrowsers("type", f"an alias merges profiles: {why}")
    if event.user_id is not None:
        raise NotForBrowsers("userId", f"a 'userId' is not believed from a browser: {why}")
    definition = definitions.get(event.name)
    if definition is not None and definition.identity == "email":
        raise NotForBrowsers(
            "properties.email", f"event {event.name} names its profile by email: {why}"
        )


def _check_traits(traits: Mapping[str, object], field: str, policy: BrowserPolicy) -> None:
    for name in traits:
        if name not in policy.traits:
            allowed = ", ".join(sorted(policy.traits)) or "none"
            raise NotForBrowsers(
                f"{field}.{name}",
                f"the client key may not set the trait {name!r}; "
                f"browser.traits in the settings lists those it may ({allowed})",
            )
