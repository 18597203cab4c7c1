"""Time-based segment exits (SQLite): many profiles leaving a ``days_since`` segment in the
same minute, and how long after that moment the last exit is recorded (the timer lag of
profile clocks).

Every profile opened the app at the same instant ``T0``; the segment
``active: days_since("app_opened") < 30`` holds them all, and each profile's clock is set
for ``T0 + 30d``, when it leaves. The profiles are made through the
:class:`~journeyman.runtime.processor.Processor` and :class:`SQLiteStore` (the rows the
server would write), then a :class:`~journeyman.runtime.service.Runtime` (what
``journeyman serve`` runs: timer loop, processor, group commits) starts on the file with
its clock set a few seconds before ``T0 + 30d``. The lag is from that moment to the last
``segment_exited`` step record committed (the segment's member rows all gone), read by
another connection every 50 ms.

Run alone with ``python benchmarks/bench_segment_exits.py [COUNT]`` (default 100,000), or
``make bench-segment-exits``; ``make bench`` runs it with the others.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from journeyman import load_workspace
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event
from journeyman.runtime.processor import Processor
from journeyman.runtime.service import Runtime, build_channels
from journeyman.storage.sqlite import SQLiteStore
from machine import busy_seconds, describe, wait_until_quiet

Row = tuple[str, float, str]
COUNT = 100_000
CHUNK = 10_000  # events per transaction while the profiles are made
LEAD = 5.0  # seconds between the runtime's start and the moment they all leave

WORKSPACE = """
kind: event
name: app_opened
identity: userId
schema: {type: object}
---
kind: segment
name: active
when: days_since("app_opened") < 30
"""


def _workspace(folder: Path) -> Workspace:
    folder.mkdir(exist_ok=True)
    (folder / "workspace.yaml").write_text(WORKSPACE)
    loaded = load_workspace(folder)
    assert loaded.workspace is not None, loaded.errors
    return loaded.workspace


async def _make_profiles(path: Path, workspace: Workspace, count: int, opened: datetime) -> None:
    store = SQLiteStore(path, synchronous="OFF")
    await store.open()
    processor = Processor(store, workspace, max_batch=CHUNK, max_queue=2 * CHUNK)
    runner = asyncio.create_task(processor.run())
    try:
        for first in range(0, count, CHUNK):
            events = [
                Event(
                    name="app_opened",
                    profile_id=f"p{n:07d}",
                    timestamp=opened,
                    properties={},
                    message_id=f"open-{n}",
                    user_id=f"p{n:07d}",
                )
                for n in range(first, min(count, first + CHUNK))
            ]
            await processor.submit(events)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await processor.drain()
        await store.close()


def _members(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT count(*) FROM segment_members WHERE segment = 'active'").fetchone()
    return int(row[0])


async def _measure_exits(
    folder: Path, path: Path, workspace: Workspace, count: int, leave: datetime
) -> float:
    """Seconds from ``leave`` until no profile is left in the segment."""
    channels = build_channels(workspace, {}, root=folder, fallback_dir=folder)
    started = time.monotonic()
    # The runtime's clock reaches ``leave`` LEAD seconds after this start.
    offset = leave - datetime.now(UTC) - timedelta(seconds=LEAD)
    runtime = Runtime(
        workspace,
        SQLiteStore(path),
        channels,
        env={},
        root=folder,
        clock=lambda: datetime.now(UTC) + offset,
    )
    await runtime.start()
    db = sqlite3.connect(path)
    try:
        assert _members(db) == count, "every profile is in the segment before the moment"
        moment = started + LEAD
        while _members(db):
            await asyncio.sleep(0.05)
        return time.monotonic() - moment
    finally:
        db.close()
        await runtime.stop()


def measure(count: int = COUNT) -> tuple[float, float]:
    """(seconds from the moment to the last exit recorded, cores others used meanwhile)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder, path = Path(tmp) / "ws", Path(tmp) / "bench.db"
        workspace = _workspace(folder)
        opened = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
        asyncio.run(_make_profiles(path, workspace, count, opened))
        wait_until_quiet()
        busy, began = busy_seconds(), time.monotonic()
        lag = asyncio.run(_measure_exits(folder, path, workspace, count, opened + timedelta(30)))
        others = (busy_seconds() - busy) / (time.monotonic() - began)
        return lag, others


@functools.cache
def _measured() -> tuple[float, float]:
    return measure()


def run() -> list[Row]:
    lag, busy = _measured()
    note = (
        "SQLite, one Runtime as serve runs it; every profile's clock due at the same instant "
        f"(days_since(...) < 30 turning false): from that instant to the last segment exit "
        f"committed; the machine was {busy:.1f} cores busy meanwhile (ours included)"
    )
    return [(f"{COUNT:,} profiles leaving a days_since segment at once: timer lag", lag, note)]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else COUNT
    lag, busy = measure(count)
    print(
        f"{count:,} profiles left the segment {lag:.2f} s after the moment "
        f"({busy:.1f} cores busy meanwhile; {describe()})"
    )
