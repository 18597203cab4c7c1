"""The one load generator for every peer: Segment-shaped track calls over loopback HTTP.

It runs as its own process (``benchmarks/loadgen.py``'s raw HTTP/1.1 connections, on
uvloop) against any peer's ``POST /v1/track``, and follows the peer's sink file (one JSON
line per message, with ``profile_id`` and ``template``) to see when each message was
sent. Every run is bounded in count and time. It prints one JSON object.

Modes:

- ``closed``: ``--count`` events (``--event``) for profiles ``first``, ``first+step``,
  ... over ``--connections`` connections, each sending as soon as its last call was
  answered, for at most ``--duration`` seconds, but with at most ``--window`` profiles
  between their call and their message (``--templates``) in the sink, so that a peer
  that answers before it works cannot pile up a queue. The rate that counts is profiles
  whose message reached the sink per second, from the first call to the last one.
- ``open``: entries at ``--rate`` per second for ``--duration`` seconds, and a follow-up
  for every second profile ``--follow-after`` seconds after its entry was due (or once
  the entry was answered, if that is later); each latency runs from when the call was
  due (a slow peer cannot hide its queue) to the message's line in the sink: the
  welcome for entries, the offer for follow-ups.
- ``timer``: ``--count`` entries of ``signed_up_soon`` (a 10s wait) at ``--rate``; the
  lateness of each offer is its line's time minus (entry due + ``--wait``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import heapq
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).parent.parent))

from loadgen import Connection, FileTail, connect, cpu_seconds, quantiles

OFFERS = ("pro_offer", "basic_offer")


class Line(msgspec.Struct):
    profile_id: str
    template: str


class Sink(FileTail):
    """Follows the sink file: when each (profile, template) line first appeared."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, Line)
        self.seen: dict[tuple[str, str], float] = {}
        self.waiters: dict[str, asyncio.Future[None]] = {}  # profile -> its next message

    def note(self, line: Line, perf: float, wall: float) -> None:
        self.seen.setdefault((line.profile_id, line.template), perf)
        waiter = self.waiters.pop(line.profile_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def message(self, profile: str, templates: tuple[str, ...], limit: float) -> None:
        """Until one of ``templates`` reached the sink for ``profile`` (at most ``limit`` s)."""
        while self.when(profile, templates) is None:
            waiter = self.waiters.setdefault(profile, asyncio.get_running_loop().create_future())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit):
                    await asyncio.shield(waiter)
            if waiter.done():
                continue
            return

    def when(self, profile: str, templates: tuple[str, ...]) -> float | None:
        times = [t for name in templates if (t := self.seen.get((profile, name))) is not None]
        return min(times) if times else None

    async def wait_for(self, wanted: list[tuple[str, tuple[str, ...]]], limit: float) -> None:
        until = time.perf_counter() + limit
        pending = list(wanted)
        while pending and time.perf_counter() < until:
            pending = [(p, t) for p, t in pending if self.when(p, t) is None]
            await asyncio.sleep(0.05)


class Calls:
    def __init__(self, args: argparse.Namespace) -> None:
        self.head = (
            f"Host: 127.0.0.1:{args.port}\r\nAuthorization: Bearer {args.key}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self.prefix = args.prefix

    def uid(self, n: int) -> str:
        return f"{self.prefix}-{n}"

    def track(self, n: int, event: str) -> bytes:
        uid = self.uid(n)
        if event == "followed_up":
            body = f'{{"userId":"{uid}","messageId":"{uid}-f","event":"followed_up"}}'
        else:
            plan = "pro" if n % 4 < 2 else "basic"
            body = (
                f'{{"userId":"{uid}","messageId":"{uid}","event":"{event}",'
                f'"properties":{{"plan":"{plan}","email":"{uid}@example.com"}}}}'
            )
        data = body.encode()
        return (
            b"POST /v1/track HTTP/1.1\r\n"
            + self.head
            + f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )


def ms(values: list[float]) -> dict[str, float | int]:
    return {k: v * 1000 if k != "count" else v for k, v in quantiles(values).items()}


async def closed(args: argparse.Namespace) -> dict[str, Any]:
    calls = Calls(args)
    sink = Sink(Path(args.sink))
    sink.start()
    templates = tuple(args.templates.split(","))
    numbers = iter(range(args.first, args.first + args.count * args.step, args.step))
    conns = [await connect("127.0.0.1", args.port) for _ in range(args.connections)]
    statuses: collections.Counter[int] = collections.Counter()
    accepted: list[int] = []
    acks: list[float] = []
    errors: list[str] = []
    began = time.perf_counter()
    deadline = began + args.duration
    cpu = cpu_seconds()

    # Closed on the messages as well as on the answers: a peer that answers before it
    # works (a queue) gets no more than --window profiles between call and message.
    window = asyncio.Semaphore(args.window)
    pending: set[asyncio.Task[None]] = set()

    async def release_when_sent(n: int) -> None:
        try:
            await sink.message(calls.uid(n), templates, args.drain)
        finally:
            window.release()

    async def worker(conn: Connection) -> None:
        for n in numbers:
            await window.acquire()
            if conn.transport.is_closing():  # the server closed it while it waited
                conn = await connect("127.0.0.1", args.port)
            sent = time.perf_counter()
            try:
                status, _ = await conn.request(calls.track(n, args.event))
            except ConnectionError as error:
                window.release()
                errors.append(str(error))
                return
            statuses[status] += 1
            if status == 202:
                accepted.append(n)
                acks.append(time.perf_counter() - sent)
                task = asyncio.create_task(release_when_sent(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
            else:
                window.release()
            if time.perf_counter() >= deadline:
                return

    await asyncio.gather(*(worker(c) for c in conns))
    sending = time.perf_counter() - began
    for conn in conns:
        conn.close()
    wanted = [(calls.uid(n), templates) for n in accepted]
    await sink.wait_for(wanted, args.drain)
    await sink.stop()
    seen = [t for p, names in wanted if (t := sink.when(p, names)) is not None]
    window = (max(seen) - began) if seen else 0.0
    return {
        "mode": "closed",
        "event": args.event,
        "sent": sum(statuses.values()),
        "accepted": len(accepted),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors[:5],
        "sending_s": sending,
        "accepted_per_s": len(accepted) / sending if sending else 0.0,
        "completed": len(seen),
        "missing": len(wanted) - len(seen),
        "window_s": window,
        "completed_per_s": len(seen) / window if window else 0.0,
        "ack_ms": ms(acks),
        "client_cpu_seconds": cpu_seconds() - cpu,
    }


class Schedule:
    """Open loop: calls go out when due, over as many connections as that takes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.calls = Calls(args)
        self.idle: collections.deque[Connection] = collections.deque()
        self.queued: collections.deque[tuple[float, int, str]] = collections.deque()
        self.opened = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors: list[str] = []
        # A follow-up goes out only once its profile's entry was answered, as a customer's
        # second event comes after the first: until then it waits here, and its latency
        # counts from that answer.
        self.answered: set[int] = set()
        self.deferred: dict[int, tuple[float, int, str]] = {}
        self.released: dict[int, float] = {}

    async def run(self, plan: list[tuple[float, int, str]]) -> None:
        """Send every (due offset, profile number, event) of ``plan`` on time."""
        for _ in range(self.args.connections):
            self.idle.append(await connect("127.0.0.1", self.args.port))
        self.opened = self.args.connections
        heapq.heapify(plan)
        while plan:
            due, n, event = plan[0]
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            heapq.heappop(plan)
            if event == "followed_up" and n not in self.answered:
                self.deferred[n] = (due, n, event)
                continue
            if self.idle:
                self._start(self.idle.popleft(), (due, n, event))
            else:
                self.queued.append((due, n, event))
                if self.opened < self.args.max_connections:
                    self.opened += 1
                    self._start(await connect("127.0.0.1", self.args.port), None)
        while self.tasks or self.queued:
            await asyncio.sleep(0.005)
        self.deferred.clear()  # their entries were refused: nothing to follow up
        for conn in self.idle:
            conn.close()

    def _start(self, conn: Connection, call: tuple[float, int, str] | None) -> None:
        task = asyncio.create_task(self._send(conn, call))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, conn: Connection, call: tuple[float, int, str] | None) -> None:
        while True:
            if call is None:
                if not self.queued:
                    self.idle.append(conn)
                    return
                call = self.queued.popleft()
            _, n, event = call
            if conn.transport.is_closing():  # the server closed it while it was idle
                conn = await connect("127.0.0.1", self.args.port)
            try:
                status, _ = await conn.request(self.calls.track(n, event))
            except ConnectionError as error:
                self.errors.append(str(error))
                return
            self.statuses[status] += 1
            call = None
            if event != "followed_up":
                self.answered.add(n)
                if (later := self.deferred.pop(n, None)) is not None:
                    self.released[n] = time.perf_counter()
                    self.queued.append(later)


async def open_loop(args: argparse.Namespace) -> dict[str, Any]:
    schedule = Schedule(args)
    sink = Sink(Path(args.sink))
    sink.start()
    count = int(args.rate * args.duration)
    began = time.perf_counter() + 0.2
    plan: list[tuple[float, int, str]] = []
    for k in range(count):
        due = began + k / args.rate
        plan.append((due, k, "signed_up"))
        if k % 2 == 0:
            plan.append((due + args.follow_after, k, "followed_up"))
    dues = {(n, event): due for due, n, event in plan}
    cpu = cpu_seconds()
    await schedule.run(plan)
    uid = schedule.calls.uid
    wanted = [(uid(k), ("welcome_email",)) for k in range(count)]
    wanted += [(uid(k), OFFERS) for k in range(0, count, 2)]
    await sink.wait_for(wanted, args.drain)
    await sink.stop()
    entry, follow, missing = [], [], 0
    for k in range(count):
        for event, templates, into in (
            ("signed_up", ("welcome_email",), entry),
            ("followed_up", OFFERS, follow),
        ):
            if (k, event) not in dues:
                continue
            seen = sink.when(uid(k), templates)
            due = dues[(k, event)]
            if event == "followed_up":
                due = max(due, schedule.released.get(k, due))
            if seen is None:
                missing += 1
            else:
                into.append(seen - due)
    return {
        "mode": "open",
        "rate": args.rate,
        "profiles": count,
        "statuses": {str(k): v for k, v in sorted(schedule.statuses.items())},
        "errors": schedule.errors[:5],
        "connections_opened": schedule.opened,
        "entry_to_send_ms": ms(entry),
        "follow_up_to_send_ms": ms(follow),
        "missing": missing,
        "client_cpu_seconds": cpu_seconds() - cpu,
    }


async def timer(args: argparse.Namespace) -> dict[str, Any]:
    schedule = Schedule(args)
    sink = Sink(Path(args.sink))
    sink.start()
    began = time.perf_counter() + 0.2
    plan = [(began + k / args.rate, k, "signed_up_soon") for k in range(args.count)]
    dues = {n: due for due, n, _ in plan}
    await schedule.run(plan)
    uid = schedule.calls.uid
    await sink.wait_for([(uid(k), OFFERS) for k in range(args.count)], args.wait + args.drain)
    await sink.stop()
    late = [
        seen - dues[k] - args.wait
        for k in range(args.count)
        if (seen := sink.when(uid(k), OFFERS)) is not None
    ]
    return {
        "mode": "timer",
        "count": args.count,
        "statuses": {str(k): v for k, v in sorted(schedule.statuses.items())},
        "errors": schedule.errors[:5],
        "late_ms": ms(late),
        "missing": args.count - len(late),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["closed", "open", "timer"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--sink", required=True, help="the peer's JSON lines file")
    parser.add_argument("--event", default="signed_up")
    parser.add_argument("--templates", default="welcome_email")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--window", type=int, default=1000, help="closed: most in flight")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--drain", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--follow-after", type=float, default=1.0)
    parser.add_argument("--wait", type=float, default=10.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    run = {"closed": closed, "open": open_loop, "timer": timer}[args.mode]
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
