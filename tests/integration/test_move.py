"""Moving a SQLite deployment into PostgreSQL with ``journeyman migrate --from``.

Each test fills a SQLite file, moves it into a fresh database of each backend that takes
a move (see the ``move_target`` marker), and checks what a user would: the same answers
from the store, waiting instances that fire where they now live, and a target that
already holds a deployment left alone.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from journeyman.cli import main
from journeyman.domain.core import Changes
from journeyman.storage import Database, open_store
from journeyman.storage.base import PublishedJourney
from tests.conftest import START, write_workspace
from tests.integration.test_storage import event, instance, profile, record, send
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.move_target

MINUTE = timedelta(minutes=1)


def migrate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["migrate", *args])
    return result.exit_code, result.stdout, result.stderr


async def fill(store: Database) -> None:
    """One of everything a deployment keeps."""
    email = ("email", "u1@example.com")
    await store.commit(
        Changes(
            at=START,
            events=[event(message_id="m1"), event("u2", message_id="m2"), event()],
            profiles={"u1": profile(firstName="Ada"), "u2": profile("u2")},
            instances={
                "u1:hello:1": instance(wake_at=START + MINUTE),
                "u2:hello:1": instance("u2:hello:1", profile="u2", status="ended"),
                "u1:b:1": instance("u1:b:1"),
            },
            effects=[send("k1"), send("k2", profile="u2")],
            records=[record("entered"), record("sent"), record("entered", profile="u2")],
            identities={email: "u1"},
        )
    )
    await store.claim(START, 1)  # k1 was being delivered when the old server stopped
    await store.publish([PublishedJourney("hello", 1, "d1", {"name": "hello", "steps": []})])
    await store.publish([PublishedJourney("hello", 2, "d2", {"name": "hello", "steps": [1]})])
    await store.set_journey_state("hello", "paused")
    await store.set_setting("write_key", "w1")


async def answers(store: Database) -> list[Any]:
    """What the runtime and the admin API read, for every kind of row."""
    return [
        await store.load(["u1", "u2", "u3"]),
        await store.resolve([("email", "u1@example.com")]),
        await store.seen(["m1", "m2", "m3"]),
        [await store.history(p) for p in ("u1", "u2")],
        [await store.trace(p) for p in ("u1", "u2")],
        [await store.instances_of(p) for p in ("u1", "u2")],
        await store.due(START + MINUTE, 10),
        await store.next_wake(),
        [(m.key, m.status, m.attempts, m.content) for m in await store.messages()],
        await store.published(),
        await store.journey_document("hello", 1),
        await store.journey_states(),
        await store.versions_in_use(),
        await store.step_counts("hello"),
        await store.identities_of("u1"),
        await store.instance_counts(),
        await store.get_setting("write_key"),
    ]


@pytest.fixture
def old(tmp_path: Path) -> str:
    """The URL of a SQLite file that a deployment used."""
    return f"sqlite:///{tmp_path / 'old' / 'journeyman.db'}"


def read(url: str) -> list[Any]:
    store = open_store(url)

    async def main() -> list[Any]:
        await store.open()
        try:
            return await answers(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_a_moved_database_gives_the_same_answers_as_the_sqlite_file(
    old: str, store_url: str
) -> None:
    source = open_store(old)

    async def write() -> None:
        await source.open()
        try:
            await fill(source)
        finally:
            await source.close()

    asyncio.run(write())
    code, out, err = migrate("--from", old, "--db", store_url)
    assert code == 0, out + err
    assert "moved" in out
    assert "events: 3 of 3 rows" in err
    before, after = read(old), read(store_url)
    assert after == before
    assert after[6], "the waiting instance came"
    assert after[2] == {"m1", "m2"}


def test_a_target_that_holds_a_deployment_is_refused_unless_replace_is_given(
    old: str, store_url: str
) -> None:
    async def write(url: str, pid: str) -> None:
        store = open_store(url)
        await store.open()
        try:
            await store.commit(Changes(profiles={pid: profile(pid)}))
        finally:
            await store.close()

    asyncio.run(write(old, "old"))
    asyncio.run(write(store_url, "new"))
    code, out, err = migrate("--from", old, "--db", store_url)
    assert code == 2
    assert "already holds profiles" in out + err
    assert "--replace" in out + err
    assert held(store_url) == {"old": False, "new": True}

    code, out, err = migrate("--from", old, "--db", store_url, "--replace")
    assert code == 0, out + err
    assert held(store_url) == {"old": True, "new": False}


def held(url: str) -> dict[str, bool]:
    """Which of the profiles "old" and "new" the database holds."""
    found = open_store(url)

    async def main() -> dict[str, bool]:
        await found.open()
        try:
            return {pid: await found.profile(pid) is not None for pid in ("old", "new")}
        finally:
            await found.close()

    return asyncio.run(main())


def test_a_move_from_a_file_that_does_not_exist_is_refused(tmp_path: Path, store_url: str) -> None:
    code, out, err = migrate("--from", f"sqlite:///{tmp_path / 'nope.db'}", "--db", store_url)
    assert code == 2
    assert "no SQLite database at" in out + err
    assert not (tmp_path / "nope.db").exists()


WORKSPACE = """
kind: event
name: signed_up
---
kind: template
name: hello_email
channel: email
subject: "Hello {{ profile.firstName | default: 'there' }}"
text: "Welcome."
---
kind: journey
name: hello
entry: {event: signed_up}
steps:
  - id: pause
    wait: 5s
  - id: greet
    send: hello_email
  - id: done
    end: greeted
---
kind: channel
name: email
type: smtp
host: 127.0.0.1
port: {port}
security: none
from: "Journeyman Tests <hello@example.com>"
"""


def counts(url: str) -> dict[tuple[str, str], int]:
    store = open_store(url)

    async def main() -> dict[tuple[str, str], int]:
        await store.open()
        try:
            return await store.instance_counts()
        finally:
            await store.close()

    return asyncio.run(main())


def test_waiting_instances_moved_out_of_sqlite_wake_and_send_on_the_new_database(
    tmp_path: Path, old: str, store_url: str
) -> None:
    people = [f"p{n}" for n in range(20)]
    with SmtpServer() as smtp:
        workspace = write_workspace(tmp_path / "ws", WORKSPACE.replace("{port}", str(smtp.port)))
        (tmp_path / "old").mkdir()
        with Journeyman(workspace, old, tmp_path / "old") as server:
            with server.start().client(WRITE_KEY) as client:
                for person in people:
                    traits = {"firstName": person.upper(), "email": f"{person}@example.com"}
                    identify = {"userId": person, "traits": traits}
                    assert client.post("/v1/identify", json=identify).status_code == 202
                    track = {"userId": person, "event": "signed_up"}
                    assert client.post("/v1/track", json=track).status_code == 202
            assert server.stop() == 0, server.output
        # Stopped inside the 5 s wait: every instance waits, nothing was sent.
        assert counts(old) == {("hello", "waiting"): len(people)}
        assert smtp.received == []

        code, out, err = migrate("--from", old, "--db", store_url)
        assert code == 0, out + err

        with Journeyman(workspace, store_url, tmp_path) as server:
            server.start()
            wait_until(lambda: len(smtp.received) >= len(people), "every hello email")
            wait_until(lambda: counts(store_url) == {("hello", "ended"): len(people)}, "the ends")
            assert server.stop() == 0, server.output
    recipients = sorted(a for mail in smtp.received for a in mail.recipients)
    assert recipients == sorted(f"{person}@example.com" for person in people)
    subjects = {str(mail.message["Subject"]) for mail in smtp.received}
    assert subjects == {f"Hello {person.upper()}" for person in people}
