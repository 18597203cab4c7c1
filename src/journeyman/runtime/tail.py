"""The live tail of ingest: the most recent calls, accepted or not, and why not.

Accepted events are also in the store, on their profile's history; a rejected call is
kept nowhere else, so this is where "why did my journey not trigger" starts. The tail
is a bounded ring in memory: appending costs next to nothing on the hot path, and the
oldest entries fall out.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from journeyman.domain.state import Event

__all__ = ["EventTail", "TailEntry"]

EXCERPT = 2048  # characters of a rejected call's body that are kept


@dataclass(frozen=True, slots=True)
class TailEntry:
    seq: int  # increases by one per entry: ask for the ones after the last seen
    at: datetime
    status: str  # accepted, duplicate, rejected, or unavailable (429/503: not stored)
    type: str  # track, identify, page, ...; what the call said, when it was rejected
    name: str  # the event name ('identify' for an identify; a rejected page: 'page', ...)
    profile_id: str  # for a rejected call: the userId or anonymousId it gave, if any
    message_id: str | None = None
    properties: dict[str, Any] | None = None  # of an accepted track, traits of an identify
    error: dict[str, str] | None = None  # field, rule and message of a rejection
    index: int | None = None  # the call's position in a /v1/batch body
    body: str | None = None  # an excerpt of a rejected call as sent

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class EventTail:
    """The last ``size`` ingest outcomes, newest last."""

    def __init__(self, size: int = 1000) -> None:
        # An accepted event is kept as it came, and becomes an entry only when read.
        self._entries: deque[TailEntry | tuple[int, datetime, str, Event]] = deque(maxlen=size)
        self._seq = itertools.count(1)

    def accepted(self, events: Sequence[Event], statuses: Sequence[str], at: datetime) -> None:
        append, seq = self._entries.append, self._seq
        for event, status in zip(events, statuses, strict=True):
            append((next(seq), at, status, event))

    def rejected(
        self,
        call: Any,
        error: dict[str, str],
        at: datetime,
        *,
        status: str = "rejected",
        index: int | None = None,
    ) -> None:
        """A call that was not stored: ``call`` is its decoded body, or None if unreadable."""
        fields = call if isinstance(call, dict) else {}
        kind = _text(fields.get("type"))
        named = kind in ("identify", "page", "screen", "alias", "group")
        name = _text(fields.get("event")) or (kind if named else "")
        profile = _text(fields.get("userId")) or _text(fields.get("anonymousId"))
        self._entries.append(
            TailEntry(
                next(self._seq),
                at,
                status,
                kind,
                name,
                profile,
                _text(fields.get("messageId")) or None,
                error=error,
                index=index,
                body=_excerpt(call),
            )
        )

    def entries(
        self,
        *,
        after: int = 0,
        name: str | None = None,
        profile: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[TailEntry]:
        """Matching entries newer than ``after``, newest first."""
        found: list[TailEntry] = []
        for kept in reversed(self._entries):
            entry = _entry(*kept) if isinstance(kept, tuple) else kept
            if entry.seq <= after or len(found) >= limit:
                break
            if name is not None and entry.name != name:
                continue
            if profile is not None and entry.profile_id != profile:
                continue
            if status is not None and entry.status != status:
                continue
            found.append(entry)
        return found


def _entry(seq: int, at: datetime, status: str, event: Event) -> TailEntry:
    return TailEntry(
        seq,
        at,
        status,
        event.type,
        event.name,
        event.profile_id,
        event.message_id,
        event.properties,
    )


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else ""


def _excerpt(call: Any) -> str | None:
    if call is None:
        return None
    try:
        text = msgspec.json.encode(call).decode()
    except (TypeError, ValueError, OverflowError):
        text = repr(call)
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"
