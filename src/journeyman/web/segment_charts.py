"""A segment's size over time, drawn on the server as SVG: no script, no library, no CDN.

:func:`size_chart` takes the series of :func:`journeyman.web.segments_view.size_series`
(the size at the start of the window, then the size at the end of each hour that had an
entry or an exit) and draws it as a step line from the start of the window to now, with
the size axis on the left and the days below. The picture scales to its box (``viewBox``,
width 100%) and has a ``<title>`` and an ``aria-label`` saying what it shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from journeyman.web.report_charts import COLOURS

__all__ = ["size_chart"]

WIDTH, HEIGHT = 440, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 14, 44


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _top(value: int) -> int:
    """A round top for the size axis at or above ``value`` (at least 4)."""
    top = 4
    while top < value:
        for factor in (2, 2.5, 2):
            top = int(top * factor)
            if top >= value:
                break
    return top


def size_chart(segment: str, since: datetime, now: datetime, series: Mapping[str, Any]) -> str:
    """The segment's size from ``since`` to ``now``: ``series`` holds ``start`` (the size
    at ``since``) and ``points``, each an hour's ``at`` (its end) and ``size`` then."""
    label = f"Size of segment {segment} over time"
    points: Sequence[Mapping[str, Any]] = series["points"]
    steps = [(since, int(series["start"]))]
    steps += [(datetime.fromisoformat(p["at"]), int(p["size"])) for p in points]
    steps.append((now, int(series["size"])))
    top = _top(max(size for _, size in steps))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max((now - since).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        share = min(max((at - since).total_seconds() / span, 0.0), 1.0)
        return LEFT + plot_w * share

    def y(size: int) -> float:
        return TOP + plot_h * (1 - size / top)

    body = _size_axis(top, y) + _time_axis(since, now, x)
    line: list[str] = []
    for index, (at, size) in enumerate(steps):
        if index:
            line.append(f"{x(at):.1f},{y(steps[index - 1][1]):.1f}")  # flat until it changed
        line.append(f"{x(at):.1f},{y(size):.1f}")
    last = steps[-1][1]
    body.append(
        f'<g class="series" data-segment="{_e(segment)}"><title>{_e(segment)}: '
        f"{last:,} now</title>"
        f'<polyline class="line" points="{" ".join(line)}" fill="none" stroke="{COLOURS[0]}" '
        'stroke-width="2.5" stroke-linejoin="round"/>'
        f'<circle cx="{x(now):.1f}" cy="{y(last):.1f}" r="3.5" fill="{COLOURS[0]}"/></g>'
    )
    body.append(
        f'<text class="axis-title" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" '
        'text-anchor="middle" font-size="12" font-weight="600">Time (UTC)</text>'
        f'<text class="axis-title" transform="translate(14 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle" font-size="12" font-weight="600">Members</text>'
    )
    return (
        f'<svg class="chart" data-chart="segment-size" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="{_e(label)}" '
        'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">'
        f"<title>{_e(label)}</title>{''.join(body)}</svg>"
    )


def _size_axis(top: int, y: Any) -> list[str]:
    parts = []
    for step in range(5):
        size = top * step // 4
        at = y(size)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{at:.1f}" y2="{at:.1f}" '
            'stroke="#e5e7eb"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{at + 4:.1f}" text-anchor="end" '
            f'font-size="12">{size:,}</text>'
        )
    return parts


def _time_axis(since: datetime, now: datetime, x: Any) -> list[str]:
    middle = since + (now - since) / 2
    ticks = ((since, "start"), (middle, "middle"), (now, "end"))
    return [
        f'<text class="tick" x="{x(at):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="{anchor}" '
        f'font-size="12">{at:%m-%d %H:%M}</text>'
        for at, anchor in ticks
    ]
