"""Segments with a bus: ``serve --bus`` puts the events in JetStream, the ``journeyman
worker`` that owns the profile keeps its membership, enters the VIP journey (its email
goes to a real SMTP server) and ends it when the profile leaves the segment; the API
process answers the segment's size from the shared PostgreSQL. Real PostgreSQL, NATS and
SMTP."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import serve_with_worker
from tests.conftest import write_workspace
from tests.integration.test_segments_serve import LAPSING, WORKSPACE
from tests.integration.test_serve import smtp_channel
from tests.servers import WRITE_KEY, SmtpServer
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared


def test_a_worker_keeps_membership_and_runs_the_segment_journey(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 2)
        with api.client(WRITE_KEY) as writer, api.client() as admin:

            def post(path: str, body: dict[str, Any]) -> None:
                answer = writer.post(path, json=body)
                assert answer.status_code == 202, answer.text

            def size() -> int:
                answer = admin.get("/v1/segments")
                assert answer.status_code == 200, answer.text
                (vip,) = answer.json()["segments"]
                return int(vip["size"])

            def vip_instance() -> dict[str, Any] | None:
                found = admin.get("/v1/profiles/u1")
                if found.status_code != 200:
                    return None
                mine = [i for i in found.json()["instances"] if i["journey"] == "vip_welcome"]
                return mine[0] if mine else None

            post("/v1/identify", {"userId": "u1", "traits": {"email": "u1@example.com"}})
            now = datetime.now(UTC)
            for at in (now - timedelta(days=3), now):
                order = {"total": 10}
                post(
                    "/v1/track",
                    {
                        "userId": "u1",
                        "event": "order_completed",
                        "properties": order,
                        "timestamp": at.isoformat(),
                    },
                )
            wait_until(lambda: smtp.received, "the VIP email", 60)
            assert smtp.received[0].message["Subject"] == "You are a VIP now"
            wait_until(lambda: size() == 1, "vip to have one member", 60)

            post("/v1/identify", {"userId": "u1", "traits": {"blocked": True}})
            ended = wait_until(
                lambda: (i := vip_instance()) is not None and i["status"] == "ended" and i,
                "the VIP journey to end",
                60,
            )
            assert ended["end_state"] == "exited"
            wait_until(lambda: size() == 0, "vip to have no member", 60)


def test_a_worker_claims_the_profile_clock_and_the_profile_leaves_with_no_event(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", LAPSING, smtp_channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 2)
        with api.client(WRITE_KEY) as writer:
            identify = {"userId": "u1", "traits": {"email": "u1@example.com"}}
            assert writer.post("/v1/identify", json=identify).status_code == 202
            # 30 whole days since this order in 3 seconds: the worker's timers wake u1 then
            at = datetime.now(UTC) - timedelta(days=30, seconds=-3)
            order = {"userId": "u1", "event": "order_completed", "timestamp": at.isoformat()}
            assert writer.post("/v1/track", json=order).status_code == 202
            wait_until(lambda: smtp.received, "the win-back email", 60)
            assert smtp.received[0].message["Subject"] == "We miss you"
