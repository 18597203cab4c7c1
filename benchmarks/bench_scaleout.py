"""Scale-out: events/s end to end on PostgreSQL alone, and on PostgreSQL + NATS JetStream
with 1, 2 and 4 workers.

Each run makes a database and a stream of its own (dropped afterwards), starts
``journeyman serve`` (with ``--bus`` and the workers, or without), and sends sign-ups of
fresh profiles (each starts the benchmark workspace's welcome journey: a profile, an
instance, an email to the file channel, a wait of a day) from ``loadgen.py`` in batches,
for a fixed time. Every batch is answered 200 only once its events are stored (in the
database, or in JetStream). End to end is the accepted events divided by the time from
the first request until the last event is committed to PostgreSQL by a worker.

Per-worker cost is the workers' CPU seconds per 1,000 events. On this 2-core machine the
API, the workers, PostgreSQL, NATS and the load generator share the cores, so more
workers cannot go faster here; the cost per event says what more cores would give.
Numbers are noisy: other work shares the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import nats

from bench_server import (
    ADMIN_KEY,
    WORKSPACE,
    WRITE_KEY,
    _free_port,
    _median,
    _runs_text,
    fill_store,
    loadgen,
    settings,
)

POSTGRES = os.environ.get("JOURNEYMAN_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
NATS = os.environ.get("JOURNEYMAN_BENCH_NATS", "nats://127.0.0.1:4222")
SECONDS = float(os.environ.get("JOURNEYMAN_BENCH_SCALEOUT_SECONDS", "10"))

Row = tuple[str, float, str]


class Deployment:
    """``serve`` (with ``--bus`` when there are workers) and the workers, on a fresh database."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.folder = Path(tempfile.mkdtemp(prefix="journeyman-scaleout-"))
        self.workspace = self.folder / "workspace"
        shutil.copytree(WORKSPACE, self.workspace)
        self.name = f"jm_bench_{secrets.token_hex(4)}"
        self.stream = self.name.upper()
        self.db = f"{POSTGRES}/{self.name}"
        self.port = _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "JOURNEYMAN_WRITE_KEY": WRITE_KEY, "JOURNEYMAN_ADMIN_KEY": ADMIN_KEY}
        log = (self.folder / f"{len(self.processes)}.log").open("ab")
        command = [sys.executable, "-m", "journeyman", *args, "--workspace", str(self.workspace)]
        process = subprocess.Popen(
            [*command, "--db", self.db],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.folder,
        )
        self.processes.append(process)
        return process

    def create(self) -> None:
        asyncio.run(_admin(f'CREATE DATABASE "{self.name}"'))

    def start(self, *, create: bool = True) -> None:
        if create:
            self.create()
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers:
            serve += ["--bus", NATS, "--stream", self.stream, "--partitions", "16"]
        self._spawn(*serve)
        self._wait(lambda: "journeyman is serving" in self._log(0), "serve")
        for index in range(1, self.workers + 1):
            self._spawn("worker", "--bus", NATS)
            self._wait(lambda i=index: "took partitions" in self._log(i), f"worker {index}")
        time.sleep(2 * self.workers)  # let the partitions settle among the workers

    def _log(self, index: int) -> str:
        return (self.folder / f"{index}.log").read_text(errors="replace")

    def _wait(self, check: Any, what: str, timeout: float = 60) -> None:
        until = time.monotonic() + timeout
        while not check():
            if time.monotonic() > until or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"{what} did not start:\n{self._log(len(self.processes) - 1)}")
            time.sleep(0.1)

    def cpu(self) -> list[float]:
        """CPU seconds of each process so far: serve first, then the workers."""
        ticks = os.sysconf("SC_CLK_TCK")
        found = []
        for process in self.processes:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
            found.append((int(fields[11]) + int(fields[12])) / ticks)
        return found

    def peak_rss(self) -> list[float]:
        """Peak RSS (VmHWM) of each process in MB: serve first, then the workers."""
        found = []
        for process in self.processes:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    found.append(int(line.split()[1]) / 1024)
        return found

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        if self.workers:
            with contextlib.suppress(Exception):
                asyncio.run(_delete_stream(self.stream))
        shutil.rmtree(self.folder, ignore_errors=True)


async def _admin(statement: str) -> None:
    db = await asyncpg.connect(f"{POSTGRES}/postgres", timeout=10)
    try:
        await db.execute(statement)
    finally:
        await db.close()


async def _count(url: str) -> int:
    db = await asyncpg.connect(url, timeout=10)
    try:
        return int(await db.fetchval("SELECT count(*) FROM events"))
    finally:
        await db.close()


async def _delete_stream(stream: str) -> None:
    connection = await nats.connect(NATS, connect_timeout=5, allow_reconnect=False)
    try:
        await connection.jetstream().delete_stream(stream)
    finally:
        await connection.close()


class _Port:
    """What ``loadgen`` needs of a server."""

    def __init__(self, port: int) -> None:
        self.port = port


def measure(workers: int) -> dict[str, float]:
    """One run: ingest rate, end-to-end rate, and CPU per 1,000 events."""
    deployment = Deployment(workers)
    deployment.start()
    try:
        cpu_before = deployment.cpu()
        began = time.monotonic()
        result = loadgen(
            _Port(deployment.port),  # type: ignore[arg-type]
            "closed",
            "--path",
            "/v1/batch",
            "--batch",
            "100",
            "--connections",
            "8",
            "--duration",
            str(SECONDS),
            "--warmup",
            "0",
        )
        accepted = int(result["events_accepted"])
        while asyncio.run(_count(deployment.db)) < accepted:
            if time.monotonic() - began > 600:
                raise RuntimeError("the events were not all applied in 10 minutes")
            time.sleep(0.05)
        took = time.monotonic() - began
        cpu = [after - before for after, before in zip(deployment.cpu(), cpu_before, strict=True)]
    finally:
        deployment.stop()
    per_thousand = 1000 / accepted
    return {
        "ingest": float(result["events_per_s"]),
        "end_to_end": accepted / took,
        "api_cpu_ms": cpu[0] * per_thousand * 1000,
        "worker_cpu_ms": sum(cpu[1:]) * per_thousand * 1000,
        "accepted": accepted,
    }


async def _fill(url: str, workspace: Path, count: int) -> float:
    from journeyman.storage import open_store

    began = time.perf_counter()
    await fill_store(open_store(url), workspace, count, 20_000)
    return time.perf_counter() - began


async def _size(url: str) -> int:
    db = await asyncpg.connect(url, timeout=10)
    try:
        return int(await db.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await db.close()


def waiting(workers: int = 2) -> list[Row]:
    """With many instances waiting in PostgreSQL (1,000,000; 100,000 with --quick): the
    processes' peak RSS, the database size, and the timer lag of 10,000 waking at once,
    with ``serve --bus`` and ``workers`` workers."""
    config = settings()
    count, alarms = config.waiting, config.alarms
    deployment = Deployment(workers)
    deployment.create()
    try:
        took = asyncio.run(_fill(deployment.db, deployment.workspace, count))
        size = asyncio.run(_size(deployment.db))
        deployment.start(create=False)
        fired, handed = [], []
        for _ in range(config.repeats):
            # The alarms go through JetStream to the workers before they come due.
            wake = datetime.fromtimestamp(math.ceil(time.time()) + 12, UTC)
            result = loadgen(
                _Port(deployment.port),  # type: ignore[arg-type]
                "alarm",
                "--count",
                str(alarms),
                "--batch",
                "500",
                "--at",
                wake.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "--messages",
                str(deployment.workspace / "messages.jsonl"),
                "--timeout",
                "120",
            )
            if "error" in result or result["missing"]:
                raise RuntimeError(f"the timer run went wrong: {result}")
            fired.append(result["fired_s"]["p99"])
            handed.append(result["handed_s"]["p99"])
        rss = deployment.peak_rss()
    finally:
        deployment.stop()
    n = f"{count:,} waiting, PostgreSQL + NATS, {workers} workers"
    each = ", ".join(f"{mb:.0f}" for mb in rss[1:])
    return [
        (
            f"scale-out RSS, {n}",
            sum(rss),
            f"peak RSS (VmHWM) in MB of serve --bus ({rss[0]:.0f}) and the workers ({each}) "
            f"together, through {config.repeats} runs of {alarms:,} timers due at once; "
            "PostgreSQL's own memory is not counted",
        ),
        (
            f"scale-out database size, {n}",
            size / 1e6,
            f"pg_database_size after the fill ({size / count:,.0f} bytes per waiting "
            f"instance); filled through the Processor and PostgresStore in {took:.0f}s "
            f"({count / took:,.0f} events/s, 20,000 per transaction)",
        ),
        (
            f"scale-out timer lag p99, {alarms:,} due at once, {n}",
            _median(fired),
            f"median of {config.repeats} runs ({_runs_text(fired, 3)} s): from the wake "
            "instant to the engine running the send step in the worker that owns the "
            "profile (claimed by any worker, handed over through JetStream)",
        ),
        (
            f"scale-out timer lag p99 to provider, {alarms:,} due at once, {n}",
            _median(handed),
            f"median of {config.repeats} runs ({_runs_text(handed, 3)} s): to the message "
            "line in the file channel's file",
        ),
    ]


_waited: list[Row] | None = None


def _waiting_rows() -> list[Row]:
    global _waited
    if _waited is None:
        _waited = waiting()
    return _waited


def memory() -> list[Row]:
    return [r for r in _waiting_rows() if r[0].startswith("scale-out RSS")]


def database() -> list[Row]:
    return [r for r in _waiting_rows() if r[0].startswith("scale-out database")]


def timers() -> list[Row]:
    return [r for r in _waiting_rows() if r[0].startswith("scale-out timer")]


def run() -> list[Row]:
    rows: list[Row] = []
    for workers in (0, 1, 2, 4):
        found = measure(workers)
        if workers == 0:
            label = "scale-out: PostgreSQL only, end to end"
            note = (
                f"one serve on PostgreSQL, {found['accepted']:,} sign-ups in batches of 100; "
                f"{found['api_cpu_ms']:.0f} ms CPU per 1,000 events"
            )
        else:
            label = f"scale-out: PostgreSQL + NATS, {workers} worker(s), end to end"
            note = (
                f"ingest {found['ingest']:,.0f}/s acknowledged after JetStream stored them; "
                f"CPU per 1,000 events: API {found['api_cpu_ms']:.0f} ms, workers "
                f"{found['worker_cpu_ms']:.0f} ms in all; {found['accepted']:,} events"
            )
        rows.append((label, found["end_to_end"], note))
    return rows


if __name__ == "__main__":
    for label, value, note in waiting() if "waiting" in sys.argv else run():
        print(f"{label}: {value:,.2f} ({note})")
