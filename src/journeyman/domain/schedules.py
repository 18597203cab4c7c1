"""Scheduled entry ("read audience"): when a journey's runs start, and what a run gives
each member.

``entry: {segment: newsletter, schedule: {every: "mon 09:00", timezone: Europe/Paris}}``
makes a run at each moment the schedule names; a run enters every member of the segment
(every profile, with no segment) through the one core, as an event
:data:`SCHEDULED_EVENT` whose messageId names the run and the profile, so that a run
taken up again after a crash enters nobody twice.

A schedule is one of ``every: "<days> HH:MM"`` (``day``, ``weekday``, or days such as
``mon,thu``), ``cron: "0 9 * * 1"`` (five fields), or ``at:`` a local date and time, once;
each read in ``timezone`` (an IANA name, the workspace's by default). A local time that a
change to summer time skips runs at the same instant as the time just before the change
would have (an hour later on the wall clock); a time that the change back repeats runs
once, the first time.

``timezone: profile`` enters each member at their own local time (their ``timezone``
trait, else the workspace's) with no run at all: each member's profile keeps the instant of
their next local moment (:attr:`~journeyman.domain.state.Profile.schedules`), a wake-up of
the profile's clock, and when it comes the engine enters them (:func:`wind_local`). Nothing
ever reads the whole audience for it but one run when the schedule is first seen, whose
entry events only set the clocks of the members there already (:func:`clocks_run_id`).

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from journeyman.domain.state import Event
from journeyman.errors import JourneymanError

__all__ = [
    "DAYS",
    "DEFAULT_RATE",
    "PROFILE",
    "SCHEDULED_EVENT",
    "Schedule",
    "ScheduleError",
    "clocks_run_id",
    "entry_event",
    "next_run",
    "read_cron",
    "read_every",
    "read_zone",
    "run_id",
    "wind_local",
]

DEFAULT_RATE = 200.0  # profiles a second a run enters, unless `rate:` says otherwise
PROFILE = "profile"  # `timezone: profile`: each member's own
SCHEDULED_EVENT = "journey_scheduled"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEARCH = 400  # days looked ahead for the next local time of an `every`


class ScheduleError(JourneymanError, ValueError):
    """A schedule that cannot be read; the message names what is wrong."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a journey's runs start. Exactly one of ``days`` + ``time`` (``every``),
    ``cron`` or ``at`` (local, naive) is set."""

    source: str  # as written, for messages and the API
    timezone: str  # an IANA name, or PROFILE; "" for the workspace's
    rate: float = DEFAULT_RATE
    days: frozenset[int] = frozenset()  # weekday numbers, Monday 0
    time: tuple[int, int] | None = None  # (hour, minute)
    cron: str | None = None
    at: datetime | None = None

    @property
    def per_profile(self) -> bool:
        return self.timezone == PROFILE

    def zone(self, default: ZoneInfo) -> ZoneInfo:
        return default if self.timezone in ("", PROFILE) else ZoneInfo(self.timezone)

    def matches(self, local: datetime) -> bool:
        """Whether the local wall time (naive, to the minute) is one the schedule names."""
        local = local.replace(second=0, microsecond=0, tzinfo=None)
        if self.at is not None:
            return local == self.at.replace(second=0)
        if self.cron is not None:
            return bool(croniter.match(self.cron, local))
        return local.weekday() in self.days and (local.hour, local.minute) == self.time


def read_every(text: str) -> tuple[frozenset[int], tuple[int, int]]:
    """``"mon 09:00"``, ``"mon,thu 18:30"``, ``"day 09:00"``, ``"weekday 08:00"``."""
    parts = text.split()
    if len(parts) != 2:
        raise ScheduleError(f"{text!r} is not '<days> HH:MM' (such as 'mon 09:00' or 'day 09:00')")
    return _days(parts[0].lower()), _clock(parts[1])


def _days(text: str) -> frozenset[int]:
    if text in ("day", "daily"):
        return frozenset(range(7))
    if text == "weekday":
        return frozenset(range(5))
    found = set()
    for name in text.split(","):
        if name[:3] not in DAYS:
            raise ScheduleError(f"{name!r} is no day: write day, weekday or {', '.join(DAYS)}")
        found.add(DAYS.index(name[:3]))
    return frozenset(found)


def _clock(text: str) -> tuple[int, int]:
    hour, _, minute = text.partition(":")
    if not (hour.isdigit() and minute.isdigit() and len(minute) == 2):
        raise ScheduleError(f"{text!r} is no time of day: write HH:MM, such as 09:00")
    if int(hour) > 23 or int(minute) > 59:
        raise ScheduleError(f"{text!r} is no time of day: hours 0-23, minutes 00-59")
    return int(hour), int(minute)


def read_cron(text: str) -> str:
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ScheduleError(f"{text!r} is no cron string of five fields (such as '0 9 * * 1')")
    return text


def read_zone(text: str) -> str:
    if text == PROFILE:
        return text
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"{text!r} is no known timezone (an IANA name such as Europe/Paris)"
        ) from None
    return text


def next_run(schedule: Schedule, after: datetime, default: ZoneInfo) -> datetime | None:
    """The first moment strictly after ``after`` (UTC) at which a run starts; None when
    there is none (an ``at`` that has passed). For ``timezone: profile``, ``default`` is
    the member's zone: their own next moment."""
    zone = schedule.zone(default)
    local = after.astimezone(zone).replace(tzinfo=None, microsecond=0)
    for candidate in _local_times(schedule, local):
        instant = candidate.replace(tzinfo=zone).astimezone(UTC)
        if instant > after:
            return instant
    return None


def _local_times(schedule: Schedule, start: datetime) -> Iterator[datetime]:
    """Local wall times the schedule names, from ``start`` on (naive), in order."""
    if schedule.at is not None:
        yield schedule.at
    elif schedule.cron is not None:
        times = croniter(schedule.cron, start.replace(second=0) - timedelta(minutes=1))
        for _ in range(_SEARCH * 24 * 60):
            found: datetime = times.get_next(datetime)
            yield found
    else:
        assert schedule.time is not None
        day = start.replace(hour=schedule.time[0], minute=schedule.time[1], second=0)
        for offset in range(_SEARCH):
            candidate = day + timedelta(days=offset)
            if candidate.weekday() in schedule.days:
                yield candidate


def wind_local(
    journeys: Iterable[tuple[str, Schedule, str | None]],
    clocks: Mapping[str, datetime],
    segments: Mapping[str, datetime],
    zone: ZoneInfo,
    now: datetime,
) -> tuple[dict[str, datetime], list[tuple[str, datetime]]]:
    """A member's clocks of the ``timezone: profile`` schedules (journey name, schedule,
    segment or None), wound on to ``now``: their instants anew, and the journeys whose
    moment has come, each with that moment.

    ``clocks`` are the instants set before. One that has come is due only if the schedule
    still names it in ``zone`` (a schedule published anew, or a member who moved to
    another timezone, is wound on without an entry); moments missed make one entry. A
    profile not in the segment (any more) keeps no clock for it.
    """
    wound: dict[str, datetime] = {}
    due: list[tuple[str, datetime]] = []
    for name, schedule, segment in journeys:
        if segment is not None and segment not in segments:
            continue
        before = clocks.get(name)
        if before is not None and before <= now:
            again = next_run(schedule, before - timedelta(seconds=1), zone)
            if again == before:
                due.append((name, before))
        upcoming = next_run(schedule, now, zone)
        if upcoming is not None:
            wound[name] = upcoming
    return wound, due


def clocks_run_id(journey: str, at: datetime) -> str:
    """The id of the run that sets the members' clocks of a ``timezone: profile`` schedule
    first seen at ``at``: its entry events enter nobody."""
    return f"{journey}@clocks-{at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def run_id(journey: str, at: datetime) -> str:
    """A run's id: its journey and the moment it is for, so that two processes that both
    see the moment come make one run."""
    return f"{journey}@{at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def entry_event(journey: str, run: str, profile_id: str, now: datetime) -> Event:
    """What a run gives one member: an event that enters ``journey`` (with its re-entry
    rules); its messageId makes a second one of the same run a duplicate."""
    return Event(
        name=SCHEDULED_EVENT,
        profile_id=profile_id,
        timestamp=now,
        properties={"journey": journey, "run": run},
        type="track",
        user_id=profile_id,
        message_id=f"run:{run}:{profile_id}",
    )
