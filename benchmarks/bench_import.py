"""Bulk import: `journeyman import events` of 1,000,000 events from an NDJSON file.

Runs the command as an operator does (a child process), on a fresh SQLite file and, when
a server answers (``JOURNEYMAN_BENCH_POSTGRES``, as bench_storage.py), on a fresh
PostgreSQL database. Reports events imported per second (every row is read, checked
against its event definition's schema and committed, from start to exit) and the peak RSS
of the process, with its RSS once a tenth of the file was in: flat memory means the two
are close. ``JOURNEYMAN_BENCH_IMPORT_EVENTS`` changes the count.

Run on its own with ``python benchmarks/bench_import.py``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).parent
ROOT = HERE.parent
WORKSPACE = HERE / "workspace"
EVENTS = int(os.environ.get("JOURNEYMAN_BENCH_IMPORT_EVENTS", "1000000"))
PROFILES = 100_000
SERVER = os.environ.get(
    "JOURNEYMAN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASE = "journeyman_bench_import"


def write_events(path: Path, count: int) -> None:
    """``count`` signed_up events of PROFILES profiles, each with its messageId."""
    with path.open("w") as file:
        for n in range(count):
            file.write(
                f'{{"type":"track","event":"signed_up","userId":"u{n % PROFILES}",'
                f'"messageId":"m{n}","timestamp":"2025-06-01T12:00:00.000Z",'
                f'"properties":{{"plan":"pro","email":"u{n % PROFILES}@example.com"}}}}\n'
            )


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def import_once(file: Path, db: str) -> tuple[float, float, float, float, str]:
    """Run the import: seconds, peak RSS (MB), RSS when a tenth of the time had passed
    (MB), CPU seconds (the command and its reader processes), and its summary line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYMAN_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "journeyman", "import", "events", str(file)]
    command += ["--db", db, "--workspace", str(WORKSPACE)]
    output = file.with_suffix(".out")
    began = time.perf_counter()
    with output.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    samples: list[tuple[float, float]] = []  # (seconds since start, RSS in MB)
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        rss = _rss_mb(process.pid)
        if rss is not None:
            samples.append((time.perf_counter() - began, rss))
        time.sleep(0.2)
    seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    text = output.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"the import failed: {text[-2000:]}")
    early = next((rss for at, rss in samples if at >= seconds / 10), 0.0)
    summary = next(line for line in text.splitlines() if line.startswith("events:"))
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, early, cpu, summary


async def _fresh_postgres() -> str | None:
    import asyncpg

    try:
        admin = await asyncpg.connect(SERVER, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        print(f"  no PostgreSQL at {SERVER}: {error}")
        return None
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    parts = urlsplit(SERVER)
    return urlunsplit(parts._replace(path=f"/{DATABASE}"))


async def _drop_postgres() -> None:
    import asyncpg

    admin = await asyncpg.connect(SERVER, timeout=5)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    finally:
        await admin.close()


def _row(
    backend: str, seconds: float, peak: float, early: float, cpu: float, line: str
) -> tuple[str, float, str]:
    rate = EVENTS / seconds
    load = os.getloadavg()[0]
    note = (
        f"{EVENTS:,} events of {PROFILES:,} profiles from an NDJSON file "
        f"({line}); whole command {seconds:.1f}s; peak RSS {peak:.0f} MB "
        f"({early:.0f} MB a tenth of the way in); {cpu / EVENTS * 1e6:.1f} µs of CPU per "
        f"event (the command and its reader processes); load average {load:.1f} at the end"
    )
    return f"import {EVENTS:,} events, {backend}", rate, note


_MEASURED: dict[str, tuple[float, float, float, float, str]] = {}


def _measure() -> dict[str, tuple[float, float, float, float, str]]:
    """Import the file into each backend once (run() and memory() share the runs)."""
    if _MEASURED:
        return _MEASURED
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        file = Path(folder) / "events.ndjson"
        write_events(file, EVENTS)
        _MEASURED["SQLite"] = import_once(file, f"sqlite:///{folder}/bench.db")
        url = asyncio.run(_fresh_postgres())
        if url is not None:
            try:
                _MEASURED["PostgreSQL"] = import_once(file, url)
            finally:
                asyncio.run(_drop_postgres())
    return _MEASURED


def run() -> list[tuple[str, float, str]]:
    """Events imported per second, on each backend."""
    return [_row(backend, *measured) for backend, measured in _measure().items()]


def memory() -> list[tuple[str, float, str]]:
    """The import process's peak RSS, on each backend."""
    return [
        (
            f"import {EVENTS:,} events, {backend}, peak RSS",
            peak,
            f"of the command's process; {early:.0f} MB a tenth of the way in (flat memory: "
            "rows are read, checked and committed in batches of 5,000)",
        )
        for backend, (_, peak, early, _, _) in _measure().items()
    ]


if __name__ == "__main__":
    for label, value, note in run() + memory():
        print(f"| {label} | {value:,.0f} | {note} |")
