"""The wake time of a segment that is one ``count``, ``sum`` or ``days_since`` compared
with a number is found without evaluating the expression at each moment; it must be the
very moment the general search (:func:`journeyman.domain.segments._probe`) finds, for
any history, threshold, comparison and moment, or a profile would leave a segment late
or early."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from journeyman.domain.expressions import compile_expression
from journeyman.domain.model import Origin, Segment
from journeyman.domain.segments import PROBES, _bound_change, _probe, next_change
from journeyman.domain.state import EventHistory
from tests.fuzzing import fuzz_settings

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
DAY = timedelta(days=1)
ZONES: list[tzinfo] = [
    UTC,
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("Pacific/Chatham"),
]


def segment(source: str) -> Segment:
    return Segment("s", "", compile_expression(source), Origin("segments.yaml", 1))


def scope(now: datetime, kept: dict[str, EventHistory]) -> dict[str, Any]:
    return {"profile": {}, "now": now, "now_local": now, "_history": kept, "_segments": {}}


def probed(s: Segment, inside: bool, kept: dict[str, EventHistory], now: datetime) -> Any:
    """What next_change gave before the shortcut: the general search, after the check
    that a false answer that can only fall stays false."""
    if not inside and s.when.only_falls:
        return None
    return _probe(s, scope(now, kept), inside, kept, now, UTC)


def wake(s: Segment, kept: dict[str, EventHistory], now: datetime) -> datetime | None:
    """The wake time the engine sets: for the answer the segment has now."""
    inside = s.when.test(scope(now, kept))
    return next_change(s, scope(now, kept), inside, kept, now)


def history(last: datetime, days: dict[int, tuple[int, float]] | None = None) -> EventHistory:
    buckets = [(day, n, {"total": value}) for day, (n, value) in sorted((days or {}).items())]
    return EventHistory(first=last - 400 * DAY, last=last, days=buckets)


# the property: the same moment as the general search


CALLS = st.sampled_from(
    [
        'count("e", "{w}d")',
        'sum("e", "total", "{w}d")',
        'sum("e", "missing", "{w}d")',
        'days_since("e")',
    ]
)
WINDOWS = st.one_of(st.sampled_from([1, 2, 7, 30, 90, 400]), st.integers(1, 400))
NUMBERS = st.one_of(
    st.integers(0, 70),
    st.integers(0, 1100),
    st.integers(0, 70).map(lambda n: n + 0.5),
    st.floats(0, 2000, allow_nan=False).map(lambda f: round(f, 2)),
)
OPERATORS = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
# times of day that sit on the edges: midnight, the microsecond before it, a day's middle
TIMES = st.one_of(
    st.sampled_from([time(0), time(23, 59, 59, 999999), time(0, 0, 0, 1), time(12)]),
    st.times(),
)
VALUES = st.one_of(st.integers(-50, 400), st.floats(-50, 400, allow_nan=False))


# a bucket on each of the last 100 days: more days leave the window than are looked at
LONG = {NOW.toordinal() - n: (1, 1.0) for n in range(100)}


@st.composite
def cases(draw: st.DrawFn) -> tuple[Segment, dict[str, EventHistory], datetime, bool]:
    call = draw(CALLS).format(w=draw(WINDOWS))
    symbol, number = draw(OPERATORS), draw(NUMBERS)
    source = f"{number} {symbol} {call}" if draw(st.booleans()) else f"{call} {symbol} {number}"
    s = segment(source)
    assert s.when.bound is not None, source
    zone = draw(st.sampled_from(ZONES))
    day = NOW.date() + draw(st.integers(-3, 3)) * DAY
    now = datetime.combine(day, draw(TIMES), zone)
    kept: dict[str, EventHistory] = {}
    if draw(st.integers(0, 9)):  # mostly a history, sometimes none
        # the last event a whole number of days before now (exactly on a threshold), or
        # any time before it (or just after: a clock that went back)
        whole = draw(st.one_of(st.integers(0, 40), st.integers(0, 1100))) * DAY
        last = now - whole - draw(st.sampled_from([timedelta(0), timedelta(microseconds=1)]))
        last = draw(st.sampled_from([last, now - draw(st.timedeltas(-DAY, 1100 * DAY))]))
        today = now.astimezone(UTC).toordinal()
        offsets = draw(st.lists(st.integers(-400, 1), unique=True, max_size=80))
        buckets = {today + o: (draw(st.integers(1, 5)), draw(VALUES)) for o in offsets}
        kept["e"] = history(last, buckets)
    inside = draw(st.one_of(st.booleans(), st.just(s.when.test(scope(now, kept)))))
    return s, kept, now, inside


@fuzz_settings(1500)
@given(cases())
@example((segment('count("e", "400d") >= 0'), {"e": history(NOW, LONG)}, NOW, True))
@example((segment('days_since("e") < 7'), {"e": history(NOW - 7 * DAY)}, NOW, True))
def test_the_shortcut_finds_the_moment_the_general_search_finds(
    case: tuple[Segment, dict[str, EventHistory], datetime, bool],
) -> None:
    s, kept, now, inside = case
    assert s.when.bound is not None
    general = _probe(s, scope(now, kept), inside, kept, now, UTC)
    assert _bound_change(s, s.when.bound, inside, kept, now) == general
    assert next_change(s, scope(now, kept), inside, kept, now) == probed(s, inside, kept, now)


@pytest.mark.parametrize(
    ("source", "bound"),
    [
        ('count("e", "7d") >= 3', (("count", "e", 7), ">=", 3, False)),
        ('7 > days_since("e")', (("days_since", "e"), ">", 7, True)),
        ('sum("e", "total", "90d") > 500.5', (("sum", "e", "total", 90), ">", 500.5, False)),
        ('count("e", "7d") >= 3 and profile.vip == true', None),
        ('days_since("e") < profile.limit', None),
        ('days_since("e") == null', None),
        ('last("e").properties.total > 100', None),
        ("hour(now_local) >= 9", None),
        ('count("e", "7d") + 1 >= 3', None),
    ],
)
def test_only_one_moving_function_against_a_number_takes_the_shortcut(
    source: str, bound: object
) -> None:
    assert compile_expression(source).bound == bound


# the edges, with the moment a user expects


def test_days_since_crosses_its_threshold_exactly_that_many_days_after_the_last_event() -> None:
    last = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    kept = {"e": history(last)}
    # 30 whole days after: days_since is 30, not yet more than 30; out at 31 days
    assert wake(segment('days_since("e") > 30'), kept, last + 30 * DAY) == last + 31 * DAY
    # a microsecond before 7 days it is 6: the answer changes at 7 days on the dot
    now = last + 7 * DAY - timedelta(microseconds=1)
    assert wake(segment('days_since("e") < 7'), kept, now) == last + 7 * DAY
    # at exactly 7 days it has changed already, and cannot change back
    assert wake(segment('days_since("e") < 7'), kept, last + 7 * DAY) is None
    # a fractional threshold is crossed at the next whole day
    assert wake(segment('days_since("e") >= 2.5'), kept, last) == last + 3 * DAY


def test_no_history_no_wake_time() -> None:
    for source in ('days_since("e") > 30', 'count("e", "7d") < 1', 'sum("e", "total", "7d") < 5'):
        assert wake(segment(source), {}, NOW) is None
        assert wake(segment(source), {}, NOW) == probed(segment(source), False, {}, NOW)


def test_a_window_lets_its_days_go_at_utc_midnights() -> None:
    today = NOW.toordinal()
    # 3 events 6 days ago and 1 today: at least 3 in 7 days until the midnight that
    # begins the 7th day after the first (their day leaves the window then)
    kept = {"e": history(NOW, {today - 6: (3, 10.0), today: (1, 1.0)})}
    tomorrow = datetime.combine(NOW.date() + DAY, time(0), UTC)
    assert wake(segment('count("e", "7d") >= 3'), kept, NOW) == tomorrow
    # exactly at that midnight the window has lost them: nothing more to fall
    assert wake(segment('count("e", "7d") >= 3'), kept, tomorrow) is None
    # a microsecond before it, the same midnight
    just_before = tomorrow - timedelta(microseconds=1)
    assert wake(segment('count("e", "7d") >= 3'), kept, just_before) == tomorrow
    # a sum below a bound rises back above nothing, and falls below it when days go
    assert wake(segment('sum("e", "total", "7d") > 5'), kept, NOW) == tomorrow
    assert wake(segment('sum("e", "total", "7d") <= 5'), kept, NOW) == tomorrow
    # == is left when the count moves on, and not before
    seven_days = datetime.combine(NOW.date() + 7 * DAY, time(0), UTC)
    assert wake(segment('count("e", "7d") == 1'), kept, tomorrow) == seven_days


def test_a_window_is_read_in_utc_days_whatever_the_zone_of_now() -> None:
    today = NOW.toordinal()
    kept = {"e": history(NOW, {today - 6: (1, 1.0)})}
    # 22:00 in New York on the 13th is already the 14th in UTC, the day the bucket's 7
    # days end: it leaves at the UTC midnight that begins the 15th
    now = datetime.combine(NOW.date() - DAY, time(22), ZoneInfo("America/New_York"))
    assert now.astimezone(UTC).toordinal() == today
    expected = datetime.combine(NOW.date() + DAY, time(0), UTC)
    assert wake(segment('count("e", "7d") >= 1'), kept, now) == expected


def test_more_moments_than_are_looked_at_wake_at_the_last_one_looked_at() -> None:
    today = NOW.toordinal()
    kept = {"e": history(NOW, {today - n: (1, 1.0) for n in range(100)})}
    s = segment('count("e", "400d") >= 1')  # true until all 100 days are gone
    found = wake(s, kept, NOW)
    # 100 days leave one after another; the search stops after PROBES of them
    assert found == datetime.combine(NOW.date() + (400 - 99 + PROBES - 1) * DAY, time(0), UTC)
    assert found == probed(s, True, kept, NOW)
