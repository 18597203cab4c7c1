"""Scheduled entry: schedules read and refused, next runs across DST, each profile's own
local time, and runs on the virtual clock of the simulator and of journey tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from journeyman.domain.schedules import (
    PROFILE,
    Schedule,
    ScheduleError,
    next_run,
    read_cron,
    read_every,
    run_id,
)
from journeyman.simulator import Simulator
from tests.conftest import START

Simulate = Callable[..., Simulator]
PARIS = ZoneInfo("Europe/Paris")
UTC_ZONE = ZoneInfo("UTC")


def every(text: str, zone: str = "Europe/Paris") -> Schedule:
    days, clock = read_every(text)
    return Schedule(text, zone, days=days, time=clock)


def test_every_reads_days_and_a_time() -> None:
    assert read_every("mon 09:00") == (frozenset({0}), (9, 0))
    assert read_every("mon,thu 18:30") == (frozenset({0, 3}), (18, 30))
    assert read_every("day 07:05")[0] == frozenset(range(7))
    assert read_every("weekday 08:00")[0] == frozenset(range(5))


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("someday 09:00", "no day"),
        ("mon 9", "no time of day"),
        ("mon 24:00", "hours 0-23"),
        ("mon", "<days> HH:MM"),
    ],
)
def test_a_bad_every_says_what_is_wrong(text: str, names: str) -> None:
    with pytest.raises(ScheduleError, match=names):
        read_every(text)


def test_a_cron_string_needs_five_valid_fields() -> None:
    assert read_cron("0 9 * * 1") == "0 9 * * 1"
    for bad in ("0 9 * *", "61 9 * * 1", "every monday"):
        with pytest.raises(ScheduleError, match="cron"):
            read_cron(bad)


def test_next_monday_nine_in_paris_is_eight_utc_in_winter() -> None:
    # START is Monday 2026-01-05 00:00 UTC
    assert next_run(every("mon 09:00"), START, UTC_ZONE) == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    after = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert next_run(every("mon 09:00"), after, UTC_ZONE) == datetime(2026, 1, 12, 8, tzinfo=UTC)


def test_nine_in_paris_follows_summer_time() -> None:
    # Summer time starts Sunday 2026-03-29 in Paris: 09:00 is then 07:00 UTC.
    before = datetime(2026, 3, 28, 12, tzinfo=UTC)
    assert next_run(every("day 09:00"), before, UTC_ZONE) == datetime(2026, 3, 29, 7, tzinfo=UTC)
    cron = Schedule("0 9 * * *", "Europe/Paris", cron="0 9 * * *")
    assert next_run(cron, before, UTC_ZONE) == datetime(2026, 3, 29, 7, tzinfo=UTC)


def test_a_time_summer_time_skips_runs_at_the_instant_after_the_change() -> None:
    # 02:30 does not exist on 2026-03-29 in Paris: the run is at 01:30 UTC (03:30 CEST).
    before = datetime(2026, 3, 28, 12, tzinfo=UTC)
    assert next_run(every("day 02:30"), before, UTC_ZONE) == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )


def test_a_time_the_change_back_repeats_runs_once() -> None:
    # 02:30 comes twice on 2026-10-25 in Paris: one run, the first (00:30 UTC).
    start = datetime(2026, 10, 24, 12, tzinfo=UTC)
    first = next_run(every("day 02:30"), start, UTC_ZONE)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert first is not None
    assert next_run(every("day 02:30"), first, UTC_ZONE) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


def test_at_runs_once_then_never() -> None:
    once = Schedule("2026-02-01T10:00", "", at=datetime(2026, 2, 1, 10))
    moment = next_run(once, START, PARIS)
    assert moment == datetime(2026, 2, 1, 9, tzinfo=UTC)
    assert moment is not None
    assert next_run(once, moment, PARIS) is None


def test_profile_local_time_is_each_members_own_next_nine() -> None:
    schedule = every("day 09:00", PROFILE)
    assert next_run(schedule, START, ZoneInfo("Asia/Tokyo")) == datetime(2026, 1, 6, 0, tzinfo=UTC)
    assert next_run(schedule, START, PARIS) == datetime(2026, 1, 5, 8, tzinfo=UTC)
    kolkata = next_run(schedule, START, ZoneInfo("Asia/Kolkata"))
    assert kolkata == datetime(2026, 1, 5, 3, 30, tzinfo=UTC)  # 09:00 at +05:30


def test_one_moment_makes_one_run_id() -> None:
    moment = datetime(2026, 1, 5, 8, tzinfo=UTC)
    assert run_id("weekly", moment) == run_id("weekly", moment.astimezone(PARIS))


NEWSLETTER = """
kind: segment
name: newsletter
when: profile.plan == "pro"
---
kind: journey
name: weekly
reentry: always
entry:
  segment: newsletter
  schedule: {every: "mon 09:00", timezone: Europe/Paris}
steps:
  - {id: news, send: hello_email}
"""


def _profiles(sim: Simulator, plans: dict[str, str]) -> None:
    for user, plan in plans.items():
        traits = {"email": f"{user}@example.com", "plan": plan}
        sim.identify({"userId": user, "traits": traits})


def test_a_weekly_run_enters_the_members_once_a_week(simulate: Simulate) -> None:
    sim = simulate(NEWSLETTER)
    _profiles(sim, {"u1": "pro", "u2": "free", "u3": "pro"})
    sim.run_until(START + timedelta(days=7, hours=12))
    sent = sorted((m.profile_id, m.at) for m in sim.messages)
    first, second = datetime(2026, 1, 5, 8, tzinfo=UTC), datetime(2026, 1, 12, 8, tzinfo=UTC)
    assert sent == [("u1", first), ("u1", second), ("u3", first), ("u3", second)]


def test_a_run_with_no_segment_enters_every_profile_at_its_local_time(simulate: Simulate) -> None:
    daily = """
kind: journey
name: daily
reentry: always
entry:
  schedule: {every: "day 09:00", timezone: profile}
steps:
  - {id: hello, send: hello_email}
"""
    sim = simulate(daily)
    _profiles(sim, {"tokyo": "free", "paris": "free"})
    sim.identify({"userId": "tokyo", "traits": {"timezone": "Asia/Tokyo"}})
    sim.identify({"userId": "paris", "traits": {"timezone": "Europe/Paris"}})
    sim.run_until(START + timedelta(hours=25))
    sent = sorted((m.profile_id, m.at) for m in sim.messages)
    assert sent == [
        ("paris", datetime(2026, 1, 5, 8, tzinfo=UTC)),
        ("tokyo", datetime(2026, 1, 6, 0, tzinfo=UTC)),  # 09:00 on the 5th came at START
    ]


LOCAL_NEWS = """
kind: segment
name: newsletter
when: profile.plan == "pro"
---
kind: journey
name: morning
reentry: always
entry:
  segment: newsletter
  schedule: {every: "day 09:00", timezone: profile}
steps:
  - {id: news, send: hello_email}
"""


def test_each_member_is_entered_at_their_own_nine_every_day_by_their_own_clock(
    simulate: Simulate,
) -> None:
    sim = simulate(LOCAL_NEWS)
    zones = {"tokyo": "Asia/Tokyo", "paris": "Europe/Paris", "york": "America/New_York"}
    for user, zone in zones.items():
        traits = {"email": f"{user}@example.com", "plan": "pro", "timezone": zone}
        sim.identify({"userId": user, "traits": traits})
    sim.identify({"userId": "free", "traits": {"email": "f@example.com", "plan": "free"}})
    # each member's next 09:00 is a wake of their own profile; the others have none
    assert sim.profile("paris").wake_at == datetime(2026, 1, 5, 8, tzinfo=UTC)
    assert sim.profile("free").wake_at is None
    sim.run_until(START + timedelta(days=3))
    sent = sorted((m.profile_id, m.at) for m in sim.messages)
    assert sent == sorted(
        [("paris", datetime(2026, 1, day, 8, tzinfo=UTC)) for day in (5, 6, 7)]
        + [("tokyo", datetime(2026, 1, day, 0, tzinfo=UTC)) for day in (6, 7, 8)]
        + [("york", datetime(2026, 1, day, 14, tzinfo=UTC)) for day in (5, 6, 7)]
    )


def test_a_member_who_moves_or_leaves_is_entered_at_the_new_time_or_not_at_all(
    simulate: Simulate,
) -> None:
    sim = simulate(LOCAL_NEWS)
    for user in ("mover", "leaver"):
        traits = {"email": f"{user}@example.com", "plan": "pro", "timezone": "Europe/Paris"}
        sim.identify({"userId": user, "traits": traits})
    sim.identify({"userId": "mover", "traits": {"timezone": "Asia/Tokyo"}})
    sim.identify({"userId": "leaver", "traits": {"plan": "free"}})
    sim.run_until(START + timedelta(days=1, hours=12))
    sent = sorted((m.profile_id, m.at) for m in sim.messages)
    assert sent == [("mover", datetime(2026, 1, 6, 0, tzinfo=UTC))]  # not at Paris's 09:00
    assert sim.profile("leaver").wake_at is None


def test_a_late_clock_enters_once_and_a_schedule_changed_since_enters_nobody() -> None:
    from journeyman.domain.schedules import wind_local

    nine = every("day 09:00", PROFILE)
    ten = every("day 10:00", PROFILE)
    set_for = datetime(2026, 1, 5, 8, tzinfo=UTC)  # 09:00 in Paris
    two_days_late = set_for + timedelta(days=2, hours=1)
    clocks, due = wind_local([("j", nine, None)], {"j": set_for}, {}, PARIS, two_days_late)
    assert due == [("j", set_for)]
    assert clocks == {"j": datetime(2026, 1, 8, 8, tzinfo=UTC)}
    # published anew at 10:00: the clock set for 09:00 winds on without an entry
    clocks, due = wind_local([("j", ten, None)], {"j": set_for}, {}, PARIS, set_for)
    assert due == []
    assert clocks == {"j": datetime(2026, 1, 5, 9, tzinfo=UTC)}


LOCAL_TEST = """
kind: test
name: each member gets the news at nine in their own timezone
events:
  - at: 0s
    identify: {userId: tokyo, traits: {email: t@example.com, plan: pro, timezone: Asia/Tokyo}}
  - at: 0s
    identify: {userId: paris, traits: {email: p@example.com, plan: pro, timezone: Europe/Paris}}
until: 1d
expect:
  - entered: morning
    profile: paris
    at: 8h
  - entered: morning
    profile: tokyo
    at: 24h
  - sent: news
    times: 2
"""


def test_a_journey_test_sees_each_member_entered_at_their_local_nine(
    workspace: Callable[..., object],
) -> None:
    from journeyman.journey_tests import run_tests

    (result,) = run_tests(workspace(LOCAL_NEWS, LOCAL_TEST))  # type: ignore[arg-type]
    assert result.passed, result


WEEK_TEST = """
kind: test
name: a week on the virtual clock sees one run enter the members
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com, plan: pro}}
  - at: 0s
    identify: {userId: u2, traits: {email: u2@example.com, plan: free}}
until: 7d
expect:
  - sent: news
    profile: u1
    times: 1
  - sent: news
    profile: u2
    times: 0
  - run: weekly
    at: 8h
    times: 1
  - run: weekly
    profile: u1
  - run: weekly
    profile: u2
    times: 0
"""


def test_a_journey_test_advancing_a_week_sees_one_run(workspace: Callable[..., object]) -> None:
    from journeyman.journey_tests import run_tests

    (result,) = run_tests(workspace(NEWSLETTER, WEEK_TEST))  # type: ignore[arg-type]
    assert result.passed, result


def test_a_run_expected_at_another_moment_fails_naming_the_run_that_came(
    workspace: Callable[..., object],
) -> None:
    from journeyman.journey_tests import run_tests

    wrong = WEEK_TEST.replace("at: 8h\n    times: 1", "at: 9h")
    (result,) = run_tests(workspace(NEWSLETTER, wrong))  # type: ignore[arg-type]
    (failure,) = result.failures
    assert "expected run weekly at 9h, but got weekly at 8h for 1 profile(s)" in failure
    assert "run 'weekly@20260105T080000Z'" in failure


def test_a_run_expectation_must_name_a_journey(load: Callable[..., object]) -> None:
    from tests.conftest import BASE

    loaded = load(BASE, NEWSLETTER, WEEK_TEST.replace("run: weekly\n    at", "run: weekyl\n    at"))
    errors = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any("weekyl" in e and "weekly" in e for e in errors), errors


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ('{every: "mon 9am"}', "'every': '9am' is no time of day"),
        ('{cron: "0 9 * *"}', "'cron': '0 9 * *' is no cron string"),
        ('{every: "mon 09:00", timezone: Mars/Olympus}', "'timezone': 'Mars/Olympus' is no known"),
        ('{every: "mon 09:00", rate: 0}', "'rate' must be a number of profiles a second above 0"),
        ('{every: "mon 09:00", cron: "0 9 * * 1"}', "exactly one of 'every', 'cron' or 'at'"),
        ('{at: "soon"}', "'at': 'soon' is no date and time"),
    ],
)
def test_a_bad_schedule_is_an_error_naming_the_field(
    load: Callable[..., object], schedule: str, message: str
) -> None:
    from tests.conftest import BASE

    text = f"""
kind: journey
name: weekly
entry:
  schedule: {schedule}
steps:
  - {{id: news, send: hello_email}}
"""
    loaded = load(BASE, text)
    errors = [str(p) for p in loaded.errors]  # type: ignore[attr-defined]
    assert any(message in error for error in errors), errors
