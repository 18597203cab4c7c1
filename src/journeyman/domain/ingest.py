"""Incoming calls in the Segment shape to events, or a clear reason why not.

The API decodes a call's JSON once, at the edge, into a typed :class:`Track`,
:class:`Identify`, :class:`Page`, :class:`Screen`, :class:`Alias` or :class:`Group`
(:func:`decode_call`, :func:`decode_batch` and :func:`decode_item`); fields journeyman does not read
(``integrations``, most of ``context``, ...) are passed over, as Segment allows. The
``read_*`` functions take such a call (or the same call as a mapping, as the simulator and
tests give it) and check what types cannot say: non-empty ids, the limits below and, for a
defined event, its properties against the definition's JSON Schema. A problem raises
:class:`InvalidEvent` naming the field and the rule it breaks. A field of the wrong type
is named as such: a body whose fields do not all fit their types is read again as plain
JSON data, and the first wrong field (in the order event or groupId, properties or traits,
userId, anonymousId, timestamp, messageId) is refused.

What passes here can be stored by every backend, so the rules are the same whatever the
backend: no NUL character in any text (PostgreSQL cannot keep one), ids, event names and
emails of at most :data:`NAME_LIMIT` characters (they are indexed, and an index entry is
bounded),
whole numbers that fit 64 bits, and nothing nested deeper than :data:`DEEPEST` levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import msgspec

from journeyman.domain.model import EventDefinition
from journeyman.domain.segments import SEGMENT_EVENTS
from journeyman.domain.state import Event
from journeyman.domain.times import TimeFormatError, parse_timestamp
from journeyman.errors import JourneymanError

__all__ = [
    "DEEPEST",
    "NAME_LIMIT",
    "Alias",
    "Call",
    "Group",
    "Identify",
    "InvalidEvent",
    "Page",
    "Screen",
    "Track",
    "call_of",
    "decode_batch",
    "decode_call",
    "decode_identify",
    "decode_item",
    "decode_track",
    "identity_of",
    "normal_email",
    "read_alias",
    "read_call",
    "read_group",
    "read_identify",
    "read_page",
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


class _Call(msgspec.Struct, rename="camel", tag_field="type"):
    """What every call carries: the ids of its profile and of the call, and its time."""

    user_id: str | int | None = None  # Segment's libraries may send a number
    anonymous_id: str | int | None = None
    message_id: str | None = None
    timestamp: str | None = None
    # Read leniently (a field of another type is passed over, as before they were read):
    # see _context and _time.
    context: Any = None
    sent_at: Any = None
    original_timestamp: Any = None


class Track(_Call, tag="track"):
    """A `track` call: something the profile did."""

    event: str | None = None
    properties: dict[str, Any] | None = None


class Identify(_Call, tag="identify"):
    """An `identify` call: who the profile is, and its traits."""

    traits: dict[str, Any] | None = None


class _Viewed(_Call):
    """A `page` or `screen` call: the profile viewed a page of a website or a screen of an
    app, named by ``name`` (and ``category``)."""

    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class Page(_Viewed, tag="page"):
    """A `page` call: a page of a website was viewed."""


class Screen(_Viewed, tag="screen"):
    """A `screen` call: a screen of a mobile app was viewed."""


class Alias(_Call, tag="alias"):
    """An `alias` call: ``previousId`` (an anonymous id, or an older user id) and
    ``userId`` are one person."""

    previous_id: str | int | None = None


class Group(_Call, tag="group"):
    """A `group` call: the profile belongs to the account ``groupId`` (a company, a team),
    and ``traits`` are the account's."""

    group_id: str | int | None = None
    traits: dict[str, Any] | None = None


Call = Track | Identify | Page | Screen | Alias | Group
CALL_TYPES = ("track", "identify", "page", "screen", "alias", "group")


class _Batch(msgspec.Struct):
    batch: list[msgspec.Raw]


# One decoder of each kind, made once: a decoder made per call costs more than the decoding.
_TRACK = msgspec.json.Decoder(Track)
_IDENTIFY = msgspec.json.Decoder(Identify)
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "track": _TRACK,
    "identify": _IDENTIFY,
    "page": msgspec.json.Decoder(Page),
    "screen": msgspec.json.Decoder(Screen),
    "alias": msgspec.json.Decoder(Alias),
    "group": msgspec.json.Decoder(Group),
}
_BATCH = msgspec.json.Decoder(_Batch)
_ITEM = msgspec.json.Decoder(Call)
_PLAIN = msgspec.json.Decoder()


def decode_track(body: bytes) -> Track:
    """The JSON body of a `track` call (its ``type``, if any, is not read)."""
    call = _decode(body, _TRACK)
    return call if isinstance(call, Track) else _track_of(call)


def decode_identify(body: bytes) -> Identify:
    """The JSON body of an `identify` call (its ``type``, if any, is not read)."""
    call = _decode(body, _IDENTIFY)
    return call if isinstance(call, Identify) else _identify_of(call)


def decode_call(body: bytes, kind: str) -> Call:
    """The JSON body of a call to the endpoint of ``kind`` (``track``, ``page``, ...; its
    ``type``, if any, is not read)."""
    call = _decode(body, _DECODERS[kind])
    if isinstance(call, Call):
        return call
    made: Call = _MAKERS[kind](call)
    return made


def decode_batch(body: bytes) -> list[msgspec.Raw]:
    """The calls of a batch, each still as sent (for :func:`decode_item`)."""
    batch = _decode(body, _BATCH)
    if not isinstance(batch, _Batch):
        raise InvalidEvent("batch", "type", "'batch' must be a list of calls")
    return batch.batch


def decode_item(item: msgspec.Raw) -> Call:
    """One call of a batch (as :func:`decode_batch` gives it, checked as UTF-8 already), a
    `track`, `identify`, `page`, `screen`, `alias` or `group` as its ``type`` says."""
    call = _decode(item, _ITEM)
    if isinstance(call, Call):
        return call
    kind = call.get("type") if isinstance(call, dict) else None
    maker = _MAKERS.get(kind) if isinstance(kind, str) else None
    if maker is None:
        message = "'type' must be track, identify, page, screen, alias or group"
        raise InvalidEvent("type", "enum", message)
    made: Call = maker(call)
    return made


def _decode(body: bytes | msgspec.Raw, decoder: msgspec.json.Decoder[Any]) -> Any:
    """``body`` decoded by ``decoder`` or, when a field is not of its type, as plain JSON data,
    for the checks to name the field. JSON that is not valid is refused with the reason."""
    try:
        if isinstance(body, bytes) and not body.isascii():
            _check_utf8(body)
        try:
            return decoder.decode(body)
        except msgspec.ValidationError:
            return _PLAIN.decode(body)
        except msgspec.DecodeError:
            _PLAIN.decode(body)  # the reason as it is given for the whole body
            raise
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise InvalidEvent("body", "json", f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidEvent("body", "json", "the body nests too deeply") from None


def _check_utf8(body: bytes) -> None:
    """Refuse text that is not UTF-8 anywhere in ``body``: a typed decoder passes over the
    fields it does not read without checking them."""
    try:
        body.decode()
    except UnicodeDecodeError:
        _PLAIN.decode(body)  # raises the reason as it is given for the whole body
        raise


def _track_of(data: object) -> Track:
    """A `track` call given as a mapping, its fields checked for their types."""
    body = _mapping(data)
    event = body.get("event")
    if event is not None and not isinstance(event, str):
        raise _no_event()
    return Track(
        event=event,
        properties=_object(body, "properties"),
        **_ids(body),
    )


def _identify_of(data: object) -> Identify:
    """An `identify` call given as a mapping, its fields checked for their types."""
    body = _mapping(data)
    return Identify(traits=_object(body, "traits"), **_ids(body))


def _viewed_of(data: object, kind: type[Page] | type[Screen]) -> Page | Screen:
    """A `page` or `screen` call given as a mapping, its fields checked for their types."""
    body = _mapping(data)
    texts = {}
    for key in ("name", "category"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidEvent(key, "type", f"'{key}' must be a string")
        texts[key] = value
    return kind(properties=_object(body, "properties"), **texts, **_ids(body))


def _alias_of(data: object) -> Alias:
    """An `alias` call given as a mapping, its fields checked for their types."""
    body = _mapping(data)
    previous = body.get("previousId")
    if previous is not None and (isinstance(previous, bool) or not isinstance(previous, str | int)):
        raise _not_text("previousId")
    return Alias(previous_id=previous, **_ids(body))


def _group_of(data: object) -> Group:
    """A `group` call given as a mapping, its fields checked for their types."""
    body = _mapping(data)
    group_id = body.get("groupId")
    if group_id is not None and (isinstance(group_id, bool) or not isinstance(group_id, str | int)):
        raise _not_text("groupId")
    return Group(group_id=group_id, traits=_object(body, "traits"), **_ids(body))


_MAKERS: dict[str, Any] = {
    "track": _track_of,
    "identify": _identify_of,
    "page": lambda data: _viewed_of(data, Page),
    "screen": lambda data: _viewed_of(data, Screen),
    "alias": _alias_of,
    "group": _group_of,
}


def call_of(kind: str, data: Mapping[str, Any]) -> Call:
    """A call of ``kind`` given as a mapping (as the simulator and journey tests give it),
    its fields checked for their types."""
    made: Call = _MAKERS[kind](data)
    return made


def _mapping(data: object) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidEvent("body", "type", "'body' must be a JSON object")
    return data


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidEvent(key, "type", f"'{key}' must be a JSON object")
    return dict(value)


def _ids(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every call has, each None or of its type."""
    for key in ("userId", "anonymousId"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise _not_text(key)
    timestamp = body.get("timestamp")
    if isinstance(timestamp, date):  # a datetime too: Python callers may give one
        timestamp = timestamp.isoformat()
    elif timestamp is not None and not isinstance(timestamp, str):
        raise _bad_time(timestamp)
    message_id = body.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise _not_text("messageId")
    return {
        "user_id": body.get("userId"),
        "anonymous_id": body.get("anonymousId"),
        "message_id": message_id,
        "timestamp": timestamp,
        "context": body.get("context"),
        "sent_at": body.get("sentAt"),
        "original_timestamp": body.get("originalTimestamp"),
    }


def read_track(
    call: Track | Mapping[str, Any],
    definitions: Mapping[str, EventDefinition],
    received: datetime,
) -> Event:
    """A `track` call: ``{userId | anonymousId, event, properties, timestamp, messageId}``."""
    if not isinstance(call, Track):
        call = _track_of(call)
    name = call.event
    if name is None or not name.strip():
        raise _no_event()
    _check_name(name, "event")
    if name in SEGMENT_EVENTS:
        message = f"event {name!r} is recorded by journeyman when a profile's segments change"
        raise InvalidEvent("event", "reserved", message)
    properties = {} if call.properties is None else call.properties
    _check_values(properties, "properties")
    definition = definitions.get(name)
    if definition is not None:
        _check_schema(definition, properties)
    return _event(call, name, "track", properties, definition, received, _context(call.context))


def read_identify(call: Identify | Mapping[str, Any], received: datetime) -> Event:
    """An `identify` call: ``{userId | anonymousId, traits, timestamp, messageId}``.

    Traits sent in ``context.traits`` count as well (RudderStack's libraries send them only
    there); those of ``traits`` win."""
    if not isinstance(call, Identify):
        call = _identify_of(call)
    context = _context(call.context)
    traits = {**context.get("traits", {}), **(call.traits or {})}
    _check_values(traits, "traits")
    email = traits.get("email")
    if isinstance(email, str):  # it becomes an identity, indexed as an id is
        _check_name(email, "traits.email")
    return _event(call, "identify", "identify", traits, None, received, context)


def read_page(
    call: Page | Screen,
    definitions: Mapping[str, EventDefinition],
    received: datetime,
    views: Mapping[tuple[str, str], EventDefinition] | None = None,
) -> Event:
    """A `page` or `screen` call: ``{userId | anonymousId, name, category, properties}``.

    It is the event its definition names (one with ``page: <name>`` or ``screen: <name>``,
    found in ``views``), else the event ``page`` (or ``screen``). Its ``name`` and
    ``category`` are in its properties too, as Segment's browser library puts them.
    """
    kind = "screen" if isinstance(call, Screen) else "page"
    for key, value in (("name", call.name), ("category", call.category)):
        if value is not None:
            _check_name(value, key)
    definition = (views or {}).get((kind, call.name)) if call.name is not None else None
    name = kind if definition is None else definition.name
    definition = definition or definitions.get(kind)
    properties = dict(call.properties or {})
    for key, value in (("name", call.name), ("category", call.category)):
        if value is not None:
            properties.setdefault(key, value)
    _check_values(properties, "properties")
    if definition is not None:
        _check_schema(definition, properties)
    return _event(call, name, kind, properties, definition, received, _context(call.context))


def read_alias(call: Alias, received: datetime) -> Event:
    """An `alias` call: ``{userId, previousId}``; the profile of ``previousId`` merges into
    the profile of ``userId``, as an identify with both an anonymousId and a userId does."""
    user_id = _optional_id(call.user_id, "userId")
    previous = _optional_id(call.previous_id, "previousId")
    if user_id is None:
        raise InvalidEvent("userId", "required", "an alias needs the 'userId' it merges into")
    if previous is None:
        raise InvalidEvent("previousId", "required", "an alias needs the 'previousId' to merge")
    _optional_id(call.anonymous_id, "anonymousId")  # not used, but held to the same rules
    joined = msgspec.structs.replace(call, anonymous_id=previous)
    return _event(joined, "alias", "alias", {}, None, received, _context(call.context))


def read_group(call: Group, received: datetime) -> Event:
    """A `group` call: ``{userId | anonymousId, groupId, traits}``. The profile belongs to
    the account ``groupId`` from now on (the latest group call wins), and the account's
    traits are set from ``traits``, key by key (null removes one)."""
    group_id = _optional_id(call.group_id, "groupId")
    if group_id is None:
        raise InvalidEvent("groupId", "required", "a group call needs the 'groupId' of its account")
    traits = {} if call.traits is None else call.traits
    _check_values(traits, "traits")
    event = _event(call, "group", "group", traits, None, received, _context(call.context))
    return msgspec.structs.replace(event, group_id=group_id)


def read_call(
    call: Call,
    definitions: Mapping[str, EventDefinition],
    received: datetime,
    views: Mapping[tuple[str, str], EventDefinition] | None = None,
) -> Event:
    """Any call, read as its type says."""
    if isinstance(call, Track):
        return read_track(call, definitions, received)
    if isinstance(call, Identify):
        return read_identify(call, received)
    if isinstance(call, Alias):
        return read_alias(call, received)
    if isinstance(call, Group):
        return read_group(call, received)
    return read_page(call, definitions, received, views)


# What journeyman keeps of a call's ``context``: the rest is passed over.
CONTEXT_TEXTS = ("ip", "userAgent", "timezone", "locale")


def _context(value: Any) -> dict[str, Any]:
    """The part of ``context`` journeyman keeps: the texts of :data:`CONTEXT_TEXTS` and the
    ``traits`` object. A field of another type is passed over, as the whole context was
    before journeyman read it; what is kept must be keepable by every backend."""
    if not isinstance(value, Mapping):
        return {}
    kept: dict[str, Any] = {}
    for key in CONTEXT_TEXTS:
        text = value.get(key)
        if isinstance(text, str):  # not indexed, so of any length (a call is at most 32 KiB)
            _check_text(text, f"context.{key}")
            kept[key] = text
    traits = value.get("traits")
    if isinstance(traits, Mapping) and traits:
        traits = dict(traits)
        _check_values(traits, "context.traits")
        email = traits.get("email")
        if isinstance(email, str):
            _check_name(email, "context.traits.email")
        kept["traits"] = traits
    return kept


def _time(call: Call, received: datetime) -> datetime:
    """When the call happened: its ``timestamp``; else, with Segment's correction for a
    client's clock that is off, ``received - (sentAt - originalTimestamp)``; else
    ``originalTimestamp``; else when it was received."""
    if call.timestamp is not None:
        try:
            return parse_timestamp(call.timestamp)
        except TimeFormatError as error:
            raise InvalidEvent("timestamp", "format", str(error)) from None
    original = _lenient_time(call.original_timestamp)
    if original is None:
        return received
    sent = _lenient_time(call.sent_at)
    if sent is None:
        return original
    try:
        return received - (sent - original)
    except OverflowError:  # a clock centuries off: the client's own time is all there is
        return original


def _lenient_time(value: Any) -> datetime | None:
    """A timestamp of the client's, or None when it is absent or unreadable (these fields
    were passed over before journeyman read them, so a bad one is not refused)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return parse_timestamp(value)
    except TimeFormatError:
        return None


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
    call: Call,
    name: str,
    type_: str,
    properties: dict[str, Any],
    definition: EventDefinition | None,
    received: datetime,
    context: dict[str, Any],
) -> Event:
    user_id = _optional_id(call.user_id, "userId")
    anonymous_id = _optional_id(call.anonymous_id, "anonymousId")
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
    return Event(
        name=name,
        profile_id=user_id or anonymous_id or "",
        timestamp=_time(call, received),
        properties=properties,
        type=type_,
        message_id=_optional_id(call.message_id, "messageId"),
        user_id=user_id,
        anonymous_id=anonymous_id,
        context=context,
    )


def _optional_id(value: str | int | None, key: str) -> str | None:
    """An id, or None when it is absent. An empty one is refused rather than taken as
    absent: a client that sends ``""`` means something, and it is not what it gets."""
    if value is None:
        return None
    if isinstance(value, int):
        if abs(value) >= 10**NAME_LIMIT:  # too long, and str() refuses over 4,300 digits
            message = f"'{key}' is a number of more than {NAME_LIMIT} digits"
            raise InvalidEvent(key, "length", message)
        value = str(value)
    if not value.strip():
        raise _not_text(key)
    _check_name(value, key)
    return value


def _no_event() -> InvalidEvent:
    return InvalidEvent("event", "required", "'event' must name the event (a non-empty string)")


def _not_text(key: str) -> InvalidEvent:
    return InvalidEvent(key, "type", f"'{key}' must be a non-empty string")


def _bad_time(value: object) -> InvalidEvent:
    try:
        parse_timestamp(value)
    except TimeFormatError as error:
        return InvalidEvent("timestamp", "format", str(error))
    return InvalidEvent("timestamp", "format", "the timestamp is not ISO 8601 text")


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
