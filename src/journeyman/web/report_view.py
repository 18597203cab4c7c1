"""A journey's report as the API and the console's Report tab both ask for it: the
journey's version (``version``: a number, ``all``, or the latest), the days of entry
(``from``, ``to``) in a time zone (``timezone``: UTC unless a zone is given, or the
console's person picked one), and the report counters, read once.

Bad parameters raise a :class:`~journeyman.wire.Problem` naming the field and the rule:
the API answers it as JSON, the console shows it above the form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, tzinfo
from typing import Any

from journeyman.domain import model as m
from journeyman.domain.times import TimeFormatError, parse_zone
from journeyman.report import Days, journey_report
from journeyman.runtime.experiments import read_decision
from journeyman.runtime.service import Runtime
from journeyman.web import views
from journeyman.web.paths import whole_number
from journeyman.wire import Problem

__all__ = ["ReportQuery", "parse_days", "read_query", "read_zone", "report_of"]


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """What a report is of: a version (None: every version), a range of days, and the
    time zone of its days."""

    journey: m.Journey  # the version whose goals, splits and steps the report reads
    version: int | None
    days: Days
    zone: tzinfo = UTC
    zone_given: str = ""  # the ``timezone`` parameter, when one was given

    def params(self) -> dict[str, str]:
        """The query's parameters as a URL carries them (the CSV link, the form)."""
        found = {"version": "all" if self.version is None else str(self.version)}
        if self.days.start:
            found["from"] = self.days.start.isoformat()
        if self.days.end:
            found["to"] = self.days.end.isoformat()
        if self.zone_given:
            found["timezone"] = self.zone_given
        return found


async def read_query(
    runtime: Runtime, latest: m.Journey, given: Mapping[str, str], zone: tzinfo = UTC
) -> ReportQuery:
    """The report query of the parameters ``given`` (version, from, to, timezone) for
    ``latest``; its days are in the ``timezone`` given, else in ``zone``."""
    days = parse_days(given.get("from") or None, given.get("to") or None)
    named = given.get("timezone", "")
    if named:
        zone = read_zone(named)
    text = given.get("version", "")
    if text in ("", "all"):
        version = None if text == "all" else latest.version
        return ReportQuery(latest, version, days, zone, named)
    number = whole_number(text)
    if number is None:
        raise Problem(400, "version", "type", "'version' must be a number or 'all'")
    # No store keeps a version after the latest (nor can it be asked for a number that large).
    found = await views.version_of(runtime, latest, number) if number <= latest.version else None
    if found is None:
        raise Problem(404, "version", "exists", f"{latest.name} has no version {text}")
    return ReportQuery(found, number, days, zone, named)


def read_zone(name: str) -> tzinfo:
    """The zone of a report's ``timezone`` parameter, or a 400 naming it."""
    try:
        return parse_zone(name)
    except TimeFormatError as error:
        raise Problem(400, "timezone", "format", f"'timezone': {error}") from None


def parse_days(start: str | None, end: str | None) -> Days:
    """The ``from`` and ``to`` of a report (dates, YYYY-MM-DD, both included, in the
    report's time zone), or a :class:`~journeyman.wire.Problem` naming the field and the
    rule."""
    found = Days(_date("from", start), _date("to", end))
    if found.start and found.end and found.start > found.end:
        message = f"'from' ({found.start}) must not be after 'to' ({found.end})"
        raise Problem(400, "from", "range", message)
    return found


def _date(field_name: str, text: str | None) -> date | None:
    if not text:
        return None
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        message = f"'{field_name}' must be a date as YYYY-MM-DD, such as 2026-12-01"
        raise Problem(400, field_name, "format", message) from None


async def report_of(runtime: Runtime, query: ReportQuery) -> dict[str, Any]:
    """The report, from the counters of the query's version(s) alone: it never reads the
    step log nor the instances, so it costs the same for any number of them."""
    name = query.journey.name
    counters = await runtime.reads.counters(name, query.version)
    decisions = {}
    for experiment in query.journey.steps.values():
        if isinstance(experiment, m.Experiment):
            decision = await read_decision(runtime.store, name, experiment.id)
            if decision is not None:
                decisions[experiment.id] = decision
    return journey_report(query.journey, counters, query.version, query.days, decisions, query.zone)
