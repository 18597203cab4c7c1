"""A scheduled run over many profiles (SQLite), unthrottled: profiles entered per second
and the process's RSS while the run goes (flat: the audience is paged, never held whole).

The profiles are written straight into the store's tables (fast); then a
:class:`~journeyman.runtime.service.Runtime` (what ``journeyman serve`` runs) starts on the
file with a journey ``entry: {schedule: {at: ...}, rate: 1e9}`` and its scheduler enters
every profile, through the processor and its group commits, as in production.

Run alone with ``python benchmarks/bench_schedules.py [COUNT]`` (default 1,000,000).
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
from journeyman.domain.state import Profile
from journeyman.runtime.service import Runtime, build_channels
from journeyman.storage.codec import encode
from journeyman.storage.runs import RunStore
from journeyman.storage.sqlite import SQLiteStore

Row = tuple[str, float, str]
COUNT = 1_000_000

JOURNEY = """
kind: journey
name: everyone
reentry: always
entry:
  schedule: {{at: "{at}", timezone: UTC, rate: 1000000000}}
steps:
  - id: done
    end: completed
"""


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _make_profiles(path: Path, count: int) -> None:
    store = SQLiteStore(path, synchronous="OFF")
    await store.open()  # the schema
    await store.close()
    db = sqlite3.connect(path)
    now = int(time.time() * 1000)
    chunk = 50_000
    for start in range(0, count, chunk):
        rows = [
            (f"p{n:07d}", encode(Profile(id=f"p{n:07d}")), now)
            for n in range(start, min(count, start + chunk))
        ]
        db.executemany("INSERT INTO profiles (id, state, updated_at) VALUES (?, ?, ?)", rows)
        db.commit()
    db.close()


async def _run(folder: Path, path: Path, count: int) -> tuple[float, float, float]:
    """(profiles entered a second, RSS when a tenth was entered, peak RSS) in MB."""
    loaded = load_workspace(folder)
    assert loaded.workspace is not None, loaded.errors
    workspace = loaded.workspace
    channels = build_channels(workspace, {}, root=folder, fallback_dir=folder)
    store = SQLiteStore(path)
    runtime = Runtime(workspace, store, channels, env={}, root=folder, idle=0.2)
    await runtime.start()
    try:
        assert isinstance(store, RunStore)
        started, tenth, peak = None, 0.0, 0.0
        while True:
            runs = await store.runs_of("everyone", 1)
            peak = max(peak, _rss_mb())
            if runs and started is None:
                started = time.monotonic()
            if runs and not tenth and runs[0].entered >= count // 10:
                tenth = _rss_mb()
            if runs and runs[0].state == "done":
                assert runs[0].entered == count, runs[0]
                return count / (time.monotonic() - (started or 0)), tenth, peak
            await asyncio.sleep(0.25)
    finally:
        await runtime.stop()


def measure(count: int = COUNT) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder, path = Path(tmp) / "ws", Path(tmp) / "bench.db"
        folder.mkdir()
        asyncio.run(_make_profiles(path, count))
        # after the profiles are made: a moment that passed before the server read it is
        # never run
        at = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S")
        (folder / "journey.yaml").write_text(JOURNEY.format(at=at))
        return asyncio.run(_run(folder, path, count))


@functools.cache
def _measured() -> tuple[float, float, float]:
    return measure()


def run() -> list[Row]:
    rate, _, _ = _measured()
    note = "SQLite, rate 1e9, a profile entering a journey that ends at once, from the run's start"
    return [(f"scheduled run over {COUNT:,} profiles, unthrottled", rate, note)]


def memory() -> list[Row]:
    _, tenth, peak = _measured()
    note = f"of the server's process (profiles made first); {tenth:.0f} MB a tenth of the way in"
    return [(f"scheduled run over {COUNT:,} profiles, peak RSS", peak, note)]


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else COUNT
    rate, tenth, peak = measure(count)
    print(
        f"{count:,} profiles: {rate:,.0f} profiles/s; "
        f"RSS at 10%: {tenth:.0f} MB, peak {peak:.0f} MB"
    )
