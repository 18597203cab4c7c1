"""What keeping 20 segments up to date costs per event, against no segments.

Two measures, each with the benchmark workspace (``benchmarks/workspace/``: a welcome
journey on ``signed_up``) as it is, and with :data:`SEGMENTS` added: 20 segments that all
read ``signed_up`` (windows, sums, days_since, last, first_seen, in_segment, traits and
local time), so every event evaluates every one of them and sets the profile's clock:

- ``core``: the one core (``journeyman.domain.core.apply``, what serve, worker and journey
  tests run) on batches of sign-ups, in this process: microseconds of CPU per event;
- ``ingest``: ``journeyman serve`` on SQLite, closed-loop ``POST /v1/batch`` of 200 sign-ups
  (as the server batch benchmark), runs with and without segments taking turns.

Run with ``python benchmarks/bench_segments.py`` (``--quick`` for shorter runs).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_server import Closed, Server, settings
from journeyman import load_workspace
from journeyman.domain.core import Known, Snapshot, apply
from journeyman.domain.engine import Engine
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event, Profile

HERE = Path(__file__).parent
WORKSPACE = HERE / "workspace"
Row = tuple[str, float, str]

_WHENS = [
    'count("signed_up", "1d") >= 1',
    'count("signed_up", "7d") >= 2',
    'count("signed_up", "30d") >= 3',
    'count("signed_up", "90d") >= 5',
    'count("signed_up", "365d") >= 10',
    'count("signed_up", "30d") == 1',
    'count("alarm_set", "30d") >= 1',
    'days_since("signed_up") < 7',
    'days_since("signed_up") < 30',
    'days_since("signed_up") >= 60',
    'last("signed_up").properties.plan == "pro"',
    'last("signed_up").properties.plan == "free"',
    'first_seen("signed_up") != null',
    'in_segment("s08") and in_segment("s11")',
    'in_segment("s02") or in_segment("s03")',
    'profile.plan == "pro"',
    'profile.country in ["FR", "DE", "IT"]',
    'count("signed_up", "7d") >= 1 and profile.vip == true',
    "hour(now_local) >= 9 and hour(now_local) < 18",
    "is_anniversary(profile.birthday)",
]
SEGMENTS = "\n---\n".join(
    f"kind: segment\nname: s{n:02}\nwhen: '{when}'" for n, when in enumerate(_WHENS, 1)
)
TRAITS = "---\nkind: settings\ntraits: [plan, country, vip, birthday]\n"


def _folder(with_segments: bool) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="journeyman-bench-segments-"))
    shutil.copytree(WORKSPACE, folder / "workspace")
    if with_segments:
        (folder / "workspace" / "segments.yaml").write_text(SEGMENTS + "\n" + TRAITS)
    return folder


def _load(folder: Path) -> Workspace:
    loaded = load_workspace(folder / "workspace")
    assert loaded.workspace is not None, [str(p) for p in loaded.errors]
    return loaded.workspace


# 1. the one core, in this process


def _core_seconds(
    workspace: Workspace, events: int, batch: int, profiles: int | None = None
) -> float:
    """CPU seconds for ``events`` sign-ups, in batches, through the one core: each of a
    fresh profile, or (``profiles``) of that many profiles in turn, an hour apart, each
    profile keeping what the events before left it."""
    engine = Engine(workspace)
    start = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    kept: dict[str, Snapshot] = {}
    spent = 0.0
    for first in range(0, events, batch):
        numbers = range(first, first + batch)
        uids = [f"u{n % profiles if profiles else n}" for n in numbers]
        now = start + timedelta(hours=first // (profiles or events))
        snapshots = {u: kept.get(u) or Snapshot(Profile(id=u), [], new=True) for u in uids}
        triggers = [
            Event(
                name="signed_up",
                profile_id=u,
                timestamp=now,
                properties={"plan": "pro", "email": f"{u}@example.com"},
                message_id=f"m{n}",
                user_id=u,
            )
            for n, u in zip(numbers, uids, strict=True)
        ]
        began = time.process_time()
        apply(engine, snapshots, triggers, now, Known())
        spent += time.process_time() - began
        if profiles:
            kept.update(snapshots)
    return spent


def core() -> list[Row]:
    """The one core's throughput drop with 20 segments: on fresh profiles (each event a
    new profile, which joins 9 of the segments), and on returning ones (1,000 profiles,
    each event re-evaluating the segments of a profile that is in them already)."""
    quick = settings().quick
    events, rounds = (20_000, 3) if quick else (50_000, 5)
    plain, with_segments = _load(_folder(False)), _load(_folder(True))
    assert len(with_segments.segments) == 20
    rows = []
    for label, profiles in (("fresh profiles", None), ("returning profiles", 1_000)):
        _core_seconds(plain, 2_000, 200, profiles)  # warm up
        _core_seconds(with_segments, 2_000, 200, profiles)
        bare, kept = [], []
        for _ in range(rounds):  # taking turns, so that what else runs weighs on both alike
            bare.append(_core_seconds(plain, events, 200, profiles) / events * 1e6)
            kept.append(_core_seconds(with_segments, events, 200, profiles) / events * 1e6)
        base, segmented = statistics.median(bare), statistics.median(kept)
        note = (
            f"the one core, sign-ups of {label} in batches of 200: {base:.1f} µs CPU per "
            f"event without segments, {segmented:.1f} µs with 20 (medians of {rounds} runs "
            f"of {events:,} events, taking turns); events per CPU-second {1e6 / base:,.0f} "
            f"-> {1e6 / segmented:,.0f}"
        )
        rows.append((f"20 segments, core, {label}: drop", (1 - base / segmented) * 100, note))
    return rows


# 2. ingest through journeyman serve


def ingest() -> list[Row]:
    config = settings()
    rates: dict[bool, list[float]] = {False: [], True: []}
    servers = {flag: Server(_folder(flag)) for flag in (False, True)}
    try:
        for server in servers.values():
            server.start()
        runs = {
            flag: Closed(server, "--path", "/v1/batch", "--batch", "200", "--connections", "8")
            for flag, server in servers.items()
        }
        for run in runs.values():
            run.warm_up()
        for _ in range(config.repeats):
            for flag, run in runs.items():
                run.measure(config)
                rates[flag].append(run.rates[-1])
    finally:
        for server in servers.values():
            server.remove()
            shutil.rmtree(server.folder, ignore_errors=True)
    base, segmented = statistics.median(rates[False]), statistics.median(rates[True])
    drop = (1 - segmented / base) * 100
    note = (
        f"journeyman serve on SQLite, closed-loop POST /v1/batch of 200 sign-ups over 8 "
        f"connections, {config.repeats} runs of {config.duration:g}s each taking turns: "
        f"{base:,.0f} events/s without segments, {segmented:,.0f} with 20 "
        f"(runs: {', '.join(f'{r:,.0f}' for r in rates[False])} / "
        f"{', '.join(f'{r:,.0f}' for r in rates[True])})"
    )
    return [("20 segments: ingest throughput drop", drop, note)]


if __name__ == "__main__":
    for label, value, note in [*core(), *ingest()]:
        print(f"{label}: {value:.1f}% ({note})", file=sys.stdout)
