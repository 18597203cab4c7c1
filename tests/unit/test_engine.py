"""The step engine, driven through the simulator: every step type and journey rule."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from journeyman.domain.state import Event, Profile
from journeyman.simulator import Simulator
from tests.conftest import START
from tests.engine_helpers import (
    Simulate,
    after,
    end_states,
    journey,
    outcomes,
    record,
    sent,
    sign_up,
    the_instance,
    utc,
)

BOOKED = """
kind: event
name: booked
schema:
  type: object
  properties:
    appointment_at: {type: [string, number]}
"""

CARTS = """
kind: event
name: cart_updated
schema:
  type: object
  required: [cart_id]
  properties:
    cart_id: {type: string}
---
kind: event
name: order_completed
schema:
  type: object
  required: [cart_id]
  properties:
    cart_id: {type: string}
"""

SEND_HELLO = """
- id: hello
  send: hello_email
"""
# A marketing email (hello_email is transactional: consent does not stop it).
SEND_NEWS = """
- id: hello
  send: news_email
"""
NEWS = """
kind: subscription
name: news
channel: email
default: opt_out
---
kind: template
name: news_email
channel: email
topic: news
subject: News
text: "News. Unsubscribe: {{ unsubscribe_url }}"
"""


def book(sim: Simulator, appointment: object, at: datetime = START) -> None:
    properties = {} if appointment is None else {"appointment_at": appointment}
    sim.identify({"userId": "u1", "traits": {"email": "u1@example.com"}}, at)
    sim.track({"userId": "u1", "event": "booked", "properties": properties}, at)


def cart(sim: Simulator, event: str, cart_id: str, at: datetime) -> None:
    sim.track({"userId": "u1", "event": event, "properties": {"cart_id": cart_id}}, at)


def purchase(sim: Simulator, at: datetime, total: float = 10, user: str = "u1") -> None:
    sim.track({"userId": user, "event": "purchased", "properties": {"total": total}}, at)


# wait


def test_wait_for_a_duration_wakes_that_long_after_it_was_reached(simulate: Simulate) -> None:
    sim = simulate(journey("- {id: pause, wait: 1h30m}", SEND_HELLO))
    sign_up(sim, at=after("10s"))
    assert the_instance(sim).wake_at == after("1h30m10s")
    sim.run()
    assert sent(sim) == [("hello", after("1h30m10s"))]
    assert the_instance(sim).end_state == "completed"


UNTIL_DAY_BEFORE = journey(
    """
    - id: day_before
      wait: {until: 'timestamp(entry.appointment_at) - duration("1d")'}
    """,
    SEND_HELLO,
    entry="{event: booked}",
)


def test_wait_until_a_future_time_wakes_at_that_time(simulate: Simulate) -> None:
    sim = simulate(BOOKED, UNTIL_DAY_BEFORE)
    book(sim, "2026-01-10T15:00:00Z")
    assert the_instance(sim).wake_at == utc(2026, 1, 9, 15)
    sim.run()
    assert sent(sim) == [("hello", utc(2026, 1, 9, 15))]


def test_wait_until_reads_epoch_seconds(simulate: Simulate) -> None:
    sim = simulate(
        BOOKED,
        journey(
            "- {id: wait_it, wait: {until: entry.appointment_at}}",
            SEND_HELLO,
            entry="{event: booked}",
        ),
    )
    book(sim, after("2d").timestamp())
    sim.run()
    assert sent(sim) == [("hello", after("2d"))]


def test_wait_until_a_past_time_does_not_wait(simulate: Simulate) -> None:
    sim = simulate(BOOKED, UNTIL_DAY_BEFORE)
    book(sim, "2026-01-05T12:00:00Z", at=after("1h"))
    assert sent(sim) == [("hello", after("1h"))]
    assert "2026-01-04 12:00:00 UTC has passed" in record(sim, "day_before", "waited").detail


@pytest.mark.parametrize("appointment", [None, "next tuesday"])
def test_wait_until_that_gives_no_time_is_skipped_with_the_reason(
    simulate: Simulate, appointment: str | None
) -> None:
    sim = simulate(BOOKED, UNTIL_DAY_BEFORE)
    book(sim, appointment)
    assert sent(sim) == [("hello", START)]
    reason = record(sim, "day_before", "skipped").detail
    assert reason.startswith("'until' gave no time: timestamp(entry.appointment_at)")


def local_wait(clock: str, days: str = "") -> str:
    spec = f'{{until_local: "{clock}"' + (f", days: {days}" if days else "") + "}"
    return journey(f"- {{id: morning, wait: {spec}}}", SEND_HELLO)


WEEKDAYS = "[mon, tue, wed, thu, fri]"


@pytest.mark.parametrize(
    ("entered", "wake"),
    [
        # Friday 08:00 in New York: 09:00 comes the same day.
        (utc(2026, 1, 9, 13), utc(2026, 1, 9, 14)),
        # Friday 10:00 in New York: the weekend is skipped, Monday 09:00 EST.
        (utc(2026, 1, 9, 15), utc(2026, 1, 12, 14)),
    ],
)
def test_until_local_waits_for_the_next_listed_day_in_the_profiles_zone(
    simulate: Simulate, entered: datetime, wake: datetime
) -> None:
    sim = simulate(local_wait("09:00", WEEKDAYS), start=entered)
    sign_up(sim, at=entered, timezone="America/New_York")
    sim.run()
    assert sent(sim) == [("hello", wake)]


@pytest.mark.parametrize("traits", [{}, {"timezone": "Mars/Olympus_Mons"}])
def test_until_local_uses_the_workspace_zone_without_a_valid_profile_zone(
    simulate: Simulate, traits: dict[str, str]
) -> None:
    settings = "kind: settings\ntimezone: Asia/Tokyo"
    friday = utc(2026, 1, 9, 1)  # Friday 10:00 in Tokyo
    sim = simulate(settings, local_wait("08:00", WEEKDAYS), start=friday)
    sign_up(sim, at=friday, **traits)
    sim.run()
    # Monday 08:00 in Tokyo is still Sunday in UTC: the days are the zone's days.
    assert sent(sim) == [("hello", utc(2026, 1, 11, 23))]


@pytest.mark.parametrize(
    ("entered", "clock", "wake"),
    [
        # Paris springs forward on 2026-03-29 at 02:00: 02:30 does not exist, 03:30 CEST.
        (utc(2026, 3, 28, 12), "02:30", utc(2026, 3, 29, 1, 30)),
        (utc(2026, 3, 28, 12), "09:00", utc(2026, 3, 29, 7)),
        # Paris falls back on 2026-10-25 at 03:00: 02:30 comes twice, the first is CEST.
        (utc(2026, 10, 24, 12), "02:30", utc(2026, 10, 25, 0, 30)),
        (utc(2026, 10, 24, 12), "09:00", utc(2026, 10, 25, 8)),
    ],
)
def test_until_local_is_correct_across_daylight_saving_changes(
    simulate: Simulate, entered: datetime, clock: str, wake: datetime
) -> None:
    sim = simulate(local_wait(clock), start=entered)
    sign_up(sim, at=entered, timezone="Europe/Paris")
    assert the_instance(sim).wake_at == wake
    sim.run()
    assert sent(sim) == [("hello", wake)]


# wait_for

CART_JOURNEY = journey(
    """
    - id: await_order
      wait_for:
        event: order_completed
        when: event.cart_id == entry.cart_id
        timeout: 2d
      on_event: bought
      on_timeout: remind
    - id: remind
      send: hello_email
      next: gave_up
    - id: bought
      end: bought
    - id: gave_up
      end: abandoned
    """,
    entry="{event: cart_updated}",
)


def test_wait_for_resumes_only_on_the_event_that_correlates_with_the_entry(
    simulate: Simulate,
) -> None:
    sim = simulate(CARTS, CART_JOURNEY)
    sign_up(sim)
    cart(sim, "cart_updated", "k1", START)
    cart(sim, "order_completed", "k2", after("1h"))
    assert the_instance(sim).status == "waiting"
    cart(sim, "order_completed", "k1", after("3h"))
    sim.run()
    instance = the_instance(sim)
    assert (instance.end_state, instance.ended_at) == ("bought", after("3h"))
    assert record(sim, "await_order", "event").detail == "order_completed arrived"
    assert sim.messages == []


def test_wait_for_takes_the_timeout_path_when_no_event_comes(simulate: Simulate) -> None:
    sim = simulate(CARTS, CART_JOURNEY)
    sign_up(sim)
    cart(sim, "cart_updated", "k1", START)
    sim.run()
    assert sent(sim) == [("remind", after("2d"))]
    assert record(sim, "await_order", "timeout").detail == "no order_completed within 2d"
    assert end_states(sim) == ["abandoned"]


@pytest.mark.parametrize(("purchased_at", "ended"), [("30m", "gave_up"), ("2h", "bought")])
def test_wait_for_counts_only_events_after_the_step_is_reached(
    simulate: Simulate, purchased_at: str, ended: str
) -> None:
    sim = simulate(
        journey(
            """
            - id: pause
              wait: 1h
            - id: await_purchase
              wait_for: {event: purchased, timeout: 1d}
              on_event: bought
              on_timeout: gave_up
            - id: bought
              end: bought
            - id: gave_up
              end: gave_up
            """
        )
    )
    sign_up(sim)
    purchase(sim, after(purchased_at))
    sim.run()
    assert end_states(sim) == [ended]


WAIT_FOREVER = journey(
    """
    - id: await_purchase
      wait_for: {event: purchased}
    """,
    SEND_HELLO,
    timeout="3d",
)


def test_wait_for_without_timeout_waits_until_the_journey_timeout(simulate: Simulate) -> None:
    sim = simulate(WAIT_FOREVER)
    sign_up(sim)
    assert the_instance(sim).wake_at == after("3d")
    sim.run()
    instance = the_instance(sim)
    assert (instance.end_state, instance.ended_at) == ("timed_out", after("3d"))
    assert "journey timeout of 3d reached" in record(sim, "await_purchase", "ended").detail
    assert sim.messages == []


def test_wait_for_goes_on_to_the_next_step_when_the_event_comes(simulate: Simulate) -> None:
    sim = simulate(WAIT_FOREVER)
    sign_up(sim)
    purchase(sim, after("1d"))
    assert sent(sim) == [("hello", after("1d"))]
    assert end_states(sim) == ["completed"]


def test_after_a_wait_for_event_is_the_event_received_and_entry_the_entry(
    simulate: Simulate,
) -> None:
    steps = """
    - id: await_purchase
      wait_for: {event: purchased}
    - id: big
      branch:
        - when: event.total > 100 and entry.plan == "pro"
          goto: hello
        - otherwise: small
    - id: small
      end: small
    """
    sim = simulate(journey(steps, SEND_HELLO))
    sign_up(sim)
    purchase(sim, after("1h"), total=150)
    assert record(sim, "big", "branched").detail.endswith("is true: to hello")
    assert sim.messages[0].content["text"] == "Plan pro"


# branch and split

BY_PLAN = journey(
    """
    - id: by_plan
      branch:
        - when: entry.plan == "pro"
          goto: pro
        - when: entry.plan != "free"
          goto: paying
        - otherwise: free
    - id: pro
      end: pro
    - id: paying
      end: paying
    - id: free
      end: free
    """
)


@pytest.mark.parametrize(
    ("plan", "ended", "reason"),
    [
        ("pro", "pro", 'entry.plan == "pro" is true: to pro'),
        ("team", "paying", 'entry.plan != "free" is true: to paying'),
        ("free", "free", "no case is true: otherwise to free"),
    ],
)
def test_branch_takes_the_first_true_case_and_records_why(
    simulate: Simulate, plan: str, ended: str, reason: str
) -> None:
    sim = simulate(BY_PLAN)
    sign_up(sim, plan=plan)
    assert end_states(sim) == [ended]
    assert record(sim, "by_plan", "branched").detail == reason


SPLIT_70_20_10 = journey(
    """
    - id: ab
      split:
        - {weight: 70, goto: a}
        - {weight: 20, goto: b}
        - {weight: 10, goto: c}
    - id: a
      end: a
    - id: b
      end: b
    - id: c
      end: c
    """,
    reentry="always",
)


def arms(sim: Simulator, users: range, times: int = 1) -> dict[str, list[str | None]]:
    """The arm (end state) each user lands in, on each of ``times`` entries."""
    for _ in range(times):
        for n in users:
            sim.track({"userId": f"u{n}", "event": "signed_up"})
    found: dict[str, list[str | None]] = {}
    for instance in sim.instances.values():
        found.setdefault(instance.profile_id, []).append(instance.end_state)
    return found


def test_split_sends_a_profile_down_the_same_arm_every_time_and_everywhere(
    simulate: Simulate,
) -> None:
    first = arms(simulate(SPLIT_70_20_10), range(50), times=3)
    second = arms(simulate(SPLIT_70_20_10), range(50))
    assert all(len(set(ends)) == 1 for ends in first.values())
    assert {user: ends[0] for user, ends in first.items()} == {
        user: ends[0] for user, ends in second.items()
    }


def test_split_shares_10000_profiles_within_2_percent_of_the_weights(
    simulate: Simulate,
) -> None:
    found = Counter(ends[0] for ends in arms(simulate(SPLIT_70_20_10), range(10_000)).values())
    for arm, weight in {"a": 0.7, "b": 0.2, "c": 0.1}.items():
        assert found[arm] / 10_000 == pytest.approx(weight, abs=0.02)


def test_a_holdout_arm_gets_nothing(simulate: Simulate) -> None:
    sim = simulate(
        journey(
            """
            - id: holdout_split
              split:
                - {weight: 80, goto: campaign}
                - {weight: 20, goto: holdout}
            - id: campaign
              send: hello_email
              next: done
            - id: holdout
              end: holdout
            - id: done
              end: treated
            """
        )
    )
    for n in range(40):
        sign_up(sim, user=f"u{n}")
    ends = {i.profile_id: i.end_state for i in sim.instances.values()}
    messaged = {m.profile_id for m in sim.messages}
    assert messaged == {user for user, end in ends.items() if end == "treated"}
    assert set(ends.values()) == {"treated", "holdout"}


# send

PAUSE_THEN_HELLO = journey("- {id: pause, wait: 1h}", SEND_HELLO)


def test_send_renders_the_profile_as_it_is_at_send_time(simulate: Simulate) -> None:
    sim = simulate(PAUSE_THEN_HELLO)
    sign_up(sim, firstName="Ada")
    sim.identify({"userId": "u1", "traits": {"firstName": "Adele"}}, after("30m"))
    sim.run()
    (message,) = sim.messages
    assert message.content["subject"] == "Hello Adele"
    assert message.content["text"] == "Plan pro"
    assert (message.to, message.at, message.channel) == ("u1@example.com", after("1h"), "email")


@pytest.mark.parametrize(
    ("traits", "reason"),
    [
        ({"unsubscribed": True}, "the profile is unsubscribed"),
        ({"consent": {"email": False}}, "no consent for email"),
        ({"email": None}, "the profile has no email"),
        ({"email": "  "}, "the profile has no email"),
    ],
)
def test_send_is_skipped_with_the_reason_and_the_instance_goes_on(
    simulate: Simulate, traits: dict[str, Any], reason: str
) -> None:
    sim = simulate(journey(SEND_NEWS, "- {id: done, end: done}"), NEWS)
    sign_up(sim, **traits)
    assert sim.messages == []
    assert record(sim, "hello", "skipped").detail == reason
    assert end_states(sim) == ["done"]


def test_consent_withheld_for_another_channel_does_not_stop_an_email(
    simulate: Simulate,
) -> None:
    sim = simulate(journey(SEND_NEWS), NEWS)
    sign_up(sim, consent={"sms": False, "email": True})
    assert sent(sim) == [("hello", START)]


WORK_EMAIL = """
kind: template
name: work_email
channel: email
to: "{{ profile.work_email }}"
subject: "For work"
text: "Hi"
"""


def test_to_gives_the_address_instead_of_the_channel_trait(simulate: Simulate) -> None:
    sim = simulate(WORK_EMAIL, journey("- {id: work, send: work_email}"))
    sign_up(sim, work_email="ada@work.example.com")
    assert [m.to for m in sim.messages] == ["ada@work.example.com"]


def test_to_that_renders_empty_skips_the_send(simulate: Simulate) -> None:
    sim = simulate(WORK_EMAIL, journey("- {id: work, send: work_email}"))
    sign_up(sim)
    assert sim.messages == []
    assert record(sim, "work", "skipped").detail == "'to' of template work_email rendered empty"


def test_a_missing_trait_renders_empty_and_the_message_goes(simulate: Simulate) -> None:
    template = """
    kind: template
    name: nick_email
    channel: email
    subject: "Hi {{ profile.nickname }}!"
    text: "Plan {{ entry.plan }}, code {{ entry.coupon.code }}."
    """
    sim = simulate(template, journey("- {id: nick, send: nick_email}"))
    sign_up(sim)
    (message,) = sim.messages
    assert message.content == {"subject": "Hi !", "text": "Plan pro, code ."}


def test_idempotency_keys_differ_per_instance_and_step(simulate: Simulate) -> None:
    sim = simulate(journey(SEND_HELLO, "- {id: again, send: hello_email}", reentry="always"))
    for user in ("u1", "u2"):
        sign_up(sim, user=user)
        sign_up(sim, user=user, at=after("1h"))
    keys = [m.key for m in sim.messages]
    assert len(keys) == 8
    assert len(set(keys)) == 8


ON_ERROR = journey(
    """
    - id: hello
      send: hello_email
      on_error: fallback
    - id: pause
      wait: 1d
    - id: done
      end: welcomed
    - id: fallback
      send: hello_sms
      next: by_sms
    - id: by_sms
      end: reached_by_sms
    """
)


@pytest.mark.parametrize(
    ("fail", "ended", "steps_sent"),
    [
        ((), "welcomed", ["hello"]),
        (("hello",), "reached_by_sms", ["hello", "fallback"]),
        (("j.hello",), "reached_by_sms", ["hello", "fallback"]),
    ],
)
def test_send_follows_on_error_when_delivery_fails_for_good(
    simulate: Simulate, fail: tuple[str, ...], ended: str, steps_sent: list[str]
) -> None:
    sim = simulate(ON_ERROR, fail=fail)
    sign_up(sim, phone="+15550100")
    sim.run()
    assert [m.step for m in sim.messages] == steps_sent
    assert end_states(sim) == [ended]


SEND_THEN_END = journey(
    """
    - id: hello
      send: hello_email
      on_error: fallback
    - id: done
      end: welcomed
    - id: fallback
      end: unreachable_by_email
    """
)


def test_a_send_with_on_error_waits_for_its_delivery_before_going_on(simulate: Simulate) -> None:
    sim = simulate(SEND_THEN_END)
    profile = Profile(id="u1", traits={"email": "u1@example.com"})
    event = Event(name="signed_up", profile_id="u1", timestamp=START)
    outcome = sim.engine.on_event(profile, [], event, START)
    (waiting,) = outcome.instances.values()
    assert (waiting.status, waiting.waiting, waiting.step) == ("waiting", "delivery", "hello")
    delivered = sim.engine.on_delivered(profile, [waiting], waiting, "hello", START)
    assert delivered.instances[waiting.id].end_state == "welcomed"


def test_a_failed_send_right_before_the_end_still_takes_on_error(simulate: Simulate) -> None:
    sim = simulate(SEND_THEN_END, fail=("hello",))
    sign_up(sim)
    assert end_states(sim) == ["unreachable_by_email"]
    assert outcomes(sim, "hello") == ["sent", "failed"]


def test_a_failure_of_a_send_without_on_error_is_only_recorded(simulate: Simulate) -> None:
    sim = simulate(journey(SEND_HELLO, "- {id: done, end: welcomed}"), fail=("hello",))
    sign_up(sim)
    assert end_states(sim) == ["welcomed"]
    assert outcomes(sim, "hello") == ["sent", "failed"]


# call

CRM_ACTION = """
kind: action
name: add_to_crm
method: PUT
url: "https://crm.example.com/contacts/{{ profile.id }}?plan={{ entry.plan }}"
headers:
  Authorization: "Bearer ${CRM_TOKEN}"
  X-Name: "{{ profile.firstName }}"
body: '{"email": "{{ profile.email }}", "plan": "{{ entry.plan }}"}'
timeout: 5s
"""

CRM_JOURNEY = journey(
    """
    - id: crm
      call: add_to_crm
      on_error: crm_failed
    - id: settle
      wait: 1h
    - id: synced
      end: synced
    - id: crm_failed
      end: crm_failed
    """
)


def test_call_renders_the_action_and_leaves_secrets_to_the_runtime(simulate: Simulate) -> None:
    sim = simulate(CRM_ACTION, CRM_JOURNEY)
    sign_up(sim, firstName="Ada")
    (call,) = sim.calls
    assert (call.method, call.timeout, call.at) == ("PUT", 5.0, START)
    assert call.url == "https://crm.example.com/contacts/u1?plan=pro"
    assert call.headers == {"Authorization": "Bearer ${CRM_TOKEN}", "X-Name": "Ada"}
    assert call.body == '{"email": "u1@example.com", "plan": "pro"}'
    assert record(sim, "crm", "called").detail == f"PUT {call.url}"
    sim.run()
    assert end_states(sim) == ["synced"]


def test_call_follows_on_error_when_it_fails_for_good(simulate: Simulate) -> None:
    sim = simulate(CRM_ACTION, CRM_JOURNEY, fail=("crm",))
    sign_up(sim)
    sim.run()
    assert outcomes(sim, "crm") == ["called", "failed"]
    instance = the_instance(sim)
    assert (instance.end_state, instance.ended_at) == ("crm_failed", START)


# update_profile


def test_update_profile_sets_and_unsets_traits_seen_by_later_steps(simulate: Simulate) -> None:
    stage = """
    kind: template
    name: stage_email
    channel: email
    subject: "You are {{ profile.stage }}"
    text: "Since {{ profile.onboarded_at }}"
    """
    steps = """
    - id: mark
      update_profile:
        set:
          stage: onboarded
          tier: 2
          onboarded_at: {expr: now}
          trial_length: {expr: 'duration("1h30m")'}
        unset: [trial]
    - id: check
      branch:
        - when: profile.stage == "onboarded" and not exists(profile.trial)
          goto: tell
        - otherwise: not_onboarded
    - id: tell
      send: stage_email
      next: onboarded
    - id: onboarded
      end: onboarded
    - id: not_onboarded
      end: not_onboarded
    """
    sim = simulate(stage, journey(steps))
    sign_up(sim, at=after("2h"), trial=True)
    traits = sim.profiles["u1"].traits
    assert traits["stage"] == "onboarded"
    assert traits["tier"] == 2
    assert traits["onboarded_at"] == "2026-01-05T02:00:00Z"
    assert traits["trial_length"] == 5400
    assert "trial" not in traits
    assert end_states(sim) == ["onboarded"]
    assert sim.messages[0].content["subject"] == "You are onboarded"
    assert (
        record(sim, "mark", "updated").detail == "stage, tier, onboarded_at, trial_length, -trial"
    )


# jump

JUMPER = journey(
    """
    - id: go
      jump: b
    - id: after_jump
      end: jumped
    """,
    name="a",
)


def target(reentry: str, steps: str = SEND_HELLO) -> str:
    """Journey ``b``: entered by a large purchase, or by a jump."""
    return journey(
        steps, name="b", entry="{event: purchased, when: event.total > 1000}", reentry=reentry
    )


def test_jump_enters_the_other_journey_with_this_entry_event_whatever_its_condition(
    simulate: Simulate,
) -> None:
    sim = simulate(JUMPER, target("never"))
    sign_up(sim, plan="team")
    assert end_states(sim, "a") == ["jumped"]
    assert record(sim, None, "entered", "b").detail == "by signed_up, jumped from a"
    (message,) = sim.messages
    assert (message.journey, message.content["text"]) == ("b", "Plan team")
    assert end_states(sim, "b") == ["completed"]


def test_jump_obeys_the_other_journeys_reentry_rule(simulate: Simulate) -> None:
    sim = simulate(JUMPER, target("never"))
    purchase(sim, START, total=2000)
    sign_up(sim, at=after("1h"))
    refusal = record(sim, None, "not_entered", "b").detail
    assert refusal == "re-entry is never and the profile entered at 2026-01-05 00:00:00 UTC"
    assert end_states(sim, "b") == ["completed"]
    assert end_states(sim, "a") == ["jumped"]


def test_jump_after_a_wait_never_puts_the_profile_in_a_journey_twice(
    simulate: Simulate,
) -> None:
    delayed = journey("- {id: pause, wait: 1h}\n- {id: go, jump: b}", name="a")
    sim = simulate(delayed, target("always", "- {id: hold, wait: 1d}"))
    purchase(sim, START, total=2000)
    sign_up(sim)
    sim.run()
    assert record(sim, None, "not_entered", "b").detail == "the profile is already in this journey"
    assert len(end_states(sim, "b")) == 1


# end


def test_end_step_ends_the_instance_in_its_state(simulate: Simulate) -> None:
    sim = simulate(journey("- {id: pause, wait: 1h}\n- {id: done, end: converted}"))
    sign_up(sim)
    sim.run()
    instance = the_instance(sim)
    assert (instance.status, instance.end_state, instance.ended_at) == (
        "ended",
        "converted",
        after("1h"),
    )
    assert instance.wake_at is None


def test_a_path_that_runs_off_the_end_completes(simulate: Simulate) -> None:
    sim = simulate(journey("- {id: pause, wait: 1h}"))
    sign_up(sim)
    sim.run()
    assert end_states(sim) == ["completed"]
    assert record(sim, "pause", "ended").detail == "completed"


# re-entry


def entries(simulate: Simulate, reentry: str | None, at: list[str]) -> list[datetime]:
    """Sign up at each time in a journey of a 3m wait; the times an instance started."""
    keys = {} if reentry is None else {"reentry": reentry}
    sim = simulate(journey("- {id: pause, wait: 3m}", **keys))
    for when in at:
        sign_up(sim, at=after(when))
    sim.run()
    return sorted(i.entered_at for i in sim.instances.values())


@pytest.mark.parametrize(
    ("reentry", "signups", "entered"),
    [
        ("never", ["0s", "1h"], ["0s"]),
        ("always", ["0s", "1m", "3m", "4m", "10m"], ["0s", "3m", "10m"]),
        # Measured from the previous entry: at 5m the profile has been out for only 2m.
        ("after 5m", ["0s", "4m", "5m", "6m", "9m"], ["0s", "5m"]),
        ("after 5m", ["0s", "5m", "10m"], ["0s", "5m", "10m"]),
        (None, ["0s", "4m59s", "5m"], ["0s", "5m"]),
    ],
)
def test_reentry_rule_decides_when_a_profile_enters_again(
    simulate: Simulate, reentry: str | None, signups: list[str], entered: list[str]
) -> None:
    assert entries(simulate, reentry, signups) == [after(t) for t in entered]


@pytest.mark.parametrize(
    ("reentry", "second", "reason"),
    [
        ("never", "1h", "re-entry is never and the profile entered at 2026-01-05 00:00:00 UTC"),
        ("always", "1m", "the profile is already in this journey"),
        (
            "after 5m",
            "4m",
            "re-entry waits 5m after the last entry at 2026-01-05 00:00:00 UTC",
        ),
    ],
)
def test_a_refused_entry_records_why(
    simulate: Simulate, reentry: str, second: str, reason: str
) -> None:
    sim = simulate(journey("- {id: pause, wait: 3m}", reentry=reentry))
    sign_up(sim)
    sign_up(sim, at=after(second))
    refusal = record(sim, None, "not_entered")
    assert (refusal.detail, refusal.at, refusal.instance_id) == (reason, after(second), None)


# exit and timeout

EXITING = journey(
    "- {id: pause, wait: 1d}",
    SEND_HELLO,
    exit="[{event: deleted}, {event: purchased, when: event.total > 100}]",
)


@pytest.mark.parametrize(
    ("event", "ended", "steps_sent"),
    [
        ({"event": "deleted"}, "exited", []),
        ({"event": "purchased", "properties": {"total": 150}}, "exited", []),
        ({"event": "purchased", "properties": {"total": 50}}, "completed", ["hello"]),
    ],
)
def test_an_exit_event_ends_a_waiting_instance_when_its_condition_holds(
    simulate: Simulate, event: dict[str, object], ended: str, steps_sent: list[str]
) -> None:
    sim = simulate(EXITING)
    sign_up(sim)
    sim.track({"userId": "u1", **event}, after("1h"))
    sim.run()
    assert [m.step for m in sim.messages] == steps_sent
    assert end_states(sim) == [ended]


def test_an_exit_records_the_event_and_the_time(simulate: Simulate) -> None:
    sim = simulate(EXITING)
    sign_up(sim)
    sim.track({"userId": "u1", "event": "deleted"}, after("1h"))
    assert the_instance(sim).ended_at == after("1h")
    assert record(sim, "pause", "ended").detail == "exited: exit event deleted"


def test_an_exit_event_wins_over_a_wait_for_the_same_event(simulate: Simulate) -> None:
    steps = "- {id: await_purchase, wait_for: {event: purchased}}"
    sim = simulate(journey(steps, SEND_HELLO, exit="[{event: purchased}]"))
    sign_up(sim)
    purchase(sim, after("1h"))
    assert end_states(sim) == ["exited"]
    assert sim.messages == []


def test_the_journey_timeout_cuts_a_long_wait(simulate: Simulate) -> None:
    steps = "- {id: day_before, wait: {until: 'timestamp(entry.appointment_at)'}}"
    sim = simulate(BOOKED, journey(steps, SEND_HELLO, entry="{event: booked}", timeout="2d"))
    book(sim, "2026-02-01T00:00:00Z")
    sim.run()
    instance = the_instance(sim)
    assert (instance.end_state, instance.ended_at) == ("timed_out", after("2d"))
    assert sim.messages == []


# incoming events


def test_an_event_that_fails_its_schema_is_rejected_and_enters_nothing(
    simulate: Simulate,
) -> None:
    sim = simulate(journey(SEND_HELLO, entry="{event: purchased}"))
    purchase(sim, START, total="lots")  # type: ignore[arg-type]
    (rejection,) = sim.rejected
    assert (rejection.event, rejection.at) == ("purchased", START)
    assert (rejection.error.field, rejection.error.rule) == ("properties.total", "type")
    assert sim.instances == {}
    assert sim.records == []
    assert sim.profiles == {}


def test_a_missing_required_property_is_named_in_the_rejection(simulate: Simulate) -> None:
    sim = simulate(CARTS, CART_JOURNEY)
    sim.track({"userId": "u1", "event": "cart_updated", "properties": {}})
    (rejection,) = sim.rejected
    assert (rejection.error.field, rejection.error.rule) == ("properties.cart_id", "required")
    assert sim.instances == {}


def test_a_false_entry_condition_records_why_the_profile_did_not_enter(
    simulate: Simulate,
) -> None:
    sim = simulate(
        journey(SEND_HELLO, entry="{event: signed_up, when: 'event.plan != \"internal\"'}")
    )
    sign_up(sim, plan="internal")
    refusal = record(sim, None, "not_entered")
    assert refusal.detail == 'entry condition is false: event.plan != "internal"'
    assert (refusal.profile_id, refusal.instance_id) == ("u1", None)
    assert sim.instances == {}


NEWSLETTER = """
kind: event
name: newsletter_signup
identity: email
schema:
  type: object
  required: [email]
  properties:
    email: {type: string}
"""


def test_an_email_identity_event_reaches_the_profile_with_that_email(
    simulate: Simulate,
) -> None:
    sim = simulate(NEWSLETTER, journey(SEND_HELLO, entry="{event: newsletter_signup}"))
    sim.identify({"userId": "u1", "traits": {"email": "ada@example.com", "firstName": "Ada"}})
    sim.track({"event": "newsletter_signup", "properties": {"email": "ada@example.com"}})
    (message,) = sim.messages
    assert (message.profile_id, message.to) == ("u1", "ada@example.com")
    assert message.content["subject"] == "Hello Ada"


def test_an_email_identity_event_for_a_new_address_makes_a_profile(
    simulate: Simulate,
) -> None:
    sim = simulate(NEWSLETTER, journey(SEND_HELLO, entry="{event: newsletter_signup}"))
    sim.track({"event": "newsletter_signup", "properties": {"email": "bo@example.com"}})
    (message,) = sim.messages
    assert message.to == "bo@example.com"
    assert sim.profiles[message.profile_id].traits["email"] == "bo@example.com"


def test_an_email_identity_event_follows_an_email_to_its_new_profile(
    simulate: Simulate,
) -> None:
    sim = simulate(
        NEWSLETTER, journey(SEND_HELLO, entry="{event: newsletter_signup}", reentry="always")
    )
    sim.identify({"userId": "u1", "traits": {"email": "a@example.com"}})
    sim.identify({"userId": "u1", "traits": {"email": "b@example.com"}})
    sim.identify({"userId": "u2", "traits": {"email": "a@example.com"}})
    for email in ("a@example.com", "b@example.com"):
        sim.track({"event": "newsletter_signup", "properties": {"email": email}})
    assert [(m.profile_id, m.to) for m in sim.messages] == [
        ("u2", "a@example.com"),
        ("u1", "b@example.com"),
    ]


# purity

PURE = journey(
    """
    - id: await_purchase
      wait_for: {event: purchased, timeout: 1d}
    - id: mark
      update_profile:
        set: {bought: true}
    """,
    SEND_HELLO,
)


def test_on_event_changes_none_of_its_inputs_and_repeats_itself(simulate: Simulate) -> None:
    sim = simulate(PURE, journey(SEND_HELLO, name="buyers", entry="{event: purchased}"))
    sign_up(sim)
    profile, instances = sim.profiles["u1"], list(sim.instances.values())
    before = copy.deepcopy((profile, instances))
    event = Event(name="purchased", profile_id="u1", timestamp=START, properties={"total": 5})
    first = sim.engine.on_event(profile, instances, event, after("1h"))
    second = sim.engine.on_event(profile, instances, event, after("1h"))
    assert (profile, instances) == before
    assert first == second
    assert first.profile.traits["bought"] is True
    assert "buyers" in first.profile.entries
    assert len(first.effects) == 2


def test_on_timer_changes_none_of_its_inputs_and_repeats_itself(simulate: Simulate) -> None:
    sim = simulate(PURE)
    sign_up(sim)
    profile, instance = sim.profiles["u1"], the_instance(sim)
    before = copy.deepcopy((profile, instance))
    first = sim.engine.on_timer(profile, [instance], instance, after("1d"))
    second = sim.engine.on_timer(profile, [instance], instance, after("1d"))
    assert (profile, instance) == before
    assert first == second
    assert first.instances[instance.id].status == "ended"


# pausing and stopping a journey

PAUSABLE = journey(
    """
    - id: pause
      wait: 1h
    - id: hello
      send: hello_email
    - id: done
      end: greeted
    """
)


def test_a_paused_journey_takes_no_entries_and_says_why(simulate: Simulate) -> None:
    sim = simulate(PAUSABLE)
    sim.pause("j")
    sign_up(sim)
    assert end_states(sim) == []
    assert record(sim, None, "not_entered").detail == "the journey is paused"


def test_running_instances_hold_while_paused_and_go_on_when_resumed(simulate: Simulate) -> None:
    sim = simulate(PAUSABLE)
    sign_up(sim)
    sim.pause("j")
    sim.run_until(after("3h"))
    assert sim.messages == []
    held = the_instance(sim)
    assert (held.status, held.waiting, held.step) == ("waiting", "paused", "hello")
    assert record(sim, "hello", "held").at == after("1h")
    sim.resume("j")
    assert sent(sim) == [("hello", after("3h"))]
    assert end_states(sim) == ["greeted"]


def test_stopping_a_journey_ends_its_running_instances_as_stopped(simulate: Simulate) -> None:
    sim = simulate(PAUSABLE)
    sign_up(sim)
    sim.stop("j")
    sim.run()
    assert end_states(sim) == ["stopped"]
    assert sim.messages == []


def test_a_stopped_journey_takes_no_entries_and_says_why(simulate: Simulate) -> None:
    sim = simulate(PAUSABLE)
    sim.stop("j")
    sign_up(sim)
    assert end_states(sim) == []
    assert record(sim, None, "not_entered").detail == "the journey is stopped"


def test_an_instance_the_stop_missed_ends_as_stopped_at_its_next_step(simulate: Simulate) -> None:
    """A stop reaches the instances it finds; one that a batch in flight moved on (so the
    stop did not find it) ends when it comes to its next step, rather than going on."""
    sim = simulate(PAUSABLE)
    sign_up(sim)
    sim.engine.stopped.add("j")  # the journey is stopped; this instance was not told
    sim.run_until(after("3h"))
    assert sim.messages == []
    assert end_states(sim) == ["stopped"]
    assert record(sim, "hello", "ended").detail == "stopped: the journey was stopped"


def test_an_instance_held_past_the_journey_timeout_times_out(simulate: Simulate) -> None:
    sim = simulate(
        journey("- {id: pause, wait: 1h}", "- {id: hello, send: hello_email}", timeout="2h")
    )
    sign_up(sim)
    sim.pause("j")
    sim.run()
    instance = the_instance(sim)
    assert (instance.end_state, instance.ended_at) == ("timed_out", after("2h"))
