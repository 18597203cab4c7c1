"""What customers do with each variant's email, in the journey's report, on a real
``journeyman serve`` (SQLite file, PostgreSQL): real SMTP receives the emails, an HTTP
client fetches the real tracking pixel and clicks the real tracked links as a reader
would; the report counts, per step and per variant, the messages sent, delivered, opened
and clicked, each message once however often it is opened, from counters kept in the
same commit as the reaction."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_workspace
from tests.integration.test_experiments_serve import console_report
from tests.integration.test_serve import accepted, smtp_channel
from tests.integration.test_tracking import PERSON, hrefs, html_of
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable

WORKSPACE = """
kind: event
name: signed_up
---
kind: subscription
name: news
channel: email
default: opt_out
---
kind: template
name: offer_a
channel: email
topic: news
subject: "Offer A"
html: >-
  <p>A: <a href="https://shop.example/a">shop</a>, <a href="https://blog.example/a">blog</a>.
  <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
---
kind: template
name: offer_b
channel: email
topic: news
subject: "Offer B"
html: >-
  <p>B: <a href="https://shop.example/b">shop</a>, <a href="https://blog.example/b">blog</a>.
  <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
---
kind: journey
name: offers
entry: {event: signed_up}
steps:
  - id: offer
    experiment:
      - {name: a, weight: 1, send: offer_a}
      - {name: b, weight: 1, send: offer_b}
  - id: pause
    wait: 7d
"""
USERS = [f"m{index:02}" for index in range(16)]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_the_report_counts_each_variants_opens_and_clicks_once_per_message(
    tmp_path: Path, store_url: str, smtp_server: SmtpServer
) -> None:
    folder = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp_server.port))
    with Journeyman(folder, store_url, tmp_path) as server:
        server.start()
        with server.client(WRITE_KEY) as client, server.client() as admin:
            mail = send_offers(client, smtp_server)
            react_and_check(admin, mail)
        assert server.stop() == 0, server.output


def send_offers(client: httpx.Client, smtp_server: SmtpServer) -> dict[str, tuple[str, str]]:
    """Every user signs up and gets one variant's email: user -> (variant, html)."""
    for user in USERS:
        traits = {"email": f"{user}@example.com"}
        accepted(client.post("/v1/identify", json={"userId": user, "traits": traits}))
        accepted(client.post("/v1/track", json={"userId": user, "event": "signed_up"}))
    wait_until(lambda: len(smtp_server.received) == len(USERS), "every offer")
    return {
        m.recipients[0].split("@")[0]: (m.message["Subject"][-1].lower(), html_of(m.message))
        for m in smtp_server.received
    }


def react_and_check(admin: httpx.Client, mail: dict[str, tuple[str, str]]) -> None:
    readers_b = sorted(u for u, (v, _) in mail.items() if v == "b")[:3]
    reader_a = min(u for u, (v, _) in mail.items() if v == "a")
    with httpx.Client(trust_env=False, timeout=20) as reader:
        for user in [*readers_b, reader_a]:
            (pixel,) = re.findall(r'<img src="([^"]+)" width="1" height="1"', mail[user][1])
            assert reader.get(pixel, headers={"User-Agent": PERSON}).status_code == 200
        shop, blog, *_ = hrefs(mail[readers_b[0]][1])
        for link in (shop, blog):  # two clicks of one reader: one clicker, two clicks
            assert reader.get(link, headers={"User-Agent": PERSON}).status_code in (302, 303)

    def engaged() -> dict[str, Any] | None:
        found = admin.get("/v1/journeys/offers/report").json()
        step = next(s for s in found["steps"] if s["id"] == "offer")
        arms = {a["name"]: a["engagement"] for a in step["arms"]}
        done = (arms["b"]["opened"], arms["b"]["clicks"], arms["a"]["opened"]) == (3, 2, 1)
        delivered = step["engagement"]["delivered"] == len(USERS)
        return step if done and delivered else None

    step = wait_until(engaged, "the opens and clicks in the report")
    arms = {a["name"]: a["engagement"] for a in step["arms"]}
    sent = {v: sum(1 for x, _ in mail.values() if x == v) for v in ("a", "b")}
    assert {k: arms["b"][k] for k in ("sent", "delivered", "opened", "clicked", "clicks")} == {
        "sent": sent["b"],
        "delivered": sent["b"],
        "opened": 3,
        "clicked": 1,
        "clicks": 2,
    }
    assert arms["b"]["rates"]["opened"] == round(3 / sent["b"], 4)
    assert (arms["a"]["sent"], arms["a"]["opened"], arms["a"]["clicked"]) == (sent["a"], 1, 0)
    everyone = step["engagement"]
    assert (everyone["sent"], everyone["opened"], everyone["clicked"]) == (len(USERS), 4, 1)

    # the same reader opens again later (a new open event): still one opened message
    again = admin.post(
        "/v1/track",
        json={
            "userId": readers_b[0],
            "event": "message_opened",
            "properties": {**reaction_of(admin, readers_b[0]), "machine": False},
        },
    )
    accepted(again)
    wait_until(lambda: opened_events(admin, readers_b[0]) >= 2 or None, "the second open")
    step = wait_until(engaged, "the report after the second open")
    assert {a["name"]: a["engagement"]["opened"] for a in step["arms"]} == {"a": 1, "b": 3}

    page = console_report(admin, "offers")
    assert 'data-step-arm="offer:b"' in page
    row = page.split('data-step-arm="offer:b"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num" data-engaged="opened">3 <span class="muted small">' in row


def reaction_of(admin: httpx.Client, user: str) -> dict[str, Any]:
    """The properties that tie a reaction to the user's offer, as the pixel gives them."""
    (message,) = admin.get("/v1/messages", params={"profile": user}).json()["messages"]
    (instance,) = admin.get(f"/v1/profiles/{user}").json()["instances"]
    return {
        "journey": "offers",
        "version": instance["version"],
        "step": "offer",
        "instance": message["instance_id"],
        "message": message["key"],
        "channel": "email",
        "arm": "b",
    }


def opened_events(admin: httpx.Client, user: str) -> int:
    """How many times the user's offer was opened, as its trace says."""
    (instance,) = admin.get(f"/v1/profiles/{user}").json()["instances"]
    return sum(1 for line in instance["trace"] if line["outcome"] == "opened")
