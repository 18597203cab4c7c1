"""page, screen and alias calls, the context and the client's clock, as ingest reads them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from journeyman.domain.ingest import (
    Group,
    InvalidEvent,
    Page,
    Screen,
    decode_call,
    decode_item,
    read_call,
)
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event

RECEIVED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)

VIEWS = """
kind: event
name: pricing_viewed
page: Pricing
schema:
  type: object
  properties:
    plan: {enum: [free, pro]}
---
kind: event
name: screen
"""


@pytest.fixture
def read(workspace: Callable[..., Workspace]) -> Callable[[str, dict[str, Any]], Event]:
    """Read a call sent to /v1/<kind> against a workspace with the page definitions."""
    found = workspace(VIEWS)

    def reader(kind: str, body: dict[str, Any]) -> Event:
        call = decode_call(msgspec.json.encode(body), kind)
        return read_call(call, found.events, RECEIVED, found.views)

    return reader


def test_a_page_is_the_event_its_definition_names_or_else_page(read: Any) -> None:
    pricing = read("page", {"userId": "u1", "name": "Pricing", "properties": {"plan": "pro"}})
    assert (pricing.name, pricing.type) == ("pricing_viewed", "page")
    assert pricing.properties == {"plan": "pro", "name": "Pricing"}
    other = read("page", {"userId": "u1", "name": "Docs", "category": "Help"})
    assert (other.name, other.type, other.properties) == (
        "page",
        "page",
        {"name": "Docs", "category": "Help"},
    )
    # a screen named Pricing is no page named Pricing
    screen = read("screen", {"userId": "u1", "name": "Pricing", "properties": {"name": "own"}})
    assert (screen.name, screen.type, screen.properties) == ("screen", "screen", {"name": "own"})


def test_a_page_of_a_defined_event_is_held_to_its_schema(read: Any) -> None:
    with pytest.raises(InvalidEvent) as refused:
        read("page", {"userId": "u1", "name": "Pricing", "properties": {"plan": "gold"}})
    assert (refused.value.field, refused.value.rule) == ("properties.plan", "enum")


def test_an_alias_links_the_previous_id_to_the_user(read: Any) -> None:
    alias = read("alias", {"userId": 42, "previousId": "visitor", "anonymousId": "other"})
    assert (alias.type, alias.profile_id, alias.user_id, alias.anonymous_id) == (
        "alias",
        "42",
        "42",
        "visitor",
    )
    for body, field in [
        ({"previousId": "visitor"}, "userId"),
        ({"userId": "u1", "previousId": "  "}, "previousId"),
        ({"userId": "u1", "previousId": True}, "previousId"),
        # an alias does not use its anonymousId, but holds it to the rules of every id
        ({"userId": "u1", "previousId": "v", "anonymousId": "a\x00b"}, "anonymousId"),
        ({"userId": "u1", "previousId": "v", "anonymousId": "x" * 256}, "anonymousId"),
        ({"userId": "u1", "previousId": "v", "anonymousId": " "}, "anonymousId"),
    ]:
        with pytest.raises(InvalidEvent) as refused:
            read("alias", body)
        assert refused.value.field == field


def test_every_call_type_is_taken_in_a_batch_and_another_type_is_refused_by_name() -> None:
    for kind, kept in (("page", Page), ("screen", Screen), ("group", Group)):
        item = msgspec.Raw(msgspec.json.encode({"type": kind, "userId": "u", "name": "N"}))
        assert isinstance(decode_item(item), kept)
    with pytest.raises(InvalidEvent) as refused:
        decode_item(msgspec.Raw(b'{"type": "register", "userId": "u"}'))
    assert refused.value.as_dict() == {
        "field": "type",
        "rule": "enum",
        "message": "'type' must be track, identify, page, screen, alias or group",
    }


def test_the_context_keeps_ip_user_agent_timezone_locale_and_traits(read: Any) -> None:
    context = {
        "ip": "203.0.113.9",
        "userAgent": "curl/8",
        "timezone": "Europe/Paris",
        "locale": 7,  # not a text: passed over, as before the context was read
        "traits": {"plan": "pro"},
        "library": {"name": "analytics-python"},
    }
    event = read("track", {"userId": "u1", "event": "x", "context": context})
    assert event.context == {
        "ip": "203.0.113.9",
        "userAgent": "curl/8",
        "timezone": "Europe/Paris",
        "traits": {"plan": "pro"},
    }
    assert event.view()["context"]["ip"] == "203.0.113.9"
    assert read("track", {"userId": "u1", "event": "x", "context": "web"}).context == {}
    with pytest.raises(InvalidEvent) as refused:
        read("track", {"userId": "u1", "event": "x", "context": {"traits": {"a": "\x00"}}})
    assert (refused.value.field, refused.value.rule) == ("context.traits.a", "characters")


def test_an_identify_takes_its_context_traits_under_its_own(read: Any) -> None:
    body = {
        "userId": "u1",
        "traits": {"plan": "pro"},
        "context": {"traits": {"plan": "free", "a": 1}},
    }
    assert read("identify", body).properties == {"plan": "pro", "a": 1}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # the device is an hour fast and sent the call 2 s after it happened
        (
            {"originalTimestamp": "2026-01-05T10:29:58Z", "sentAt": "2026-01-05T10:30:00Z"},
            RECEIVED - timedelta(seconds=2),
        ),
        ({"originalTimestamp": "2026-01-05T08:00:00Z"}, datetime(2026, 1, 5, 8, tzinfo=UTC)),
        (
            {"timestamp": "2026-01-01T00:00:00Z", "originalTimestamp": "2026-01-05T08:00:00Z"},
            datetime(2026, 1, 1, tzinfo=UTC),
        ),
        ({"sentAt": 12, "originalTimestamp": "later"}, RECEIVED),
        (
            {"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"},
            datetime(1, 1, 1, tzinfo=UTC),
        ),
    ],
)
def test_the_time_of_a_call_follows_segments_rule_for_a_clock_that_is_off(
    read: Any, fields: dict[str, Any], expected: datetime
) -> None:
    assert read("track", {"userId": "u1", "event": "x", **fields}).timestamp == expected


def test_a_long_user_agent_is_kept_whole(read: Any) -> None:
    agent = "Mozilla/5.0 " + "(extension) " * 60
    event = read("track", {"userId": "u1", "event": "x", "context": {"userAgent": agent}})
    assert event.context == {"userAgent": agent}
