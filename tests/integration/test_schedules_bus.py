"""Scheduled runs with a bus: ``serve --bus`` and two ``journeyman worker`` processes on real
PostgreSQL and NATS. The workers work the run (one holds it at a time, claimed with ``FOR
UPDATE SKIP LOCKED``) and publish each page's entries to the partitions' owners; a worker
killed (SIGKILL) while it holds the run leaves its page to the other, and every profile is
entered exactly once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.test_bus import Cluster, _needs_nats, cluster  # noqa: F401
from tests.servers import WRITE_KEY
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

COUNT = 3000

EVERYONE = """
kind: journey
name: everyone
reentry: always
entry:
  schedule: {{at: "{at}", timezone: UTC, rate: 300}}
steps:
  - id: done
    end: completed
"""


def _profiles(writer: httpx.Client, count: int) -> None:
    for start in range(0, count, 500):
        batch = [
            {"type": "identify", "userId": f"p{n:05d}", "traits": {"n": n}}
            for n in range(start, min(count, start + 500))
        ]
        answer = writer.post("/v1/batch", json={"batch": batch})
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(batch), answer.text


def _publish(admin: httpx.Client, at: datetime) -> None:
    text = EVERYONE.format(at=at.strftime("%Y-%m-%dT%H:%M:%S"))
    answer = admin.put("/v1/workspace", json={"files": {"everyone.yaml": text}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["published"], answer.text


def _run(admin: httpx.Client) -> dict[str, Any] | None:
    answer = admin.get("/v1/journeys/everyone")
    if answer.status_code != 200:
        return None
    runs = answer.json()["runs"]
    return runs[0] if runs else None


def test_a_worker_killed_while_it_holds_a_run_leaves_its_page_to_another(
    cluster: Callable[..., Cluster],  # noqa: F811
) -> None:
    setup = cluster()
    api = setup.serve(partitions=4)
    first, second = setup.worker(), setup.worker()
    with api.client(WRITE_KEY) as writer, api.client() as admin:
        _profiles(writer, COUNT)
        wait_until(
            lambda: setup.rows("SELECT count(*) FROM profiles")[0][0] == COUNT,
            "every profile stored",
            60,
        )
        _publish(admin, datetime.now(UTC) + timedelta(seconds=6))
        wait_until(lambda: (r := _run(admin)) and r["entered"] >= 600, "a part entered", 60)
        ((owner, state),) = setup.rows("SELECT owner, state FROM schedule_runs")
        assert state == "running"
        holder = next(w for w in (first, second) if f":{w.process.pid}:" in owner)  # type: ignore[union-attr]
        other = second if holder is first else first
        holder.kill()

        done = wait_until(
            lambda: (r := _run(admin)) and r["state"] == "done" and r, "the run to finish", 120
        )
        assert (done["entered"], done["total"]) == (COUNT, COUNT)
        ((finisher,),) = setup.rows("SELECT owner FROM schedule_runs")
        assert f":{other.process.pid}:" in finisher  # type: ignore[union-attr]
        entered = "SELECT count(*), count(DISTINCT profile_id) FROM instances"
        query = f"{entered} WHERE journey = 'everyone'"
        wait_until(lambda: setup.rows(query)[0][0] >= COUNT, "every entry applied", 60)
        # each profile entered once: no one twice, no one skipped
        assert setup.rows(query)[0] == (COUNT, COUNT)
