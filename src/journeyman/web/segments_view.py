"""What the console's Segments pages show (and their JSON twins): each segment with its
definition and size, and one segment's size over time, backfills, members and recent
entries and exits.

A segment's size over time comes from the entries and exits counted per UTC hour in the
commits that make them (``segment_sizes``, see :mod:`journeyman.storage.backfills`),
worked back from the size now (:func:`size_series`): the counts of the hours after a point
are taken off the size now, so the line always ends on the members the store holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from journeyman.domain.model import Segment
from journeyman.runtime.service import Runtime
from journeyman.storage.backfills import BackfillStore, SizeBucket
from journeyman.web.segment_charts import size_chart

__all__ = [
    "BACKFILLS_SHOWN",
    "CHANGES_SHOWN",
    "MEMBERS_SHOWN",
    "SIZE_DAYS",
    "segment_detail",
    "segment_page",
    "segments_page",
    "size_chart_of",
    "size_series",
]

CHANGES_SHOWN = 50  # recent entries and exits on a segment's page
MEMBERS_SHOWN = 50  # members on a segment's page (the API pages through all of them)
BACKFILLS_SHOWN = 5  # the latest backfills a segment shows
SIZE_DAYS = 30  # how far back the size over time goes
_HOUR = timedelta(hours=1)


def size_series(size: int, buckets: Sequence[SizeBucket]) -> dict[str, Any]:
    """The size at the start of the buckets' window (``start``) and at the end of each
    hour that had an entry or an exit (``points``: ``at``, ``size``, ``entered``,
    ``exited``), worked back from ``size``, the size now. A size is never below 0 (a
    member who joined before sizes were counted is counted from the start)."""
    points: list[dict[str, Any]] = []
    after = size
    for bucket in reversed(buckets):
        points.append(
            {
                "at": (bucket.hour + _HOUR).isoformat(),
                "size": max(after, 0),
                "entered": bucket.entered,
                "exited": bucket.exited,
            }
        )
        after -= bucket.entered - bucket.exited
    points.reverse()
    return {"size": size, "start": max(after, 0), "points": points}


def _definition(segment: Segment, size: int) -> dict[str, Any]:
    return {
        "name": segment.name,
        "description": segment.description,
        "when": None if segment.listed else segment.when.source,
        "list": segment.listed,
        "size": size,
    }


async def segments_page(runtime: Runtime) -> dict[str, Any]:
    """Every segment of the running workspace, by name, with how many profiles it has."""
    sizes = await runtime.reads.segment_sizes()
    segments = runtime.workspace.segments
    return {
        "segments": [_definition(segments[name], sizes.get(name, 0)) for name in sorted(segments)]
    }


async def segment_detail(runtime: Runtime, name: str) -> dict[str, Any] | None:
    """One segment: its definition and size, its size over the last :data:`SIZE_DAYS`
    days (``sizes``: ``since``, ``until``, and :func:`size_series`), its latest backfill
    (``backfill``: None before any) and the few before it."""
    segment = runtime.workspace.segments.get(name)
    if segment is None:
        return None
    size = (await runtime.reads.segment_sizes()).get(name, 0)
    now = runtime.clock()
    since = (now - timedelta(days=SIZE_DAYS)).replace(minute=0, second=0, microsecond=0)
    store = runtime.store
    backfills, buckets = [], []
    if isinstance(store, BackfillStore):
        backfills = [b.progress() for b in await store.backfills_of(name, BACKFILLS_SHOWN)]
        buckets = await store.size_buckets(name, since)
    return {
        **_definition(segment, size),
        "sizes": {
            "since": since.isoformat(),
            "until": now.isoformat(),
            **size_series(size, buckets),
        },
        "backfill": backfills[0] if backfills else None,
        "backfills": backfills,
    }


async def segment_page(runtime: Runtime, name: str) -> dict[str, Any] | None:
    """One segment as :func:`segment_detail` gives it, its first members, its recent
    changes."""
    detail = await segment_detail(runtime, name)
    if detail is None:
        return None
    reads = runtime.reads
    members = await reads.segment_members(name, "", MEMBERS_SHOWN)
    changes = await reads.segment_changes(name, CHANGES_SHOWN)
    return {
        **detail,
        "members": [{"profile_id": pid, "since": since} for pid, since in members],
        "changes": [
            {"at": r.at, "profile_id": r.profile_id, "outcome": r.outcome} for r in changes
        ],
    }


def size_chart_of(detail: dict[str, Any]) -> Markup:
    """The chart of a segment's size over time (:func:`segment_detail`'s ``sizes``), as
    trusted markup: every name in it is escaped."""
    sizes = detail["sizes"]
    since, until = (datetime.fromisoformat(sizes[key]) for key in ("since", "until"))
    return Markup(size_chart(detail["name"], since, until, sizes))
