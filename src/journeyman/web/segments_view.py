"""What the console's Segments pages show (and their JSON twins): each segment with its
definition and size, and one segment's members and recent entries and exits."""

from __future__ import annotations

from typing import Any

from journeyman.domain.model import Segment
from journeyman.runtime.service import Runtime

__all__ = ["CHANGES_SHOWN", "MEMBERS_SHOWN", "segment_page", "segments_page"]

CHANGES_SHOWN = 50  # recent entries and exits on a segment's page
MEMBERS_SHOWN = 50  # members on a segment's page (the API pages through all of them)


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


async def segment_page(runtime: Runtime, name: str) -> dict[str, Any] | None:
    """One segment: its definition and size, its first members, its recent changes."""
    segment = runtime.workspace.segments.get(name)
    if segment is None:
        return None
    reads = runtime.reads
    sizes = await reads.segment_sizes()
    members = await reads.segment_members(name, "", MEMBERS_SHOWN)
    changes = await reads.segment_changes(name, CHANGES_SHOWN)
    return {
        **_definition(segment, sizes.get(name, 0)),
        "members": [{"profile_id": pid, "since": since} for pid, since in members],
        "changes": [
            {"at": r.at, "profile_id": r.profile_id, "outcome": r.outcome} for r in changes
        ],
    }
