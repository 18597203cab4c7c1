"""Scale-out end to end: ``serve --bus`` and ``journeyman worker`` processes on real
PostgreSQL and NATS JetStream, email to a real SMTP server.

Each test has a database of its own (the backend switch, PostgreSQL only) and a stream
of its own, deleted afterwards. A load is 10 events for each profile (an identify with
its email, a sign-up that starts a journey with two emails and a short wait, and eight
clicks), posted in batches over HTTP. What a user would check afterwards: every instance
ended as the journey says, every email arrived exactly once (counted by the Message-ID
that carries its idempotency key), and each profile's events were applied in the order
they were sent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from journeyman.channels.smtp import message_id
from journeyman.storage.codec import decode_instance, decode_profile
from tests.cluster import (
    NATS_URL,
    BusServer,
    NatsServer,
    TcpProxy,
    WorkerProcess,
    nats_missing,
    nats_stream,
    stream_messages,
)
from tests.conftest import write_workspace
from tests.servers import WRITE_KEY, HttpServer, Reply, SmtpServer
from tests.stores import Backend
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

SENDER = "Journeyman Tests <hello@example.com>"
EVENTS_PER_PROFILE = 10

WORKSPACE = """
kind: event
name: signed_up
---
kind: event
name: clicked
schema:
  type: object
  properties:
    n: {type: integer}
---
kind: template
name: welcome_email
channel: email
subject: "Welcome"
text: "Hello {{ profile.email }}"
---
kind: template
name: followup_email
channel: email
subject: "Still there?"
text: "Hello again"
---
kind: journey
name: onboarding
entry: {event: signed_up}
reentry: never
steps:
  - id: welcome
    send: welcome_email
  - id: settle
    wait: 2s
  - id: followup
    send: followup_email
  - id: done
    end: finished
"""


def smtp_channel(port: int) -> str:
    return f"""
kind: channel
name: email
type: smtp
host: 127.0.0.1
port: {port}
security: none
from: "{SENDER}"
"""


@pytest.fixture(autouse=True)
def _needs_nats() -> None:
    reason = nats_missing()
    if reason is not None:
        pytest.fail(reason)  # CI starts NATS: its absence is a failure, not a skip


@dataclass
class Cluster:
    """The API, the workers and what they talk to, for one test."""

    folder: Path
    workspace: Path
    db: str  # what the workers use (maybe through a proxy)
    direct_db: str  # straight to PostgreSQL, for the test's own reads
    bus: str
    stream: str
    smtp: SmtpServer
    backend: Backend
    stack: ExitStack
    api: BusServer | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def serve(self, partitions: int = 8) -> BusServer:
        server = BusServer(
            self.workspace, self.direct_db, self.folder, self.bus, self.stream, partitions
        )
        self.api = self.stack.enter_context(server).start()
        return self.api

    def worker(self) -> WorkerProcess:
        name = str(len(self.workers) + 1)
        # A dead worker's claimed deliveries and timers are taken up after 10 seconds.
        env = {"JOURNEYMAN_LEASE": "10"}
        process = WorkerProcess(name, self.workspace, self.db, self.bus, self.folder, env)
        self.workers.append(self.stack.enter_context(process).start())
        return process

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        assert self.backend.rows is not None
        return self.backend.rows(self.direct_db, query)


@pytest.fixture
def cluster(tmp_path: Path, store_url: str, backend: Backend) -> Iterator[Callable[..., Cluster]]:
    """Makes a cluster: ``cluster()`` on the shared NATS, ``cluster(bus=url)`` on another,
    ``cluster(db=url)`` with the workers on another route to the same database,
    ``cluster(documents=yaml)`` on a workspace of its own."""
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))

        def make(bus: str = NATS_URL, db: str | None = None, documents: str = "") -> Cluster:
            # A stream on the shared server is deleted afterwards; a test's own server
            # goes with its folder.
            stream = stack.enter_context(nats_stream(bus)) if bus == NATS_URL else "JMTEST"
            files = write_workspace(tmp_path / "own", documents) if documents else workspace
            return Cluster(
                tmp_path, files, db or store_url, store_url, bus, stream, smtp, backend, stack
            )

        yield make


# ---------------------------------------------------------------- the load


def profile_events(profile: str, n: int) -> dict[str, Any]:
    """Event ``n`` of ``profile``, with a messageId that says which it is."""
    base: dict[str, Any] = {"userId": profile, "messageId": f"{profile}/{n:02}"}
    if n == 0:
        return {**base, "type": "identify", "traits": {"email": f"{profile}@example.com"}}
    if n == 1:
        return {**base, "type": "track", "event": "signed_up"}
    return {**base, "type": "track", "event": "clicked", "properties": {"n": n}}


@dataclass
class Load:
    """Posts every profile's events in order, in batches, from a few threads at once.

    A batch answered 503 or 429 is posted again after a moment (with the same
    messageIds), as a client following Retry-After would.
    """

    url: str
    profiles: list[str]
    threads: int = 4
    batch: int = 500
    events: Callable[[str, int], dict[str, Any]] = profile_events  # event n of a profile
    per_profile: int = EVENTS_PER_PROFILE
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    posted: int = 0

    def run(self) -> None:
        groups = [self.profiles[i :: self.threads] for i in range(self.threads)]
        workers = [threading.Thread(target=self._post_group, args=(g,)) for g in groups]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        assert not self.errors, self.errors[:3]

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run)
        thread.start()
        return thread

    def _post_group(self, profiles: list[str]) -> None:
        events = [self.events(p, n) for n in range(self.per_profile) for p in profiles]
        headers = {"Authorization": f"Bearer {WRITE_KEY}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30, trust_env=False) as c:
            for start in range(0, len(events), self.batch):
                self._post(c, events[start : start + self.batch])

    def _post(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                answer = client.post("/v1/batch", json={"batch": batch})
            except httpx.TransportError as error:
                self.statuses[0] += 1
                self.errors.append(repr(error))
                return
            self.statuses[answer.status_code] += 1
            if answer.status_code == 200:
                assert answer.json()["accepted"] == len(batch)
                self.posted += len(batch)
                return
            if answer.status_code not in (429, 503):
                self.errors.append(f"{answer.status_code} {answer.text}")
                return
            time.sleep(0.2)  # the client backs off before it tries again, as clients do
        self.errors.append("a batch was refused for 90 seconds")


def profiles(count: int) -> list[str]:
    return [f"u{i:05}" for i in range(count)]


# ---------------------------------------------------------------- what a user checks


def wait_for_outcome(cluster: Cluster, count: int, timeout: float = 120.0) -> None:
    """Every profile's instance ended, and every email went out."""
    query = "SELECT count(*) FROM instances WHERE status = 'ended'"
    try:
        wait_until(lambda: cluster.rows(query)[0][0] >= count, f"{count} instances", timeout)
        # Sent, and recorded as sent (a killed worker's sends are recorded after its lease).
        sent = "SELECT count(*) FROM outbox WHERE status = 'sent'"
        wait_until(lambda: cluster.rows(sent)[0][0] >= 2 * count, "the emails", timeout)
        wait_until(lambda: len(cluster.smtp.received) >= 2 * count, "the emails", timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}; {progress(cluster)}") from None


def progress(cluster: Cluster) -> str:
    """Where the work stands, for a failure message."""
    events = cluster.rows("SELECT count(*) FROM events")[0][0]
    instances = cluster.rows(
        "SELECT status, step, count(*), count(leased_until), min(wake_at) FROM instances "
        "GROUP BY 1, 2"
    )
    outbox = cluster.rows("SELECT status, count(*), count(leased_until) FROM outbox GROUP BY 1")
    return (
        f"{events} events; instances {instances}; outbox {outbox}; "
        f"{len(cluster.smtp.received)} emails; now {time.time() * 1000:.0f}"
    )


def check_outcome(
    cluster: Cluster,
    names: list[str],
    *,
    killed: bool = False,
    others: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Each instance ended as the journey says, each email arrived exactly once, and each
    profile's events were applied in the order they were sent.

    With ``killed``, a worker died by SIGKILL: emails it had sent but not yet recorded go
    out again after the lease, with the same idempotency key (so that the provider drops
    them). Then each email arrived at least once, and the repeats are no more than the
    dead worker's dispatcher had in hand.
    """
    instances = [decode_instance(s) for (s,) in cluster.rows("SELECT state FROM instances")]
    assert sorted(i.profile_id for i in instances) == names  # one instance per profile
    assert {(i.status, i.end_state) for i in instances} == {("ended", "finished")}

    keys = [key for (key,) in cluster.rows("SELECT key FROM outbox WHERE status = 'sent'")]
    assert len(keys) == 2 * len(names)
    # Each email sent is a message_sent event on its profile, once; a running worker
    # applies the last of them moments after the send is recorded.
    applied = "SELECT message_id FROM events WHERE name = 'message_sent'"
    if any(w.process is not None and w.process.poll() is None for w in cluster.workers):
        wait_until(lambda: len(cluster.rows(applied)) >= len(keys), "every message_sent")
    # A duplicate may still be on its way while a worker runs: stop them (a stop finishes
    # the sends in hand), and once none runs, every email that will come has come.
    for worker in cluster.workers:
        if worker.process is not None and worker.process.poll() is None:
            assert worker.stop() == 0, worker.output[-3000:]
    received = Counter(str(mail.message["Message-ID"]) for mail in cluster.smtp.received)
    expected = Counter(message_id(key, SENDER) for key in keys)
    if killed:
        assert set(received) == set(expected)
        # at most what its dispatcher had in hand: a round being delivered, the next claimed
        assert sum(received.values()) - len(expected) <= 400
    else:
        assert received == expected

    # With no worker left, an outcome not yet applied is still kept for its profile's
    # owner (outbox.tell_at): on its way, not lost.
    sent = sorted(mid for (mid,) in cluster.rows(applied))
    assert len(sent) == len(set(sent))
    kept = cluster.rows("SELECT key FROM outbox WHERE tell_at IS NOT NULL")
    assert set(sent) | {f"sent:{key}" for (key,) in kept} == {f"sent:{key}" for key in keys}

    order: dict[str, list[str]] = defaultdict(list)
    query = f"SELECT profile_id, message_id FROM events WHERE {NOT_REACTIONS} ORDER BY seq"
    for profile, mid in cluster.rows(query):
        order[profile].append(mid)
    sent_order = {p: [f"{p}/{n:02}" for n in range(EVENTS_PER_PROFILE)] for p in names}
    assert set(order) - set(names) <= others
    wrong = {p: order[p] for p in names if order[p] != sent_order[p]}
    assert not wrong, f"{len(wrong)} profiles out of order, such as {next(iter(wrong.items()))}"


def stream_empties(cluster: Cluster) -> None:
    """Every message was acknowledged, so the work queue holds nothing."""
    wait_until(lambda: _safe_count(cluster) == 0, "the stream to be acknowledged", timeout=60)


def _safe_count(cluster: Cluster) -> int:
    import asyncio

    try:
        return asyncio.run(stream_messages(cluster.bus, cluster.stream))
    except Exception:
        return -1


# ---------------------------------------------------------------- the tests


def test_three_workers_apply_20000_events_once_each_in_order(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster()
    api = c.serve()
    for _ in range(3):
        c.worker()
    names = profiles(2000)
    load = Load(api.url, names)
    load.run()
    assert load.posted == 20_000
    wait_for_outcome(c, len(names))
    check_outcome(c, names)
    stream_empties(c)
    for worker in c.workers:
        assert worker.stop() == 0
        assert "stopped" in worker.output


# The events the deliveries made (``message_sent``...), apart from those the test posted.
NOT_REACTIONS = "name NOT IN ('message_sent', 'message_failed', 'message_bounced')"


def applied_events(cluster: Cluster) -> int:
    """How many of the events posted were applied."""
    return int(cluster.rows(f"SELECT count(*) FROM events WHERE {NOT_REACTIONS}")[0][0])


def owned(worker: WorkerProcess) -> set[int]:
    """The partitions a worker last said it owns."""
    lines = [line for line in worker.output.splitlines() if "; owns " in line]
    if not lines:
        return set()
    return {int(p) for p in lines[-1].rpartition("; owns ")[2].split(", ") if p.isdigit()}


def test_a_killed_workers_partitions_move_to_the_others_and_nothing_is_lost_or_repeated(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster()
    api = c.serve()
    for _ in range(3):
        c.worker()
    names = profiles(2000)
    load = Load(api.url, names, threads=2)
    posting = load.start()
    wait_until(lambda: applied_events(c) >= 4000, "the load to be under way", timeout=60)
    victim = next(w for w in c.workers if owned(w))
    lost = owned(victim)
    victim.kill()
    survivors = [w for w in c.workers if w is not victim]
    wait_until(
        lambda: lost <= set().union(*(owned(w) for w in survivors)),
        f"the survivors to take partitions {sorted(lost)}",
        timeout=30,
    )
    wait_until(lambda: applied_events(c) >= 12_000, "more of the load", timeout=60)
    latecomer = c.worker()
    posting.join()
    assert load.posted == 20_000
    wait_for_outcome(c, len(names), timeout=150)
    wait_until(lambda: owned(latecomer), "the latecomer to get a share", timeout=30)
    check_outcome(c, names, killed=True)
    stream_empties(c)


def test_while_nats_is_down_the_api_answers_503_and_work_resumes_after(
    cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    with NatsServer(tmp_path / "nats") as nats_server:
        c = cluster(bus=nats_server.url)
        api = c.serve()
        c.worker()
        c.worker()
        names = profiles(1000)
        load = Load(api.url, names, threads=2, batch=100)
        posting = load.start()
        wait_until(lambda: load.posted >= 2000, "the load to be under way", timeout=60)
        nats_server.kill()
        # A click of a profile of its own, posted once while NATS is down.
        probe = {**profile_events("probe", 2), "messageId": "probe/02"}
        headers = {"Authorization": f"Bearer {WRITE_KEY}"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=30, trust_env=False) as h:
            answer = h.post("/v1/track", json=probe)
            assert answer.status_code in (429, 503), answer.text
            assert answer.headers["Retry-After"]
        with api.client() as admin:
            tail = admin.get("/v1/events", params={"status": "unavailable"}).json()["events"]
            assert tail, "the event tail records the refused call"
        nats_server.start()
        posting.join()
        assert load.statuses[503] + load.statuses[429] > 0  # the load met the outage
        assert load.posted == len(names) * EVENTS_PER_PROFILE
        wait_for_outcome(c, len(names))
        # Refused is not a promise that nothing was kept (the answer may have been lost
        # after JetStream stored it), but every accepted event is there, once, in order.
        check_outcome(c, names, others={"probe"})
        # (The stream is not checked for emptiness here: after nats-server is killed, it
        # may keep messages its consumers had acknowledged; they are recognised by their
        # messageId if they ever come again.)


def test_workers_ride_out_a_lost_database_connection(
    cluster: Callable[..., Cluster], store_url: str
) -> None:
    from urllib.parse import urlsplit

    target = urlsplit(store_url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        routed = store_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        c = cluster(db=routed)
        api = c.serve()
        c.worker()
        c.worker()
        names = profiles(600)
        load = Load(api.url, names, threads=2, batch=100)
        posting = load.start()
        wait_until(lambda: applied_events(c) >= 1000, "the load to be under way", timeout=60)
        proxy.cut()
        cut_at = applied_events(c)
        # The outage itself, 3 s: longer than a worker takes to find its partition locks
        # gone. Its length is the scenario under test, not a wait for something to happen.
        time.sleep(3)
        assert applied_events(c) == cut_at  # nothing reaches the database meanwhile
        proxy.restore()
        posting.join()
        assert load.posted == len(names) * EVENTS_PER_PROFILE
        wait_until(lambda: applied_events(c) == load.posted, "every event", timeout=60)
        wait_for_outcome(c, len(names))
        check_outcome(c, names)
        stream_empties(c)


# ---------------------------------------------------------------- changes only the owner makes


def sign_ups(profile: str, n: int) -> dict[str, Any]:
    return {"userId": profile, "messageId": f"{profile}/in", "type": "track", "event": "signed_up"}


CRM = """
kind: event
name: signed_up
---
kind: action
name: notify_crm
url: "{url}/crm"
body: '{{"profile": "{{{{ profile.id }}}}"}}'
allow: [127.0.0.1]
---
kind: journey
name: crm
entry: {{event: signed_up}}
reentry: never
steps:
  - id: notify
    call: notify_crm
    on_error: note_failure
  - id: notified
    end: notified
  - id: note_failure
    update_profile:
      set: {{crm: failed}}
  - id: done
    end: crm_failed
"""


def traits_round(number: int) -> Callable[[str, int], dict[str, Any]]:
    """Round ``number`` of trait changes: each profile's trait n becomes ``number``."""

    def change(profile: str, n: int) -> dict[str, Any]:
        base = {"userId": profile, "messageId": f"{profile}/n{number}"}
        return {**base, "type": "identify", "traits": {"n": number}}

    return change


def change_traits_until(done: threading.Event, url: str, names: list[str]) -> int:
    """Change every profile's traits, round after round, until ``done``: how many rounds."""
    rounds = 0
    while not done.is_set():
        rounds += 1
        Load(url, names, threads=1, events=traits_round(rounds), per_profile=1).run()
    return rounds


def test_a_refused_call_takes_on_error_once_for_every_instance_across_two_workers(
    cluster: Callable[..., Cluster],
) -> None:
    # The CRM answers slowly, so the outcomes come while the profiles' traits change.
    with HttpServer([Reply(400, b'{"error": "unknown contact"}', delay=0.2)]) as crm:
        c = cluster(documents=CRM.format(url=crm.url))
        api = c.serve()
        c.worker()
        c.worker()
        names = profiles(100)
        done = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            changing = pool.submit(change_traits_until, done, api.url, names)
            Load(api.url, names, threads=1, events=sign_ups, per_profile=1).run()
            ended = "SELECT count(*) FROM instances WHERE status = 'ended'"
            try:
                wait_until(lambda: c.rows(ended)[0][0] >= len(names), "every instance", 120)
            finally:
                done.set()
            rounds = changing.result()
        posted = len(names) * (1 + rounds)
        wait_until(lambda: applied_events(c) == posted, "every event", timeout=60)
        stream_empties(c)

        instances = [decode_instance(s) for (s,) in c.rows("SELECT state FROM instances")]
        assert sorted(i.profile_id for i in instances) == names
        assert {i.end_state for i in instances} == {"crm_failed"}
        assert outcomes(c, "failed") == dict.fromkeys(names, 1)
        assert outcomes(c, "updated") == dict.fromkeys(names, 1)
        # Each call failed for good and was settled so; none went out again after that (a
        # connection the busy test server refused counts as an attempt and is retried).
        rows = c.rows("SELECT key, status, attempts FROM outbox")
        assert {status for _, status, _ in rows} == {"failed"}
        received = Counter(r.headers["idempotency-key"] for r in crm.requests)
        assert sorted(received) == sorted(key for key, _, _ in rows)
        assert [key for key, _, attempts in rows if received[key] > attempts] == []
        assert c.rows("SELECT count(*) FROM outbox WHERE tell_at IS NOT NULL") == [(0,)]
        # What the outcome changed and what the events changed are both there.
        profiles_now = [decode_profile(s) for (s,) in c.rows("SELECT state FROM profiles")]
        expected = {"crm": "failed", "n": rounds}
        assert {p.id: p.traits for p in profiles_now if p.traits != expected} == {}


WATCH = """
kind: event
name: signed_up
---
kind: event
name: clicked
schema:
  type: object
  properties:
    n: {type: integer}
---
kind: journey
name: watch
entry: {event: signed_up}
reentry: never
steps:
  - id: listen
    wait_for: {event: clicked, timeout: 1d}
    on_event: listen
"""


def clicks(first: int) -> Callable[[str, int], dict[str, Any]]:
    def click(profile: str, n: int) -> dict[str, Any]:
        base = {"userId": profile, "messageId": f"{profile}/{first + n:02}"}
        return {**base, "type": "track", "event": "clicked", "properties": {"n": first + n}}

    return click


def instances_by(cluster: Cluster) -> Counter[tuple[str, str | None, str | None]]:
    """How many instances of each (status, waiting for, end state)."""
    states = [decode_instance(s) for (s,) in cluster.rows("SELECT state FROM instances")]
    return Counter((i.status, i.waiting, i.end_state) for i in states)


def test_pause_resume_and_stop_through_the_api_reach_every_instance_once_across_two_workers(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster(documents=WATCH)
    api = c.serve()
    c.worker()
    c.worker()
    names = profiles(300)
    Load(api.url, names, threads=2, events=sign_ups, per_profile=1).run()
    waiting = ("waiting", "event", None)
    wait_until(lambda: instances_by(c)[waiting] == len(names), "every entry", timeout=60)

    with api.client() as admin:
        assert admin.post("/v1/journeys/watch/pause").json()["state"] == "paused"
        # Stored after the pause was answered: no worker lets them in.
        late = [f"late{n}" for n in range(20)]
        Load(api.url, late, threads=1, events=sign_ups, per_profile=1).run()
        # A click moves each instance on to its next step, where it is held.
        Load(api.url, names, threads=2, events=clicks(1), per_profile=1).run()
        held = ("waiting", "paused", None)
        wait_until(lambda: instances_by(c)[held] == len(names), "every instance held", 60)
        wait_until(lambda: applied_events(c) == 2 * len(names) + len(late), "the late sign-ups")
        assert c.rows("SELECT count(*) FROM instances WHERE profile_id LIKE 'late%'") == [(0,)]

        answer = admin.post("/v1/journeys/watch/resume").json()
        assert answer == {"journey": "watch", "state": "active", "resumed": len(names)}
        wait_until(lambda: instances_by(c)[waiting] == len(names), "every instance resumed", 60)
        assert outcomes(c, "held") == dict.fromkeys(names, 1)
        assert outcomes(c, "waiting") == dict.fromkeys(names, 2)  # at entry, and on resuming

        # Stop while clicks keep moving the instances: each ends stopped, once.
        clicking = Load(api.url, names, threads=2, batch=100, events=clicks(2), per_profile=5)
        posting = clicking.start()
        wait_until(lambda: applied_events(c) >= 2 * len(names) + len(late) + 300, "the clicks")
        answer = admin.post("/v1/journeys/watch/stop").json()
        # Counted, too, are those a click moved on meanwhile, to their next step, where
        # they ended before the stop looked at them.
        assert answer == {"journey": "watch", "state": "stopped", "stopped": len(names)}
        posting.join()
    stopped = ("ended", None, "stopped")
    wait_until(lambda: instances_by(c)[stopped] == len(names), "every instance stopped", 60)
    wait_until(lambda: applied_events(c) == 2 * len(names) + len(late) + 5 * len(names), "clicks")
    stream_empties(c)
    assert instances_by(c) == {stopped: len(names)}
    assert outcomes(c, "ended") == dict.fromkeys(names, 1)


def outcomes(cluster: Cluster, outcome: str) -> Counter[str]:
    """How many step records of ``outcome`` each profile has."""
    query = f"SELECT profile_id FROM steps WHERE outcome = '{outcome}'"
    return Counter(profile for (profile,) in cluster.rows(query))


def test_due_timers_travel_many_to_a_message_each_to_its_profiles_partition() -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    from journeyman.domain.state import Event, Instance
    from journeyman.runtime.processor import TimerDue
    from journeyman.scaleout.bus import TIMERS_PER_MESSAGE, Bus, decode, partition_of

    partitions = 4
    wake = datetime(2026, 11, 26, 8, tzinfo=UTC)
    due = [
        Instance(
            id=f"p{n}:welcome:1",
            journey="welcome",
            version=1,
            profile_id=f"p{n}",
            entered_at=wake - timedelta(days=1),
            entry=Event(name="signed_up", profile_id=f"p{n}", timestamp=wake),
            step="pause",
            status="waiting",
            waiting="timer",
            wake_at=wake,
        )
        for n in range(1000)
    ]
    expected = {i.id: (partition_of(i.profile_id, partitions), i.profile_id) for i in due}

    async def scenario(stream: str) -> tuple[int, int, dict[str, tuple[int, str]]]:
        bus = Bus(NATS_URL, stream, partitions)
        await bus.connect()
        try:
            await bus.publish_timers(due)
            stored = await stream_messages(NATS_URL, stream)
            await bus.publish_timers(due)  # a claim published again (its ack was lost)
            again = await stream_messages(NATS_URL, stream)
            found: dict[str, tuple[int, str]] = {}
            for partition in range(partitions):
                subscription = await bus.take(partition, max_pending=100)
                for message in await subscription.fetch(100, timeout=2):
                    for trigger in decode(message):
                        assert isinstance(trigger, TimerDue)
                        assert trigger.instance_id not in found, "a timer arrived twice"
                        found[trigger.instance_id] = (partition, trigger.profile_id)
                    await message.ack()
            return stored, again, found
        finally:
            await bus.close()

    with nats_stream() as stream:
        stored, again, found = asyncio.run(scenario(stream))
    # Each partition's timers, 200 to a message, rather than one message a timer.
    sizes = {p: sum(1 for q, _ in expected.values() if q == p) for p in range(partitions)}
    assert stored == sum(-(-size // TIMERS_PER_MESSAGE) for size in sizes.values())
    assert again == stored  # JetStream knew the second publish by its messageId
    assert found == expected  # every timer, once, in the partition of its profile
