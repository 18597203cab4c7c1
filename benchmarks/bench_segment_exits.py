"""Time-based segment exits (SQLite): many profiles leaving a ``days_since`` segment in the
same minute, and how long after its moment each exit is recorded (the timer lag of
profile clocks).

Two shapes of the same 100,000 profiles. *In the same minute*: the profiles opened the app
at instants spread evenly over one minute, so each leaves ``active: days_since("app_opened")
< 30`` at its own instant of that minute 30 days later; the lag of each exit is from its
instant to the ``at`` of its ``segment_exited`` step record (the engine's clock when it ran;
its commit follows within the group commit), and the figure is their p99. *At once*: every
profile opened the app at the same instant ``T0``, and the figure is the time from
``T0 + 30d`` to the last exit committed: a burst 60 times as dense as the minute.

The profiles are made through the :class:`~journeyman.runtime.processor.Processor` and
:class:`SQLiteStore` (the rows the server would write), then a
:class:`~journeyman.runtime.service.Runtime` (what ``journeyman serve`` runs: timer loop,
processor, group commits) starts on the file with its clock set a few seconds before the
first exit's moment. The last exit is the moment the segment's member rows are all gone,
read by another connection every 50 ms.

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
LEAD = 5.0  # seconds between the runtime's start and the first moment one leaves
SPREAD = timedelta(minutes=1)  # "in the same minute"

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


async def _make_profiles(
    path: Path, workspace: Workspace, count: int, opened: datetime, spread: timedelta
) -> None:
    """``count`` profiles that opened the app at instants spread evenly over ``spread``
    from ``opened`` (all at ``opened`` when it is zero): profile ``n`` at :func:`_opened`."""
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
                    timestamp=_opened(opened, spread, n, count),
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


def _opened(first: datetime, spread: timedelta, n: int, count: int) -> datetime:
    return first + spread * n / count


def _members(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT count(*) FROM segment_members WHERE segment = 'active'").fetchone()
    return int(row[0])


async def _measure_exits(
    folder: Path, path: Path, workspace: Workspace, count: int, leave: datetime
) -> float:
    """Seconds from ``leave`` (the first exit's moment) until no profile is left in the
    segment."""
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


def _exit_lags(path: Path, opened: datetime, spread: timedelta, count: int) -> list[float]:
    """Each exit's lag in seconds: its step record's time less its profile's moment."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT profile_id, at FROM steps WHERE outcome = 'segment_exited' AND detail = ?",
            ("active",),
        ).fetchall()
    finally:
        db.close()
    month = timedelta(days=30)
    lags = []
    for profile_id, at in rows:
        due = _opened(opened, spread, int(profile_id[1:]), count) + month
        lags.append(at / 1000 - due.timestamp())
    return sorted(lags)


def measure(count: int = COUNT, spread: timedelta = SPREAD) -> tuple[float, float, float]:
    """(p99 of the exits' lags, seconds from the first moment to the last exit recorded,
    cores busy meanwhile) for ``count`` profiles leaving over ``spread``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder, path = Path(tmp) / "ws", Path(tmp) / "bench.db"
        workspace = _workspace(folder)
        opened = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
        asyncio.run(_make_profiles(path, workspace, count, opened, spread))
        wait_until_quiet()
        busy, began = busy_seconds(), time.monotonic()
        leave = opened + timedelta(30)
        last = asyncio.run(_measure_exits(folder, path, workspace, count, leave))
        others = (busy_seconds() - busy) / (time.monotonic() - began)
        lags = _exit_lags(path, opened, spread, count)
        assert len(lags) == count, f"{len(lags)} exits recorded of {count}"
        return lags[int(0.99 * (count - 1))], last, others


@functools.cache
def _measured() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    return measure(), measure(spread=timedelta(0))


def run() -> list[Row]:
    (p99, last, busy), (_, burst, burst_busy) = _measured()
    minute = (
        f"SQLite, one Runtime as serve runs it; the profiles' clocks due at instants spread "
        f"evenly over one minute (days_since(...) < 30 turning false for each): p99 of each "
        f"exit's lag from its instant to its segment_exited record; the last exit "
        f"{last - SPREAD.total_seconds():.2f} s after the minute's end; the machine was "
        f"{busy:.1f} cores busy meanwhile (ours included)"
    )
    at_once = (
        "SQLite, one Runtime as serve runs it; every profile's clock due at the same instant: "
        f"from that instant to the last segment exit committed, about {COUNT / burst:,.0f} "
        f"exits a second; the machine was {burst_busy:.1f} cores busy meanwhile (ours included)"
    )
    return [
        (f"{COUNT:,} profiles leaving a days_since segment in one minute: lag p99", p99, minute),
        (f"{COUNT:,} profiles leaving a days_since segment at once: last exit", burst, at_once),
    ]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else COUNT
    for name, spread in (("in the same minute", SPREAD), ("at once", timedelta(0))):
        p99, last, busy = measure(count, spread)
        print(
            f"{count:,} profiles leaving {name}: exit lag p99 {p99:.2f} s, last exit "
            f"{last:.2f} s after the first moment ({busy:.1f} cores busy meanwhile; {describe()})"
        )
