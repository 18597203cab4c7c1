"""Dead letters: a message a worker cannot apply is kept apart, and its partition moves on.

The store keeps them on every backend; a worker (here on real PostgreSQL, fed messages as
the bus hands them over) buries a message only after several tries and only when the
store takes the dead letter, never while the database is away; the admin API and the
console list them and replay them. The end-to-end test with NATS and worker processes is
in tests/integration/test_dead_letters_bus.py.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from nats.aio.msg import Msg

from journeyman.domain.core import Changes
from journeyman.domain.state import Event
from journeyman.runtime.service import Runtime
from journeyman.scaleout.partitions import Ownership
from journeyman.scaleout.worker import Worker
from journeyman.storage import Database
from journeyman.storage.base import DeadLetter
from journeyman.storage.codec import encode
from journeyman.storage.memory import MemoryStore
from journeyman.storage.postgres import PostgresStore
from journeyman.storage.sql import SQLDatabase
from journeyman.workspace import load_workspace
from tests.conftest import BASE, START, write_workspace
from tests.integration.test_api import ADMIN, WRITE, Client, run_api
from tests.stores import run
from tests.unit.test_web import csrf_of, log_in, run_console


def event(user: str, message_id: str, name: str = "signed_up") -> Event:
    """An event as the API would publish it, but not checked by it: as an older version,
    or a bug, might put it on the bus."""
    return Event(name=name, profile_id=user, timestamp=START, user_id=user, message_id=message_id)


def letter(body: bytes, error: str = "boom", partition: int = 3) -> DeadLetter:
    return DeadLetter(
        partition=partition,
        headers={"Nats-Msg-Id": "m1"},
        body=body,
        error=error,
        attempts=5,
        first_failed_at=START,
        last_failed_at=START + timedelta(seconds=2),
    )


# the store


async def keep(store: object, dead: DeadLetter) -> int:
    """Write a dead letter as a worker would (every SQL backend can hold them)."""
    assert isinstance(store, SQLDatabase | MemoryStore)
    return await store.add_dead_letter(dead)


def test_the_store_keeps_lists_and_forgets_dead_letters(store: Database) -> None:
    async def test() -> None:
        assert await store.dead_letters() == (0, [])
        first = await keep(store, letter(encode(event("u1", "m1")), "first"))
        second = await keep(store, letter(b"\x00\xff", "second\nline", partition=0))
        count, found = await store.dead_letters()
        assert count == 2
        assert [(d.id, d.error, d.partition) for d in found] == [
            (second, "second\nline", 0),
            (first, "first", 3),
        ]
        assert found[0].body == b"\x00\xff"  # as it came, byte for byte
        assert found[1].headers == {"Nats-Msg-Id": "m1"}
        assert found[1].body == encode(event("u1", "m1"))
        assert (found[1].first_failed_at, found[1].last_failed_at, found[1].attempts) == (
            START,
            START + timedelta(seconds=2),
            5,
        )
        assert (await store.dead_letters(limit=1))[1] == found[:1]
        assert await store.dead_letter(first) == found[1]
        assert await store.delete_dead_letter(first)
        assert not await store.delete_dead_letter(first)
        assert await store.dead_letter(first) is None
        assert (await store.dead_letters())[0] == 1

    run(store, test)


# the worker


@dataclass
class Message:
    """What the worker reads of a JetStream message."""

    data: bytes
    headers: dict[str, str] | None = None


def messages(*items: Event | bytes) -> list[Msg]:
    found = [Message(i) if isinstance(i, bytes) else Message(encode(i)) for i in items]
    return cast(list[Msg], found)


class Refused(Exception):
    """A failure the worker cannot tell from one of the message's own."""


@dataclass
class Outage:
    """Stands in for the database going away: commits and dead letters fail while down,
    with ``error`` (by default one that does not say the connection is gone)."""

    store: PostgresStore
    down: bool = True
    error: type[Exception] = Refused
    # the database comes back when the worker writes its n-th dead letter (0: never)
    back_at_letter: int = 0
    back_before_writing: bool = False
    back_after_commits: int = 0  # or when this many commits have failed (0: never)
    letters_tried: int = 0
    commits_failed: int = 0
    real: dict[str, Any] = field(default_factory=dict)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = {"commit": self.store.commit, "add": self.store.add_dead_letter}
        monkeypatch.setattr(self.store, "commit", self.commit)
        monkeypatch.setattr(self.store, "add_dead_letter", self.add)

    async def commit(self, batch: Changes) -> None:
        if self.down:
            self.commits_failed += 1
            if self.commits_failed == self.back_after_commits:
                self.down = False
            raise self.error("the database is away")
        await self.real["commit"](batch)

    async def add(self, dead: DeadLetter) -> int:
        self.letters_tried += 1
        if self.letters_tried == self.back_at_letter:
            self.down = False
            if not self.back_before_writing:
                raise self.error("the database is away")
        if self.down:
            raise self.error("the database is away")
        return int(await self.real["add"](dead))


PARTITIONS = 8  # the partitions a worker of these tests owns


def run_worker(
    tmp_path: Path, store: Database, store_url: str, test: Callable[[Worker], Awaitable[None]]
) -> None:
    """A worker on the store, with its processor running, that the test hands messages;
    it owns every partition (it holds their locks), so it tries a batch for as long as
    it takes."""
    assert isinstance(store, PostgresStore)
    workspace = load_workspace(write_workspace(tmp_path / "ws", BASE)).workspace
    assert workspace is not None
    worker = Worker(workspace, store, "nats://127.0.0.1:1", {}, env={})

    async def main() -> None:
        worker.ownership = Ownership(store.partition_locks(), PARTITIONS)
        await worker.ownership.connect()
        loop = asyncio.create_task(worker.processor.run())
        try:
            for partition in range(PARTITIONS):
                assert await worker.ownership.take(partition)
            await test(worker)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            await worker.processor.drain()
            await worker.ownership.close()

    run(store, main)


async def applied(store: Database, *profiles: str) -> list[str | None]:
    found = []
    for profile in profiles:
        found += [s.event.message_id for s in reversed(await store.history(profile))]
    return found


@pytest.mark.shared
def test_a_message_that_keeps_failing_is_buried_and_the_rest_is_applied_in_order(
    tmp_path: Path, store: Database, store_url: str
) -> None:
    async def test(worker: Worker) -> None:
        batch = messages(
            event("u1", "m\u0000"),  # PostgreSQL cannot keep a NUL: it fails every time
            event("u1", "u1-2"),  # held back behind it while it is tried
            event("u2", "u2-1"),
            b"\xc1 not msgpack",
        )
        await worker._apply(7, batch)
        assert await applied(store, "u1", "u2") == ["u1-2", "u2-1"]
        count, (poison, unreadable) = await store.dead_letters()
        assert count == 2
        assert (poison.partition, poison.attempts) == (7, worker.attempts)
        assert "0x00" in poison.error
        assert poison.body == batch[0].data
        assert poison.first_failed_at <= poison.last_failed_at
        assert "not a message journeyman can read" in unreadable.error
        assert unreadable.body == b"\xc1 not msgpack"

    run_worker(tmp_path, store, store_url, test)


@pytest.mark.shared
def test_while_the_database_is_away_nothing_is_buried_and_all_is_applied_after(
    tmp_path: Path, store: Database, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, PostgresStore)
    outage = Outage(store, back_at_letter=2)
    outage.install(monkeypatch)

    async def test(worker: Worker) -> None:
        await worker._apply(1, messages(event("u1", "a"), event("u1", "b"), event("u2", "c")))
        assert outage.letters_tried == 2  # it tried to bury them: the writes failed
        assert await applied(store, "u1", "u2") == ["a", "b", "c"]
        assert await store.dead_letters() == (0, [])

    run_worker(tmp_path, store, store_url, test)


@pytest.mark.shared
def test_a_lost_connection_is_no_fault_of_the_message_however_long_it_lasts(
    tmp_path: Path, store: Database, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, PostgresStore)
    # every try fails: the batch, then each of its two events alone, six rounds
    outage = Outage(store, error=ConnectionResetError, back_after_commits=3 * 6)
    outage.install(monkeypatch)

    async def test(worker: Worker) -> None:
        await worker._apply(1, messages(event("u1", "a"), event("u2", "b")))
        assert outage.letters_tried == 0  # never even tried to bury them
        assert await applied(store, "u1", "u2") == ["a", "b"]

    run_worker(tmp_path, store, store_url, test)


@pytest.mark.shared
def test_a_message_buried_as_the_database_comes_back_is_applied_and_unburied(
    tmp_path: Path, store: Database, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, PostgresStore)
    outage = Outage(store, back_at_letter=1, back_before_writing=True)
    outage.install(monkeypatch)

    async def test(worker: Worker) -> None:
        await worker._apply(1, messages(event("u1", "a")))
        assert outage.letters_tried == 1  # the database came back just as it buried it
        assert await applied(store, "u1") == ["a"]
        assert await store.dead_letters() == (0, [])

    run_worker(tmp_path, store, store_url, test)


# the admin API (serve without a bus applies a replay at once)


def test_dead_letters_are_listed_replayed_and_deleted_through_the_api(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        good = await keep(runtime.store, letter(encode(event("u1", "m1"))))
        bad = await keep(runtime.store, letter(b"\xc1", "unreadable"))
        listed = (await client.get("/v1/dead-letters", headers=ADMIN)).json()
        assert listed["count"] == 2
        newest, oldest = listed["dead_letters"]
        assert (newest["id"], newest["triggers"], newest["error"]) == (bad, None, "unreadable")
        assert (oldest["id"], oldest["kind"], oldest["partition"]) == (good, "event", 3)
        assert oldest["triggers"][0]["message_id"] == "m1"
        assert base64.b64decode(oldest["body"]) == encode(event("u1", "m1"))
        assert oldest["attempts"] == 5
        assert oldest["last_failed_at"].startswith("2026-01-05T00:00:02")
        limited = await client.get("/v1/dead-letters?limit=1", headers=ADMIN)
        assert [d["id"] for d in limited.json()["dead_letters"]] == [bad]

        assert "journeyman_dead_letters 2\n" in (await client.get("/metrics")).text
        replay = await client.post(f"/v1/dead-letters/{good}/replay", headers=ADMIN)
        assert (replay.status_code, replay.json()) == (
            200,
            {"id": good, "replayed": "applied", "results": ["accepted"]},
        )
        profile = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()
        assert [e["messageId"] for e in profile["events"]] == ["m1"]
        again = await client.post(f"/v1/dead-letters/{good}/replay", headers=ADMIN)
        assert (again.status_code, again.json()["error"]["rule"]) == (404, "exists")

        failed = await client.post(f"/v1/dead-letters/{bad}/replay", headers=ADMIN)
        assert (failed.status_code, failed.json()["error"]["rule"]) == (409, "replay")
        assert (await client.get("/v1/dead-letters", headers=ADMIN)).json()["count"] == 1
        deleted = await client.delete(f"/v1/dead-letters/{bad}", headers=ADMIN)
        assert (deleted.status_code, deleted.json()) == (200, {"id": bad, "deleted": True})
        gone = await client.delete(f"/v1/dead-letters/{bad}", headers=ADMIN)
        assert gone.status_code == 404
        assert (await client.get("/v1/dead-letters", headers=ADMIN)).json() == {
            "count": 0,
            "dead_letters": [],
        }

    run_api(tmp_path, store_url, test)


def test_the_dead_letter_routes_need_the_admin_key_and_a_sound_limit(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        assert (await client.get("/v1/dead-letters", headers=WRITE)).status_code == 401
        assert (await client.post("/v1/dead-letters/1/replay", headers=WRITE)).status_code == 401
        assert (await client.delete("/v1/dead-letters/1", headers=WRITE)).status_code == 401
        for limit in ("0", "1001", "x"):
            answer = await client.get(f"/v1/dead-letters?limit={limit}", headers=ADMIN)
            assert (answer.status_code, answer.json()["error"]["field"]) == (400, "limit")
        nothing = await client.post("/v1/dead-letters/12/replay", headers=ADMIN)
        assert (nothing.status_code, nothing.json()["error"]["field"]) == (404, "id")

    run_api(tmp_path, store_url, test)


# the console


def test_the_events_page_shows_dead_letters_and_replays_one(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await log_in(client)
        page = (await client.get("/events")).text
        assert "Dead letters" not in page  # none: nothing to show
        body = encode(event("u1", "m1"))
        letter_id = await keep(runtime.store, letter(body, "<b>refused</b>"))
        page = (await client.get("/events")).text
        assert "Dead letters" in page
        assert "&lt;b&gt;refused&lt;/b&gt;" in page  # escaped, as every stored text
        assert f'action="/dead-letters/{letter_id}/replay"' in page
        json = (await client.get("/events", headers={"Accept": "application/json"})).json()
        assert json["count"] == 1
        assert json["dead_letters"][0]["id"] == letter_id

        refused = await client.post(f"/dead-letters/{letter_id}/replay", data={"csrf": "no"})
        assert refused.status_code == 403
        csrf = await csrf_of(client, "/events")
        done = await client.post(f"/dead-letters/{letter_id}/replay", data={"csrf": csrf})
        assert (done.status_code, done.headers["location"]) == (
            303,
            f"/events?replayed={letter_id}",
        )
        page = (await client.get(done.headers["location"])).text
        assert f"Dead letter {letter_id} was sent on again" in page
        assert "Replay</button>" not in page
        assert [s.event.message_id for s in await runtime.reads.history("u1")] == ["m1"]
        gone = await client.post(f"/dead-letters/{letter_id}/replay", data={"csrf": csrf})
        assert gone.headers["location"] == f"/events?failed={letter_id}:gone"
        page = (await client.get(gone.headers["location"])).text
        assert "replayed or deleted already" in page

    run_console(tmp_path, test)
