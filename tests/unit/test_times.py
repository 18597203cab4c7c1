from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from journeyman.domain.times import (
    TimeFormatError,
    format_duration,
    format_instant,
    in_window,
    next_local_time,
    parse_clock_time,
    parse_duration,
    parse_timestamp,
    parse_zone,
)

PARIS = ZoneInfo("Europe/Paris")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("20m", 1200), ("3h", 10800), ("2d", 172800), ("1w", 604800), ("1h30m", 5400)],
)
def test_durations_read_every_unit_and_sums(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "5 years", "1.5h", "-2d", "h", 5, None])
def test_bad_durations_say_what_a_duration_looks_like(text: object) -> None:
    with pytest.raises(TimeFormatError, match="use a number and a unit"):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["99999999999999999999999d", "9" * 5000 + "s"])
def test_a_duration_longer_than_any_timedelta_overflows(text: str) -> None:
    with pytest.raises(OverflowError, match="is longer than any duration"):
        parse_duration(text)


def test_durations_format_back_to_the_shortest_text() -> None:
    assert format_duration(timedelta(days=8, hours=3)) == "1w1d3h"
    assert format_duration(timedelta(0)) == "0s"
    assert parse_duration(format_duration(timedelta(seconds=93784))) == timedelta(seconds=93784)


def test_timestamps_without_an_offset_are_utc() -> None:
    assert parse_timestamp("2026-01-05T10:00:00") == utc("2026-01-05T10:00:00")
    assert parse_timestamp("2026-01-05T11:00:00+01:00") == utc("2026-01-05T10:00:00")
    assert parse_timestamp("2026-01-05T10:00:00Z").tzinfo == UTC


def test_bad_timestamps_and_clock_times_and_zones_are_refused() -> None:
    with pytest.raises(TimeFormatError, match="ISO 8601"):
        parse_timestamp("next tuesday")
    with pytest.raises(TimeFormatError, match="HH:MM"):
        parse_clock_time("25:00")
    with pytest.raises(TimeFormatError, match="IANA"):
        parse_zone("Mars/Olympus")
    assert parse_clock_time("9:05") == time(9, 5)


def test_a_bad_timestamp_is_quoted_short_in_its_error() -> None:
    with pytest.raises(TimeFormatError, match=r"^'xxxx.*\.\.\. \(30000 characters\) is not an ISO"):
        parse_timestamp("x" * 30_000)
    with pytest.raises(TimeFormatError, match=r"^a number too long to show is not a timestamp"):
        parse_timestamp(10**5000)  # repr() refuses over 4,300 digits


def test_next_local_time_is_today_if_still_ahead_else_tomorrow() -> None:
    monday_7am_paris = utc("2026-01-05T06:00:00")
    assert next_local_time(monday_7am_paris, time(9), PARIS) == utc("2026-01-05T08:00:00")
    monday_10am_paris = utc("2026-01-05T09:00:00")
    assert next_local_time(monday_10am_paris, time(9), PARIS) == utc("2026-01-06T08:00:00")


def test_next_local_time_skips_days_not_listed() -> None:
    friday_noon = utc("2026-01-09T12:00:00")
    weekdays = frozenset(range(5))
    assert next_local_time(friday_noon, time(9), PARIS, weekdays) == utc("2026-01-12T08:00:00")


def test_a_wall_time_skipped_by_spring_forward_moves_forward_by_the_gap() -> None:
    # 2026-03-29: Paris clocks jump from 02:00 to 03:00; 02:30 does not exist that day.
    before = utc("2026-03-28T23:00:00")
    assert next_local_time(before, time(2, 30), PARIS) == utc("2026-03-29T01:30:00")
    assert next_local_time(before, time(9), PARIS) == utc("2026-03-29T07:00:00")  # UTC+2 now


def test_a_wall_time_repeated_by_fall_back_is_its_first_occurrence() -> None:
    # 2026-10-25: Paris clocks go back from 03:00 to 02:00; 02:30 happens twice.
    before = utc("2026-10-24T22:00:00")
    assert next_local_time(before, time(2, 30), PARIS) == utc("2026-10-25T00:30:00")


def test_quiet_window_across_midnight_ends_at_its_local_end() -> None:
    start, end = time(21), time(8)
    late_evening = utc("2026-01-05T21:30:00")  # 22:30 in Paris
    assert in_window(late_evening, start, end, PARIS) == utc("2026-01-06T07:00:00")
    early_morning = utc("2026-01-06T05:00:00")  # 06:00 in Paris
    assert in_window(early_morning, start, end, PARIS) == utc("2026-01-06T07:00:00")
    afternoon = utc("2026-01-06T14:00:00")
    assert in_window(afternoon, start, end, PARIS) is None


def test_quiet_window_within_one_day() -> None:
    lunch = utc("2026-01-05T11:30:00")  # 12:30 in Paris
    assert in_window(lunch, time(12), time(14), PARIS) == utc("2026-01-05T13:00:00")
    assert in_window(lunch, time(13), time(14), PARIS) is None


def test_between_the_two_occurrences_of_a_repeated_time_the_second_is_next() -> None:
    # The first 02:30 of 2026-10-25 in Paris is 00:30 UTC, the second 01:30 UTC.
    between = utc("2026-10-25T01:15:00")
    assert next_local_time(between, time(2, 30), PARIS) == utc("2026-10-25T01:30:00")


def test_quiet_hours_ending_in_the_repeated_hour_end_at_the_next_occurrence() -> None:
    # A 21:00-02:30 window at the second 02:15 (01:15 UTC) ends 15 minutes later.
    second_215 = utc("2026-10-25T01:15:00")
    assert in_window(second_215, time(21), time(2, 30), PARIS) == utc("2026-10-25T01:30:00")


def test_a_timestamp_outside_the_representable_range_is_refused() -> None:
    with pytest.raises(TimeFormatError, match="outside the years"):
        parse_timestamp("0001-01-01T00:00:00+01:00")


def test_an_instant_is_shown_to_the_second_with_its_zone() -> None:
    at = datetime(2026, 1, 5, 9, 30, 15, 123456, tzinfo=UTC)
    assert format_instant(at) == "2026-01-05 09:30:15 UTC"
    assert format_instant(at, PARIS) == "2026-01-05 10:30:15 Europe/Paris (+01:00)"
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert format_instant(summer, ZoneInfo("America/New_York")) == (
        "2026-07-01 08:00:00 America/New_York (-04:00)"
    )


def test_an_instant_without_a_zone_is_taken_as_utc() -> None:
    assert format_instant(datetime(2026, 1, 5, 9, 30)) == "2026-01-05 09:30:00 UTC"
