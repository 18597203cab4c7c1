"""The wake time of a segment of the local hour only (``hour(now_local) >= 9 and
hour(now_local) < 18``) or of one anniversary (``is_anniversary(profile.birthday)``) is
looked up without evaluating the expression at each moment; it must be the very moment the
general search (:func:`journeyman.domain.segments._probe`) finds, for any thresholds, zone
(summer time beginning and ending included), moment and answer, or a profile would enter
office hours or its birthday an hour or a day late."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from journeyman.domain.expressions import compile_expression
from journeyman.domain.model import Origin, Segment
from journeyman.domain.segments import _probe, next_change
from tests.fuzzing import fuzz_settings

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
ZONES: list[tzinfo] = [
    UTC,
    PARIS,
    NEW_YORK,
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("Pacific/Chatham"),  # +12:45 / +13:45
    ZoneInfo("America/Santiago"),  # summer time changes at midnight
    ZoneInfo("Australia/Lord_Howe"),  # a half-hour change
]
# the days summer time begins and ends in Europe and in the United States, and others
DAYS = [
    date(2026, 3, 29),
    date(2026, 10, 25),
    date(2026, 3, 8),
    date(2026, 11, 1),
    date(2026, 4, 5),
    date(2026, 9, 6),
    date(2026, 2, 28),
    date(2028, 2, 29),
    date(2026, 12, 31),
]


def segment(source: str) -> Segment:
    return Segment("s", "", compile_expression(source), Origin("segments.yaml", 1))


def scope(now: datetime, zone: tzinfo, birthday: Any = None) -> dict[str, Any]:
    profile = {} if birthday is None else {"birthday": birthday}
    local = now.astimezone(zone)
    return {"profile": profile, "now": now, "now_local": local, "_history": {}, "_segments": {}}


def both(s: Segment, now: datetime, zone: tzinfo, inside: bool, birthday: Any = None) -> Any:
    """The wake time looked up, and the one the general search finds."""
    at = scope(now, zone, birthday)
    return next_change(s, at, inside, {}, now, zone), _probe(s, at, inside, {}, now, zone)


HOUR = "hour(now_local)"
THRESHOLDS = st.one_of(
    st.integers(0, 24),
    st.integers(-2, 26),
    st.integers(0, 23).map(lambda n: n + 0.5),
)
OPERATORS = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    symbol, number = draw(OPERATORS), draw(THRESHOLDS)
    return f"{number} {symbol} {HOUR}" if draw(st.booleans()) else f"{HOUR} {symbol} {number}"


def expressions() -> st.SearchStrategy[str]:
    return st.recursive(
        comparisons(),
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda e: f"not ({e})"),
        ),
        max_leaves=4,
    )


@st.composite
def moments(draw: st.DrawFn) -> tuple[datetime, tzinfo]:
    """A moment near a change of summer time (or any day), on an hour's edge or not."""
    zone = draw(st.sampled_from(ZONES))
    day = draw(st.sampled_from(DAYS)) + draw(st.integers(-2, 2)) * timedelta(days=1)
    at = draw(
        st.one_of(
            st.integers(0, 23).map(time),
            st.sampled_from([time(1, 59, 59, 999999), time(2, 30), time(0, 0, 0, 1)]),
            st.times(),
        )
    )
    fold = draw(st.integers(0, 1))
    local = datetime.combine(day, at, zone).replace(fold=fold)
    return local.astimezone(UTC), zone


@fuzz_settings(1500)
@given(expressions(), moments(), st.booleans())
@example(
    "hour(now_local) >= 9 and hour(now_local) < 18",
    (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), PARIS),
    True,
)
@example("hour(now_local) == 2", (datetime(2026, 3, 8, 5, tzinfo=UTC), NEW_YORK), False)
@example("hour(now_local) >= 0", (datetime(2026, 3, 8, 5, tzinfo=UTC), NEW_YORK), True)
def test_an_expression_of_the_local_hour_wakes_when_the_general_search_does(
    source: str, moment: tuple[datetime, tzinfo], inside: bool
) -> None:
    s = segment(source)
    assert s.when.hours is not None, source
    now, zone = moment
    looked_up, probed = both(s, now, zone, inside)
    assert looked_up == probed


BIRTHDAYS = st.one_of(
    st.dates(date(1900, 1, 1), date(2030, 12, 31)).map(str),
    st.sampled_from(["2000-02-29", "--02-29", "03-29", "10-25", "1990-12-31", "01-01"]),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.sampled_from(["", "yesterday", "2001-02-29", "13-01", None, 42]),
)


@fuzz_settings(1000)
@given(BIRTHDAYS, moments(), st.booleans())
@example("--02-29", (datetime(2027, 2, 28, 12, tzinfo=UTC), PARIS), True)
@example("03-29", (datetime(2026, 3, 28, 23, 30, tzinfo=UTC), PARIS), False)
def test_an_anniversary_wakes_when_the_general_search_does(
    birthday: Any, moment: tuple[datetime, tzinfo], inside: bool
) -> None:
    s = segment("is_anniversary(profile.birthday)")
    assert s.when.anniversary == ("profile", "birthday")
    now, zone = moment
    looked_up, probed = both(s, now, zone, inside, birthday)
    assert looked_up == probed


def test_office_hours_wake_at_nine_and_at_six_on_the_profiles_clock() -> None:
    s = segment("hour(now_local) >= 9 and hour(now_local) < 18")
    now = datetime(2026, 3, 28, 22, tzinfo=UTC)  # 23:00 in Paris, the night summer time begins
    at, _ = both(s, now, PARIS, False)
    assert at == datetime(2026, 3, 29, 7, tzinfo=UTC)  # 9:00 CEST
    at, _ = both(s, at, PARIS, True)
    assert at == datetime(2026, 3, 29, 16, tzinfo=UTC)  # 18:00 CEST


def test_a_birthday_begins_and_ends_at_the_profiles_midnights() -> None:
    s = segment("is_anniversary(profile.birthday)")
    now = datetime(2026, 11, 1, 12, tzinfo=UTC)
    at, _ = both(s, now, NEW_YORK, False, "1990-11-02")
    assert at == datetime(2026, 11, 2, 5, tzinfo=UTC)  # midnight EST
    at, _ = both(s, at, NEW_YORK, True, "1990-11-02")
    assert at == datetime(2026, 11, 3, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("source", "looked_up"),
    [
        ("hour(now_local) >= 9 and hour(now_local) < 18", True),
        ("not (hour(now_local) < 9) or 20 <= hour(now_local)", True),
        ("hour(now_local) >= 9 and profile.vip == true", False),
        ("hour(now_local) >= 9 and weekday(now_local) < 6", False),
        ("hour(now) >= 9", False),
        ("is_anniversary(profile.birthday)", True),
        ("is_anniversary(profile.birthday) and profile.vip == true", False),
        ('is_anniversary(profile["birthday"])', True),
    ],
)
def test_only_the_local_hour_or_one_anniversary_is_looked_up(source: str, looked_up: bool) -> None:
    when = compile_expression(source)
    assert (when.hours is not None or when.anniversary is not None) == looked_up
