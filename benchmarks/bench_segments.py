"""What keeping 20 segments up to date costs per event, against no segments.

Two measures, each with the benchmark workspace (``benchmarks/workspace/``: a welcome
journey on ``signed_up``) as it is, and with :data:`SEGMENTS` added: 20 segments that all
read ``signed_up`` (windows, sums, days_since, last, first_seen, in_segment, traits and
local time), so every event evaluates every one of them and sets the profile's clock:

- ``core``: the one core (``journeyman.domain.core.apply``, what serve, worker and journey
  tests run) on batches of sign-ups, in this process: microseconds of CPU per event;
- ``ingest``: ``journeyman serve`` on SQLite, closed-loop ``POST /v1/batch`` of 200 sign-ups
  (as the server batch benchmark), runs with and without segments taking turns.

Those 20 segments are the worst case: every event is one that all of them read, and a new
profile joins 8 of them at once (8 segment events, trace lines and member rows for one
sign-up). A third measure takes a realistic mix (:data:`MIX_SEGMENTS`): 20 segments over
six events and five traits, the way a team writes them (buyers, VIPs by spend, active and
dormant app users, pricing viewers, plan, country, birthdays, office hours), and a stream
of events of 2,000 profiles (first each one's sign-up, then app opens, page views, orders,
pricing views, abandoned carts, support tickets and trait changes, drawn with a fixed seed,
ten minutes of the clock to a batch, so that days pass and windows close). Over the 50,000
events of a full run, 0.6 segment changes come per event, and a profile ends in 8 of the 20
segments on average:

- ``mix``: the one core on that stream, with and without the 20 segments;
- ``mix, on SQLite``: the same stream through what the processor does for each batch on
  SQLite (load the profiles, the one core, commit, as ``journeyman serve``), in this
  process: wall time per event, with and without the segments;
- ``mix, serve``: the same stream (with the server's clock instead of the stream's, and
  fresh profiles in each run) sent to a real ``journeyman serve`` on SQLite as
  ``POST /v1/batch`` of 200 calls over 8 connections (``loadgen.py --bodies``), runs with
  and without the segments taking turns: the server process's CPU seconds per event
  (from ``/proc``, what a busy machine does not blur) beside events/s;
- ``mix, returning profiles``: the same, but every measured run on the 2,000 profiles the
  warm-up signed up, without their sign-ups: profiles whose segments are settled, as most
  of a live stream's are.

Run with ``python benchmarks/bench_segments.py [core|mix|ingest|serve|returning]``
(``--quick`` for shorter runs).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_server import Closed, Others, Server, _refuse_errors, loadgen, settings
from journeyman import load_workspace
from journeyman.domain.core import Known, Snapshot, apply
from journeyman.domain.engine import Engine
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event, Profile
from journeyman.storage.sqlite import SQLiteStore
from machine import wait_until_quiet

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


# The realistic mix: the events it reads (beside the workspace's signed_up), its segments.
MIX_EVENTS = {
    "order_completed": {"total": "number"},
    "app_opened": {},
    "page_viewed": {"path": "string"},
    "pricing_viewed": {},
    "cart_abandoned": {"total": "number"},
    "ticket_opened": {},
}
_MIX_WHENS = {
    "new_users": 'days_since("signed_up") < 7',
    "pro_signups": 'last("signed_up").properties.plan == "pro"',
    "buyers": 'count("order_completed", "30d") >= 1',
    "repeat_buyers": 'count("order_completed", "30d") >= 2',
    "big_spenders": 'sum("order_completed", "total", "90d") > 500',
    "big_last_order": 'last("order_completed").properties.total > 100',
    "lapsed_buyers": 'days_since("order_completed") > 30',
    "active": 'count("app_opened", "7d") >= 3',
    "dormant": 'days_since("app_opened") >= 14',
    "power_users": 'count("app_opened", "30d") >= 20',
    "pricing_viewers": 'count("pricing_viewed", "7d") >= 1',
    "cart_abandoners": 'count("cart_abandoned", "7d") >= 1',
    "support_heavy": 'count("ticket_opened", "30d") >= 2',
    "pro": 'profile.plan == "pro"',
    "europe": 'profile.country in ["FR", "DE", "IT", "ES"]',
    "vip": "profile.vip == true",
    "newsletter": "profile.newsletter == true",
    "pro_buyers": 'in_segment("pro") and in_segment("buyers")',
    "birthday": "is_anniversary(profile.birthday)",
    "office_hours": "hour(now_local) >= 9 and hour(now_local) < 18",
}
MIX_SEGMENTS = "\n---\n".join(
    f"kind: segment\nname: {name}\nwhen: '{when}'" for name, when in _MIX_WHENS.items()
)
MIX_DEFINITIONS = "\n---\n".join(
    f"kind: event\nname: {name}\nidentity: userId\nschema:\n  type: object\n"
    + (
        f"  properties: {{{', '.join(f'{k}: {{type: {t}}}' for k, t in props.items())}}}\n"
        if props
        else ""
    )
    for name, props in MIX_EVENTS.items()
)
MIX_TRAITS = "---\nkind: settings\ntraits: [plan, country, vip, newsletter, birthday]\n"
# The profiles of the mix's stream, each signed up first.
MIX_PROFILES = 2_000
# What a returning profile does, and how often (the trait changes are identify calls).
_MIX = [
    ("app_opened", 40),
    ("page_viewed", 25),
    ("order_completed", 8),
    ("pricing_viewed", 10),
    ("cart_abandoned", 5),
    ("ticket_opened", 4),
    ("identify", 8),
]


def _folder(with_segments: bool, mix: bool = False) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="journeyman-bench-segments-"))
    shutil.copytree(WORKSPACE, folder / "workspace")
    workspace = folder / "workspace"
    if mix:
        segments = MIX_SEGMENTS + "\n" + MIX_TRAITS if with_segments else MIX_TRAITS.lstrip("-\n")
        (workspace / "mix.yaml").write_text(MIX_DEFINITIONS + "\n---\n" + segments)
    elif with_segments:
        (workspace / "segments.yaml").write_text(SEGMENTS + "\n" + TRAITS)
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
    new profile, which joins 8 of the segments), and on returning ones (1,000 profiles,
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


# 3. the realistic mix


def _mix(
    events: int, batch: int, profiles: int = MIX_PROFILES
) -> Iterator[tuple[datetime, list[Event]]]:
    """Batches of the mix, each with its moment: the profiles' sign-ups, then what they do
    (:data:`_MIX`), drawn with a fixed seed, ten minutes of the clock to a batch."""
    draw = random.Random(16)
    names, weights = zip(*_MIX, strict=True)
    start = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    for first in range(0, events, batch):
        now = start + timedelta(minutes=10 * (first // batch))
        triggers = []
        for n in range(first, first + batch):
            uid = f"u{n % profiles}"
            name = "signed_up" if n < profiles else draw.choices(names, weights)[0]
            triggers.append(_mix_event(draw, name, uid, n, now))
        yield now, triggers


def _mix_event(draw: random.Random, name: str, uid: str, n: int, now: datetime) -> Event:
    if name == "identify":
        traits = {
            "plan": draw.choice(["free", "pro"]),
            "country": draw.choice(["FR", "DE", "US", "GB", "IT", "ES", "BR"]),
            "vip": draw.random() < 0.1,
            "newsletter": draw.random() < 0.5,
            "birthday": f"19{draw.randint(50, 99)}-{draw.randint(1, 12):02}-"
            f"{draw.randint(1, 28):02}",
        }
        return Event(
            name="identify",
            type="identify",
            profile_id=uid,
            timestamp=now,
            properties=traits,
            message_id=f"m{n}",
            user_id=uid,
        )
    properties: dict[str, Any] = {}
    if name == "signed_up":
        properties = {"plan": draw.choice(["free", "pro"]), "email": f"{uid}@example.com"}
    elif name in ("order_completed", "cart_abandoned"):
        properties = {"total": round(draw.uniform(5, 300), 2)}
    elif name == "page_viewed":
        properties = {"path": draw.choice(["/", "/docs", "/blog", "/pricing"])}
    return Event(
        name=name,
        profile_id=uid,
        timestamp=now,
        properties=properties,
        message_id=f"m{n}",
        user_id=uid,
    )


def _mix_core_seconds(workspace: Workspace, events: int, batch: int) -> float:
    """CPU seconds of the one core on the mix, each profile keeping what it was left."""
    return core_seconds(workspace, _mix(events, batch))


def core_seconds(workspace: Workspace, stream: Iterable[tuple[datetime, list[Event]]]) -> float:
    """CPU seconds of the one core on a stream of batches, each profile keeping what it was
    left."""
    engine = Engine(workspace)
    kept: dict[str, Snapshot] = {}
    spent = 0.0
    for now, triggers in stream:
        snapshots = {
            t.profile_id: kept.get(t.profile_id) or Snapshot(Profile(id=t.profile_id), [], new=True)
            for t in triggers
        }
        began = time.process_time()
        apply(engine, snapshots, triggers, now, Known())
        spent += time.process_time() - began
        kept.update(snapshots)
    return spent


def _mix_store_seconds(workspace: Workspace, events: int, batch: int) -> float:
    """Wall seconds of what the processor does for each batch of the mix on SQLite: load
    the profiles, the one core, commit (durably, as ``journeyman serve``)."""

    async def run() -> float:
        folder = Path(tempfile.mkdtemp(prefix="journeyman-bench-segments-db-"))
        store = SQLiteStore(folder / "journeyman.db")
        await store.open()
        engine = Engine(workspace)
        try:
            began = time.perf_counter()
            for now, triggers in _mix(events, batch):
                snapshots = await store.load({t.profile_id for t in triggers})
                ids = [t.message_id for t in triggers if t.message_id]
                known = Known(seen=await store.seen(ids))
                _, changes = apply(engine, snapshots, triggers, now, known)
                await store.commit(changes)
            return time.perf_counter() - began
        finally:
            await store.close()
            shutil.rmtree(folder, ignore_errors=True)

    return asyncio.run(run())


def mix() -> list[Row]:
    """The realistic mix's throughput drop with 20 segments: the one core, and the
    processor's work on SQLite."""
    quick = settings().quick
    events, rounds = (20_000, 3) if quick else (50_000, 5)
    plain = _load(_folder(False, mix=True))
    with_segments = _load(_folder(True, mix=True))
    assert len(with_segments.segments) == 20
    rows = []
    for label, measure, unit in (
        ("core", _mix_core_seconds, "CPU"),
        ("on SQLite", _mix_store_seconds, "wall time"),
    ):
        measure(plain, 4_000, 200)  # warm up
        measure(with_segments, 4_000, 200)
        bare, kept = [], []
        for _ in range(rounds):  # taking turns
            bare.append(measure(plain, events, 200) / events * 1e6)
            kept.append(measure(with_segments, events, 200) / events * 1e6)
        base, segmented = statistics.median(bare), statistics.median(kept)
        what = "the one core" if label == "core" else "load, the one core and commit on SQLite"
        note = (
            f"{what}, the realistic mix ({events:,} events of {MIX_PROFILES:,} profiles in "
            f"batches of 200): {base:.1f} µs {unit} per event without segments, "
            f"{segmented:.1f} µs with 20 (medians of {rounds} runs taking turns)"
        )
        rows.append((f"20 segments, mix, {label}: drop", (1 - base / segmented) * 100, note))
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


# 4. the realistic mix through journeyman serve


def _call(event: Event, prefix: str, owner: str | None = None) -> dict[str, Any]:
    """The mix's event as a call of ``POST /v1/batch`` for a profile of the run ``prefix``
    (or of the run ``owner``: profiles that exist already), with no timestamp: the
    server's clock."""
    uid = f"{owner or prefix}-{event.profile_id}"
    call: dict[str, Any] = {"userId": uid, "messageId": f"{prefix}-{event.message_id}"}
    if event.type == "identify":
        return {"type": "identify", **call, "traits": event.properties}
    properties = dict(event.properties)
    if "email" in properties:
        properties["email"] = f"{uid}@example.com"
    return {"type": "track", **call, "event": event.name, "properties": properties}


def _bodies(folder: Path, prefix: str, events: int, owner: str | None = None) -> Path:
    """A file of the mix's batches, one ``/v1/batch`` body a line (see loadgen.py); with
    ``owner``, what the profiles of that run do next (the mix without its sign-ups)."""
    path = folder / f"{prefix}.ndjson"
    skipped = 0 if owner is None else MIX_PROFILES  # the sign-ups come first
    with path.open("w") as file:
        for _, triggers in itertools.islice(_mix(events + skipped, 200), skipped // 200, None):
            batch = [_call(t, prefix, owner) for t in triggers]
            file.write(json.dumps({"batch": batch}) + "\n")
    return path


def _settled(server: Server, quiet: float = 0.02, every: float = 0.25) -> float:
    """The server's CPU seconds once it is idle again (its dispatcher has sent what the
    batches queued): less than ``quiet`` seconds of CPU in ``every`` seconds."""
    before = server.cpu_seconds()
    for _ in range(240):
        time.sleep(every)
        now = server.cpu_seconds()
        if now - before < quiet:
            return now
        before = now
    return before


def _segment_changes(server: Server) -> int:
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM steps WHERE journey = ''").fetchone()[0])


class _MixRuns:
    """Runs of the mix against one server, each with fresh profiles, or (``returning``)
    each on the profiles of the warm-up run, which signed them up."""

    def __init__(self, server: Server, events: int, returning: bool = False) -> None:
        self.server, self.events, self.returning = server, events, returning
        self.owner: str | None = None  # the run whose profiles come back
        self.cpu: list[float] = []  # µs of server CPU per event
        self.rates: list[float] = []  # events/s
        self.others: list[float] = []  # cores other processes used

    def run(self, prefix: str, measured: bool = True) -> None:
        bodies = _bodies(self.server.folder, prefix, self.events, self.owner)
        if self.returning and self.owner is None:
            self.owner = prefix
        if measured:
            wait_until_quiet()
        watch = Others(self.server)
        began = _settled(self.server)
        result = loadgen(
            self.server,
            "closed",
            *("--path", "/v1/batch", "--batch", "200", "--connections", "8"),
            *("--bodies", str(bodies), "--warmup", "0", "--duration", "600"),
        )
        watch.add_client(result)
        _refuse_errors(result)
        assert result["events_accepted"] == self.events, result
        spent = _settled(self.server) - began
        if measured:
            self.cpu.append(spent / self.events * 1e6)
            self.rates.append(result["events_per_s"])
            self.others.append(watch.cores())
        bodies.unlink()


def serve_mix(returning: bool = False) -> list[Row]:
    """The realistic mix through ``journeyman serve`` on SQLite: the server's CPU per
    event and its events/s, with and without the 20 segments, runs taking turns; each run
    with fresh profiles, or (``returning``) with the 2,000 profiles of the warm-up."""
    config = settings()
    events = 20_000 if config.quick else 40_000
    repeats = config.repeats if config.quick else 5
    servers = {flag: Server(_folder(flag, mix=True)) for flag in (False, True)}
    try:
        for server in servers.values():
            server.start()
        runs = {flag: _MixRuns(server, events, returning) for flag, server in servers.items()}
        for flag, run in runs.items():
            run.run(f"w{int(flag)}", measured=False)  # warm up
        warm = _segment_changes(servers[True])
        for n in range(repeats):
            for flag, run in runs.items():
                run.run(f"r{n}x{int(flag)}")
        changes = (_segment_changes(servers[True]) - warm) / (events * repeats)
    finally:
        for server in servers.values():
            server.remove()
            shutil.rmtree(server.folder, ignore_errors=True)
    bare, kept = runs[False], runs[True]
    base, segmented = statistics.median(bare.cpu), statistics.median(kept.cpu)
    rate, slower = statistics.median(bare.rates), statistics.median(kept.rates)

    def listed(values: list[float], digits: int = 1) -> str:
        return ", ".join(f"{v:,.{digits}f}" for v in values)

    who = (
        f"the {MIX_PROFILES:,} profiles of the warm-up (signed up then), no sign-ups"
        if returning
        else f"{MIX_PROFILES:,} fresh profiles a run"
    )
    note = (
        f"journeyman serve on SQLite, the realistic mix ({events:,} events of {who}, the "
        f"server's clock; {changes:.2f} segment changes per event) as "
        f"POST /v1/batch of 200 calls over 8 connections, {repeats} runs of each taking "
        f"turns: server CPU {base:.1f} µs per event without segments, {segmented:.1f} with "
        f"20 (runs: {listed(bare.cpu)} / {listed(kept.cpu)}); {rate:,.0f} events/s "
        f"without, {slower:,.0f} with (runs: {listed(bare.rates, 0)} / "
        f"{listed(kept.rates, 0)}), a drop of {(1 - slower / rate) * 100:.1f} %; other "
        f"processes {statistics.median(bare.others + kept.others):.2f} cores"
    )
    label = "returning profiles" if returning else "serve"
    return [(f"20 segments, mix, {label}: CPU per event drop", (1 - base / segmented) * 100, note)]


def serve_returning() -> list[Row]:
    """:func:`serve_mix` on profiles that exist already, as most of a live stream's."""
    return serve_mix(returning=True)


SUITES = {
    "core": core,
    "mix": mix,
    "ingest": ingest,
    "serve": serve_mix,
    "returning": serve_returning,
}

if __name__ == "__main__":
    chosen = [a for a in sys.argv[1:] if not a.startswith("--")] or list(SUITES)
    for label, value, note in [row for name in chosen for row in SUITES[name]()]:
        print(f"{label}: {value:.1f}% ({note})", file=sys.stdout)
