"""Workspace rules and journey re-entry as pure decisions.

Each function answers one question for one moment and says why: may this profile enter,
may this message go now, later, or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from journeyman.domain.model import Cap, QuietHours, Reentry, Rules
from journeyman.domain.times import format_duration, format_instant, in_window

__all__ = ["SendDecision", "decide_entry", "decide_send"]


@dataclass(frozen=True, slots=True)
class SendDecision:
    action: Literal["send", "defer", "drop", "cap"]
    reason: str = ""
    until: datetime | None = None


SEND = SendDecision("send")


def decide_entry(
    reentry: Reentry, active: bool, last_entry: datetime | None, now: datetime
) -> str | None:
    """Why the profile may not enter now, or None if it may."""
    if active:
        return "the profile is already in this journey"
    if last_entry is None or reentry.mode == "always":
        return None
    if reentry.mode == "never":
        return f"re-entry is never and the profile entered at {format_instant(last_entry)}"
    if now - last_entry < reentry.period:
        return (
            f"re-entry waits {format_duration(reentry.period)} after the last entry "
            f"at {format_instant(last_entry)}"
        )
    return None


def decide_send(
    rules: Rules,
    channel: str,
    now: datetime,
    zone: ZoneInfo,
    sends: Sequence[tuple[datetime, str]],
) -> SendDecision:
    """Quiet hours first (a deferred send is capped when it goes), then frequency caps."""
    for window in rules.quiet_hours:
        if channel in window.channels:
            decision = _quiet(window, now, zone)
            if decision is not None:
                return decision
    for cap in rules.caps:
        if channel in cap.channels and _count(cap, now, sends) >= cap.max:
            return SendDecision("cap", _cap_reason(cap))
    return SEND


def _quiet(window: QuietHours, now: datetime, zone: ZoneInfo) -> SendDecision | None:
    ends = in_window(now, window.start, window.end, zone)
    if ends is None:
        return None
    span = f"{window.start:%H:%M}-{window.end:%H:%M} {zone.key}"
    if window.action == "drop":
        return SendDecision("drop", f"quiet hours {span}")
    return SendDecision("defer", f"quiet hours {span}", ends)


def _count(cap: Cap, now: datetime, sends: Sequence[tuple[datetime, str]]) -> int:
    since = now - cap.per
    return sum(1 for at, channel in sends if at > since and channel in cap.channels)


def _cap_reason(cap: Cap) -> str:
    channels = ", ".join(sorted(cap.channels))
    return f"cap of {cap.max} {channels} per {format_duration(cap.per)} reached"
