"""Drafts of journeys and templates in the database: one per journey or template, with
who saved it, when, and a revision. A journey's draft is kept under its name, a
template's under ``template:<name>`` (no journey's name has a colon).

A draft is the journey's document as the editor last saved it (JSON), the workspace
file it belongs in, who saved it and when. Each save gives it a new ``revision``, a
random token: a save names the revision it started from, and is written only if that is
still the draft's revision (no draft: ``None``), in one statement, so of two people who
opened the same revision the second is refused rather than overwriting the first.

:class:`DraftStore` is a port of its own; :class:`SQLDrafts` writes it once for both SQL
backends, on the primitives of :class:`~journeyman.storage.sql.SQLDatabase`, and
:class:`MemoryDrafts` keeps drafts in the memory store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from journeyman.storage.codec import ms, time

__all__ = [
    "DRAFTS_POSTGRES",
    "DRAFTS_SQLITE",
    "DraftStore",
    "MemoryDrafts",
    "SQLDrafts",
    "StoredDraft",
]

DRAFTS_SQLITE = """
CREATE TABLE IF NOT EXISTS drafts (
    journey TEXT PRIMARY KEY, revision TEXT NOT NULL, actor TEXT NOT NULL,
    at INTEGER NOT NULL, file TEXT NOT NULL, document TEXT NOT NULL);
"""
DRAFTS_POSTGRES = """
CREATE TABLE drafts (
    journey TEXT COLLATE "C" PRIMARY KEY, revision TEXT NOT NULL, actor TEXT NOT NULL,
    at BIGINT NOT NULL, file TEXT NOT NULL, document TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StoredDraft:
    journey: str  # the journey's name, or template:<name> for a template's draft
    revision: str
    by: str
    at: datetime
    file: str  # the workspace file it is saved to, relative to the folder
    document: dict[str, Any]


def _row(draft: StoredDraft) -> tuple[Any, ...]:
    document = msgspec.json.encode(draft.document).decode()
    return (draft.journey, draft.revision, draft.by, ms(draft.at), draft.file, document)


def _draft(row: Any) -> StoredDraft:
    document = msgspec.json.decode(row[5])
    return StoredDraft(str(row[0]), str(row[1]), str(row[2]), time(row[3]), str(row[4]), document)


class DraftStore(ABC):
    """What the editor needs of the database."""

    @abstractmethod
    async def draft(self, journey: str) -> StoredDraft | None: ...

    @abstractmethod
    async def save_draft(self, draft: StoredDraft, revision: str | None) -> bool:
        """Store ``draft`` if the journey's stored draft is at ``revision`` (None: it has
        none); False, storing nothing, when it is not."""

    @abstractmethod
    async def discard_draft(self, journey: str, revision: str | None = None) -> bool:
        """Remove the journey's draft (only at ``revision``, if given); False if there was
        no such draft."""


_COLUMNS = "journey, revision, actor, at, file, document"


class SQLDrafts(DraftStore):
    """:class:`DraftStore` on the primitives of an SQL backend (``_rows``, ``_write``)."""

    async def _rows(self, query: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _write(self, query: str, *args: Any) -> Any:
        raise NotImplementedError

    def _sql(self, query: str) -> str:
        return str(self.dialect(query))  # type: ignore[attr-defined]

    async def draft(self, journey: str) -> StoredDraft | None:
        query = self._sql(f"SELECT {_COLUMNS} FROM drafts WHERE journey = ?")
        rows = await self._rows(query, journey)
        return _draft(rows[0]) if rows else None

    async def save_draft(self, draft: StoredDraft, revision: str | None) -> bool:
        row = _row(draft)
        if revision is None:
            query = (
                f"INSERT INTO drafts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (journey) DO NOTHING RETURNING journey"
            )
            return await self._write(self._sql(query), *row) is not None
        query = (
            "UPDATE drafts SET revision = ?, actor = ?, at = ?, file = ?, document = ? "
            "WHERE journey = ? AND revision = ? RETURNING journey"
        )
        return await self._write(self._sql(query), *row[1:], row[0], revision) is not None

    async def discard_draft(self, journey: str, revision: str | None = None) -> bool:
        if revision is None:
            query = "DELETE FROM drafts WHERE journey = ? RETURNING journey"
            return await self._write(self._sql(query), journey) is not None
        query = "DELETE FROM drafts WHERE journey = ? AND revision = ? RETURNING journey"
        return await self._write(self._sql(query), journey, revision) is not None


class MemoryDrafts(DraftStore):
    """:class:`DraftStore` in this process's memory, encoded as the SQL backends' rows."""

    def _drafts(self) -> dict[str, tuple[Any, ...]]:
        raise NotImplementedError

    async def draft(self, journey: str) -> StoredDraft | None:
        row = self._drafts().get(journey)
        return _draft(row) if row is not None else None

    async def save_draft(self, draft: StoredDraft, revision: str | None) -> bool:
        drafts = self._drafts()
        stored = drafts.get(draft.journey)
        if (stored[1] if stored is not None else None) != revision:
            return False
        drafts[draft.journey] = _row(draft)
        return True

    async def discard_draft(self, journey: str, revision: str | None = None) -> bool:
        drafts = self._drafts()
        stored = drafts.get(journey)
        if stored is None or (revision is not None and stored[1] != revision):
            return False
        del drafts[journey]
        return True
