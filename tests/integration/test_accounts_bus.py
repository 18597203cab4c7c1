"""Group calls with a bus: ``serve --bus`` puts them in JetStream, a ``journeyman worker``
applies them as ``serve`` does alone. One member's group call sets the account's plan; another
member reads it in a journey's condition and its email. Real PostgreSQL, NATS and SMTP.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import serve_with_worker
from tests.conftest import write_workspace
from tests.integration.test_accounts_serve import WORKSPACE, html_of, mail_to
from tests.integration.test_serve import profile, smtp_channel
from tests.servers import WRITE_KEY, SmtpServer
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared


def test_a_worker_applies_group_calls_and_another_member_reads_the_account(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 4)
        with api.client(WRITE_KEY) as client:
            for user in ("owner", "member"):
                traits = {"email": f"{user}@x.test"}
                answer = client.post("/v1/identify", json={"userId": user, "traits": traits})
                assert answer.status_code == 202, answer.text
            owner = {"userId": "owner", "groupId": "acme", "traits": {"plan": "pro", "name": "A"}}
            assert client.post("/v1/group", json=owner).status_code == 202
            joined = {"type": "group", "userId": "member", "groupId": "acme"}
            answer = client.post("/v1/batch", json={"batch": [joined]})
            assert answer.status_code == 200, answer.text
        with api.client() as admin:
            # both group calls are applied before the member's sign-up is sent
            wait_until(lambda: _account_of(admin, "owner"), "the owner's account")
            wait_until(lambda: _account_of(admin, "member"), "the member's account")
            answer = admin.post("/v1/track", json={"userId": "member", "event": "signed_up"})
            assert answer.status_code == 202, answer.text
            (mail,) = mail_to(smtp, "member@x.test")
            assert mail["Subject"] == "Welcome to the pro plan"
            assert "Your team A (acme) is on pro." in html_of(mail)
            found = profile(admin, "member")
            assert found is not None
            assert found["account"]["traits"] == {"plan": "pro", "name": "A"}
            # the owner's change recorded account_updated on the owner only
            owner_events = [e["name"] for e in (profile(admin, "owner") or {})["events"]]
            assert "account_updated" in owner_events
            assert "account_updated" not in [e["name"] for e in found["events"]]


def _account_of(admin: httpx.Client, user: str) -> Any:
    found = profile(admin, user)
    return found and found.get("account")
