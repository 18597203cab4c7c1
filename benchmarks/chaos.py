"""Chaos: SIGKILL storms against journeyman under load, then an account of what survived.

Two deployments, each in a run of its own (``--mode sqlite``, ``--mode bus``, or both):

- ``sqlite``: one ``journeyman serve`` on a SQLite file;
- ``bus``: ``journeyman serve --bus`` as the API, and 2 ``journeyman worker`` processes, on
  a PostgreSQL database and a JetStream stream made for the run (dropped and deleted
  afterwards).

The workspace has one journey: on ``signed_up``, an email at once, a wait of a few seconds,
a second email. Its email channel is SMTP to a sink in this process (aiosmtpd on
127.0.0.1) that records every email it accepts, with its ``Message-ID`` and
``X-Journeyman-Key`` (both carry the send's idempotency key).

While events of fresh profiles (each a unique ``userId`` and ``messageId``) are posted over
HTTP at a steady rate, the storm SIGKILLs a process N times at random moments (``serve``;
in ``bus`` mode the API or a worker, drawn at random) and starts it again, after a random
pause of up to a second. A client retries a call that got no answer, or a 503 or 429, with
the same ``messageId``, as Segment's libraries do; only a 2xx counts as acknowledged.

Then the load stops and the system drains: the run waits until every email the
acknowledged events call for has arrived and nothing is left queued or waiting, or until
nothing has moved for a while (bounded). The processes stop (SIGTERM), and the database is
read: events acknowledged but not stored are lost; instances whose wait never fired are
lost timers; emails the acknowledged events call for and the sink never got are missing;
copies of one email beyond the first are duplicates. Each duplicate is put down to the
kill of a delivering process (``serve``, a worker) nearest to the arrival of its previous
copy, between a second before it (the sink may read an email its sender wrote just before
it died) and the duplicate's own arrival; a duplicate with no such kill would be a bug of
its own. Targets: nothing lost, nothing missing, and no kill followed by more duplicates
than the dispatcher's sends in flight.

Everything listens on and connects to 127.0.0.1 only. Processes, files, the database and
the stream are cleaned up however the run ends (Ctrl-C included). The table is printed and
written to ``benchmarks/chaos-results.md``; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import itertools
import json
import random
import resource
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the repository: its tests start processes as we do

from tests.servers import LOOPBACK, child_env, free_port  # noqa: E402

from chaos_parts import (  # noqa: E402
    GIVE_UP,
    NATS,
    POSTGRES,
    Child,
    Database,
    Load,
    Mail,
    Sink,
    admin,
    delete_stream,
)
from journeyman.runtime.dispatcher import Dispatcher  # noqa: E402
from machine import busy_seconds, describe  # noqa: E402

SENDER = "Chaos <chaos@example.com>"
JOURNEY = "chaos"
STEPS = ("welcome", "followup")  # the journey's two sends, in order
# The sink may read an email after its sender was killed (it was on its way): a kill this
# long before the first copy of a duplicate arrived may still be its cause.
SLACK = 1.0
# The sends a dispatcher makes at once: what one kill may repeat at most (docs/storage.md).
IN_FLIGHT = int(inspect.signature(Dispatcher).parameters["concurrency"].default)

WORKSPACE = """\
kind: event
name: signed_up
identity: userId
schema:
  type: object
  required: [email]
  properties:
    email: {{type: string}}
---
kind: template
name: welcome_email
channel: email
to: "{{{{ entry.email }}}}"
subject: "welcome"
text: "Welcome aboard."
---
kind: template
name: followup_email
channel: email
to: "{{{{ entry.email }}}}"
subject: "followup"
text: "Still there?"
---
kind: channel
name: email
type: smtp
host: 127.0.0.1
port: {port}
security: none
from: "{sender}"
---
kind: journey
name: chaos
entry: {{event: signed_up}}
reentry: never
steps:
  - id: welcome
    send: welcome_email
  - id: settle
    wait: {wait}s
  - id: followup
    send: followup_email
  - id: done
    end: finished
"""


@dataclass(frozen=True)
class Options:
    modes: tuple[str, ...]
    kills: int
    duration: float  # seconds of load, during which the kills fall
    rate: float  # events per second
    connections: int
    wait: int  # seconds of the journey's wait
    lease: float  # JOURNEYMAN_LEASE of the bus mode's processes
    quiet: float  # the drain gives up after this long without progress
    drain: float  # and after this long in all
    seed: int
    out: Path | None
    dump: Path | None  # the kills and every duplicated email's copies, as JSON


# ---------------------------------------------------------------- one run


@dataclass
class Kill:
    victim: str
    at: float  # time.monotonic() of the SIGKILL
    delivers: bool  # whether the victim delivers email (serve, a worker; not serve --bus)


@dataclass
class Outcome:
    mode: str
    kills: list[Kill]
    load: Load
    stored: set[int]  # events (by n) the database holds
    timers_lost: list[str]  # users of acknowledged events whose wait never fired
    mails: list[Mail]
    drained: bool
    storm_s: float
    drain_s: float
    other_cpu: float  # cores other processes used, on average, during the run
    began: float  # time.monotonic() when the load began


class Run:
    """One deployment, stormed: set up, load and kill, drain, measure, clean up."""

    def __init__(self, mode: str, options: Options, sink: Sink) -> None:
        self.mode = mode
        self.options = options
        self.sink = sink
        self.random = random.Random(f"{options.seed}-{mode}")
        self.folder = Path(tempfile.mkdtemp(prefix=f"journeyman-chaos-{mode}-"))
        self.workspace = self.folder / "workspace"
        self.workspace.mkdir()
        (self.workspace / "chaos.yaml").write_text(
            WORKSPACE.format(port=sink.port, sender=SENDER, wait=options.wait)
        )
        self.port = free_port()
        self.children: list[Child] = []
        self.name = f"jm_chaos_{secrets.token_hex(4)}"
        self.stream = self.name.upper()
        self.created = False
        if mode == "sqlite":
            self.db = f"sqlite:///{self.folder / 'chaos.db'}"
        else:
            self.db = f"{POSTGRES}/{self.name}"

    # set up and clean up

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            with contextlib.suppress(Exception):
                child.kill()
        if self.mode == "bus":
            with contextlib.suppress(Exception):
                asyncio.run(delete_stream(self.stream))
            if self.created:
                with contextlib.suppress(Exception):
                    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        shutil.rmtree(self.folder, ignore_errors=True)

    def start(self) -> None:
        common = ["--workspace", str(self.workspace), "--db", self.db]
        serve = ["serve", *common, "--host", LOOPBACK, "--port", str(self.port)]
        if self.mode == "sqlite":
            self.children = [Child("serve", serve, self.folder, child_env({}), self.port)]
        else:
            asyncio.run(admin(f'CREATE DATABASE "{self.name}"'))
            self.created = True
            # A dead worker's claimed timers and deliveries are taken up after the lease:
            # shorter than the default 120 s, so that the drain need not wait that long.
            env = child_env({"JOURNEYMAN_LEASE": f"{self.options.lease:g}"})
            bus = ["--bus", NATS, "--stream", self.stream, "--partitions", "8"]
            worker = ["worker", *common, "--bus", NATS]
            self.children = [Child("api", [*serve, *bus], self.folder, env, self.port)]
            self.children += [Child(f"worker{i}", worker, self.folder, env) for i in (1, 2)]
        for child in self.children:
            child.start()

    # the storm

    def storm(self, load: Load) -> list[Kill]:
        """Kill a process at each of ``kills`` random moments within the load's duration,
        and start it again after a random pause of up to a second."""
        options = self.options
        began = time.monotonic()
        span = (1.0, options.duration - 1.0)
        moments = sorted(self.random.uniform(*span) for _ in range(options.kills))
        kills = []
        for moment in moments:
            time.sleep(max(0.0, began + moment - time.monotonic()))
            victim = self.random.choice(self.children)
            victim.kill()
            kills.append(Kill(victim.name, time.monotonic(), victim.name != "api"))
            print(f"  {time.monotonic() - began:5.1f}s  killed {victim.name}", flush=True)
            time.sleep(self.random.uniform(0.0, 1.0))
            victim.start()
        time.sleep(max(0.0, began + options.duration - time.monotonic()))
        return kills

    # the drain

    def drained(self, load: Load) -> bool:
        """Every email the acknowledged events call for arrived, nothing is queued or
        waiting any more."""
        got = {(m.to, m.subject) for m in self.sink.mails()}
        for n in load.acked:
            address = f"{load.user(n)}@example.com"
            if any((address, step) not in got for step in STEPS):
                return False
        return self._left() == (0, 0)

    def _left(self) -> tuple[int, int]:
        """Outbox rows not final, and instances not ended."""
        db = Database(self.db)
        rows = db.count("SELECT count(*) FROM outbox WHERE status NOT IN ('sent', 'failed')")
        waiting = db.count("SELECT count(*) FROM instances WHERE status != 'ended'")
        return rows, waiting

    def drain(self, load: Load) -> bool:
        """Wait until :meth:`drained`, or until nothing moved for ``quiet`` seconds, or
        ``drain`` seconds in all; whether it drained."""
        options = self.options
        began = last_move = time.monotonic()
        seen: tuple[int, tuple[int, int]] | None = None
        while time.monotonic() - began < options.drain:
            if self.drained(load):
                return True
            now = (len(self.sink.mails()), self._left())
            if now != seen:
                seen, last_move = now, time.monotonic()
            elif time.monotonic() - last_move > options.quiet:
                return False
            time.sleep(0.5)
        return False

    # the account

    def account(self, load: Load) -> tuple[set[int], list[str]]:
        """The events (by n) stored, and the acknowledged users whose wait never fired."""
        db = Database(self.db)
        prefix = f"{load.prefix}-"
        stored = {
            int(mid.removeprefix(prefix))
            for (mid,) in db.rows("SELECT message_id FROM events")
            if mid and mid.startswith(prefix)
        }
        fired = {
            profile
            for (profile,) in db.rows(
                f"SELECT profile_id FROM outbox WHERE journey = '{JOURNEY}' AND step = 'followup'"
            )
        }
        lost = [load.user(n) for n in sorted(load.acked & stored) if load.user(n) not in fired]
        return stored, lost

    def go(self) -> Outcome:
        options = self.options
        print(f"{self.mode}: starting", flush=True)
        self.start()
        cpu_began, own_began, wall_began = busy_seconds(), _own_cpu(), time.monotonic()
        load = Load(f"http://{LOOPBACK}:{self.port}", self.mode, options.rate, options.connections)
        load.start()
        kills = self.storm(load)
        load.stop()
        storm_s = time.monotonic() - wall_began
        print(f"{self.mode}: {load.sent} events sent, {len(load.acked)} acknowledged; draining")
        draining = time.monotonic()
        drained = self.drain(load)
        drain_s = time.monotonic() - draining
        for child in self.children:
            child.stop()
        elapsed = time.monotonic() - wall_began
        other = max(0.0, (busy_seconds() - cpu_began - (_own_cpu() - own_began)) / elapsed)
        stored, timers_lost = self.account(load)
        mails = [m for m in self.sink.mails() if m.to.startswith(f"{load.prefix}-")]
        return Outcome(
            self.mode,
            kills,
            load,
            stored,
            timers_lost,
            mails,
            drained,
            storm_s,
            drain_s,
            other,
            wall_began,
        )


def _own_cpu() -> float:
    """CPU seconds of this process and of its children that have ended (every journeyman
    process of a run has ended, killed or stopped, by the time this is read)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


# ---------------------------------------------------------------- the table


@dataclass
class Figures:
    """What one run measured, and whether it met the targets."""

    mode: str
    kills: int
    victims: str
    sent: int
    acked: int
    unanswered: int
    refused: int
    stored_unacked: int
    lost: int
    timers: int
    timers_lost: int
    expected: int
    missing: int
    extra_mails: int
    duplicated: int
    same_key: int
    per_kill_max: int
    unexplained: int
    drained: bool
    storm_s: float
    drain_s: float
    other_cpu: float
    lost_examples: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return (
            self.lost == 0
            and self.timers_lost == 0
            and self.missing == 0
            and self.unexplained == 0
            and self.per_kill_max <= IN_FLIGHT
            and self.refused == 0
        )


def figures(outcome: Outcome) -> Figures:
    load = outcome.load
    acked = load.acked
    copies: dict[tuple[str, str], list[Mail]] = defaultdict(list)
    for mail in sorted(outcome.mails, key=lambda m: m.at):
        copies[(mail.to, mail.subject)].append(mail)
    expected = {(f"{load.user(n)}@example.com", step) for n in acked for step in STEPS}
    missing = expected - set(copies)
    per_kill: Counter[int] = Counter()
    duplicated = same_key = unexplained = 0
    delivering = [k.at for k in outcome.kills if k.delivers]
    for mails in copies.values():
        for before, again in itertools.pairwise(mails):
            duplicated += 1
            same_key += again.key == mails[0].key and again.message_id == mails[0].message_id
            causes = [i for i, at in enumerate(delivering) if before.at - SLACK < at <= again.at]
            if not causes:
                unexplained += 1
            else:  # the kill nearest to the first copy
                per_kill[min(causes, key=lambda i: abs(delivering[i] - before.at))] += 1
    lost = sorted(acked - outcome.stored)
    examples = [f"event {load.user(n)}" for n in lost[:3]] + [
        f"timer {u}" for u in outcome.timers_lost[:3]
    ]
    examples += [f"email {to} {step}" for to, step in sorted(missing)[:3]]
    victims = Counter(k.victim for k in outcome.kills)
    return Figures(
        mode=outcome.mode,
        kills=len(outcome.kills),
        victims=", ".join(f"{name} {count}" for name, count in sorted(victims.items())),
        sent=load.sent,
        acked=len(acked),
        unanswered=len(load.unanswered),
        refused=sum(load.refused.values()),
        stored_unacked=len(outcome.stored - acked),
        lost=len(lost),
        timers=len(acked),
        timers_lost=len(outcome.timers_lost),
        expected=len(expected),
        missing=len(missing),
        extra_mails=len(set(copies) - expected),
        duplicated=duplicated,
        same_key=same_key,
        per_kill_max=max(per_kill.values(), default=0),
        unexplained=unexplained,
        drained=outcome.drained,
        storm_s=outcome.storm_s,
        drain_s=outcome.drain_s,
        other_cpu=outcome.other_cpu,
        lost_examples=examples,
    )


def details(outcome: Outcome) -> dict[str, Any]:
    """The kills and every email that came more than once, in seconds since the load began."""
    began = outcome.began
    copies: dict[tuple[str, str], list[Mail]] = defaultdict(list)
    for mail in sorted(outcome.mails, key=lambda m: m.at):
        copies[(mail.to, mail.subject)].append(mail)
    return {
        "mode": outcome.mode,
        "kills": [{"victim": k.victim, "at": round(k.at - began, 3)} for k in outcome.kills],
        "duplicates": [
            {
                "to": to,
                "subject": subject,
                "keys": sorted({m.key for m in mails}),
                "at": [round(m.at - began, 3) for m in mails],
            }
            for (to, subject), mails in copies.items()
            if len(mails) > 1
        ],
    }


def table(runs: list[Figures], options: Options) -> list[str]:
    def row(what: str, target: str, value: Callable[[Figures], object]) -> str:
        return f"| {what} | {' | '.join(str(value(f)) for f in runs)} | {target} |"

    def per_kill(f: Figures) -> str:
        mean = f.duplicated / f.kills if f.kills else 0.0
        return f"{mean:.1f} mean, {f.per_kill_max} max"

    modes = {"sqlite": "`serve`, SQLite", "bus": "`serve --bus` + 2 workers, PostgreSQL + NATS"}
    return [
        f"| | {' | '.join(modes[f.mode] for f in runs)} | target |",
        f"|---|{'---|' * len(runs)}---|",
        row("kills (SIGKILL, then a restart)", "", lambda f: f"{f.kills} ({f.victims})"),
        row("events sent, each a fresh profile", "", lambda f: f"{f.sent:,}"),
        row("events acknowledged (2xx)", "", lambda f: f"{f.acked:,}"),
        row(
            f"events never acknowledged (tried for {GIVE_UP:g} s)",
            "",
            lambda f: f"{f.unanswered:,}",
        ),
        row("events stored without an acknowledgement", "", lambda f: f"{f.stored_unacked:,}"),
        row("**events lost** (acknowledged, not stored)", "0", lambda f: f.lost),
        row("timers (waits of acknowledged events)", "", lambda f: f"{f.timers:,}"),
        row("**timers lost** (the wait never fired)", "0", lambda f: f.timers_lost),
        row("emails expected (2 per acknowledged event)", "", lambda f: f"{f.expected:,}"),
        row("**emails missing**", "0", lambda f: f.missing),
        row("emails of unacknowledged events", "", lambda f: f.extra_mails),
        row("emails duplicated (extra copies)", "", lambda f: f.duplicated),
        row("of which with the first copy's key", "all", lambda f: f.same_key),
        row(
            "**duplicates per kill**",
            f"max ≤ {IN_FLIGHT}",
            per_kill,
        ),
        row("duplicates with no kill near or between the copies", "0", lambda f: f.unexplained),
        row("sends in flight per dispatcher (limit)", "", lambda f: IN_FLIGHT),
        row("drained (all expected emails, nothing queued)", "yes", lambda f: _yes(f.drained)),
        row(
            "storm, drain",
            "",
            lambda f: f"{f.storm_s:.0f} s, {f.drain_s:.0f} s",
        ),
        row(
            "CPU of other processes (PostgreSQL and NATS too)",
            "",
            lambda f: f"{f.other_cpu:.2f} cores",
        ),
        row("**targets met**", "yes", lambda f: _yes(f.met)),
    ]


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def command(options: Options) -> str:
    modes = "both" if len(options.modes) == 2 else options.modes[0]
    return (
        f"python benchmarks/chaos.py --mode {modes} --kills {options.kills} "
        f"--duration {options.duration:g} --rate {options.rate:g} --seed {options.seed}"
    )


def report(runs: list[Figures], options: Options) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Chaos results",
        "",
        f"Measured {stamp} on {describe()}, with `{command(options)}`: "
        f"{options.rate:g} events/s over {options.connections} connections for "
        f"{options.duration:g} s per mode, a wait of {options.wait} s in the journey, "
        f"`JOURNEYMAN_LEASE={options.lease:g}` in bus mode. See "
        "[docs/benchmarks.md](../docs/benchmarks.md#chaos) for how to read it.",
        "",
        *table(runs, options),
        "",
    ]
    for f in runs:
        if f.lost_examples:
            lines.append(f"{f.mode}: for example {'; '.join(f.lost_examples)}.")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- main


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("sqlite", "bus", "both"), default="both")
    parser.add_argument("--kills", type=int, default=10, help="kills per mode (10)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of load per mode (60)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="events per second (100)")
    parser.add_argument("--connections", type=int, default=32, help="HTTP connections (32)")
    parser.add_argument("--wait", type=int, default=3, help="the journey's wait, seconds (3)")
    parser.add_argument("--lease", type=float, default=10.0, help="bus mode's lease (10 s)")
    parser.add_argument(
        "--quiet", type=float, default=0.0, help="give the drain up after this long still"
    )
    parser.add_argument("--drain", type=float, default=180.0, help="longest drain (180 s)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill schedule")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "chaos-results.md",
        help="where the table goes ('-': nowhere)",
    )
    parser.add_argument(
        "--dump", type=Path, default=None, help="write the kills and duplicates here, as JSON"
    )
    args = parser.parse_args(argv)
    if args.kills < 0 or args.duration < 3 or args.rate <= 0 or args.connections < 1:
        parser.error("--kills must be >= 0, --duration >= 3, --rate and --connections > 0")
    return Options(
        modes=("sqlite", "bus") if args.mode == "both" else (args.mode,),
        kills=args.kills,
        duration=args.duration,
        rate=args.rate,
        connections=args.connections,
        wait=args.wait,
        lease=args.lease,
        # Long enough for a dead worker's claims to come free and be delivered.
        quiet=args.quiet or max(20.0, 2 * args.lease + args.wait),
        drain=args.drain,
        seed=args.seed if args.seed is not None else random.randrange(1_000_000),
        out=None if str(args.out) == "-" else args.out,
        dump=args.dump,
    )


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM stop the run through its clean-up (even when the shell that
    started it in the background had SIGINT ignored)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    runs, dumped = [], []
    with interruptible(), Sink() as sink:
        for mode in options.modes:
            with Run(mode, options, sink) as run:
                outcome = run.go()
            runs.append(figures(outcome))
            dumped.append(details(outcome))
    if options.dump is not None:
        options.dump.write_text(json.dumps(dumped, indent=1))
    text = report(runs, options)
    print(text)
    if options.out is not None:
        options.out.write_text(text)
    return 0 if all(f.met for f in runs) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the processes, files, database and stream are cleaned up")
        sys.exit(130)
