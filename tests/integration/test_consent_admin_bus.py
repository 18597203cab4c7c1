"""An operator's consent change with a bus: ``serve --bus`` takes the change into
JetStream, and the ``journeyman worker`` that owns the profile applies it before the next
purchase, so the newsletter is skipped while the receipt goes. Real PostgreSQL, NATS and
SMTP.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.cluster import serve_with_worker
from tests.conftest import write_workspace
from tests.integration.test_consent_admin import WORKSPACE
from tests.integration.test_unsubscribe_bus import channel
from tests.servers import WRITE_KEY, SmtpServer
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}


def test_an_operator_change_through_serve_with_a_bus_is_applied_by_the_worker(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 2)
        with api.client() as admin:
            identify = {"userId": "u1", "traits": {"email": "ada@example.com"}}
            assert admin.post("/v1/identify", json=identify, headers=WRITE).status_code == 202
            wait_until(lambda: admin.get("/v1/profiles/u1").status_code == 200, "the profile")

            change = {"topics": {"news": False}, "by": "alice@example.com"}
            answer = admin.patch("/v1/profiles/u1/consent", json=change)
            assert answer.status_code == 202, answer.text

            def audited() -> bool:
                audit = admin.get("/v1/profiles/u1/consent").json()["audit"]
                return [(a["source"], a["by"]) for a in audit] == [
                    ("operator", "alice@example.com")
                ]

            wait_until(audited, "the worker to apply the change", 60)
            purchase = {"userId": "u1", "event": "purchased"}
            assert admin.post("/v1/track", json=purchase, headers=WRITE).status_code == 202
            wait_until(lambda: len(smtp.received) >= 1, "the receipt", 60)

            def skipped() -> list[str]:
                shown = admin.get("/v1/profiles/u1").json()
                trace = [r for i in shown["instances"] for r in i["trace"]]
                return [r["detail"] for r in trace if r["outcome"] == "skipped"]

            assert wait_until(skipped, "the skipped newsletter", 60) == [
                "unsubscribed from topic news"
            ]
            assert [m.message["Subject"] for m in smtp.received] == ["Receipt"]
            shown = admin.get("/v1/profiles/u1/consent").json()
            assert [t["subscribed"] for t in shown["topics"] if t["name"] == "news"] == [False]
