"""Segment backfill with a bus: ``serve --bus`` hands each profile's backfill to JetStream,
and the ``journeyman worker`` that owns the profile's partition computes its membership
from the events stored before the segment was published; the segment's journey starts for
none of them. Real PostgreSQL, NATS and SMTP."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from journeyman.cli import main
from tests.cluster import NATS_URL, BusServer, WorkerProcess, nats_missing, nats_stream
from tests.conftest import write_workspace
from tests.integration.test_segment_backfill_serve import BEFORE, VIP
from tests.integration.test_serve import smtp_channel
from tests.servers import ADMIN_KEY, WRITE_KEY, SmtpServer
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared


def test_the_partition_owner_backfills_each_profile_from_its_stored_events(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        first = write_workspace(tmp_path / "v1", BEFORE, smtp_channel(smtp.port))
        api = _deployment(stack, first, store_url, tmp_path)
        with api.client(WRITE_KEY) as writer, api.client() as admin:

            def post(path: str, body: dict[str, Any]) -> None:
                answer = writer.post(path, json=body)
                assert answer.status_code == 202, answer.text

            def segment() -> dict[str, Any]:
                answer = admin.get("/v1/segments/vip")
                assert answer.status_code == 200, answer.text
                found: dict[str, Any] = answer.json()
                return found

            now = datetime.now(UTC)
            users = [f"u{n}" for n in range(6)]
            for index, user in enumerate(users):
                post("/v1/identify", {"userId": user, "traits": {"email": f"{user}@example.com"}})
                for ago in (5, 1) if index % 2 == 0 else (1,):
                    at = (now - timedelta(days=ago)).isoformat()
                    post("/v1/track", {"userId": user, "event": "order_completed", "timestamp": at})
            wait_until(
                lambda: admin.get("/v1/profiles/u5").status_code == 200, "the worker to apply", 60
            )

            second = write_workspace(
                tmp_path / "v2", BEFORE, VIP.replace("{least}", "2"), smtp_channel(smtp.port)
            )
            args = ["publish", str(second), "--url", api.url, "--key", ADMIN_KEY]
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, result.output
            done = wait_until(
                lambda: (s := segment())["backfill"] and s["backfill"]["state"] == "done" and s,
                "the backfill to be handed over",
                60,
            )
            assert (done["backfill"]["done"], done["backfill"]["total"]) == (6, 6)
            wait_until(lambda: segment()["size"] == 3, "u0, u2 and u4 to join vip", 60)
            members = admin.get("/v1/segments/vip/members").json()["members"]
            assert [m["profile_id"] for m in members] == ["u0", "u2", "u4"]
            shown = admin.get("/v1/profiles/u0").json()
            assert [c["outcome"] for c in shown["segment_changes"]] == ["segment_entered"]
            assert [i for i in shown["instances"] if i["journey"] == "vip_welcome"] == []
            assert sum(p["entered"] for p in segment()["sizes"]["points"]) == 3

            # A profile that qualifies from now on enters the journey, through its owner.
            post("/v1/track", {"userId": "u1", "event": "order_completed"})
            wait_until(lambda: smtp.received, "u1's VIP email", 60)
            assert [m.recipients for m in smtp.received] == [["u1@example.com"]]


def _deployment(stack: ExitStack, workspace: Path, db: str, folder: Path) -> BusServer:
    """``serve --bus`` and a worker that runs what is published (no ``--workspace``, as in
    production: a publish brings it the new segment)."""
    reason = nats_missing()
    if reason is not None:
        pytest.fail(reason)
    stream = stack.enter_context(nats_stream(NATS_URL))
    api = BusServer(workspace, db, folder, NATS_URL, stream, 2)
    stack.enter_context(api).start()
    worker = WorkerProcess("1", workspace, db, NATS_URL, folder)
    worker.command = [*worker.command[:4], "--db", db, "--bus", NATS_URL]
    stack.enter_context(worker).start()
    return api
