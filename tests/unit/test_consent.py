"""Consent in the pure domain: topics, unsubscribes, suppression and what a send obeys.

The engine applies ``unsubscribed`` / ``resubscribed`` / hard ``message_bounced`` /
``message_complained`` to the profile; a send step then skips, with the reason in the
trace, what the profile said no to; transactional templates ignore topics but not the
suppression list. Driven through the simulator, and a ``kind: test`` journey test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from journeyman.domain import consent
from journeyman.domain.consent import PREFERENCES_PLACEHOLDER, UNSUBSCRIBE_PLACEHOLDER
from journeyman.domain.state import Event, Profile, SendMessage, Suppression
from journeyman.domain.tokens import sign, verify
from journeyman.journey_tests import run_test
from journeyman.runtime.links import Links
from journeyman.runtime.unsubscribe import MAILTO_SETTING, ConsentLinks
from journeyman.simulator import Simulator
from tests.conftest import START
from tests.engine_helpers import Simulate, end_states, journey, sign_up

TOPICS = """
kind: subscription
name: news
channel: email
description: Product news
default: opt_out
---
kind: subscription
name: tips
channel: email
default: opt_in
---
kind: template
name: news_email
channel: email
topic: news
subject: News
html: '<p>{{ profile.firstName }}</p><a href="{{ unsubscribe_url }}">stop</a>'
text: "News. Preferences: {{ preferences_url }}"
---
kind: template
name: tips_email
channel: email
topic: tips
subject: Tips
text: "Tips. Unsubscribe: {{ unsubscribe_url }}"
---
kind: template
name: receipt_email
channel: email
transactional: true
subject: Receipt
text: "Your receipt"
"""

# Each purchase sends the three emails, in order.
SENDS = journey(
    "- {id: news, send: news_email}",
    "- {id: tips, send: tips_email}",
    "- {id: receipt, send: receipt_email}",
    name="j",
    entry="{event: purchased}",
    reentry="always",
)


def simulator(simulate: Simulate) -> Simulator:
    sim = simulate(TOPICS, SENDS)
    sign_up(sim)
    return sim


def track(sim: Simulator, event: str, minutes: int = 1, **properties: Any) -> None:
    at = START + timedelta(minutes=minutes)
    sim.track({"userId": "u1", "event": event, "properties": properties}, at)


def skipped(sim: Simulator) -> dict[str, str]:
    """step -> why it was skipped, for the sends of the last purchase."""
    found: dict[str, str] = {}
    for step in ("news", "tips", "receipt"):
        last = [r for r in sim.records if r.step == step and r.outcome in ("sent", "skipped")][-1]
        if last.outcome == "skipped":
            found[step] = last.detail
    return found


def sent_steps(sim: Simulator) -> list[str]:
    return [m.step for m in sim.messages]


def test_an_opt_out_topic_is_sent_and_an_opt_in_topic_needs_a_yes(simulate: Simulate) -> None:
    sim = simulator(simulate)
    track(sim, "purchased")
    assert sent_steps(sim) == ["news", "receipt"]
    assert skipped(sim) == {"tips": "no opt-in to topic tips"}

    track(sim, "resubscribed", 2, topic="tips", source="preferences")
    track(sim, "purchased", 3)
    assert sent_steps(sim)[2:] == ["news", "tips", "receipt"]


def test_unsubscribing_from_a_topic_skips_it_and_the_instance_goes_on(simulate: Simulate) -> None:
    sim = simulator(simulate)
    track(sim, "unsubscribed", topic="news", source="one-click")
    track(sim, "purchased", 2)

    assert skipped(sim) == {
        "news": "unsubscribed from topic news",
        "tips": "no opt-in to topic tips",
    }
    assert sent_steps(sim) == ["receipt"]
    assert sim.profile("u1").traits["subscriptions"] == {"news": False}
    assert end_states(sim) == ["completed"]


def test_an_identify_sets_topic_choices_as_the_events_do(simulate: Simulate) -> None:
    sim = simulator(simulate)
    at = START + timedelta(minutes=1)
    sim.identify({"userId": "u1", "traits": {"subscriptions": {"news": False, "tips": True}}}, at)
    track(sim, "purchased", 2)
    assert sent_steps(sim) == ["tips", "receipt"]


@pytest.mark.parametrize(
    ("properties", "reason", "trait"),
    [
        ({"channel": "email"}, "no consent for email", {"consent": {"email": False}}),
        ({}, "the profile is unsubscribed", {"unsubscribed": True}),
    ],
)
def test_unsubscribing_from_a_channel_or_everything_stops_marketing_but_not_receipts(
    simulate: Simulate, properties: dict[str, str], reason: str, trait: dict[str, Any]
) -> None:
    sim = simulator(simulate)
    track(sim, "unsubscribed", 1, source="preferences", **properties)
    track(sim, "purchased", 2)
    assert skipped(sim) == {"news": reason, "tips": reason}
    assert sent_steps(sim) == ["receipt"]
    assert trait.items() <= sim.profile("u1").traits.items()

    track(sim, "resubscribed", 3, source="preferences", **properties)
    track(sim, "purchased", 4)
    assert sent_steps(sim)[1:] == ["news", "receipt"]


@pytest.mark.parametrize(
    ("event", "properties", "reason"),
    [
        ("message_bounced", {"bounce": "hard", "reason": "550 no such user"}, "hard bounce"),
        ("message_complained", {}, "complaint"),
    ],
)
def test_a_hard_bounce_or_a_complaint_suppresses_the_address_for_every_email(
    simulate: Simulate, event: str, properties: dict[str, str], reason: str
) -> None:
    sim = simulator(simulate)
    track(sim, event, 1, address="U1@Example.com", **properties)
    track(sim, "purchased", 2)

    assert sent_steps(sim) == []
    at = f"{START + timedelta(minutes=1):%Y-%m-%d %H:%M:%S} UTC"
    assert skipped(sim)["receipt"] == f"u1@example.com is suppressed ({reason}, {at})"
    entry = sim.profile("u1").suppressed["u1@example.com"]
    assert (entry.reason, entry.source) == (reason, "bounce")
    assert entry.at == START + timedelta(minutes=1)


def test_a_soft_bounce_suppresses_nothing(simulate: Simulate) -> None:
    sim = simulator(simulate)
    track(sim, "message_bounced", bounce="soft", address="u1@example.com")
    track(sim, "purchased", 2)
    assert sim.profile("u1").suppressed == {}
    assert sent_steps(sim) == ["news", "receipt"]


def test_the_engine_renders_placeholders_that_html_escaping_keeps_intact(
    simulate: Simulate,
) -> None:
    sim = simulator(simulate)
    sim.identify({"userId": "u1", "traits": {"firstName": UNSUBSCRIBE_PLACEHOLDER}}, START)
    track(sim, "purchased")
    news = sim.messages[0]
    assert news.topic == "news"
    assert not news.transactional
    assert news.content["html"] == (
        f'<p>{UNSUBSCRIBE_PLACEHOLDER}</p><a href="{UNSUBSCRIBE_PLACEHOLDER}">stop</a>'
    )
    assert news.content["text"] == "News. Preferences: https://journeyman.invalid/preferences-link"
    assert sim.messages[1].transactional


def test_a_profile_stored_before_suppression_was_kept_still_loads() -> None:
    class Before(msgspec.Struct, kw_only=True):
        id: str
        traits: dict[str, Any] = {}

    blob = msgspec.msgpack.encode(Before(id="u1", traits={"a": 1}))
    profile = msgspec.msgpack.decode(blob, type=Profile)
    assert (profile.id, profile.suppressed) == ("u1", {})


JOURNEY_TEST = """
kind: test
name: an unsubscribe stops the next newsletter but not the receipt
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 1m
    track: {userId: u1, event: purchased}
  - at: 2m
    track: {userId: u1, event: unsubscribed, properties: {topic: news, source: one-click}}
  - at: 3m
    track: {userId: u1, event: purchased}
expect:
  - {sent: news, times: 1, at: 1m}
  - {skipped: news, at: 3m}
  - {sent: receipt, times: 2}
"""


def test_a_journey_test_sees_consent_as_production_does(workspace: Any) -> None:
    built = workspace(TOPICS, SENDS, JOURNEY_TEST)
    (test,) = built.tests
    assert run_test(built, test).failures == []


# validation


def problems(load: Any, *documents: str) -> list[str]:
    return [str(p) for p in load(*documents).problems]


def test_a_template_topic_must_name_a_subscription_of_its_channel(load: Any) -> None:
    found = problems(
        load,
        TOPICS,
        "kind: template\nname: sms\nchannel: sms\ntopic: news\nbody: hi",
        "kind: template\nname: e\nchannel: email\ntopic: newz\nsubject: s\n"
        "text: '{{ unsubscribe_url }}'",
    )
    assert found == [
        "doc01.yaml:4: template sms: subscription 'news' is for email, not sms",
        "doc02.yaml:4: template e: subscription 'newz' is not defined (did you mean 'news'?)",
    ]


def test_a_marketing_email_without_topic_or_way_out_is_warned_about(load: Any) -> None:
    found = problems(load, "kind: template\nname: m\nchannel: email\nsubject: s\nhtml: '<p>hi</p>'")
    assert found == [
        "doc00.yaml:1: warning: template m: a marketing email names no 'topic': name a "
        "subscription topic, or say 'transactional: true' for a receipt or a password reset",
        "doc00.yaml:1: warning: template m: a marketing email has no '{{ unsubscribe_url }}' "
        "or '{{ preferences_url }}' in its body",
    ]


def test_a_subscription_needs_a_channel_and_a_default_it_knows(load: Any) -> None:
    found = problems(
        load,
        "kind: subscription\nname: a\n---\n"
        "kind: subscription\nname: b\nchannel: fax\ndefault: maybe\ncolour: red\n",
    )
    assert found == [
        "doc00.yaml:1: subscription a: a subscription needs 'channel'",
        "doc00.yaml:1: subscription a: a subscription needs 'default'",
        "doc00.yaml:6: subscription b: 'channel' must be one of email, sms, push, webhook, "
        "not 'fax'",
        "doc00.yaml:7: subscription b: 'default' must be one of opt_in, opt_out, not 'maybe'",
        "doc00.yaml:8: subscription b: unknown key 'colour' in a subscription",
    ]


def test_a_transactional_template_has_no_topic(load: Any) -> None:
    found = problems(
        load,
        TOPICS,
        "kind: template\nname: r\nchannel: email\ntransactional: true\ntopic: news\n"
        "subject: s\ntext: t",
    )
    assert found == ["doc01.yaml:5: template r: a transactional template has no 'topic'"]


def test_a_token_whose_spare_bits_are_changed_is_refused() -> None:
    # 16 bytes of MAC plus a payload of 3n + 1 bytes: the last character has 4 spare bits.
    token = next(t for t in (sign(b"s", "p", "k" * n) for n in range(8)) if len(t) % 4 == 2)
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(token[-1])
    same_bits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    assert verify(b"s", "p", token) is not None
    assert verify(b"s", "p", token[:-1] + same_bits) is None


# the send-time step that puts the links in


def message(channel: str = "email", **fields: Any) -> SendMessage:
    text = f"Stop: {UNSUBSCRIBE_PLACEHOLDER} Choose: {PREFERENCES_PLACEHOLDER}"
    return SendMessage(
        key="u1:j:1:news:1",
        instance_id="u1:j:1",
        journey="j",
        step="news",
        profile_id="u1",
        channel=channel,
        template="t",
        to="x",
        content={"text": text},
        at=START,
        **fields,
    )


@dataclass
class Sender:
    sender: str


LINKS = Links("https://go.example", b"secret")


@pytest.mark.parametrize(
    ("env", "channels", "mailto"),
    [
        ({}, {"email": Sender("Shop <hi@shop.example>")}, "unsubscribe@shop.example"),
        (
            {MAILTO_SETTING: "stop@lists.example"},
            {"email": Sender("hi@shop.example")},
            "stop@lists.example",
        ),
        ({}, {}, ""),
    ],
)
def test_marketing_email_gets_the_links_and_the_list_unsubscribe_headers(
    env: dict[str, str], channels: dict[str, Any], mailto: str
) -> None:
    prepared = ConsentLinks(lambda: LINKS, env, channels)(message(topic="news"))
    unsubscribe = LINKS.url("/u", "unsubscribe", "u1:j:1:news:1")
    preferences = LINKS.url("/preferences", "preferences", "u1")
    assert prepared.content["text"] == f"Stop: {unsubscribe} Choose: {preferences}"
    token = unsubscribe.rsplit("/", 1)[1]
    expected = f"<{unsubscribe}>" + (
        f", <mailto:{mailto}?subject=unsubscribe-{token}>" if mailto else ""
    )
    assert prepared.headers == {
        "List-Unsubscribe": expected,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@pytest.mark.parametrize(
    "original", [message(transactional=True), message("sms", topic="news")], ids=["receipt", "sms"]
)
def test_transactional_email_and_other_channels_get_links_but_no_headers(
    original: SendMessage,
) -> None:
    prepared = ConsentLinks(lambda: LINKS, {}, {"email": Sender("hi@shop.example")})(original)
    assert prepared.headers == {}
    assert "https://go.example/u/" in prepared.content["text"]


# suppressions by hand, and the audit of who changed what


def consent_event(name: str, minutes: int = 1, **properties: Any) -> Event:
    at = START + timedelta(minutes=minutes)
    return Event(name=name, profile_id="u1", timestamp=at, properties=properties)


def test_an_address_suppressed_by_an_operator_is_kept_with_who_and_why() -> None:
    event = consent_event(
        "address_suppressed",
        address=" Ada@Example.com ",
        reason="asked by phone",
        source="operator",
        by="alice@example.com",
    )
    profile = consent.apply(Profile(id="u1"), event)
    assert profile is not None
    assert profile.suppressed == {
        "ada@example.com": Suppression(
            reason="asked by phone",
            source="operator",
            at=START + timedelta(minutes=1),
            by="alice@example.com",
        )
    }
    # Suppressed already: the first reason stays and nothing changes.
    assert (
        consent.apply(profile, consent_event("address_suppressed", address="ADA@example.com"))
        is None
    )
    tracked = consent.apply(Profile(id="u1"), consent_event("address_suppressed", address="a@b.c"))
    assert tracked is not None
    assert tracked.suppressed["a@b.c"] == Suppression(
        reason="suppressed", source="api", at=START + timedelta(minutes=1)
    )


def test_an_address_unsuppressed_leaves_the_list_and_one_not_on_it_changes_nothing() -> None:
    kept = Suppression(reason="hard bounce", source="smtp", at=START)
    profile = Profile(id="u1", suppressed={"a@b.c": kept, "d@e.f": kept})
    after = consent.apply(profile, consent_event("address_unsuppressed", address="A@B.c"))
    assert after is not None
    assert after.suppressed == {"d@e.f": kept}
    assert profile.suppressed == {"a@b.c": kept, "d@e.f": kept}  # the profile is not changed
    for missing in ({"address": "x@y.z"}, {"address": 7}, {}):
        assert consent.apply(profile, consent_event("address_unsuppressed", **missing)) is None


def test_a_suppression_stored_before_by_was_kept_still_loads() -> None:
    class Before(msgspec.Struct, kw_only=True):
        reason: str
        source: str
        at: datetime

    blob = msgspec.msgpack.encode(
        {"id": "u1", "suppressed": {"a@b.c": Before(reason="r", source="s", at=START)}}
    )
    profile = msgspec.msgpack.decode(blob, type=Profile)
    assert profile.suppressed["a@b.c"] == Suppression(reason="r", source="s", at=START, by="")


@pytest.mark.parametrize(
    ("name", "properties", "expected"),
    [
        (
            "unsubscribed",
            {"topic": "news", "source": "operator", "by": "alice"},
            ({"topic": "news", "subscribed": False}, "operator", "alice"),
        ),
        (
            "resubscribed",
            {"channel": "sms", "source": "sms"},
            ({"channel": "sms", "consent": True}, "sms", None),
        ),
        ("unsubscribed", {}, ({"unsubscribed": True}, "api", None)),
        (
            "message_complained",
            {"address": "a@b.c"},
            ({"address": "a@b.c", "suppressed": True, "reason": "complaint"}, "complaint", None),
        ),
        (
            "address_unsuppressed",
            {"address": "a@b.c", "source": "operator", "by": "bob"},
            ({"address": "a@b.c", "suppressed": False}, "operator", "bob"),
        ),
    ],
)
def test_the_audit_says_what_an_event_changes_and_who_changed_it(
    name: str, properties: dict[str, Any], expected: tuple[dict[str, Any], str, str | None]
) -> None:
    found = consent.change(consent_event(name, **properties))
    assert found is not None
    assert (found["change"], found["source"], found["by"]) == expected


def test_the_audit_leaves_out_events_that_change_no_consent_and_names_a_bounce_s_reporter() -> None:
    soft = consent_event("message_bounced", bounce="soft", address="a@b.c")
    assert consent.change(soft) is None
    assert consent.change(consent_event("purchased")) is None
    plain = Event(
        name="identify",
        type="identify",
        profile_id="u1",
        timestamp=START,
        properties={"email": "a@b.c"},
    )
    assert consent.change(plain) is None
    chosen = msgspec.structs.replace(plain, properties={"subscriptions": {"news": False}})
    assert consent.change(chosen) == {
        "change": {"traits": {"subscriptions": {"news": False}}},
        "summary": "set subscriptions",
        "source": "identify",
        "by": None,
    }
    hard = consent.change(
        consent_event("message_bounced", bounce="hard", address="a@b.c", source="smtp")
    )
    assert hard is not None
    assert (hard["source"], hard["via"]) == ("bounce", "smtp")


SUPPRESSION_TEST = """
kind: test
name: an operator's suppression stops even the receipt, and its removal lets it go
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 1m
    track:
      userId: u1
      event: address_suppressed
      properties: {address: U1@example.com, source: operator, by: alice}
  - at: 2m
    track: {userId: u1, event: purchased}
  - at: 3m
    track: {userId: u1, event: address_unsuppressed, properties: {address: u1@example.com}}
  - at: 4m
    track: {userId: u1, event: purchased}
expect:
  - {skipped: receipt, at: 2m}
  - {sent: receipt, times: 1, at: 4m}
  - {sent: news, times: 1}
"""


def test_a_journey_test_applies_suppressions_by_hand_as_production_does(workspace: Any) -> None:
    built = workspace(TOPICS, SENDS, SUPPRESSION_TEST)
    (test,) = built.tests
    assert run_test(built, test).failures == []


@pytest.mark.parametrize("name", ["address_suppressed", "address_unsuppressed"])
def test_an_event_document_may_not_take_a_consent_events_name(load: Any, name: str) -> None:
    assert problems(load, f"kind: event\nname: {name}\n") == [
        f"doc00.yaml:2: event {name}: event name '{name}' is reserved: journeyman defines "
        "this consent event and its properties itself; give your event another name"
    ]


def test_a_suppression_event_without_its_address_is_refused_at_ingest(workspace: Any) -> None:
    built = workspace(TOPICS, SENDS)
    definition = built.events["address_suppressed"]
    assert definition.builtin
    errors = list(definition.validator.iter_errors({"reason": "x"}))
    assert [e.message for e in errors] == ["'address' is a required property"]
