"""Long work kept as rows with a lease: scheduled runs and segment backfills.

One process works such a row at a time. It claims a row whose lease has passed (on
PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so two processes never claim the same one);
each page of work it saves moves the row's cursor and count and renews the lease, only
while the lease is still its own; and it finishes the row the same way. A process killed
midway leaves its lease to lapse, and whoever claims the row next goes on from the cursor.

:class:`SQLLeases` writes these three statements once, for any such table, on the
primitives of :class:`~journeyman.storage.sql.SQLDatabase`. A table has the columns
``id``, ``state`` (``running`` while there is work), ``cursor``, ``updated_at``, ``owner``
and ``leased_until``, and a count of what was done.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from journeyman.storage.codec import ms

__all__ = ["SQLLeases"]


class SQLLeases:
    """Claim, progress and finish of leased rows; ``skip_locked`` is what PostgreSQL adds
    to a claim."""

    skip_locked = ""

    async def _rows(self, query: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _value(self, query: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _write(self, query: str, *args: Any) -> Any:
        raise NotImplementedError

    def _sql(self, query: str) -> str:
        return str(self.dialect(query))  # type: ignore[attr-defined]

    async def _claim_lease(
        self, table: str, order: str, owner: str, now: datetime, until: datetime, *where: Any
    ) -> str | None:
        """Lease the first running row of ``table`` (by ``order``) whose lease has passed
        to ``owner`` until ``until``; its id, or None. ``where`` is one more condition and
        its argument, such as ``("started_at <= ?", ms(ready))``."""
        more, args = (f"{where[0]} AND ", where[1:]) if where else ("", ())
        free = (
            f"SELECT id FROM {table} WHERE state = 'running' AND {more}"
            f"(leased_until IS NULL OR leased_until <= ?) ORDER BY {order} LIMIT 1"
            f"{self.skip_locked}"
        )
        query = f"UPDATE {table} SET owner = ?, leased_until = ? WHERE id = ({free}) RETURNING id"
        found = await self._write(self._sql(query), owner, ms(until), *args, ms(now))
        return None if found is None else str(found)

    async def _lease_progress(
        self,
        table: str,
        count: str,
        row_id: str,
        owner: str,
        cursor: str,
        done: int,
        now: datetime,
        until: datetime,
    ) -> bool:
        """Save a page's ``cursor`` and ``done`` (in the column ``count``) and renew the
        lease; False when the row is no longer ``owner``'s or no longer running."""
        query = (
            f"UPDATE {table} SET cursor = ?, {count} = ?, updated_at = ?, leased_until = ? "
            "WHERE id = ? AND owner = ? AND state = 'running' RETURNING id"
        )
        args = (cursor, done, ms(now), ms(until), row_id, owner)
        return await self._write(self._sql(query), *args) is not None

    async def _lease_done(self, table: str, row_id: str, owner: str, now: datetime) -> None:
        """Mark ``owner``'s running row done."""
        query = (
            f"UPDATE {table} SET state = 'done', updated_at = ?, leased_until = NULL "
            "WHERE id = ? AND owner = ? AND state = 'running'"
        )
        await self._write(self._sql(query), ms(now), row_id, owner)
