"""The time zone the console shows times in: each person picks theirs (a cookie), UTC
until they do.

Times are stored in UTC; a page shows each one in the chosen zone, to the second, with
the zone's offset, and the full zone name in its title (``format_instant``).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import available_timezones

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from journeyman.domain.times import TimeFormatError, format_instant, parse_zone

__all__ = ["ZONE_COOKIE", "ZONE_SECONDS", "read_zone", "when", "zone_label", "zone_names"]

ZONE_COOKIE = "jm_timezone"
ZONE_SECONDS = 365 * 86400  # how long a browser keeps the choice


def read_zone(cookie: str | None) -> tzinfo:
    """The zone a cookie names; UTC for none, or for one that names no zone."""
    if not cookie:
        return UTC
    try:
        return parse_zone(cookie)
    except TimeFormatError:
        return UTC


def zone_label(zone: tzinfo, now: datetime) -> str:
    """``UTC``, or a zone's name and its offset now: ``Europe/Paris (+01:00)``."""
    return format_instant(now, zone).split(" ", 2)[2]


@functools.cache
def zone_names() -> list[str]:
    """Every zone a person can pick, sorted, UTC first."""
    return ["UTC", *sorted(n for n in available_timezones() if n != "UTC" and "/" in n)]


@pass_context
def when(context: Context, value: Any) -> Any:
    """A time in the zone the page is shown in, to the second, with its offset (or
    ``UTC``); the zone's name in the title. ISO text (from JSON-ready data) too."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    zone = context.get("zone") or UTC
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    local = aware.astimezone(zone)
    offset = "UTC" if getattr(zone, "key", "UTC") == "UTC" else _offset(local)
    return Markup('<time datetime="{}" title="{}">{} {}</time>').format(
        aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        format_instant(aware, zone),
        f"{local:%Y-%m-%d %H:%M:%S}",
        offset,
    )


def _offset(local: datetime) -> str:
    text = local.strftime("%z")
    return f"{text[:3]}:{text[3:]}"
