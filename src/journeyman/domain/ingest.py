"""Incoming calls in the Segment shape to events, or a clear reason why not.

``read_track`` and ``read_identify`` take the decoded JSON body of one call. They check the
shape and, for a defined event, its properties against the definition's JSON Schema. A
problem raises :class:`InvalidEvent` naming the field and the rule it breaks.

What passes here can be stored by every backend, so the rules are the same whatever the
backend: no NUL character in any text (PostgreSQL cannot keep one), ids, event names and
emails of at most :data:`NAME_LIMIT` characters (they are indexed, and an index entry is
bounded),
whole numbers that fit 64 bits, and nothing nested deeper than :data:`DEEPEST` levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from journeyman.domain.model import EventDefinition
from journeyman.domain.state import Event
from journeyman.domain.times import TimeFormatError, parse_timestamp
from journeyman.errors import JourneymanError

__all__ = [
    "DEEPEST",
    "NAME_LIMIT",
    "InvalidEvent",
    "identity_of",
    "normal_email",
    "read_identify",
    "read_track",
]

# Characters in a userId, anonymousId, messageId, event name or email (a profile's, or the
# one that names an event's profile): each is indexed, and an index entry has a bounded
# size (PostgreSQL's btree takes about 2.7 KB).
NAME_LIMIT = 255


class InvalidEvent(JourneymanError, ValueError):
    """An incoming event that breaks a rule; nothing of it is kept."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


def read_track(
    body: Mapping[str, Any], definitions: Mapping[str, EventDefinition], received: datetime
) -> Event:
    """A `track` call: ``{userId | anonymousId, event, properties, timestamp, messageId}``."""
    _require_mapping(body, "body")
    name = body.get("event")
    if not isinstance(name, str) or not name.strip():
        raise InvalidEvent("event", "required", "'event' must name the event (a non-empty string)")
    _check_name(name, "event")
    properties = body.get("properties", {})
    if properties is None:
        properties = {}
    _require_mapping(properties, "properties")
    _check_values(properties, "properties")
    definition = definitions.get(name)
    if definition is not None:
        _check_schema(definition, properties)
    return _event(body, name, "track", dict(properties), definition, received)


def read_identify(body: Mapping[str, Any], received: datetime) -> Event:
    """An `identify` call: ``{userId | anonymousId, traits, timestamp, messageId}``."""
    _require_mapping(body, "body")
    traits = body.get("traits", {})
    if traits is None:
        traits = {}
    _require_mapping(traits, "traits")
    _check_values(traits, "traits")
    email = traits.get("email")
    if isinstance(email, str):  # it becomes an identity, indexed as an id is
        _check_name(email, "traits.email")
    return _event(body, "identify", "identify", dict(traits), None, received)


def identity_of(event: Event, definition: EventDefinition | None) -> tuple[str, str]:
    """Which identity names the event's profile, and its value."""
    kind = definition.identity if definition is not None else None
    if kind == "email":
        return "email", normal_email(str(event.properties.get("email")))
    if kind == "anonymousId" or event.user_id is None:
        return "anonymousId", str(event.anonymous_id)
    return "userId", event.user_id


def normal_email(address: str) -> str:
    """An email address as identities compare it: trimmed and in lower case."""
    return address.strip().lower()


def _event(
    body: Mapping[str, Any],
    name: str,
    type_: str,
    properties: dict[str, Any],
    definition: EventDefinition | None,
    received: datetime,
) -> Event:
    user_id = _optional_id(body, "userId")
    anonymous_id = _optional_id(body, "anonymousId")
    needed = definition.identity if definition is not None else None
    if needed == "email":
        email = properties.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise InvalidEvent(
                "properties.email",
                "identity",
                f"event {name} names its profile by email: 'properties.email' must be an address",
            )
        _check_name(email, "properties.email")
    elif needed == "anonymousId" and anonymous_id is None:
        raise InvalidEvent(
            "anonymousId", "identity", f"event {name} names its profile by 'anonymousId'"
        )
    elif needed == "userId" and user_id is None:
        raise InvalidEvent("userId", "identity", f"event {name} names its profile by 'userId'")
    elif user_id is None and anonymous_id is None:
        raise InvalidEvent("userId", "identity", "'userId' or 'anonymousId' is required")
    timestamp = received
    if body.get("timestamp") is not None:
        try:
            timestamp = parse_timestamp(body["timestamp"])
        except TimeFormatError as error:
            raise InvalidEvent("timestamp", "format", str(error)) from None
    message_id = _optional_id(body, "messageId", numbers=False)
    return Event(
        name=name,
        profile_id=user_id or anonymous_id or "",
        timestamp=timestamp,
        properties=properties,
        type=type_,
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
    )


def _optional_id(body: Mapping[str, Any], key: str, *, numbers: bool = True) -> str | None:
    """An id, or None when it is absent. An empty one is refused rather than taken as
    absent: a client that sends ``""`` means something, and it is not what it gets."""
    value = body.get(key)
    if value is None:
        return None
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**NAME_LIMIT:  # too long, and str() refuses over 4,300 digits
            message = f"'{key}' is a number of more than {NAME_LIMIT} digits"
            raise InvalidEvent(key, "length", message)
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(key, "type", f"'{key}' must be a non-empty string")
    _check_name(value, key)
    return value


def _check_name(value: str, field: str) -> None:
    if len(value) > NAME_LIMIT:
        raise InvalidEvent(
            field, "length", f"'{field}' is {len(value)} characters long; at most {NAME_LIMIT}"
        )
    _check_text(value, field)


def _check_text(value: str, field: str) -> None:
    if "\x00" in value:
        raise InvalidEvent(field, "characters", f"'{field}' holds a NUL character (U+0000)")


# Whole numbers must fit 64 bits, as in every JSON consumer downstream (and in storage).
_SMALLEST, _LARGEST = -(2**63), 2**64 - 1
DEEPEST = 32


def _check_values(value: Any, field: str) -> None:
    """Refuse numbers too large to keep, text no backend can keep (a NUL character, in a
    key or a value), and data nested deeper than any event needs."""
    todo = [(value, field, 0)]
    while todo:
        item, path, depth = todo.pop()
        if isinstance(item, str):
            if "\x00" in item:
                _check_text(item, path)
            continue
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not _SMALLEST <= item <= _LARGEST:
            raise InvalidEvent(path, "range", f"'{path}' is a whole number too large to keep")
        if depth > DEEPEST and isinstance(item, dict | list):
            raise InvalidEvent(path, "depth", f"'{path}' nests more than {DEEPEST} levels deep")
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and "\x00" in key:
                    shown = key.replace("\x00", "\\u0000")
                    _check_text(key, f"{path}.{shown}")
            todo.extend((v, f"{path}.{k}", depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            todo.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))


def _require_mapping(value: Any, field: str) -> None:
    if not isinstance(value, Mapping):
        raise InvalidEvent(field, "type", f"'{field}' must be a JSON object")


def _check_schema(definition: EventDefinition, properties: Mapping[str, Any]) -> None:
    if definition.quick is not None and definition.quick(properties):
        return
    errors = sorted(
        definition.validator.iter_errors(properties),
        key=lambda e: (list(e.absolute_path), e.validator),
    )
    if not errors:
        return
    error = errors[0]
    parts = ["properties", *(str(p) for p in error.absolute_path)]
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        parts.append(missing[0] if missing else "?")
    field = ".".join(parts)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise InvalidEvent(
        field,
        str(error.validator),
        f"{error.message}, against the schema of event {definition.name}{more}",
    )
