"""journeyman side by side with the same journey on DBOS Transact and on Temporal.

``make bench-peers`` (or ``python benchmarks/peers/run.py`` in ``.venv-peers``) starts
each configuration of :func:`peers.peers` in turn, drives it with the same load
generator (``drive.py``, its own process, loopback HTTP), and measures:

1. entries/s: N profiles' ``signed_up`` in a closed loop (128 connections, at most 1,000
   profiles between call and welcome, 256 in the quick run; bounded in count and time);
   the rate is profiles whose welcome reached the sink per second;
2. follow-ups/s: a ``followed_up`` for every second one of them, the same way, counted
   at the offer's line in the sink;
3. latency: an open loop of entries at a third of the entry rate, and follow-ups 1s after
   every second entry, so calls come at half the entry rate (as ``bench_server.py``
   measures latency at half the sustained rate); from when each call was due to its
   message's line in the sink;
4. timer lateness: entries of the 10s-wait variant, from entry due + 10s to the offer;
5. memory and storage with 10,000 and 100,000 profiles waiting: more entries until that
   many wait (each bounded in time); where a peer cannot get there in time, the figure is
   extrapolated linearly from what it reached, and marked so;
6. CPU seconds of every process involved over phases 1 and 2, per 1,000 profiles.

It prints the table and writes it, with every setting, the machine, the versions and the
command, to ``BENCHMARKS.md`` with a chart in ``benchmarks/peers/chart.svg``.
``JOURNEYMAN_BENCH_QUICK=1`` (or ``--quick``) runs small and short (about 3 minutes,
mostly the 10s timers) and writes to ``artifacts/peers-quick/`` instead; ``--only WORD``
keeps the peers whose name contains WORD.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import peers as catalogue  # noqa: E402
from machine import busy_seconds, cpu_seconds_of, wait_until_quiet  # noqa: E402

DRIVE = HERE / "drive.py"


@dataclass
class Limits:
    """How many and how long, per peer."""

    quick: bool
    entries: int = 20_000
    entry_seconds: float = 45.0
    follow_seconds: float = 20.0
    drain: float = 60.0
    latency_seconds: float = 15.0
    timer_count: int = 1_000
    fill_seconds: tuple[float, float] = (90.0, 120.0)  # to 10,000, then to 100,000
    connections: int = 128
    window: int = 1_000  # profiles between call and message, at most

    @classmethod
    def make(cls, quick: bool) -> Limits:
        if not quick:
            return cls(quick)
        return cls(quick, 3_000, 4.0, 3.0, 10.0, 3.0, 100, (5.0, 0.0), window=256)


@dataclass
class Result:
    peer: str
    settings: str
    versions: str = ""
    entries: dict[str, Any] = field(default_factory=dict)
    follow_ups: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    timer: dict[str, Any] = field(default_factory=dict)
    waiting: list[dict[str, Any]] = field(default_factory=list)  # at 10k, at 100k
    cpu_per_1000: float = 0.0
    cpu_split: dict[str, float] = field(default_factory=dict)  # by process name
    others: float = 0.0  # CPU cores other processes on the machine used meanwhile
    seconds: float = 0.0
    error: str = ""
    refused: list[str] = field(default_factory=list)  # calls answered other than 202
    log: str = ""  # the first error the peer logged, when it refused calls


# measuring processes


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu(peer: catalogue.Peer) -> dict[int, float]:
    return {pid: cpu_seconds_of(pid) for pid in [*peer.pids(), *peer.private_pids()]}


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def cpu_by_name(before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    split: dict[str, float] = {}
    for pid, value in after.items():
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            name = "?"
        split[name] = split.get(name, 0.0) + value - before.get(pid, 0.0)
    return split


def memory_mb(peer: catalogue.Peer) -> float:
    """RSS of the peer's processes, plus the private memory of its database backends."""
    kib = sum(_status_kib(pid, "VmRSS") for pid in peer.pids())
    kib += sum(_status_kib(pid, "RssAnon") for pid in peer.private_pids())
    return kib / 1024


# driving


def drive(
    peer: catalogue.Peer, mode: str, prefix: str, *options: object, limit: float
) -> dict[str, Any]:
    command = [sys.executable, str(DRIVE), mode, "--port", str(peer.port)]
    command += ["--key", catalogue.WRITE_KEY, "--sink", str(peer.sink)]
    command += ["--prefix", prefix, *map(str, options)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=limit + 120)
    if done.returncode != 0:
        raise RuntimeError(f"drive {mode} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    bad = {k: v for k, v in result["statuses"].items() if k != "202"}
    if bad or result.get("errors"):
        # A peer that fails some calls under load has its failures counted, not hidden.
        _refused.append(f"{mode} ({prefix}): answers {bad}, errors {result.get('errors')}")
    return result


_refused: list[str] = []


def closed(
    peer: catalogue.Peer, limits: Limits, prefix: str, count: int, seconds: float, *more: object
) -> dict[str, Any]:
    options: list[object] = ["--count", count, "--duration", seconds, "--drain", limits.drain]
    options += ["--connections", limits.connections, "--window", limits.window, *more]
    return drive(peer, "closed", prefix, *options, limit=seconds + limits.drain)


def measure(peer: catalogue.Peer, limits: Limits) -> Result:
    result = Result(peer.name, peer.settings, peer.versions())
    began, busy = time.monotonic(), busy_seconds()
    idle = snapshot(peer, 0)
    before = cpu(peer)
    result.entries = closed(peer, limits, "e", limits.entries, limits.entry_seconds)
    print(f"  entries: {result.entries['completed_per_s']:,.1f}/s", flush=True)
    half = (result.entries["accepted"] + 1) // 2
    offers = ("--event", "followed_up", "--step", 2, "--templates", "pro_offer,basic_offer")
    result.follow_ups = closed(peer, limits, "e", half, limits.follow_seconds, *offers)
    print(f"  follow-ups: {result.follow_ups['completed_per_s']:,.1f}/s", flush=True)
    after = cpu(peer)
    used = cpu_between(before, after)
    result.cpu_split = cpu_by_name(before, after)
    result.cpu_per_1000 = used / max(1, result.entries["completed"]) * 1000
    waiting = result.entries["completed"] - result.follow_ups["completed"]
    rate = max(2.0, round(result.entries["completed_per_s"] / 3, 1))
    options = ("--rate", rate, "--duration", limits.latency_seconds, "--drain", limits.drain)
    result.latency = drive(peer, "open", "l", *options, limit=limits.latency_seconds + limits.drain)
    print(f"  latency: {result.latency['follow_up_to_send_ms']}", flush=True)
    waiting += result.latency["profiles"] // 2
    count = max(10, min(limits.timer_count, int(rate * 5)))
    options = ("--rate", rate, "--count", count, "--drain", limits.drain)
    result.timer = drive(peer, "timer", "t", *options, limit=count / rate + 10 + limits.drain)
    print(f"  timer lateness: {result.timer['late_ms']}", flush=True)
    result.waiting = fill(peer, limits, waiting, idle)
    result.seconds = time.monotonic() - began
    mine = cpu_between(before, cpu(peer))
    result.others = max(0.0, busy_seconds() - busy - mine) / result.seconds
    return result


def fill(peer: catalogue.Peer, limits: Limits, waiting: int, idle: Point) -> list[dict[str, Any]]:
    """Memory and storage at 10,000 and 100,000 waiting, reached or extrapolated."""
    seen = [idle, snapshot(peer, waiting)]  # (waiting, MB, bytes) as the count grew
    points: list[dict[str, Any]] = []
    for target, seconds in zip((10_000, 100_000), limits.fill_seconds, strict=True):
        if seen[-1][0] < target and seconds > 0 and (not points or not points[-1]["extrapolated"]):
            done = closed(peer, limits, f"w{target}", target - seen[-1][0], seconds)
            seen.append(snapshot(peer, seen[-1][0] + done["completed"]))
            print(f"  waiting {seen[-1][0]:,}: {seen[-1][1]:,.0f} MB", flush=True)
        points.append(at(seen, target))
    return points


Point = tuple[int, float, int]  # waiting profiles, memory MB, storage bytes


def snapshot(peer: catalogue.Peer, waiting: int) -> Point:
    return (waiting, memory_mb(peer), peer.bytes())


def at(seen: list[Point], target: int) -> dict[str, Any]:
    """The figures at ``target`` waiting: measured, or a line through the last two points.

    The two points are the last two measured with at least 1,000 waiting profiles between
    them (else the idle peer and the last point), so fixed costs such as pools and caches
    that fill on the first calls do not grow with the count.
    """
    last = seen[-1]
    if last[0] >= target:
        return {
            "target": target,
            "waiting": last[0],
            "memory_mb": last[1],
            "bytes": last[2],
            "extrapolated": False,
        }
    first = next((p for p in reversed(seen[1:-1]) if last[0] - p[0] >= 1_000), seen[0])
    span = max(1, last[0] - first[0])
    grow = (target - last[0]) / span
    return {
        "target": target,
        "waiting": last[0],
        "memory_mb": last[1] + (last[1] - first[1]) * grow,
        "bytes": last[2] + (last[2] - first[2]) * grow,
        "extrapolated": True,
    }


def first_error(folder: Path) -> str:
    """The first line of the peers' logs that names an error, and what follows it."""
    for log in sorted(folder.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        for number, line in enumerate(lines):
            if "Error" in line or "error" in line or "Traceback" in line:
                return " / ".join(lines[number : number + 6])[:600]
    return ""


def run_peer(peer: catalogue.Peer, limits: Limits) -> Result:
    folder = Path(tempfile.mkdtemp(prefix="jm-bench-peers-"))
    wait_until_quiet(limit=30.0)
    print(f"{peer.name} ...", flush=True)
    _refused.clear()
    try:
        peer.start(folder)
        result = measure(peer, limits)
        result.refused = list(_refused)
        if result.refused:
            result.log = first_error(folder)
        return result
    except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError) as error:
        print(f"  failed: {error}", flush=True)
        return Result(peer.name, peer.settings, error=str(error)[:500])
    finally:
        peer.stop()
        shutil.rmtree(folder, ignore_errors=True)


# the whole run


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through every ``finally``: processes stop, databases go


def main() -> None:
    import report

    signal.signal(signal.SIGTERM, interrupted)
    quick = "--quick" in sys.argv or os.environ.get("JOURNEYMAN_BENCH_QUICK", "") not in ("", "0")
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
    limits = Limits.make(quick)
    chosen = [p for p in catalogue.peers() if only.lower() in p.name.lower()]
    results = [run_peer(peer, limits) for peer in chosen]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/peers/run.py"
    if os.environ.get("MAKELEVEL"):
        command = "make bench-peers"
    if quick:
        command = f"JOURNEYMAN_BENCH_QUICK=1 {command}"
    if only:
        command += f" --only {only}"
    out = ROOT / "artifacts" / "peers-quick" if quick else ROOT
    out.mkdir(parents=True, exist_ok=True)
    image = (out if quick else HERE) / "chart.svg"
    report.chart(results, image)
    written = out / "BENCHMARKS.md"
    text = report.markdown(results, stamp, command, limits, os.path.relpath(image, out))
    written.write_text(text)
    print("\n".join(report.table(results)))
    print("\n".join(report.ratios(results)))
    print(f"written: {written}, {image}")


if __name__ == "__main__":
    main()
