"""Segments and the history functions: membership kept up to date by the engine, on the
virtual clock, and what validation says about them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from journeyman.domain.expressions import ExpressionError, compile_expression
from journeyman.domain.history import (
    HistoryNeed,
    count,
    days_since,
    merged,
    needs_of,
    record,
    total,
)
from journeyman.domain.ingest import InvalidEvent, read_track
from journeyman.domain.model import Origin, Segment, Workspace
from journeyman.domain.state import Event, EventHistory
from journeyman.simulator import Simulator
from tests.conftest import START
from tests.engine_helpers import after, journey
from tests.fuzzing import fuzz_settings

Simulate = Callable[..., Simulator]

VIP = """
kind: segment
name: vip
description: bought twice within 30 days
when: count("purchased", "30d") >= 2
"""
BIG_SPENDER = """
kind: segment
name: big_spender
when: sum("purchased", "total", "90d") > 500 and in_segment("vip")
"""
PRO = """
kind: segment
name: pro
when: profile.plan == "pro"
"""


def buy(sim: Simulator, at: datetime, total: float = 10, user: str = "u1") -> None:
    properties = {"order_id": f"o{at.timestamp()}", "total": total}
    sim.track({"userId": user, "event": "purchased", "properties": properties}, at)


def segment_lines(sim: Simulator, user: str = "u1") -> list[tuple[str, str]]:
    return [
        (r.outcome, r.detail)
        for r in sim.records
        if r.profile_id == user and r.outcome.startswith("segment_")
    ]


# the history functions


def test_history_functions_compile_with_text_arguments_and_say_what_they_read() -> None:
    expression = compile_expression(
        'count("purchased", "30d") >= 2 and last("purchased").properties.total > 5'
        ' and sum("purchased", "total", "2w") > 1 and days_since("app_opened") < 3'
    )
    assert expression.calls == {
        ("count", "purchased", 30),
        ("last", "purchased"),
        ("sum", "purchased", "total", 14),
        ("days_since", "app_opened"),
    }
    assert needs_of(expression.calls) == {
        "app_opened": HistoryNeed(),
        "purchased": HistoryNeed(30, frozenset({"total"}), True),
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('count("purchased", "1h")', "'1h' is not a window of whole days"),
        ('count("purchased", "401d")', "'401d' is longer than the longest window kept, 400d"),
        ('count(profile.name, "1d")', "count(): the event must be written as text in quotes"),
        ('count("purchased")', "count() takes 2 arguments, got 1"),
        ('cuont("purchased", "1d")', "unknown function 'cuont' (did you mean 'count'?)"),
        ("in_segment(1)", "in_segment(): the segment must be written as text in quotes"),
    ],
)
def test_a_history_function_written_wrong_is_a_compile_error(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        compile_expression(source)


def _event(at: datetime, total: float = 1, name: str = "purchased") -> Event:
    return Event(name=name, profile_id="u1", timestamp=at, properties={"total": total})


def test_windows_count_whole_utc_days_and_forget_older_days() -> None:
    needs = {"purchased": HistoryNeed(3, frozenset({"total"}))}
    kept: dict[str, EventHistory] = {}
    for day, amount in ((0, 5), (1, 7), (1, 1), (3, 100)):
        at = START + timedelta(days=day, hours=12)
        kept = record(kept, _event(at, amount), needs, at) or kept
    history = kept["purchased"]
    end = START + timedelta(days=3, hours=23)
    assert count(history, 3, end) == 3  # days 1 and 3; day 0 is out of the 3-day window
    assert total(history, "total", 3, end) == 108
    assert count(history, 1, end) == 1
    assert [day for day, _, _ in history.days] == [
        (START + timedelta(days=d)).toordinal() for d in (1, 3)
    ]
    assert history.first == START + timedelta(hours=12)
    assert days_since(history, end + timedelta(days=2)) == 2


def test_an_event_nothing_reads_is_not_kept() -> None:
    assert record({}, _event(START, name="other"), {"purchased": HistoryNeed(3)}, START) is None


# membership


def test_two_purchases_within_30_days_enter_the_segment_once(simulate: Simulate) -> None:
    sim = simulate(VIP)
    buy(sim, START)
    assert segment_lines(sim) == []
    buy(sim, after("10d"))
    buy(sim, after("11d"))
    assert segment_lines(sim) == [("segment_entered", "vip")]
    assert sim.profile("u1").segments == {"vip": after("10d")}


def test_a_window_that_closes_lets_the_profile_out_at_that_midnight_with_no_event(
    simulate: Simulate,
) -> None:
    sim = simulate(VIP, PRO)
    buy(sim, START + timedelta(hours=15))
    buy(sim, after("1d"))
    assert sim.profile("u1").wakes == {"vip": after("30d")}  # day 0 leaves the window
    sim.run_until(after("40d"))
    assert segment_lines(sim) == [("segment_entered", "vip"), ("segment_exited", "vip")]
    exited = [r.at for r in sim.records if r.outcome == "segment_exited"]
    assert exited == [after("30d")]
    assert sim.profile("u1").segments == {}
    assert sim.profile("u1").wakes == {}  # nothing can change with time alone any more


ACTIVE = """
kind: segment
name: active
when: days_since("purchased") < 30
"""


def test_a_profile_leaves_a_days_since_segment_30_days_after_its_last_event(
    simulate: Simulate,
) -> None:
    sim = simulate(ACTIVE)
    buy(sim, START)
    buy(sim, after("5d") + timedelta(hours=3))
    sim.run_until(after("100d"))
    assert segment_lines(sim) == [("segment_entered", "active"), ("segment_exited", "active")]
    exited = [r.at for r in sim.records if r.outcome == "segment_exited"]
    assert exited == [after("35d") + timedelta(hours=3)]
    assert sim.profile("u1").wakes == {}  # days_since < 30 is false for good


def test_a_segment_the_profile_comes_back_to_is_clocked_again(simulate: Simulate) -> None:
    sim = simulate(ACTIVE)
    buy(sim, START)
    sim.run_until(after("31d"))
    buy(sim, after("40d"))
    assert sim.profile("u1").wakes == {"active": after("70d")}
    assert segment_lines(sim) == [
        ("segment_entered", "active"),
        ("segment_exited", "active"),
        ("segment_entered", "active"),
    ]


@pytest.mark.parametrize(
    ("source", "falls"),
    [
        ('count("purchased", "30d") >= 2', True),
        ('2 <= count("purchased", "30d") and profile.plan == "pro"', True),
        ('count("purchased", "30d") > 1 or in_segment("vip")', True),
        ('count("purchased", "30d") == 1', False),
        ('count("purchased", "30d") < 2', False),
        ('not count("purchased", "30d") >= 2', False),
        ('sum("purchased", "total", "30d") > 5', False),
        ('count("purchased", "30d") >= 2 and days_since("app_opened") < 3', False),
        ('count("purchased", "30d") >= 2 or hour(now_local) >= 9', False),
        ('count("purchased", "30d") >= 2 and now > "2026-01-01"', False),
        ('count("purchased", "30d") >= 2 or is_anniversary(profile.birthday)', False),
    ],
)
def test_only_counts_at_least_a_number_are_known_to_only_fall_with_time(
    source: str, falls: bool
) -> None:
    assert compile_expression(source).only_falls is falls


def test_a_profile_below_a_count_threshold_has_no_wake_time_for_it(simulate: Simulate) -> None:
    sim = simulate(VIP)
    buy(sim, START)
    assert sim.profile("u1").wakes == {}  # it can enter on a purchase only, never by time
    buy(sim, after("1d"))
    assert sim.profile("u1").wakes == {"vip": after("30d")}
    sim.run_until(after("31d"))
    assert segment_lines(sim) == [("segment_entered", "vip"), ("segment_exited", "vip")]
    assert sim.profile("u1").wakes == {}


def test_a_threshold_is_met_on_time_whether_compared_or_computed(simulate: Simulate) -> None:
    lapsed = ACTIVE.replace("active", "lapsed").replace("< 30", ">= 200")
    sim = simulate(lapsed)
    buy(sim, START)
    assert sim.profile("u1").wakes == {"lapsed": after("200d")}  # the number it crosses
    # read in a sum, days_since is looked at day by day, some days at a time
    computed = lapsed.replace(
        'days_since("purchased") >= 200', 'days_since("purchased") + 0 >= 200'
    )
    other = simulate(computed)
    buy(other, START)
    assert START < other.profile("u1").wakes["lapsed"] < after("200d")
    for each in (sim, other):
        each.run_until(after("300d"))
        entered = [r.at for r in each.records if r.outcome == "segment_entered"]
        assert entered == [after("200d")]


HELD = [
    'count("purchased", "7d") >= 3',
    '2 < count("purchased", "30d")',
    'count("purchased", "3d") < 2',
    'count("purchased", "10d") <= 1',
    'days_since("purchased") < 5',
    'days_since("purchased") >= 12',
    '3 >= days_since("purchased")',
    'days_since("purchased") > 20',
]


def test_a_wake_time_kept_through_events_changes_nothing_but_its_own_moment(
    workspace: Callable[..., Workspace],
) -> None:
    """A count or days_since compared with a number keeps its wake time through the
    events that leave its answer as it is (it can only be early), and is not evaluated on
    an event that cannot change its answer; every entry and exit comes at the very moment
    it comes when it is evaluated, and its wake time worked out, on every event."""
    built = workspace(
        *(f"kind: segment\nname: s{n}\nwhen: '{when}'" for n, when in enumerate(HELD))
    )
    segments = list(built.segments.values())
    held = {s.name: s.held for s in segments}
    assert None not in held.values()

    def run(hours: list[int], keep: bool) -> tuple[list[tuple[str, str, datetime]], Any]:
        for s in segments:  # without its held answer, a segment is evaluated every time
            object.__setattr__(s, "held", held[s.name] if keep else None)
        sim = Simulator(built, START)
        for hour in sorted(hours):
            buy(sim, START + timedelta(hours=hour))
        sim.run_until(after("100d"))
        lines = [(r.outcome, r.detail, r.at) for r in sim.records if r.outcome.startswith("seg")]
        return lines, sim.profile("u1").segments

    @fuzz_settings(60, deadline_ms=5000)
    @given(st.lists(st.integers(0, 40 * 24), min_size=1, max_size=12))
    def check(hours: list[int]) -> None:
        assert run(hours, keep=True) == run(hours, keep=False)

    try:
        check()
    finally:
        for s in segments:
            object.__setattr__(s, "held", held[s.name])


@pytest.mark.parametrize(
    ("source", "held"),
    [
        ('count("purchased", "7d") >= 3', True),  # a purchase keeps a member in
        ('2 < count("purchased", "30d")', True),
        ('count("purchased", "3d") < 2', False),  # and one that is out, out
        ('2 >= count("purchased", "3d")', False),
        ('days_since("purchased") < 5', True),
        ('5 > days_since("purchased")', True),
        ('days_since("purchased") >= 12', False),
        ('3 <= days_since("purchased")', False),
        ('count("purchased", "7d") == 3', None),  # either answer can change
        ('sum("purchased", "total", "7d") > 3', None),  # a total can be negative
        ('count("purchased", "7d") >= 3 and profile.vip', None),
    ],
)
def test_an_event_cannot_change_some_answers_of_a_count_or_days_since(
    source: str, held: bool | None
) -> None:
    s = Segment("s", "", compile_expression(source), Origin("segments.yaml", 1))
    assert s.held is held


def test_a_kept_wake_time_wakes_the_profile_early_and_then_on_time(simulate: Simulate) -> None:
    sim = simulate(ACTIVE)
    buy(sim, START)
    buy(sim, after("5d"))
    # the first purchase's wake time stays: the second can only move the exit later
    assert sim.profile("u1").wakes == {"active": after("30d")}
    sim.run_until(after("31d"))
    assert segment_lines(sim) == [("segment_entered", "active")]  # still in, no line
    assert sim.profile("u1").wakes == {"active": after("35d")}  # and the exact one now
    sim.run_until(after("40d"))
    exited = [r.at for r in sim.records if r.outcome == "segment_exited"]
    assert exited == [after("35d")]


JOURNEY_TEST = """
kind: journey
name: winback
entry: {event: segment_exited, when: event.segment == "active"}
timeout: 1d
steps:
  - {id: miss_you, send: hello_email}
---
kind: test
name: a profile leaves active 30 days after its last purchase, with no event
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 0s
    track: {userId: u1, event: purchased, properties: {order_id: o1, total: 5}}
  - at: 10d
    track: {userId: u1, event: purchased, properties: {order_id: o2, total: 5}}
until: 60d
expect:
  - entered_segment: active
    at: 0s
  - exited_segment: active
    at: 40d
  - sent: miss_you
    at: 40d
"""


def test_a_journey_test_sees_the_time_based_exit_on_the_virtual_clock(
    workspace: Callable[..., object],
) -> None:
    from journeyman.journey_tests import run_tests

    built = workspace(ACTIVE, JOURNEY_TEST)
    (result,) = run_tests(built)  # type: ignore[arg-type]
    assert result.passed, result


def test_a_trait_change_moves_the_segments_that_read_traits(simulate: Simulate) -> None:
    sim = simulate(PRO)
    sim.identify({"userId": "u1", "traits": {"plan": "pro"}}, START)
    sim.identify({"userId": "u1", "traits": {"plan": "free"}}, after("1h"))
    assert segment_lines(sim) == [("segment_entered", "pro"), ("segment_exited", "pro")]


def test_each_trait_change_moves_the_segments_that_read_that_trait(simulate: Simulate) -> None:
    europe = "kind: segment\nname: europe\nwhen: profile.country == 'FR'\n"
    unsubscribed = "kind: segment\nname: no_news\nwhen: profile.subscriptions.news == false\n"
    sim = simulate(PRO, europe, unsubscribed)
    sim.identify({"userId": "u1", "traits": {"country": "FR"}}, START)
    sim.track(
        {"userId": "u1", "event": "unsubscribed", "properties": {"topic": "news"}}, after("1h")
    )
    sim.identify({"userId": "u1", "traits": {"plan": "pro", "country": "DE"}}, after("2h"))
    assert segment_lines(sim) == [
        ("segment_entered", "europe"),
        ("segment_entered", "no_news"),
        ("segment_entered", "pro"),
        ("segment_exited", "europe"),
    ]


def test_a_trait_sent_again_as_another_type_moves_the_segment(simulate: Simulate) -> None:
    vip = "kind: segment\nname: vip\nwhen: profile.vip == true\n"
    sim = simulate(vip)
    sim.identify({"userId": "u1", "traits": {"vip": 1}}, START)
    sim.identify({"userId": "u1", "traits": {"vip": 1}}, after("1h"))  # the same: no change
    sim.identify({"userId": "u1", "traits": {"vip": True}}, after("2h"))  # equal in Python only
    sim.identify({"userId": "u1", "traits": {"vip": 1.0}}, after("3h"))
    assert segment_lines(sim) == [("segment_entered", "vip"), ("segment_exited", "vip")]


def test_the_same_traits_again_leave_the_profile_and_its_segments_alone(
    simulate: Simulate,
) -> None:
    # An SDK sends its identify with each page: most say what the profile says already.
    sim = simulate(PRO)
    traits = {"plan": "pro", "email": "u1@example.com", "vip": True}
    sim.identify({"userId": "u1", "traits": traits}, START)
    stored = sim.profiles["u1"]
    engine, now = sim.engine, START + timedelta(hours=1)
    again = Event(
        name="identify", type="identify", profile_id="u1", timestamp=now, properties=traits
    )
    outcome = engine.on_event(stored, [], again, now)
    assert not outcome.profile_changed  # not copied, so not written
    assert outcome.records == []
    # Evaluated, `pro` would take in a profile said to be outside it: it is not evaluated.
    outside = msgspec.structs.replace(stored, segments={})
    assert engine.on_event(outside, [], again, now).records == []
    # One trait that differs (in type only, or taken out) is a change, and moves the segment.
    for changed in ({**traits, "vip": 1}, {**traits, "vip": None}):
        event = msgspec.structs.replace(again, properties=changed)
        moved = engine.on_event(outside, [], event, now)
        assert moved.profile_changed
        assert [(r.outcome, r.detail) for r in moved.records] == [("segment_entered", "pro")]


def test_in_segment_sees_the_other_segments_new_answer(simulate: Simulate) -> None:
    sim = simulate(BIG_SPENDER, VIP)
    buy(sim, START, 300)
    buy(sim, after("1d"), 300)
    assert segment_lines(sim) == [("segment_entered", "vip"), ("segment_entered", "big_spender")]


def test_segment_events_are_kept_in_the_history_after_the_event(simulate: Simulate) -> None:
    sim = simulate(VIP)
    buy(sim, START)
    taken = sim.track(
        {"userId": "u1", "event": "purchased", "properties": {"order_id": "2", "total": 1}},
        after("1d"),
    )
    assert taken is not None
    assert taken.name == "purchased"


def test_a_journey_enters_on_a_segment_and_exits_when_it_is_left(simulate: Simulate) -> None:
    welcome = journey(
        "- {id: hello, send: hello_email}",
        "- {id: later, wait: 60d}",
        name="vip_welcome",
        entry="{segment: vip}",
        exit="[{segment_exited: vip}]",
        timeout="90d",
    )
    sim = simulate(VIP, welcome)
    sim.identify({"userId": "u1", "traits": {"email": "u1@example.com"}}, START)
    buy(sim, START)
    buy(sim, after("2d"))
    assert [m.step for m in sim.messages] == ["hello"]
    sim.run_until(after("35d"))  # the purchase of day 0 leaves the window at day 30
    (instance,) = sim.instances.values()
    assert (instance.end_state, instance.ended_at) == ("exited", after("30d"))


def test_history_functions_work_in_a_journey_branch(simulate: Simulate) -> None:
    loyal = journey(
        """
        - id: check
          branch:
            - when: count("purchased", "30d") >= 2 and last("purchased").properties.total > 50
              goto: thanks
            - otherwise: done
        - {id: thanks, send: hello_email}
        - {id: done, end: completed}
        """,
        entry="{event: purchased}",
        reentry="always",
    )
    sim = simulate(loyal)
    sim.identify({"userId": "u1", "traits": {"email": "u1@example.com"}}, START)
    buy(sim, START, 100)
    buy(sim, after("1d"), 20)
    buy(sim, after("2d"), 80)
    assert [m.at for m in sim.messages] == [after("2d")]


def test_a_call_cannot_send_a_segment_event() -> None:
    with pytest.raises(InvalidEvent, match="recorded by journeyman"):
        read_track(
            {"userId": "u1", "event": "segment_entered", "properties": {"segment": "vip"}},
            {},
            datetime.now(UTC),
        )


# validation


def test_validate_names_unknown_events_segments_and_traits(
    load: Callable[..., object],
) -> None:
    from tests.conftest import BASE

    loaded = load(
        BASE,
        """
kind: segment
name: lapsed
when: days_since("purchsed") > 30 and profile.emial == "x" and in_segment("vipp")
---
kind: segment
name: odd
when: event.total > 1
""",
        journey("- {id: a, send: hello_email}", entry="{segment: nobody}"),
    )
    lines = [str(p) for p in loaded.problems]  # type: ignore[attr-defined]
    assert any("event 'purchsed' is not defined (did you mean 'purchased'?)" in x for x in lines)
    assert any("'profile.emial' is not a known trait (did you mean 'email'?)" in x for x in lines)
    assert any("segment 'vipp' is not defined" in x for x in lines)
    assert any("segment 'nobody' is not defined" in x for x in lines)
    assert any("a segment's condition reads only profile, now" in x for x in lines)


def test_validate_refuses_a_loop_of_segments(load: Callable[..., object]) -> None:
    loaded = load(
        'kind: segment\nname: a\nwhen: in_segment("b")\n---\n'
        'kind: segment\nname: b\nwhen: in_segment("a")\n'
    )
    lines = [str(p) for p in loaded.problems]  # type: ignore[attr-defined]
    assert any("in_segment(...) forms a loop: a -> b -> a" in x for x in lines)


def test_an_event_document_cannot_take_a_segment_event_name(load: Callable[..., object]) -> None:
    loaded = load("kind: event\nname: segment_exited\n")
    lines = [str(p) for p in loaded.problems]  # type: ignore[attr-defined]
    assert any("event name 'segment_exited' is reserved" in x for x in lines)


# local time


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("hour(now_local)", 10),  # 09:30 UTC is 10:30 in Paris in January
        ("weekday(now_local)", 1),  # Monday
        ("date(now_local)", "2026-01-05"),
        ("hour(now)", 9),
        ('hour("2026-01-05T23:00:00+02:00")', 21),  # a text is read as UTC
        ('date("1990-05-17")', "1990-05-17"),
        ('is_anniversary("1990-01-05")', True),
        ('is_anniversary("--01-05")', True),
        ('is_anniversary("01-06")', False),
        ('is_anniversary("not a date")', None),
        ("hour(profile.missing)", None),
    ],
)
def test_local_time_functions_read_the_profiles_clock(source: str, expected: object) -> None:
    from zoneinfo import ZoneInfo

    now = START + timedelta(hours=9, minutes=30)
    scope = {"now": now, "now_local": now.astimezone(ZoneInfo("Europe/Paris")), "profile": {}}
    assert compile_expression(source).evaluate(scope) == expected


def test_29_february_is_an_anniversary_on_28_february_of_other_years() -> None:
    from zoneinfo import ZoneInfo

    expression = compile_expression('is_anniversary("2000-02-29")')
    for day, leap in (
        (datetime(2027, 2, 28, 12, tzinfo=UTC), False),
        (datetime(2028, 2, 28, 12, tzinfo=UTC), True),
    ):
        scope = {"now_local": day.astimezone(ZoneInfo("UTC"))}
        assert expression.evaluate(scope) is not leap


BIRTHDAY = """
kind: segment
name: birthday
when: is_anniversary(profile.birthday)
"""
OFFICE_HOURS = """
kind: segment
name: office_hours
when: weekday(now_local) <= 5 and hour(now_local) >= 9 and hour(now_local) < 18
"""


def test_a_profile_is_in_the_birthday_segment_from_its_own_midnight_to_the_next(
    simulate: Simulate,
) -> None:
    sim = simulate(BIRTHDAY)
    traits = {"birthday": "1990-01-07", "timezone": "Asia/Tokyo"}  # UTC+9
    sim.identify({"userId": "u1", "traits": traits}, START)
    sim.run_until(after("5d"))
    changes = [(r.outcome, r.at) for r in sim.records if r.outcome.startswith("segment_")]
    # midnight of 7 January in Tokyo is 15:00 UTC on the 6th
    midnight = START + timedelta(days=1, hours=15)
    assert changes == [
        ("segment_entered", midnight),
        ("segment_exited", midnight + timedelta(days=1)),
    ]


def test_office_hours_follow_the_profiles_zone_with_no_event(simulate: Simulate) -> None:
    sim = simulate(OFFICE_HOURS)
    sim.identify({"userId": "u1", "traits": {"timezone": "America/New_York"}}, START)
    sim.run_until(after("1d"))
    changes = [(r.outcome, r.at) for r in sim.records if r.outcome.startswith("segment_")]
    # Monday 09:00 to 18:00 in New York (UTC-5) is 14:00 to 23:00 UTC
    assert changes == [
        ("segment_entered", START + timedelta(hours=14)),
        ("segment_exited", START + timedelta(hours=23)),
    ]


def test_a_new_time_zone_moves_a_local_time_segment_at_once(simulate: Simulate) -> None:
    sim = simulate(OFFICE_HOURS)
    # Monday 00:00 UTC is 09:00 in Tokyo: in office hours
    sim.identify({"userId": "u1", "traits": {"timezone": "Asia/Tokyo"}}, START)
    # two hours later the profile says it is in New York, where it is Sunday evening
    moved = START + timedelta(hours=2)
    sim.identify({"userId": "u1", "traits": {"timezone": "America/New_York"}}, moved)
    sim.run_until(after("1d"))
    changes = [(r.outcome, r.at) for r in sim.records if r.outcome.startswith("segment_")]
    # out at once, not at Tokyo's 18:00; back in at New York's Monday 09:00 (14:00 UTC)
    assert changes == [
        ("segment_entered", START),
        ("segment_exited", moved),
        ("segment_entered", START + timedelta(hours=14)),
        ("segment_exited", START + timedelta(hours=23)),
    ]


def test_traits_a_calls_context_fills_in_move_the_segments_that_read_them(
    simulate: Simulate,
) -> None:
    # analytics.js sends the page's traits and time zone in the context of every call.
    sim = simulate(PRO, OFFICE_HOURS)
    sim.identify({"userId": "u1", "traits": {"email": "u1@example.com"}}, START)
    # Monday 02:00 UTC: outside office hours in UTC, 11:00 in Tokyo
    moved = START + timedelta(hours=2)
    context = {"traits": {"plan": "pro"}, "timezone": "Asia/Tokyo"}
    body = {"userId": "u1", "event": "signed_up", "properties": {"plan": "free"}}
    sim.track({**body, "context": context}, moved)
    assert sim.profiles["u1"].traits["plan"] == "pro"
    assert segment_lines(sim) == [("segment_entered", "pro"), ("segment_entered", "office_hours")]
    assert [r.at for r in sim.records if r.outcome == "segment_entered"] == [moved, moved]
    # a group call and an alias change no journey, but what their context fills in counts
    calls: list[tuple[str, dict[str, Any]]] = [
        ("group", {"userId": "u2", "groupId": "acme", "context": {"traits": {"plan": "pro"}}}),
        ("alias", {"userId": "u3", "previousId": "a3", "context": {"traits": {"plan": "pro"}}}),
    ]
    for kind, call in calls:
        sim.receive([(kind, call)], after("3h"))
    assert segment_lines(sim, "u2") == [("segment_entered", "pro")]
    assert segment_lines(sim, "u3") == [("segment_entered", "pro")]


def test_two_histories_of_one_person_add_up_day_by_day() -> None:
    needs = {"purchased": HistoryNeed(30, frozenset({"total"}), properties=True)}
    day, later = timedelta(days=1), START + timedelta(days=1)
    known = record({}, _event(START, 10), needs, START)
    assert known is not None
    other: dict[str, EventHistory] = {}
    for at, spent in ((START - day, 5), (START, 7), (later, 1)):
        other = record(other, _event(at, spent), needs, later) or other
    both = merged(known, other)["purchased"]
    assert (both.first, both.last) == (START - day, later)
    assert both.properties == {"total": 1}  # the later last event's
    assert count(both, 30, later) == 4
    assert total(both, "total", 30, later) == 23
    first = (START - day).toordinal()
    assert [(d - first, n, sums) for d, n, sums in both.days] == [
        (0, 1, {"total": 5}),
        (1, 2, {"total": 17}),
        (2, 1, {"total": 1}),
    ]
    assert merged(known, {}) == known
    assert merged({}, other) == other


def test_a_visitor_who_signs_in_brings_traits_and_history_to_the_segments(
    simulate: Simulate,
) -> None:
    viewed = "kind: event\nname: pricing_viewed\nidentity: anonymousId\n"
    curious = "kind: segment\nname: curious\nwhen: count('pricing_viewed', '7d') >= 2\n"
    sim = simulate(PRO, viewed, curious)
    sim.identify({"userId": "u1", "traits": {"email": "u1@example.com"}}, START)
    for minutes in (1, 2):
        sim.track({"anonymousId": "a1", "event": "pricing_viewed"}, after(f"{minutes}m"))
    sim.identify({"anonymousId": "a1", "traits": {"plan": "pro"}}, after("3m"))
    # Signing in says only what the customer's profile says already: the merge is the change.
    signed_in = after("4m")
    sim.identify(
        {"userId": "u1", "anonymousId": "a1", "traits": {"email": "u1@example.com"}}, signed_in
    )
    profile = sim.profiles["u1"]
    assert profile.traits["plan"] == "pro"
    assert count(profile.history.get("pricing_viewed"), 7, signed_in) == 2
    # she was in both before: the customer is, since then
    assert profile.segments == {"curious": after("2m"), "pro": after("3m")}
    assert not [r for r in sim.records if r.at == signed_in and r.journey == ""]
    # and leaves `curious` when her views leave its window, with no event
    sim.run_until(after("8d"))
    assert segment_lines(sim)[-1] == ("segment_exited", "curious")
    assert sorted(sim.profiles["u1"].segments) == ["pro"]


def test_a_visitors_segments_come_with_her_and_end_where_the_customer_does_not_qualify(
    simulate: Simulate,
) -> None:
    offer = journey(
        """
        - id: wait
          wait: 7d
        - id: hello
          send: hello_email
        """,
        name="pro_offer",
        entry="{segment: pro}",
        exit="[{segment_exited: pro}]",
    )
    sim = simulate(PRO, offer)
    sim.identify({"userId": "u1", "traits": {"email": "u1@example.com", "plan": "free"}})
    # the visitor said she is on the pro plan before signing in: the offer started
    sim.identify({"anonymousId": "a1", "traits": {"plan": "pro"}}, after("2m"))
    assert sim.instances["a1:pro_offer:1"].status == "waiting"
    signed_in = after("4m")
    sim.identify({"userId": "u1", "anonymousId": "a1"}, signed_in)
    profile = sim.profiles["u1"]
    assert profile.traits["plan"] == "free"  # the customer's own trait wins
    assert profile.segments == {}
    # her `pro` came with her, and ends at the sign-in: so does the journey it started
    assert [(r.outcome, r.detail, r.at) for r in sim.records if r.journey == ""] == [
        ("segment_entered", "pro", after("2m")),
        ("segment_exited", "pro", signed_in),
    ]
    moved = sim.instances["a1:pro_offer:1"]
    assert (moved.profile_id, moved.status, moved.end_state) == ("u1", "ended", "exited")
    assert sim.messages == []


def test_a_visitors_segment_the_customer_qualifies_for_stays_with_its_first_moment(
    simulate: Simulate,
) -> None:
    sim = simulate(PRO)
    sim.identify({"anonymousId": "a1", "traits": {"plan": "pro"}}, START)
    sim.identify({"userId": "u1", "anonymousId": "a1"}, after("1h"))
    assert sim.profiles["u1"].segments == {"pro": START}
    assert segment_lines(sim) == [("segment_entered", "pro")]


def test_local_time_works_in_a_journey_branch(simulate: Simulate) -> None:
    greet = journey(
        """
        - id: check
          branch:
            - when: hour(now_local) < 12
              goto: morning
            - otherwise: done
        - {id: morning, send: hello_email}
        - {id: done, end: completed}
        """,
        entry="{event: signed_up}",
        reentry="always",
    )
    sim = simulate(greet)
    traits = {"email": "u1@example.com", "timezone": "Asia/Tokyo"}
    sim.identify({"userId": "u1", "traits": traits}, START)
    sim.track({"userId": "u1", "event": "signed_up", "properties": {"plan": "pro"}}, START)
    sim.track({"userId": "u1", "event": "signed_up", "properties": {"plan": "pro"}}, after("6h"))
    assert [m.at for m in sim.messages] == [START]  # 09:00 in Tokyo; 15:00 is not morning


# static lists

NEWSLETTER = """
kind: segment
name: newsletter
description: uploaded from the CRM
list: true
---
kind: segment
name: engaged_readers
when: in_segment("newsletter") and count("purchased", "30d") >= 1
"""


def test_a_list_member_enters_its_journeys_and_the_segments_that_read_it(
    simulate: Simulate,
) -> None:
    weekly = journey(
        "- {id: hello, send: hello_email}",
        "- {id: later, wait: 60d}",
        name="weekly",
        entry="{segment: newsletter}",
        exit="[{segment_exited: newsletter}]",
        timeout="90d",
    )
    sim = simulate(NEWSLETTER, weekly)
    sim.identify({"userId": "u1", "traits": {"email": "Ann@Example.com"}}, START)
    buy(sim, START)
    sim.list_member("newsletter", email="ann@example.com", at=after("1h"))
    assert segment_lines(sim) == [
        ("segment_entered", "newsletter"),
        ("segment_entered", "engaged_readers"),
    ]
    assert [m.step for m in sim.messages] == ["hello"]
    sim.list_member("newsletter", email="ann@example.com", at=after("2h"))  # no change
    sim.list_member("newsletter", False, after("3h"), user_id="u1")
    assert segment_lines(sim)[2:] == [
        ("segment_exited", "newsletter"),
        ("segment_exited", "engaged_readers"),
    ]
    (instance,) = sim.instances.values()
    assert (instance.end_state, instance.ended_at) == ("exited", after("3h"))


def test_a_list_is_never_evaluated_and_only_a_list_takes_members(simulate: Simulate) -> None:
    sim = simulate(NEWSLETTER, VIP)
    sim.list_member("newsletter", user_id="u2")
    sim.list_member("vip", user_id="u2")  # a segment with a condition is no list
    sim.identify({"userId": "u2", "traits": {"plan": "pro"}}, after("1h"))
    assert sim.profile("u2").segments == {"newsletter": START}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("kind: segment\nname: a\nlist: true\nwhen: 'true'\n", "exactly one of 'when'"),
        ("kind: segment\nname: a\n", "exactly one of 'when'"),
        ("kind: segment\nname: a\nlist: yes please\n", "'list' must be true or false"),
    ],
)
def test_a_list_is_written_as_list_true_and_no_condition(
    load: Callable[..., object], document: str, message: str
) -> None:
    loaded = load(document)
    assert any(message in str(p) for p in loaded.errors), loaded.errors  # type: ignore[attr-defined]
