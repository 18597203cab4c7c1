"""The Report tab's charts, drawn on the server as SVG: no script, no library, no CDN.

Each function takes the report's data (:func:`journeyman.report.journey_report`) and
returns one ``<svg>`` element as text, with every name and label escaped: a journey's
arms, steps and goals are written by people and shown to others. The pictures scale to
their box (``viewBox``, width 100%), so the same one serves a wide screen and a phone;
each has a ``<title>`` and an ``aria-label`` saying what it shows.

- :func:`conversion_chart`: the cumulative conversion rate by day of entry, one line
  per arm, each with its 95% interval as a band;
- :func:`funnel_chart`: entries, then how many instances reached each step;
- :func:`time_chart`: time to convert per goal, median and 90th percentile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from html import escape
from typing import Any

from journeyman.domain.times import format_duration

__all__ = ["COLOURS", "colour", "conversion_chart", "funnel_chart", "time_chart"]

# Told apart by people with the common colour blindnesses (Okabe and Ito's palette); the
# holdout is always grey.
COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#f0e442")
HOLDOUT_COLOUR = "#6b7280"
WIDTH, HEIGHT = 440, 260
LEFT, RIGHT, TOP, BOTTOM = 66, 12, 14, 46


def colour(index: int, holdout: bool) -> str:
    """The colour of the ``index``-th series; grey for a holdout."""
    return HOLDOUT_COLOUR if holdout else COLOURS[index % len(COLOURS)]


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _svg(label: str, body: list[str], height: int = HEIGHT, kind: str = "") -> str:
    return (
        f'<svg class="chart" data-chart="{_e(kind)}" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="img" aria-label="{_e(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">'
        f"<title>{_e(label)}</title>{''.join(body)}</svg>"
    )


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%" if value >= 0.1 or value == 0 else f"{value * 100:.1f}%"


def _ceiling(value: float) -> float:
    """A round top for a rate axis at or above ``value``."""
    for top in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1.0):
        if value <= top:
            return top
    return 1.0


def conversion_chart(
    goal: str,
    series: Sequence[Mapping[str, Any]],
    holdouts: Sequence[str] = (),
    zone: str = "UTC",
) -> str:
    """Goal ``goal``'s cumulative conversion rate over days of entry (days in ``zone``,
    named on the axis): per series (an arm) a line, and its 95% interval as a band behind
    it."""
    label = f"Conversion to {goal} over time, by arm, with the 95% interval"
    days = [p["day"] for p in series[0]["points"]] if series else []
    if not days:
        return _svg(label, [_empty("No entries in this range yet")], kind="conversion")
    highs = [p["high"] for s in series for p in s["points"] if p["high"] is not None]
    top = _ceiling(max(highs, default=0.0) or 0.01)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return LEFT + (plot_w * index / (len(days) - 1) if len(days) > 1 else plot_w / 2)

    def y(rate: float) -> float:
        return TOP + plot_h * (1 - min(rate, top) / top)

    body = _rate_axis(top, y) + _day_axis(days, x)
    for index, one in enumerate(series):
        held = one["name"] in holdouts
        body += _series(one, colour(index, held), x, y, held)
    body.append(
        f'<text class="axis-title" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" '
        f'text-anchor="middle">Day of entry ({_e(zone)})</text>'
        f'<text class="axis-title" transform="translate(14 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">Converted to {_e(goal)}</text>'
    )
    return _svg(label, body, kind="conversion")


def _rate_axis(top: float, y: Any) -> list[str]:
    parts = []
    for step in range(5):
        rate = top * step / 4
        at = y(rate)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{at:.1f}" y2="{at:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{at + 4:.1f}" text-anchor="end">'
            f"{_percent(rate)}</text>"
        )
    return parts


def _day_axis(days: Sequence[str], x: Any) -> list[str]:
    picks = sorted({0, len(days) // 2, len(days) - 1})
    anchors = {0: "start", len(days) - 1: "end"} if len(days) > 1 else {0: "middle"}
    return [
        f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" '
        f'text-anchor="{anchors.get(i, "middle")}">{_e(days[i][5:])}</text>'
        for i in picks
    ]


def _series(one: Mapping[str, Any], paint: str, x: Any, y: Any, held: bool) -> list[str]:
    known = [(i, p) for i, p in enumerate(one["points"]) if p["rate"] is not None]
    if not known:
        return []
    name = _e(one["name"])
    # One day alone is a point: its band is drawn as a short bar across it.
    spread = [(-8.0, 0), (8.0, 0)] if len(known) == 1 else [(0.0, 0)]
    upper = [f"{x(i) + d:.1f},{y(p['high']):.1f}" for i, p in known for d, _ in spread]
    lower = [f"{x(i) - d:.1f},{y(p['low']):.1f}" for i, p in reversed(known) for d, _ in spread]
    line = " ".join(f"{x(i):.1f},{y(p['rate']):.1f}" for i, p in known)
    dash = ' stroke-dasharray="5 3"' if held else ""
    last_i, last = known[-1]
    return [
        f'<g class="series" data-arm="{name}"><title>{name}: {_percent(last["rate"])} '
        f"of {last['cumulative_entries']} ({_percent(last['low'])} to "
        f"{_percent(last['high'])})</title>",
        f'<polygon class="band" data-band="{name}" points="{" ".join(upper + lower)}" '
        f'fill="{paint}" fill-opacity="0.16" stroke="none"/>',
        f'<polyline class="line" points="{line}" fill="none" stroke="{paint}" '
        f'stroke-width="2.5"{dash}/>',
        f'<circle cx="{x(last_i):.1f}" cy="{y(last["rate"]):.1f}" r="3.5" fill="{paint}"/></g>',
    ]


def _empty(text: str, height: int = HEIGHT) -> str:
    return (
        f'<text class="empty" x="{WIDTH / 2}" y="{height / 2}" text-anchor="middle">'
        f"{_e(text)}</text>"
    )


def funnel_chart(entries: int, steps: Sequence[Mapping[str, Any]]) -> str:
    """Entries, then per step how many instances reached it, as bars of their share."""
    rows = [("Entered", entries), *((step["id"], step["reached"]) for step in steps)]
    bar, gap, left = 22, 8, 110
    height = TOP + len(rows) * (bar + gap) + 8
    label = "Funnel: how many instances reached each step"
    if not entries:
        return _svg(label, [_empty("No entries yet", height)], height, "funnel")
    body = []
    usable = WIDTH - left - 100
    for index, (name, n) in enumerate(rows):
        top = TOP + index * (bar + gap)
        share = n / entries if entries else 0.0
        width = max(usable * min(share, 1.0), 1.5)
        shown = name if len(name) <= 14 else name[:13] + "…"
        body.append(
            f'<g class="stage" data-step="{_e(name)}"><title>{_e(name)}: {n:,} '
            f"({_percent(share)} of entries)</title>"
            f'<text class="tick" x="{left - 8}" y="{top + bar * 0.7:.1f}" text-anchor="end">'
            f"{_e(shown)}</text>"
            f'<rect x="{left}" y="{top}" width="{width:.1f}" height="{bar}" rx="3" '
            f'fill="{COLOURS[0]}" fill-opacity="{0.95 - 0.5 * index / len(rows):.2f}"/>'
            f'<text class="value" x="{left + width + 6:.1f}" y="{top + bar * 0.7:.1f}">'
            f"{n:,} · {_percent(share)}</text></g>"
        )
    return _svg(label, body, height, "funnel")


def time_chart(goals: Sequence[Mapping[str, Any]]) -> str:
    """Per goal, the median and the 90th percentile of the time from entry to the goal."""
    label = "Time to convert per goal: median and 90th percentile"
    bar, left = 16, 110
    height = TOP + max(len(goals), 1) * (2 * bar + 18) + 30
    timed = [g for g in goals if g["time_to_convert"]["p90_seconds"] is not None]
    if not timed:
        return _svg(label, [_empty("No conversions yet", height)], height, "time")
    longest = max(g["time_to_convert"]["p90_seconds"] for g in timed) or 1.0
    usable = WIDTH - left - 90
    body = []
    for index, goal in enumerate(goals):
        top = TOP + index * (2 * bar + 18)
        times = goal["time_to_convert"]
        name = goal["name"] if len(goal["name"]) <= 14 else goal["name"][:13] + "…"
        body.append(
            f'<text class="tick" x="{left - 8}" y="{top + bar + 4}" text-anchor="end">'
            f"{_e(name)}</text>"
        )
        for row, (what, key, paint) in enumerate(
            (("median", "median_seconds", COLOURS[0]), ("p90", "p90_seconds", COLOURS[1]))
        ):
            seconds = times[key]
            if seconds is None:
                continue
            width = max(usable * seconds / longest, 1.5)
            at = top + row * bar
            body.append(
                f'<rect x="{left}" y="{at}" width="{width:.1f}" height="{bar - 3}" '
                f'fill="{paint}"><title>{_e(goal["name"])} {what}: '
                f"{_duration(seconds)}</title></rect>"
                f'<text class="value" x="{left + width + 6:.1f}" y="{at + bar - 5}">'
                f"{what} {_duration(seconds)}</text>"
            )
    axis_y = height - 8
    body.append(
        f'<text class="axis-title" x="{left + usable / 2:.1f}" y="{axis_y}" '
        'text-anchor="middle">Time from entry to the goal</text>'
    )
    return _svg(label, body, height, "time")


def _duration(seconds: float) -> str:
    """A duration rounded to what a reader needs: seconds, minutes, hours or days."""
    if seconds < 1:
        return "under 1s"
    for unit in (86400, 3600, 60, 1):
        if seconds >= unit:
            rounded = unit * math.floor(seconds / unit + 0.5)
            return format_duration(timedelta(seconds=rounded))
    return format_duration(timedelta(seconds=seconds))
