"""Workspace rules: frequency caps and quiet hours, as the journeys that obey them see them."""

from __future__ import annotations

from datetime import datetime

import pytest

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

ONE_EMAIL_AND_ONE_SMS_A_DAY = """
kind: rules
caps:
  - channels: [email]
    max: 1
    per: 1d
  - channels: [sms]
    max: 1
    per: 1d
"""

SMS_QUIET_AT_NIGHT = """
kind: rules
name: nights
quiet_hours:
  from: "21:00"
  to: "08:00"
  channels: [sms]
"""

TEXT_THEN_DONE = journey("- {id: text, send: hello_sms}", "- {id: done, end: done}")
PARIS = "Europe/Paris"


def sign_up_with_phone(sim: Simulator, at: datetime = START, **traits: str) -> None:
    sign_up(sim, at=at, phone="+33600000001", **traits)


# caps


def test_a_send_in_one_journey_counts_toward_the_cap_of_another(simulate: Simulate) -> None:
    welcome = journey("- {id: welcome, send: hello_email}", name="a")
    offer = journey(
        "- {id: offer_email, send: hello_email}",
        "- {id: offer_sms, send: hello_sms}",
        name="b",
        entry="{event: purchased}",
        reentry="always",
    )
    sim = simulate(ONE_EMAIL_AND_ONE_SMS_A_DAY, welcome, offer)
    sign_up_with_phone(sim)
    for at in ("1h", "2h"):
        sim.track({"userId": "u1", "event": "purchased"}, after(at))
    assert sent(sim) == [("welcome", START), ("offer_sms", after("1h"))]
    assert outcomes(sim, "offer_email", "b") == ["capped", "capped"]
    assert outcomes(sim, "offer_sms", "b") == ["sent", "ended", "delivered", "capped", "ended"]
    assert record(sim, "offer_sms", "capped", "b").detail == "cap of 1 sms per 1d reached"
    assert end_states(sim, "b") == ["completed", "completed"]


def test_a_capped_send_is_allowed_again_once_the_window_has_rolled_past(
    simulate: Simulate,
) -> None:
    steps = """
    - {id: first, send: hello_email}
    - {id: pause, wait: 12h}
    - {id: second, send: hello_email}
    - {id: pause_again, wait: 12h}
    - {id: third, send: hello_email}
    """
    sim = simulate(ONE_EMAIL_AND_ONE_SMS_A_DAY, journey(steps))
    sign_up(sim)
    sim.run()
    assert sent(sim) == [("first", START), ("third", after("1d"))]
    assert record(sim, "second", "capped").detail == "cap of 1 email per 1d reached"


QUIET_AND_CAPPED = """
kind: rules
caps:
  - {max: 1, per: 1d}
quiet_hours:
  from: "21:00"
  to: "08:00"
"""


@pytest.mark.parametrize(
    ("ignore_caps", "expected"),
    [
        ("true", [("first", after("22h")), ("second", after("22h"))]),
        ("false", [("first", after("1d8h"))]),
    ],
)
def test_ignore_caps_bypasses_caps_and_quiet_hours(
    simulate: Simulate, ignore_caps: str, expected: list[tuple[str, datetime]]
) -> None:
    steps = "- {id: first, send: hello_email}\n- {id: second, send: hello_email}"
    sim = simulate(QUIET_AND_CAPPED, journey(steps, ignore_caps=ignore_caps))
    sign_up(sim, at=after("22h"))
    sim.run()
    assert sent(sim) == expected


# quiet hours


@pytest.mark.parametrize(
    ("entered", "wake"),
    [
        (utc(2026, 1, 5, 22), utc(2026, 1, 6, 7)),  # 23:00 in Paris: until 08:00 tomorrow
        (utc(2026, 1, 6, 2), utc(2026, 1, 6, 7)),  # 03:00 in Paris: until 08:00 today
    ],
)
@pytest.mark.parametrize("zone_from", ["profile", "settings"])
def test_quiet_hours_across_midnight_defer_the_send_to_the_morning_in_the_profiles_zone(
    simulate: Simulate, entered: datetime, wake: datetime, zone_from: str
) -> None:
    settings = f"kind: settings\ntimezone: {PARIS}"
    documents = [SMS_QUIET_AT_NIGHT, TEXT_THEN_DONE]
    if zone_from == "settings":
        documents.append(settings)
    sim = simulate(*documents)
    sign_up_with_phone(sim, at=entered, **({"timezone": PARIS} if zone_from == "profile" else {}))
    deferral = record(sim, "text", "deferred")
    assert deferral.detail == f"quiet hours 21:00-08:00 {PARIS}, until {wake:%Y-%m-%d %H:%M:%S} UTC"
    assert the_instance(sim).wake_at == wake
    sim.run()
    assert sent(sim) == [("text", wake)]
    instance = the_instance(sim)
    assert (instance.end_state, instance.ended_at) == ("done", wake)


def test_outside_quiet_hours_the_send_goes_at_once(simulate: Simulate) -> None:
    sim = simulate(SMS_QUIET_AT_NIGHT, TEXT_THEN_DONE)
    sign_up_with_phone(sim, at=utc(2026, 1, 5, 19, 30), timezone=PARIS)  # 20:30 in Paris
    assert sent(sim) == [("text", utc(2026, 1, 5, 19, 30))]


def test_quiet_hours_leave_other_channels_alone(simulate: Simulate) -> None:
    sim = simulate(SMS_QUIET_AT_NIGHT, journey("- {id: hello, send: hello_email}"))
    sign_up(sim, at=after("23h"))
    assert sent(sim) == [("hello", after("23h"))]


def test_quiet_hours_that_drop_record_it_and_the_instance_goes_on(simulate: Simulate) -> None:
    dropping = SMS_QUIET_AT_NIGHT + "  action: drop\n"
    sim = simulate(dropping, TEXT_THEN_DONE)
    sign_up_with_phone(sim, at=after("22h"), timezone=PARIS)
    assert sim.messages == []
    assert record(sim, "text", "dropped").detail == f"quiet hours 21:00-08:00 {PARIS}"
    instance = the_instance(sim)
    assert (instance.end_state, instance.ended_at) == ("done", after("22h"))


@pytest.mark.parametrize(
    ("entered", "wake"),
    [
        # Saturday 22:30 CET; clocks spring forward that night: 08:00 CEST is 06:00 UTC.
        (utc(2026, 3, 28, 21, 30), utc(2026, 3, 29, 6)),
        # Saturday 22:30 CEST; clocks fall back that night: 08:00 CET is 07:00 UTC.
        (utc(2026, 10, 24, 20, 30), utc(2026, 10, 25, 7)),
    ],
)
def test_quiet_hours_end_at_local_morning_across_a_daylight_saving_change(
    simulate: Simulate, entered: datetime, wake: datetime
) -> None:
    sim = simulate(SMS_QUIET_AT_NIGHT, TEXT_THEN_DONE, start=entered)
    sign_up_with_phone(sim, at=entered, timezone=PARIS)
    sim.run()
    assert sent(sim) == [("text", wake)]


def test_a_deferred_send_is_checked_against_the_caps_when_it_goes(simulate: Simulate) -> None:
    morning = journey("- {id: early, send: hello_sms}", name="a", entry="{event: purchased}")
    sim = simulate(ONE_EMAIL_AND_ONE_SMS_A_DAY, SMS_QUIET_AT_NIGHT, morning, TEXT_THEN_DONE)
    sim.identify({"userId": "u1", "traits": {"phone": "+33600000001", "timezone": PARIS}})
    sim.track({"userId": "u1", "event": "purchased"}, utc(2026, 1, 5, 7, 30))
    sign_up_with_phone(sim, at=utc(2026, 1, 5, 22))
    sim.run()
    assert sent(sim) == [("early", utc(2026, 1, 5, 7, 30))]
    assert outcomes(sim, "text") == ["deferred", "capped"]
    assert record(sim, "text", "capped").at == utc(2026, 1, 6, 7)


def test_a_deferred_send_still_obeys_the_journey_timeout(simulate: Simulate) -> None:
    sim = simulate(SMS_QUIET_AT_NIGHT, journey("- {id: text, send: hello_sms}", timeout="2h"))
    sign_up_with_phone(sim, at=after("22h"))
    sim.run()
    instance = the_instance(sim)
    assert (instance.end_state, instance.ended_at) == ("timed_out", after("1d"))
    assert sim.messages == []


def test_an_exit_event_cancels_a_deferred_send(simulate: Simulate) -> None:
    steps = "- {id: text, send: hello_sms}"
    sim = simulate(SMS_QUIET_AT_NIGHT, journey(steps, exit="[{event: deleted}]"))
    sign_up_with_phone(sim, at=after("22h"))
    sim.track({"userId": "u1", "event": "deleted"}, after("23h"))
    sim.run()
    assert end_states(sim) == ["exited"]
    assert sim.messages == []
