"""Unsubscribe with a bus: a ``journeyman worker`` sends the email with its one-click
headers, ``serve --bus`` records the unsubscribe in JetStream, and the worker skips the
next newsletter while the receipt still goes. Real PostgreSQL, NATS and SMTP.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.cluster import serve_with_worker
from tests.conftest import write_workspace
from tests.servers import WRITE_KEY, Mail, SmtpServer
from tests.stores import Backend
from tests.waiting import wait_until

# Several processes share the database: PostgreSQL only.
pytestmark = pytest.mark.shared

WORKSPACE = """
kind: event
name: purchased
---
kind: subscription
name: news
channel: email
default: opt_out
---
kind: template
name: news_email
channel: email
topic: news
subject: News
text: "News. Unsubscribe: {{ unsubscribe_url }}"
---
kind: template
name: receipt_email
channel: email
transactional: true
subject: Receipt
text: "Your receipt"
---
kind: journey
name: shop
entry: {event: purchased}
reentry: always
steps:
  - {id: news, send: news_email}
  - {id: receipt, send: receipt_email}
"""


def channel(port: int) -> str:
    return (
        f"kind: channel\nname: email\ntype: smtp\nhost: 127.0.0.1\nport: {port}\n"
        'security: none\nfrom: "Shop <hello@shop.example>"\n'
    )


def test_a_worker_adds_the_headers_and_a_one_click_post_to_serve_stops_the_topic(
    tmp_path: Path, store_url: str, backend: Backend
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 2)
        with api.client(WRITE_KEY) as client:

            def purchase(emails: int) -> list[Mail]:
                answer = client.post("/v1/track", json={"userId": "u1", "event": "purchased"})
                assert answer.status_code == 202, answer.text
                wait_until(lambda: len(smtp.received) >= emails, f"{emails} emails", 60)
                return smtp.received

            identify = {"userId": "u1", "traits": {"email": "ada@example.com"}}
            assert client.post("/v1/identify", json=identify).status_code == 202
            [news] = [m for m in purchase(2) if m.message["Subject"] == "News"]
            header = " ".join(str(news.message["List-Unsubscribe"]).split())
            found = re.match(r"<(http://[^>]+/u/([\w-]+))>, <mailto:([^?]+)\?", header)
            assert found is not None, header
            url, token, mailto = found.groups()
            assert url == f"{api.url}/u/{token}"  # the public URL serve kept for its workers
            assert mailto == "unsubscribe@shop.example"
            assert url in str(news.message.get_body(("plain",)))

            form = {"content-type": "application/x-www-form-urlencoded"}
            with httpx.Client(trust_env=False) as browser:
                answer = browser.post(url, content=b"List-Unsubscribe=One-Click", headers=form)
                assert answer.status_code == 200, answer.text

            rows = backend.rows
            assert rows is not None

            def unsubscribed() -> bool:
                assert rows is not None
                found = rows(store_url, "SELECT count(*) FROM events WHERE profile_id = 'u1'")
                return bool(found[0][0] >= 3)  # identify, purchase, unsubscribed

            wait_until(unsubscribed, "the unsubscribe to be applied", 60)
            mails = purchase(3)
            query = "SELECT step, detail FROM steps WHERE outcome = 'skipped'"
            wait_until(lambda: rows(store_url, query), "the skipped newsletter", 60)
            assert rows(store_url, query) == [("news", "unsubscribed from topic news")]
            assert sorted(m.message["Subject"] for m in mails) == ["News", "Receipt", "Receipt"]
