"""The live runtime under load: a real ``journeyman serve`` on SQLite, over loopback HTTP.

Each benchmark starts ``journeyman serve`` as a subprocess on 127.0.0.1 with the workspace
in ``benchmarks/workspace/`` (a welcome-like journey: entry, send, wait 1d; every message
goes to the file channel, one fsync'd JSON line each), a SQLite file in a temporary
folder, and keys from ``JOURNEYMAN_WRITE_KEY`` / ``JOURNEYMAN_ADMIN_KEY``. The load comes
from ``benchmarks/loadgen.py``, a separate process, bounded in time and count. Every
measurement is repeated and the median reported; the note says the setting and each run.

- ``track``: sustained single-event ``POST /v1/track`` throughput, closed loop over many
  keep-alive connections; each 202 comes after the commit.
- ``batch``: ``POST /v1/batch`` throughput in events/s.
- ``latency``: p50/p99 from request to 202 and from request to the message line in the
  file channel's file, open loop at half the sustained ``track`` rate.
- ``scale``: with many instances waiting (1,000,000; 100,000 with ``--quick``): the
  server's RSS, the database size, and the timer lag when 10,000 instances wake at the
  same instant. The waiting instances are made by :func:`fill`, which feeds sign-up
  events straight to the runtime's :class:`Processor` (the same engine loop and
  ``Store.commit`` the server runs, without HTTP) in chunks of 20,000, and then marks
  their messages sent as the dispatcher would.

Run with ``python benchmarks/bench_server.py [--quick] [track|batch|latency|scale]``, or
through ``make bench`` (``JOURNEYMAN_BENCH_QUICK=1 make bench`` for the smaller runs;
``JOURNEYMAN_BENCH_WAITING=N`` sets the number of waiting instances).
``python benchmarks/bench_server.py profile [DIR]`` records the server with py-spy under
each load (``pip install py-spy``) and writes collapsed stacks and flame graphs to DIR
(by default ``journeyman-profiles`` in the temporary folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from machine import busy_seconds, cpu_seconds_of, wait_until_quiet

HERE = Path(__file__).parent
WORKSPACE = HERE / "workspace"
LOADGEN = HERE / "loadgen.py"
WRITE_KEY = "bench-write-key"
ADMIN_KEY = "bench-admin-key"

Row = tuple[str, float, str]


class Settings:
    """How big and how long; ``--quick`` or JOURNEYMAN_BENCH_QUICK=1 for smaller runs."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.repeats = 3
        self.duration = 4.0 if quick else 8.0  # seconds measured per closed-loop run
        self.warmup = 1.0
        self.connections = 128
        self.batch = 200
        self.batch_connections = 8
        self.latency_duration = 5.0 if quick else 10.0
        self.waiting = int(
            os.environ.get("JOURNEYMAN_BENCH_WAITING", 100_000 if quick else 1_000_000)
        )
        self.alarms = 10_000


def settings() -> Settings:
    quick = "--quick" in sys.argv or os.environ.get("JOURNEYMAN_BENCH_QUICK", "") not in ("", "0")
    return Settings(quick)


# the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``journeyman serve`` in a subprocess, with its own folder, database and port."""

    def __init__(self, folder: Path | None = None) -> None:
        self.own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="journeyman-bench-"))
        self.workspace = self.folder / "workspace"
        if not self.workspace.exists():
            shutil.copytree(WORKSPACE, self.workspace)
        self.db = self.folder / "journeyman.db"
        self.messages = self.workspace / "messages.jsonl"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "server.log"

    def start(self, timeout: float = 120.0) -> None:
        env = {
            **os.environ,
            "JOURNEYMAN_WRITE_KEY": WRITE_KEY,
            "JOURNEYMAN_ADMIN_KEY": ADMIN_KEY,
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise RuntimeError(f"journeyman serve exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                self.get("/healthz")
                return
            time.sleep(0.1)
        raise RuntimeError(f"journeyman serve did not answer in {timeout:.0f}s")

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "journeyman",
            "serve",
            "--workspace",
            str(self.workspace),
            "--db",
            f"sqlite:///{self.db}",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as answer:
            return str(answer.read().decode())

    def metrics(self) -> dict[str, float]:
        found = {}
        for line in self.get("/metrics").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM (the peak) of the server process, in KiB."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
        return found

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        if self.own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def running(folder: Path | None = None) -> Iterator[Server]:
    server = Server(folder)
    try:
        server.start()
        yield server
    finally:
        server.remove()


_runs = 0


def loadgen(server: Server, mode: str, *options: str, timeout: float = 300.0) -> dict[str, Any]:
    """Run loadgen.py in its own process against ``server``; its JSON answer."""
    global _runs
    _runs += 1
    command = [
        sys.executable,
        str(LOADGEN),
        mode,
        "--port",
        str(server.port),
        "--key",
        WRITE_KEY,
        "--prefix",
        f"r{_runs}x{os.getpid()}",
        *options,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class Others:
    """How much CPU processes other than the server and the load generator took."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.busy = busy_seconds()
        self.cpu = server.cpu_seconds()
        self.wall = time.monotonic()
        self.client = 0.0

    def add_client(self, result: dict[str, Any]) -> None:
        self.client += result.get("client_cpu_seconds", 0.0)

    def cores(self) -> float:
        wall = time.monotonic() - self.wall
        busy = busy_seconds() - self.busy
        mine = self.server.cpu_seconds() - self.cpu + self.client
        return max(0.0, busy - mine) / wall

    def server_cores(self) -> float:
        return (self.server.cpu_seconds() - self.cpu) / (time.monotonic() - self.wall)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _runs_text(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v:,.{digits}f}" for v in values)


def _check_acknowledged(server: Server, accepted: int) -> str:
    """Every 202 the load generators got is an event the server counts as committed."""
    committed = int(server.metrics().get("journeyman_events_accepted_total", -1))
    if committed != accepted:
        raise RuntimeError(f"{accepted} events answered 202 but {committed} committed")
    return f"{committed:,} events committed = 202s received"


# 1. sustained single-event throughput


class Closed:
    """Repeated closed-loop runs against one server: medians, and what else ran meanwhile."""

    def __init__(self, server: Server, *options: str) -> None:
        self.server = server
        self.options = options
        self.accepted = 0
        self.rates: list[float] = []
        self.p99s: list[float] = []
        self.client: list[float] = []
        self.server_cores: list[float] = []
        self.others: list[float] = []

    def warm_up(self) -> None:
        result = loadgen(self.server, "closed", *self.options, "--duration", "2")
        self.accepted += result["events_accepted"]

    def measure(self, config: Settings) -> None:
        wait_until_quiet()
        watch = Others(self.server)
        result = loadgen(
            self.server,
            "closed",
            *self.options,
            "--duration",
            str(config.duration),
            "--warmup",
            str(config.warmup),
        )
        watch.add_client(result)
        _refuse_errors(result)
        self.accepted += result["events_accepted"]
        self.rates.append(result["events_per_s"])
        self.p99s.append(result["latency_ms"]["p99"])
        self.client.append(result["client_cpu_share"])
        self.server_cores.append(watch.server_cores())
        self.others.append(watch.cores())

    def cpu_text(self) -> str:
        return (
            f"server CPU {_median(self.server_cores):.2f} cores, load generator "
            f"{_median(self.client):.2f}, other processes {_median(self.others):.2f}"
        )


_sustained: float | None = None


def track(config: Settings | None = None) -> list[Row]:
    global _sustained
    config = config or settings()
    with running() as server:
        runs = Closed(server, "--connections", str(config.connections))
        runs.warm_up()
        for _ in range(config.repeats):
            runs.measure(config)
        check = _check_acknowledged(server, runs.accepted)
    _sustained = _median(runs.rates)
    note = (
        f"median of {config.repeats} closed-loop runs of {config.duration:g}s "
        f"(events/s: {_runs_text(runs.rates)}), {config.connections} keep-alive connections, "
        f"one event per request, 202 only after commit; p99 request→202 "
        f"{_median(runs.p99s):.0f} ms; {runs.cpu_text()}; {check}"
    )
    return [("POST /v1/track sustained", _sustained, note)]


def _refuse_errors(result: dict[str, Any]) -> None:
    bad = {k: v for k, v in result["statuses"].items() if k not in ("200", "202")}
    if bad or result.get("errors"):
        raise RuntimeError(f"unexpected answers {bad} {result.get('errors')}")


# 2. batch throughput


def batch(config: Settings | None = None) -> list[Row]:
    config = config or settings()
    with running() as server:
        runs = Closed(
            server,
            "--path",
            "/v1/batch",
            "--batch",
            str(config.batch),
            "--connections",
            str(config.batch_connections),
        )
        runs.warm_up()
        for _ in range(config.repeats):
            runs.measure(config)
        check = _check_acknowledged(server, runs.accepted)
    note = (
        f"median of {config.repeats} closed-loop runs of {config.duration:g}s "
        f"(events/s: {_runs_text(runs.rates)}), batches of {config.batch} track calls over "
        f"{config.batch_connections} keep-alive connections; p99 request→202 "
        f"{_median(runs.p99s):.0f} ms per batch; {runs.cpu_text()}; {check}"
    )
    return [(f"POST /v1/batch ({config.batch} per call)", _median(runs.rates), note)]


# 3. latency at half the sustained rate


def latency(config: Settings | None = None) -> list[Row]:
    config = config or settings()
    sustained = _sustained
    if sustained is None:
        quick = Settings(True)
        quick.repeats = 1
        sustained = track(quick)[0][1]
    rate = max(50.0, round(sustained / 2, -1))
    with running() as server:
        loadgen(server, "open", "--rate", str(rate), "--duration", "2", "--connections", "32")
        p50, p99, m50, m99, others, missing = [], [], [], [], [], 0
        for _ in range(config.repeats):
            wait_until_quiet()
            watch = Others(server)
            result = loadgen(
                server,
                "open",
                "--rate",
                str(rate),
                "--duration",
                str(config.latency_duration),
                "--connections",
                "32",
                "--max-connections",
                "256",
                "--messages",
                str(server.messages),
            )
            watch.add_client(result)
            others.append(watch.cores())
            _refuse_errors(result)
            p50.append(result["latency_ms"]["p50"])
            p99.append(result["latency_ms"]["p99"])
            m50.append(result["message_ms"]["p50"])
            m99.append(result["message_ms"]["p99"])
            missing += result["messages_missing"]
    setting = (
        f"open loop at {rate:,.0f} requests/s (half the sustained {sustained:,.0f}/s), "
        f"{config.latency_duration:g}s per run, median of {config.repeats} runs"
    )
    busy = f"other processes {_median(others):.2f} cores"
    message = f"to the line in the file channel's file (fsync'd); {missing} messages missing"
    return [
        ("latency p50 request→202", _median(p50), f"{setting} ({_runs_text(p50, 1)} ms); {busy}"),
        ("latency p99 request→202", _median(p99), f"{setting} ({_runs_text(p99, 1)} ms); {busy}"),
        (
            "latency p50 request→message handed to provider",
            _median(m50),
            f"{setting} ({_runs_text(m50, 1)} ms), {message}; {busy}",
        ),
        (
            "latency p99 request→message handed to provider",
            _median(m99),
            f"{setting} ({_runs_text(m99, 1)} ms), {message}; {busy}",
        ),
    ]


# 4. many instances waiting


async def _fill(db: Path, workspace_dir: Path, count: int, chunk: int) -> None:
    from journeyman.storage.sqlite import SQLiteStore

    # synchronous=OFF for the fill only; the server then opens the file as always (FULL).
    await fill_store(SQLiteStore(db, synchronous="OFF"), workspace_dir, count, chunk)


async def fill_store(store: Any, workspace_dir: Path, count: int, chunk: int) -> None:
    """Make ``count`` welcome instances wait in ``store`` (any backend), as :func:`fill`."""
    from journeyman import load_workspace
    from journeyman.domain.state import Event
    from journeyman.runtime.processor import Processor
    from journeyman.storage.base import Delivered

    workspace = load_workspace(workspace_dir).workspace
    assert workspace is not None
    await store.open()
    processor = Processor(store, workspace, max_batch=chunk, max_queue=2 * chunk)
    runner = asyncio.create_task(processor.run())
    try:
        for first in range(0, count, chunk):
            now = datetime.now(UTC)
            events = []
            for n in range(first, min(count, first + chunk)):
                uid = f"w{n}"
                events.append(
                    Event(
                        name="signed_up",
                        profile_id=uid,
                        timestamp=now,
                        properties={"plan": "pro", "email": f"{uid}@example.com"},
                        message_id=uid,
                        user_id=uid,
                    )
                )
            await processor.submit(events)
            # The dispatcher would have delivered these messages: mark them sent.
            later = now + timedelta(hours=1)
            while items := await store.claim(later, chunk):
                await store.settle([Delivered(i.id, "sent", "fill", now) for i in items])
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await store.close()


def fill(db: Path, workspace_dir: Path, count: int, chunk: int = 20_000) -> float:
    """Make ``count`` instances of the welcome journey wait in ``db``; the seconds it took.

    Sign-up events go straight to the runtime's Processor and SQLiteStore, in chunks of
    ``chunk`` events per transaction: the rows are the ones the server would write
    (profiles, events, instances waiting 1d, outbox, step log), without the HTTP layer.
    """
    began = time.perf_counter()
    asyncio.run(_fill(db, workspace_dir, count, chunk))
    return time.perf_counter() - began


def _database_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


_scaled: list[Row] | None = None


def scale(config: Settings | None = None) -> list[Row]:
    global _scaled
    if _scaled is not None:
        return _scaled
    config = config or settings()
    folder = Path(tempfile.mkdtemp(prefix="journeyman-bench-"))
    try:
        server = Server(folder)
        command = [sys.executable, __file__, "fill", str(server.db), str(WORKSPACE)]
        command.append(str(config.waiting))
        filled = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
        took = float(filled.stdout.split()[-1])
        size = _database_bytes(server.db)
        try:
            server.start()
            started = server.status()
            fired, handed, claimed, others = [], [], [], []
            for _ in range(config.repeats):
                wait_until_quiet()
                watch = Others(server)
                wake = datetime.fromtimestamp(math.ceil(time.time()) + 6, UTC)
                result = loadgen(
                    server,
                    "alarm",
                    "--count",
                    str(config.alarms),
                    "--batch",
                    "500",
                    "--at",
                    wake.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "--messages",
                    str(server.messages),
                    "--timeout",
                    "120",
                )
                watch.add_client(result)
                others.append(watch.cores())
                if "error" in result or result["missing"]:
                    raise RuntimeError(f"the timer run went wrong: {result}")
                fired.append(result["fired_s"]["p99"])
                handed.append(result["handed_s"]["p99"])
                lag = server.metrics().get('journeyman_timer_lag_seconds{quantile="1"}', 0.0)
                claimed.append(lag)
            # RSS under load too: sustained track calls on top of the waiting instances.
            runs = Closed(server, "--connections", str(config.connections))
            runs.measure(config)
            after = server.status()
            fired_total = int(server.metrics().get("journeyman_timers_fired_total", 0))
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    n = f"{config.waiting:,} waiting"
    runs_text = f"median of {config.repeats} runs"
    busy = f"other processes {_median(others):.2f} cores"
    _scaled = [
        (
            f"server RSS, {n}",
            after["VmHWM"] / 1024,
            f"peak RSS (VmHWM) of the server process: {started['VmRSS'] / 1024:.0f} MB after "
            f"start, then {config.repeats} runs of {config.alarms:,} timers due at once "
            f"({fired_total:,} fired) and {config.duration:g}s of POST /v1/track at "
            f"{runs.rates[0]:,.0f} events/s; {after['VmRSS'] / 1024:.0f} MB at the end",
        ),
        (
            f"database size, {n}",
            size / 1e6,
            f"SQLite file after the fill ({size / config.waiting:,.0f} bytes per waiting "
            f"instance: profile, event, instance, outbox row, 3 step records, indexes); "
            f"filled through the Processor and SQLiteStore in {took:.0f}s "
            f"({config.waiting / took:,.0f} events/s, 20,000 per transaction)",
        ),
        (
            f"timer lag p99, {config.alarms:,} due at once, {n}",
            _median(fired),
            f"{runs_text} ({_runs_text(fired, 3)} s): from the wake instant to the engine "
            f"running the send step (the message's `at`); the timer loop's own lag at "
            f"claim time (/metrics max) {_runs_text(claimed, 3)} s; {busy}",
        ),
        (
            f"timer lag p99 to provider, {config.alarms:,} due at once, {n}",
            _median(handed),
            f"{runs_text} ({_runs_text(handed, 3)} s): from the wake instant to the message "
            f"line in the file channel's file; {busy}",
        ),
    ]
    return _scaled


def memory() -> list[Row]:
    return [r for r in scale() if r[0].startswith("server RSS")]


def database() -> list[Row]:
    return [r for r in scale() if r[0].startswith("database size")]


def timers() -> list[Row]:
    return [r for r in scale() if r[0].startswith("timer lag")]


def run() -> list[Row]:
    config = settings()
    return [*track(config), *batch(config), *latency(config), *scale(config)]


# profiling

PROFILE_LOADS = {
    "track": ["--connections", "128"],
    "batch": ["--path", "/v1/batch", "--batch", "200", "--connections", "8"],
}


# (py-spy format, file suffix, options): every thread; only the thread holding the GIL
# (where a GIL-bound server's one core goes); a flame graph.
RECORDINGS: tuple[tuple[str, str, list[str]], ...] = (
    ("raw", ".txt", []),
    ("raw", "-gil.txt", ["--gil"]),
    ("flamegraph", ".svg", []),
)


def profile(out: Path, seconds: float = 8.0) -> None:
    """Record the server with py-spy under each load: collapsed stacks and a flame graph.

    ``<load>.txt`` holds py-spy's raw (collapsed) stacks of every thread, one line per
    stack with its sample count; ``<load>-gil.txt`` only the thread holding the GIL;
    ``<load>.svg`` is a flame graph.
    """
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)
    for name, options in PROFILE_LOADS.items():
        with running() as server:
            loadgen(server, "closed", *options, "--duration", "2")
            wait_until_quiet()
            command = [sys.executable, str(LOADGEN), "closed", *options, "--port"]
            command += [str(server.port), "--key", WRITE_KEY, "--prefix", f"profile-{name}"]
            command += ["--duration", str(3 * seconds + 6), "--warmup", "0"]
            load = subprocess.Popen(command, stdout=subprocess.PIPE)
            time.sleep(2)
            for form, suffix, extra in RECORDINGS:
                record = [spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds))]
                record += ["--rate", "200", "--threads", "--format", form, *extra]
                record += ["-o", str(out / f"{name}{suffix}")]
                subprocess.run(record, check=True, capture_output=True)
            answer, _ = load.communicate(timeout=180)
            rate = json.loads(answer)["events_per_s"]
            print(f"{name}: {out / name}*, {rate:,.0f} events/s while recorded")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--quick"]
    if args[:1] == ["fill"]:
        db, workspace_dir, count = Path(args[1]), Path(args[2]), int(args[3])
        print(f"{fill(db, workspace_dir, count):.1f}")
        return
    if args[:1] == ["profile"]:
        default = Path(tempfile.gettempdir()) / "journeyman-profiles"
        profile(Path(args[1]) if len(args) > 1 else default)
        return
    config = settings()
    chosen = {
        "track": track,
        "batch": batch,
        "latency": latency,
        "scale": scale,
    }
    names = args or list(chosen)
    for name in names:
        for label, value, note in chosen[name](config):
            print(f"{label:<60} {value:>12,.3f}   {note}", flush=True)


if __name__ == "__main__":
    main()
