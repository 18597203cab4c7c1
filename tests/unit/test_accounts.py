"""Group calls: an account for the profile, its traits for expressions and templates, and
account_updated for journeys, as ingest reads them and the one core applies them."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from journeyman.domain.expressions import compile_expression
from journeyman.domain.ingest import (
    NAME_LIMIT,
    InvalidEvent,
    decode_batch,
    decode_call,
    decode_item,
    read_call,
)
from journeyman.domain.model import Workspace
from journeyman.domain.state import Account, Event
from journeyman.domain.templates import compile_template
from journeyman.journey_tests import format_trace, run_test
from journeyman.simulator import Simulator

RECEIVED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def read(body: dict[str, Any] | bytes) -> Event:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return read_call(decode_call(raw, "group"), {}, RECEIVED)


# ingest


def test_a_group_call_names_its_account_and_carries_the_account_traits() -> None:
    event = read({"userId": "u1", "groupId": "acme", "traits": {"plan": "pro", "seats": 5}})
    assert (event.type, event.name, event.profile_id, event.group_id) == (
        "group",
        "group",
        "u1",
        "acme",
    )
    assert event.properties == {"plan": "pro", "seats": 5}
    assert event.view()["groupId"] == "acme"
    # a number is an id as Segment's libraries send it; no traits is none
    assert read({"anonymousId": "a1", "groupId": 42}).group_id == "42"
    assert read({"anonymousId": "a1", "groupId": 42}).properties == {}


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"userId": "u1"}, "groupId", "required"),
        ({"userId": "u1", "groupId": None}, "groupId", "required"),
        ({"userId": "u1", "groupId": "  "}, "groupId", "type"),
        ({"userId": "u1", "groupId": True}, "groupId", "type"),
        ({"userId": "u1", "groupId": {"id": "acme"}}, "groupId", "type"),
        ({"userId": "u1", "groupId": "x" * (NAME_LIMIT + 1)}, "groupId", "length"),
        ({"userId": "u1", "groupId": 10**NAME_LIMIT}, "groupId", "length"),
        ({"userId": "u1", "groupId": "ac\x00me"}, "groupId", "characters"),
        ({"userId": "u1", "groupId": "acme", "traits": ["pro"]}, "traits", "type"),
        ({"userId": "u1", "groupId": "acme", "traits": "pro"}, "traits", "type"),
        (
            {"userId": "u1", "groupId": "acme", "traits": {"plan": "p\x00"}},
            "traits.plan",
            "characters",
        ),
        ({"userId": "u1", "groupId": "acme", "traits": {"n": 2**64}}, "traits.n", "range"),
        ({"groupId": "acme"}, "userId", "identity"),
    ],
)
def test_a_bad_group_call_is_refused_naming_the_field_and_the_rule(
    body: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        read(body)
    assert (refused.value.field, refused.value.rule) == (field, rule)


def test_a_group_call_is_taken_in_a_batch() -> None:
    body = {"batch": [{"type": "group", "userId": "u1", "groupId": "acme"}]}
    (item,) = decode_batch(msgspec.json.encode(body))
    call = decode_item(item)
    assert read_call(call, {}, RECEIVED).group_id == "acme"


# expressions and templates


def test_expressions_and_templates_read_the_account_and_null_without_one() -> None:
    scope = {"account": Account(id="acme", traits={"plan": "pro"}).view(), "profile": {}}
    assert compile_expression('account.plan == "pro"').test(scope)
    assert compile_expression("account.id").evaluate(scope) == "acme"
    assert compile_template("Plan {{ account.plan }} of {{ account.id }}").render(scope) == (
        "Plan pro of acme"
    )
    none: dict[str, Any] = {"account": {}, "profile": {}}
    assert compile_expression("account.plan").evaluate(none) is None
    assert not compile_expression('account.plan == "pro"').test(none)
    assert compile_template("Plan {{ account.plan | default: 'none' }}").render(none) == (
        "Plan none"
    )


def test_an_account_trait_is_html_escaped_in_an_email() -> None:
    scope = {"account": {"name": "<b>Acme</b>"}}
    html = compile_template("<p>{{ account.name }}</p>", escape=True).render(scope)
    assert html == "<p>&lt;b&gt;Acme&lt;/b&gt;</p>"


# the one core, through the simulator

ACCOUNTS = """
kind: template
name: plan_email
channel: email
subject: "Your team is on {{ account.plan | default: 'no plan' }}"
text: "Account {{ account.id }}"
---
kind: journey
name: pro_welcome
entry: {event: signed_up, when: account.plan == "pro"}
steps:
  - id: hello
    send: plan_email
---
kind: journey
name: upgraded
entry: {event: account_updated, when: event.plan == "enterprise"}
steps:
  - id: congrats
    send: plan_email
---
kind: journey
name: await_upgrade
entry: {event: purchased}
steps:
  - id: wait
    wait_for: {event: account_updated, when: account.plan == "pro", timeout: 1d}
    on_timeout: never
  - id: done
    end: upgraded
  - id: never
    end: not_upgraded
"""

Simulate = Callable[..., Simulator]
IDENTIFY = {"userId": "u1", "traits": {"email": "ada@example.com"}}


def test_a_group_call_attaches_the_account_whose_traits_a_condition_and_a_template_read(
    simulate: Simulate,
) -> None:
    sim = simulate(ACCOUNTS)
    sim.identify(IDENTIFY)
    group = sim.receive([("group", {"userId": "u1", "groupId": "acme", "traits": {"plan": "pro"}})])
    assert group[0] is not None
    assert group[0].type == "group"
    assert sim.profile("u1").account == "acme"
    assert sim.accounts["acme"].traits == {"plan": "pro"}
    sim.track({"userId": "u1", "event": "signed_up"})
    (message,) = sim.messages
    assert message.journey == "pro_welcome"
    assert message.content["subject"] == "Your team is on pro"
    assert message.content["text"] == "Account acme"
    trace = "\n".join(format_trace(sim))
    assert "account: attached to account acme" in trace


def test_without_an_account_reads_are_null_and_the_condition_is_false(simulate: Simulate) -> None:
    sim = simulate(ACCOUNTS)
    sim.identify(IDENTIFY)
    sim.track({"userId": "u1", "event": "signed_up"})
    assert sim.messages == []
    (record,) = [r for r in sim.records if r.journey == "pro_welcome"]
    assert record.outcome == "not_entered"


def test_the_latest_group_call_wins_and_traits_merge_key_by_key(simulate: Simulate) -> None:
    sim = simulate(ACCOUNTS)
    calls: list[dict[str, Any]] = [
        {"userId": "u1", "groupId": "acme", "traits": {"plan": "pro", "seats": 5}},
        {"userId": "u1", "groupId": "acme", "traits": {"seats": None, "region": "eu"}},
        {"userId": "u1", "groupId": "globex"},
    ]
    for body in calls:
        sim.receive([("group", body)])
    assert sim.accounts["acme"].traits == {"plan": "pro", "region": "eu"}
    assert sim.profile("u1").account == "globex"
    attached = [r.detail for r in sim.records if r.outcome == "account"]
    assert attached == [
        "attached to account acme",
        "attached to account globex (it left account acme)",
    ]


def test_changed_traits_record_account_updated_which_journeys_enter_on(simulate: Simulate) -> None:
    sim = simulate(ACCOUNTS)
    sim.identify(IDENTIFY)
    body = {"userId": "u1", "groupId": "acme", "traits": {"plan": "enterprise", "seats": 5}}
    sim.receive([("group", body)])
    # the same traits again change nothing: no event, no second entry
    sim.receive([("group", body)])
    history = [e for e in sim.events if e.name == "account_updated"]
    assert [e.properties for e in history] == [{"plan": "enterprise", "seats": 5}]
    assert [m.journey for m in sim.messages] == ["upgraded"]
    assert sim.messages[0].content["subject"] == "Your team is on enterprise"


def test_another_members_change_is_read_by_this_member_at_its_next_step(
    simulate: Simulate,
) -> None:
    sim = simulate(ACCOUNTS)
    sim.identify(IDENTIFY)
    sim.receive([("group", {"userId": "u2", "groupId": "acme", "traits": {"plan": "free"}})])
    sim.receive([("group", {"userId": "u1", "groupId": "acme"})])
    sim.track({"userId": "u1", "event": "purchased"})
    # u2 upgrades the account: u1 gets no event of it (no fan-out), but reads the new plan
    sim.receive([("group", {"userId": "u2", "groupId": "acme", "traits": {"plan": "pro"}})])
    sim.track({"userId": "u1", "event": "signed_up"})
    assert [(m.journey, m.profile_id) for m in sim.messages] == [("pro_welcome", "u1")]
    # u1's own wait_for account_updated ended on u1's own group call only
    sim.receive([("group", {"userId": "u1", "groupId": "acme", "traits": {"seats": 9}})])
    ended = {i.journey: i.end_state for i in sim.instances.values() if i.profile_id == "u1"}
    assert ended["await_upgrade"] == "upgraded"


def test_a_journey_test_simulates_a_group_call(workspace: Callable[..., Workspace]) -> None:
    test = """
    kind: test
    name: a pro account's member is welcomed with its plan
    events:
      - {at: 0s, identify: {userId: u1, traits: {email: ada@example.com}}}
      - {at: 1s, group: {userId: u1, groupId: acme, traits: {plan: pro}}}
      - {at: 2s, track: {userId: u1, event: signed_up}}
      - {at: 3s, group: {userId: u1, groupId: 7}}
    expect:
      - {sent: pro_welcome.hello, subject: Your team is on pro, body_contains: Account acme}
      - {entered: upgraded, times: 0}
    """
    built = workspace(ACCOUNTS, textwrap.dedent(test))
    (found,) = built.tests
    result = run_test(built, found)
    assert result.failures == []
    assert result.simulator.profile("u1").account == "7"


def test_a_bad_group_call_in_a_journey_test_is_rejected(
    workspace: Callable[..., Workspace],
) -> None:
    test = """
    kind: test
    name: no account without its id
    events:
      - {at: 0s, group: {userId: u1, traits: {plan: pro}}}
    expect:
      - {rejected: group}
    """
    built = workspace(ACCOUNTS, textwrap.dedent(test))
    (found,) = built.tests
    result = run_test(built, found)
    assert result.failures == []
    (rejection,) = result.simulator.rejected
    assert rejection.error.field == "groupId"


def test_account_updated_is_built_in_and_no_document_may_define_it(
    load: Callable[..., Any],
) -> None:
    loaded = load("kind: event\nname: account_updated\n")
    assert any("'account_updated' is reserved" in str(p) for p in loaded.errors)
