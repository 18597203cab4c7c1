"""A lean HTTP/1.1 load generator for ``journeyman serve``, run as its own process.

It speaks just enough HTTP/1.1 over raw asyncio sockets (keep-alive, ``Content-Length``
bodies, the status line and ``Content-Length`` of each answer), on uvloop when it is
installed, to leave the CPU to the server it measures on a small machine: about 0.08 of a
core for 3,000 requests/s. Every run is bounded by a duration and a request count, and
connects to loopback only. It prints one JSON object with what it measured.

Modes:

- ``closed``: ``--connections`` keep-alive connections each send the next request as soon
  as the previous one is answered (sustained throughput of ``/v1/track`` or ``/v1/batch``).
  With ``--urls FILE`` (one path a line) they send ``GET`` requests for those paths in
  turn instead (tracked email's click and open links); a 302 or 200 is an answer counted.
  With ``--bodies FILE`` (one ``/v1/batch`` body a line, of ``--batch`` calls each) they
  send those bodies, each once, in the order of the file, and stop when all are answered.
- ``open``: requests go out at a fixed ``--rate`` whatever the answers do (open loop:
  a request's latency counts from when it was due, so a slow server cannot hide its
  queueing); the messages file is followed to time each request until its message is
  handed to the file channel.
- ``alarm``: ``--count`` ``alarm_set`` events that all wake at the same instant ``--at``,
  sent in batches; then the messages file is followed until every alarm message is there,
  to time how late each one is.

Every event has a fresh ``userId`` (``<prefix>-<n>``), which is also its ``messageId``,
as Segment clients send one.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import resource
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

HOSTS = ("127.0.0.1", "localhost", "::1")


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            start = head.find(b"content-length:")
            length = 0
            if start >= 0:
                stop = head.find(b"\r\n", start)
                length = int(head[start + 15 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buffer) < total:
                return
            status = int(head[9:12])
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.transport.write(data)
        return await waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int) -> Connection:
    if host not in HOSTS:
        raise SystemExit(f"loadgen only talks to loopback, not {host}")
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(Connection, host, port)
    return protocol


class Requests:
    """Builds the raw requests: one track call, or a batch of them."""

    def __init__(self, host: str, port: int, key: str, prefix: str) -> None:
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self.prefix = prefix
        self.host = f"{host}:{port}"

    def raw(self, path: str, body: bytes) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\n".encode()
            + self.head
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def get(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: loadgen\r\n\r\n".encode()

    def uid(self, n: int) -> str:
        return f"{self.prefix}-{n}"

    def _signed_up(self, n: int, typed: bool) -> str:
        uid = self.uid(n)
        kind = '"type":"track",' if typed else ""
        return (
            f'{{{kind}"userId":"{uid}","messageId":"{uid}","event":"signed_up",'
            f'"properties":{{"plan":"pro","email":"{uid}@example.com"}}}}'
        )

    def track(self, n: int) -> bytes:
        return self.raw("/v1/track", self._signed_up(n, False).encode())

    def batch(self, first: int, size: int) -> bytes:
        items = ",".join(self._signed_up(n, True) for n in range(first, first + size))
        return self.raw("/v1/batch", f'{{"batch":[{items}]}}'.encode())

    def alarms(self, first: int, size: int, at: str) -> bytes:
        items = ",".join(
            f'{{"type":"track","userId":"{self.uid(n)}","messageId":"{self.uid(n)}",'
            f'"event":"alarm_set","properties":{{"at":"{at}",'
            f'"email":"{self.uid(n)}@example.com"}}}}'
            for n in range(first, first + size)
        )
        return self.raw("/v1/batch", f'{{"batch":[{items}]}}'.encode())


def quantiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {
        "count": len(ordered),
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# closed loop


async def closed(args: argparse.Namespace) -> dict[str, Any]:
    make = Requests(args.host, args.port, args.key, args.prefix)
    per_request = args.batch if args.path == "/v1/batch" else 1
    gets = [make.get(p) for p in Path(args.urls).read_text().split()] if args.urls else []
    bodies = [
        make.raw("/v1/batch", line)
        for line in (Path(args.bodies).read_bytes().splitlines() if args.bodies else [])
        if line
    ]
    most = min(args.max_requests, len(bodies)) if bodies else args.max_requests
    answered = {200, 302} if gets else {200, 202}  # a batch answers 200, one call 202
    connections = [await connect(args.host, args.port) for _ in range(args.connections)]
    statuses: collections.Counter[int] = collections.Counter()
    done_at: list[float] = []  # when each accepted request was answered
    latencies: list[float] = []
    errors: list[str] = []
    counter = 0
    began = time.perf_counter()
    warm_until = began + args.warmup
    deadline = warm_until + args.duration
    cpu_began = cpu_seconds()

    async def worker(conn: Connection) -> None:
        nonlocal counter
        while counter < most and time.perf_counter() < deadline:
            n = counter
            counter += 1
            if gets:
                raw = gets[n % len(gets)]
            elif bodies:
                raw = bodies[n]
            elif per_request > 1:
                raw = make.batch(n * per_request, per_request)
            else:
                raw = make.track(n)
            sent = time.perf_counter()
            try:
                status, _ = await conn.request(raw)
            except ConnectionError as error:
                errors.append(str(error))
                return
            now = time.perf_counter()
            statuses[status] += 1
            if status in answered:
                done_at.append(now)
                if now >= warm_until:
                    latencies.append(now - sent)
            elif status == 429:
                await asyncio.sleep(0.05)

    await asyncio.gather(*(worker(c) for c in connections))
    finished = time.perf_counter()
    cpu = cpu_seconds() - cpu_began
    for conn in connections:
        conn.close()
    # Throughput over the measured window only: after the warm-up, up to the last answer.
    measured = [t for t in done_at if t >= warm_until]
    window = (max(measured) - warm_until) if measured else 0.0
    requests_per_s = len(measured) / window if window > 0 else 0.0
    return {
        "mode": "closed",
        "path": args.path,
        "connections": args.connections,
        "batch": per_request,
        "requests_sent": counter,
        "requests_accepted": len(done_at),
        "events_accepted": len(done_at) * per_request,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors[:5],
        "window_s": window,
        "requests_per_s": requests_per_s,
        "events_per_s": requests_per_s * per_request,
        "latency_ms": {k: v * 1000 if k != "count" else v for k, v in quantiles(latencies).items()},
        "elapsed_s": finished - began,
        "client_cpu_share": cpu / (finished - began),
        "client_cpu_seconds": cpu,
    }


# following the messages file


class Line(msgspec.Struct):
    profile_id: str
    at: str
    journey: str = ""


class FileTail:
    """Reads the lines appended to a file (JSON, one per line) every ``every`` seconds,
    from its size when made; :meth:`note` takes each new line with the time it was read."""

    def __init__(self, path: Path, line: type[msgspec.Struct], every: float = 0.002) -> None:
        self.path = path
        self.every = every
        self.offset = path.stat().st_size if path.exists() else 0
        self._rest = b""
        self._decode = msgspec.json.Decoder(line).decode
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.poll()

    async def _run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(self.every)

    def poll(self) -> None:
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return
        if not data:
            return
        perf, wall = time.perf_counter(), time.time()
        self.offset += len(data)
        *lines, self._rest = (self._rest + data).split(b"\n")
        for raw in lines:
            if raw:
                self.note(self._decode(raw), perf, wall)

    def note(self, line: Any, perf: float, wall: float) -> None:
        raise NotImplementedError


class Follower(FileTail):
    """Notes when each profile's first message appeared in the file channel's file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, Line)
        self.seen: dict[str, tuple[float, float, str]] = {}  # profile -> (perf, wall, at)

    def note(self, line: Line, perf: float, wall: float) -> None:
        self.seen.setdefault(line.profile_id, (perf, wall, line.at))

    async def wait_for(self, count: int, timeout: float) -> None:
        until = time.perf_counter() + timeout
        while len(self.seen) < count and time.perf_counter() < until:
            await asyncio.sleep(0.01)


# open loop


async def open_loop(args: argparse.Namespace) -> dict[str, Any]:
    make = Requests(args.host, args.port, args.key, args.prefix)
    follower = Follower(Path(args.messages)) if args.messages else None
    idle: collections.deque[Connection] = collections.deque()
    for _ in range(args.connections):
        idle.append(await connect(args.host, args.port))
    opened = args.connections
    waiting: collections.deque[int] = collections.deque()  # due requests without a connection
    due_at: dict[int, float] = {}
    statuses: collections.Counter[int] = collections.Counter()
    latencies: list[float] = []
    errors: list[str] = []
    tasks: set[asyncio.Task[None]] = set()
    total = min(args.max_requests, int(args.rate * args.duration))
    interval = 1.0 / args.rate
    if follower is not None:
        follower.start()
    cpu_began = cpu_seconds()
    began = time.perf_counter()

    async def send(conn: Connection, n: int) -> None:
        while True:
            try:
                status, _ = await conn.request(make.track(n))
            except ConnectionError as error:
                errors.append(str(error))
                return
            statuses[status] += 1
            if status == 202:
                latencies.append(time.perf_counter() - due_at[n])
            if not waiting:
                idle.append(conn)
                return
            n = waiting.popleft()

    def start(conn: Connection, n: int) -> None:
        task = asyncio.create_task(send(conn, n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def launch(n: int) -> None:
        if idle:
            start(idle.popleft(), n)
        else:
            waiting.append(n)

    n = 0
    while n < total:
        now = time.perf_counter()
        # Send everything that is due by now: the schedule, not the answers, sets the pace.
        while n < total and began + n * interval <= now:
            due_at[n] = began + n * interval
            launch(n)
            n += 1
        if opened < args.max_connections and waiting:
            # Behind schedule with every connection busy: open one more.
            conn = await connect(args.host, args.port)
            opened += 1
            if waiting:
                start(conn, waiting.popleft())
            else:
                idle.append(conn)
        await asyncio.sleep(max(0.0, began + n * interval - time.perf_counter()))
    while tasks or waiting:
        await asyncio.sleep(0.005)
    sending = time.perf_counter() - began
    cpu = cpu_seconds() - cpu_began
    message_ms: list[float] = []
    missing = 0
    if follower is not None:
        await follower.wait_for(statuses.get(202, 0), args.drain)
        await follower.stop()
        for k in range(total):
            seen = follower.seen.get(make.uid(k))
            if seen is None:
                missing += 1
            else:
                message_ms.append((seen[0] - due_at[k]) * 1000)
    for conn in idle:
        conn.close()
    return {
        "mode": "open",
        "rate": args.rate,
        "sent": total,
        "achieved_rate": total / sending,
        "connections_opened": opened,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors[:5],
        "latency_ms": {k: v * 1000 if k != "count" else v for k, v in quantiles(latencies).items()},
        "message_ms": quantiles(message_ms),
        "messages_missing": missing,
        "client_cpu_share": cpu / sending,
        "client_cpu_seconds": cpu,
    }


# alarms that all wake at once


async def alarm(args: argparse.Namespace) -> dict[str, Any]:
    make = Requests(args.host, args.port, args.key, args.prefix)
    follower = Follower(Path(args.messages))
    wake = datetime.fromisoformat(args.at.replace("Z", "+00:00")).timestamp()
    conns = [await connect(args.host, args.port) for _ in range(4)]
    statuses: collections.Counter[int] = collections.Counter()
    cpu_began = cpu_seconds()
    began = time.perf_counter()
    chunks = list(range(0, args.count, args.batch))

    async def worker(conn: Connection, mine: list[int]) -> None:
        for first in mine:
            status, body = await conn.request(
                make.alarms(first, min(args.batch, args.count - first), args.at)
            )
            statuses[status] += 1
            if status != 202:
                print(body.decode(errors="replace"), file=sys.stderr)

    await asyncio.gather(*(worker(c, chunks[i :: len(conns)]) for i, c in enumerate(conns)))
    ingest = time.perf_counter() - began
    for conn in conns:
        conn.close()
    if time.time() >= wake:
        return {"mode": "alarm", "error": f"ingest took {ingest:.1f}s, past the wake time"}
    follower.start()
    await asyncio.sleep(max(0.0, wake - time.time()))
    await follower.wait_for(args.count, args.timeout)
    await follower.stop()
    handed: list[float] = []  # wake instant -> line in the file
    fired: list[float] = []  # wake instant -> the engine ran the send step (the line's `at`)
    for k in range(args.count):
        seen = follower.seen.get(make.uid(k))
        if seen is not None:
            handed.append(seen[1] - wake)
            fired.append(datetime.fromisoformat(seen[2].replace("Z", "+00:00")).timestamp() - wake)
    return {
        "mode": "alarm",
        "count": args.count,
        "ingest_s": ingest,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "fired_s": quantiles(fired),
        "handed_s": quantiles(handed),
        "missing": args.count - len(handed),
        "client_cpu_seconds": cpu_seconds() - cpu_began,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["closed", "open", "alarm"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", default=os.environ.get("JOURNEYMAN_WRITE_KEY", ""))
    parser.add_argument("--prefix", default=f"lg{os.getpid()}")
    parser.add_argument("--path", default="/v1/track", choices=["/v1/track", "/v1/batch"])
    parser.add_argument("--urls", default="", help="closed loop: GET these paths (a file)")
    parser.add_argument("--bodies", default="", help="closed loop: POST these batches (a file)")
    parser.add_argument("--batch", type=int, default=200, help="events per /v1/batch call")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--max-connections", type=int, default=256, help="open loop: at most")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds not measured")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop: requests/s")
    parser.add_argument("--messages", default="", help="the file channel's JSON lines file")
    parser.add_argument("--drain", type=float, default=15.0, help="seconds to wait for messages")
    parser.add_argument("--count", type=int, default=10_000, help="alarm: how many")
    parser.add_argument("--at", default="", help="alarm: the wake instant, ISO 8601")
    parser.add_argument("--timeout", type=float, default=60.0, help="alarm: longest wait")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    run = {"closed": closed, "open": open_loop, "alarm": alarm}[args.mode]
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
