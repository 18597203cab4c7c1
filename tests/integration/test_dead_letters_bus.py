"""Dead letters end to end: ``serve --bus`` and a ``journeyman worker`` process on real
PostgreSQL and NATS JetStream.

Two messages that no worker can apply reach the bus: one the API accepts but the database
refuses (a trigger the test installs stands for any such cause), and one published
straight onto the stream, past the API (as an older version or a bug could), with a NUL
character PostgreSQL cannot keep. Each is kept as a dead letter after its tries, the
events behind them in their partitions are applied, and a replay after the cause is
fixed applies the first; the second, replayed unfixed, comes back as a new dead letter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from journeyman.domain.state import Event
from journeyman.scaleout.bus import partition_of
from journeyman.storage.codec import encode
from tests.cluster import (
    NATS_URL,
    BusServer,
    WorkerProcess,
    nats_missing,
    nats_stream,
    stream_messages,
)
from tests.conftest import START, write_workspace
from tests.stores import Backend
from tests.waiting import wait_until

# A worker and the API share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

PARTITIONS = 4

WORKSPACE = """
kind: event
name: signed_up
---
kind: event
name: refused
"""

REFUSE = """
CREATE FUNCTION refuse_events() RETURNS trigger AS $$
BEGIN
    IF NEW.name = 'refused' THEN
        RAISE EXCEPTION 'refused by the test''s trigger';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql
"""


@pytest.fixture(autouse=True)
def _needs_nats() -> None:
    reason = nats_missing()
    if reason is not None:
        pytest.fail(reason)  # CI starts NATS: its absence is a failure, not a skip


@dataclass
class Deployment:
    api: BusServer
    worker: WorkerProcess
    stream: str
    db: str
    backend: Backend

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        assert self.backend.rows is not None
        return self.backend.rows(self.db, statement)

    def applied(self) -> set[str]:
        return {m for (m,) in self.sql("SELECT message_id FROM events")}

    def dead_letters(self, client: httpx.Client) -> dict[str, Any]:
        answer = client.get("/v1/dead-letters")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


@pytest.fixture
def deployment(tmp_path: Path, store_url: str, backend: Backend) -> Iterator[Deployment]:
    with ExitStack() as stack:
        stream = stack.enter_context(nats_stream())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE)
        server = BusServer(workspace, store_url, tmp_path, NATS_URL, stream, PARTITIONS)
        api = stack.enter_context(server).start()
        process = WorkerProcess("1", workspace, store_url, NATS_URL, tmp_path)
        worker = stack.enter_context(process).start()
        yield Deployment(api, worker, stream, store_url, backend)


def publish_past_the_api(stream: str, event: Event) -> None:
    """Put an event on its partition as the API would, without the API's checks."""

    async def publish() -> None:
        connection = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
        try:
            subject = f"{stream}.events.{partition_of(event.profile_id, PARTITIONS)}"
            headers = {"Nats-Msg-Id": str(event.message_id)}
            await connection.jetstream().publish(subject, encode(event), headers=headers)
        finally:
            await connection.close()

    asyncio.run(publish())


def neighbour(profile: str, n: int) -> str:
    """A profile whose events share a partition with ``profile``'s."""
    wanted = partition_of(profile, PARTITIONS)
    found = (f"n{n}-{i}" for i in range(1000))
    return next(p for p in found if partition_of(p, PARTITIONS) == wanted)


def track(client: httpx.Client, user: str, name: str, message_id: str) -> None:
    body = {"userId": user, "event": name, "messageId": message_id}
    answer = client.post("/v1/track", json=body)
    assert answer.status_code == 202, answer.text


def test_poison_messages_are_dead_lettered_their_partitions_go_on_and_replay_works(
    deployment: Deployment,
) -> None:
    d = deployment
    d.sql(REFUSE)
    d.sql(
        "CREATE TRIGGER refuse_events BEFORE INSERT ON events "
        "FOR EACH ROW EXECUTE FUNCTION refuse_events()"
    )
    poison = Event(
        name="signed_up",
        profile_id="poison\u0000",
        timestamp=START,
        user_id="poison\u0000",
        message_id="poison-1",
    )
    with d.api.client() as client:
        # the API itself refuses the poison, whatever the backend behind it
        refused = client.post("/v1/track", json={"userId": "poison\u0000", "event": "x"})
        assert (refused.status_code, refused.json()["error"]["field"]) == (400, "userId")

        track(client, "blocked", "refused", "refused-1")
        publish_past_the_api(d.stream, poison)
        later = {neighbour("blocked", 1), neighbour("blocked", 2), neighbour("poison\u0000", 3)}
        for n, user in enumerate(sorted(later)):
            track(client, user, "signed_up", f"later-{n}")
        wanted = {f"later-{n}" for n in range(len(later))}

        wait_until(lambda: wanted <= d.applied(), "the events behind the poison", timeout=60)
        wait_until(lambda: d.dead_letters(client)["count"] == 2, "two dead letters", timeout=60)
        letters = {
            x["triggers"][0]["message_id"]: x for x in d.dead_letters(client)["dead_letters"]
        }
        blocked, unkeepable = letters["refused-1"], letters["poison-1"]
        assert "refused by the test's trigger" in blocked["error"]
        assert "0x00" in unkeepable["error"]
        assert blocked["attempts"] == unkeepable["attempts"] == 5
        assert blocked["partition"] == partition_of("blocked", PARTITIONS)
        assert unkeepable["partition"] == partition_of("poison\u0000", PARTITIONS)
        assert "refused-1" not in d.applied()
        wait_until(lambda: _stream_messages(d) == 0, "every message acknowledged", timeout=30)

        # the cause is fixed: the replay is applied, and its dead letter is gone
        d.sql("DROP TRIGGER refuse_events ON events")
        replay = client.post(f"/v1/dead-letters/{blocked['id']}/replay")
        assert replay.status_code == 202, replay.text
        assert replay.json() == {
            "id": blocked["id"],
            "replayed": "published",
            "partition": blocked["partition"],
        }
        wait_until(lambda: "refused-1" in d.applied(), "the replayed event", timeout=60)
        left = d.dead_letters(client)["dead_letters"]
        assert [x["id"] for x in left] == [unkeepable["id"]]

        # replayed unfixed, the other fails again and comes back as a new dead letter
        again = client.post(f"/v1/dead-letters/{unkeepable['id']}/replay")
        assert again.status_code == 202, again.text

        def back() -> bool:
            found = d.dead_letters(client)["dead_letters"]
            return [x["id"] > unkeepable["id"] for x in found] == [True]

        wait_until(back, "the poison back as a new dead letter", timeout=60)
        assert d.worker.process is not None
        assert d.worker.process.poll() is None  # the worker never stopped


def _stream_messages(d: Deployment) -> int:
    return asyncio.run(stream_messages(NATS_URL, d.stream))
