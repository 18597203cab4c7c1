"""Durations, timestamps and local wall-clock times.

Everything here is pure: the current time always comes in as an argument. Timestamps are
timezone-aware ``datetime`` values in UTC; durations are ``timedelta`` values.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from journeyman.errors import JourneymanError

__all__ = [
    "DAY_NAMES",
    "TimeFormatError",
    "format_duration",
    "format_instant",
    "in_window",
    "next_local_time",
    "parse_clock_time",
    "parse_duration",
    "parse_timestamp",
    "parse_zone",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_DURATION_WHOLE = re.compile(r"\s*(?:\d+\s*[smhdw]\s*)+")
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
# What an IANA name is made of (Europe/Paris, America/Argentina/Buenos_Aires, Etc/GMT+5):
# anything else (a path, a NUL, a name longer than any zone's) is refused before the
# zone database is looked at, which would raise OSError or ValueError for it.
_ZONE = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_ZONE_LENGTH = 64  # the longest IANA name has 32 characters

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimeFormatError(JourneymanError, ValueError):
    """A duration, timestamp, clock time or time zone that cannot be read."""


def parse_duration(text: str) -> timedelta:
    """Read ``30s``, ``20m``, ``3h``, ``2d``, ``1w`` or a sum such as ``1h30m``.

    Raises :class:`TimeFormatError` for text that is no duration, and ``OverflowError`` for
    one longer than a ``timedelta`` holds (about 2.7 million years).
    """
    if not isinstance(text, str) or not _DURATION_WHOLE.fullmatch(text):
        raise TimeFormatError(
            f"{_shown(text)} is not a duration: use a number and a unit s, m, h, d or w, "
            "such as 30s, 20m, 3h, 2d, 1w or 1h30m"
        )
    try:
        return timedelta(seconds=sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(text)))
    except (ValueError, OverflowError):  # over 4,300 digits, or over a timedelta's days
        raise OverflowError(f"{_shown(text)} is longer than any duration") from None


def format_duration(value: timedelta) -> str:
    """The shortest duration text that reads back to ``value`` (whole seconds)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def format_instant(value: datetime, zone: tzinfo = UTC) -> str:
    """An instant as a reason or a page shows it: to the second, with its zone.

    ``2026-01-05 09:30:00 UTC`` in UTC; in another zone its name and offset, such as
    ``2026-01-05 10:30:00 Europe/Paris (+01:00)``. A naive value is taken as UTC.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone)
    name = getattr(zone, "key", None) or local.tzname() or "UTC"
    if name == "UTC":
        return f"{local:%Y-%m-%d %H:%M:%S} UTC"
    offset = local.strftime("%z")  # +0100
    return f"{local:%Y-%m-%d %H:%M:%S} {name} ({offset[:3]}:{offset[3:]})"


def parse_timestamp(value: object) -> datetime:
    """Read an ISO 8601 timestamp (``Z`` or an offset; no offset means UTC) or a datetime."""
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            result = datetime.fromisoformat(value.strip())
        except ValueError:
            raise TimeFormatError(
                f"{_shown(value)} is not an ISO 8601 timestamp such as 2026-01-05T09:30:00Z"
            ) from None
    else:
        raise TimeFormatError(f"{_shown(value)} is not a timestamp")
    if result.tzinfo is None:
        result = result.replace(tzinfo=UTC)
    try:
        return result.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable instant
        raise TimeFormatError(f"{_shown(value)} is outside the years 1 to 9999 in UTC") from None


def parse_clock_time(text: object) -> time:
    """Read a wall-clock time ``HH:MM`` (24-hour)."""
    match = _CLOCK.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        message = f"{_shown(text)} is not a time of day: use HH:MM, such as 09:00 or 21:30"
        raise TimeFormatError(message)
    return time(int(match[1]), int(match[2]))


def parse_zone(name: object) -> ZoneInfo:
    """Look up an IANA time zone name such as ``Europe/Paris``.

    Raises :class:`TimeFormatError` for anything else, whatever it is (a long name, a path,
    a directory of the zone database, a NUL), never an ``OSError``.
    """
    usable = isinstance(name, str) and len(name) <= _ZONE_LENGTH and _ZONE.fullmatch(name)
    if usable:
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise TimeFormatError(f"{_shown(name)} is not an IANA time zone name such as Europe/Paris")


def _shown(value: object) -> str:
    """``value`` as a message quotes it: a long one cut, so that the message stays readable."""
    try:
        text = repr(value)
    except ValueError:  # a whole number of over 4,300 digits, which Python does not write
        return "a number too long to show"
    if len(text) <= 60:
        return text
    return f"{text[:50]}... ({len(value) if isinstance(value, str) else len(text)} characters)"


def _at_local(day: date, at: time, zone: ZoneInfo) -> list[datetime]:
    """The instants ``day`` shows the wall time ``at`` in ``zone``, earliest first.

    A wall time that does not exist (spring forward) moves forward by the gap, as fold=0
    gives it. One that exists twice (fall back) gives both instants.
    """
    wall = datetime.combine(day, at, tzinfo=zone)
    first = wall.astimezone(UTC)
    second = wall.replace(fold=1).astimezone(UTC)
    repeated = second != first and second.astimezone(zone).replace(tzinfo=None) == wall.replace(
        tzinfo=None
    )
    return [first, second] if repeated else [first]


def next_local_time(
    after: datetime, at: time, zone: ZoneInfo, days: frozenset[int] | None = None
) -> datetime:
    """The first instant strictly after ``after`` whose wall-clock time in ``zone`` is ``at``.

    ``days`` limits the result to those weekdays (0 is Monday), in ``zone``'s calendar.
    """
    local_day = after.astimezone(zone).date()
    for offset in range(9):
        day = local_day + timedelta(days=offset)
        if days is not None and day.weekday() not in days:
            continue
        for candidate in _at_local(day, at, zone):
            if candidate > after:
                return candidate
    raise ValueError("days must name at least one weekday")  # pragma: no cover - validated


def in_window(now: datetime, start: time, end: time, zone: ZoneInfo) -> datetime | None:
    """If ``now`` falls in the daily local window [start, end), the instant the window ends.

    A window whose end is before its start spans midnight (21:00 to 08:00). Returns ``None``
    outside the window.
    """
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if start == end:
        return None
    # A window whose end comes before its start spans midnight.
    inside = start <= clock < end if start < end else clock >= start or clock < end
    if not inside:
        return None
    return next_local_time(now, end, zone)
