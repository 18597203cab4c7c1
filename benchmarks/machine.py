"""How busy the machine is: benchmarks wait for a quiet machine and report what others used.

Other work may share the machine a benchmark runs on. Every benchmark waits (for a while)
until the machine is quiet, and notes how much CPU processes other than its own took.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(limit: float = 20.0, cores: float = 0.25) -> float:
    """Wait (up to ``limit`` s) until other processes use less than ``cores`` of the CPU;
    the load they put on it (in cores) is returned, for the benchmark's note."""
    until = time.monotonic() + limit
    while True:
        began = busy_seconds()
        time.sleep(1.0)
        used = busy_seconds() - began
        if used < cores or time.monotonic() >= until:
            return used


def cpu_seconds_of(pid: int) -> float:
    """CPU seconds (user and system) process ``pid`` has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def describe() -> str:
    """The machine in a few words, for a results file: cores, memory, platform, Python."""
    memory = ""
    try:
        with open("/proc/meminfo") as info:
            kib = int(info.readline().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores{memory}, {platform.machine()}, {platform.system()}, "
        f"Python {platform.python_version()}"
    )
