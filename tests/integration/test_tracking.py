"""Opens and clicks of email end to end: ``journeyman serve`` sends through a real SMTP
server, the test follows the links in the email it received with an HTTP client, and the
profile's events show what was recorded. On every backend another process can open."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from journeyman.channels.file import FileChannel
from journeyman.domain.state import Event
from journeyman.runtime.links import Links
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store
from journeyman.workspace import load_texts
from tests.conftest import write_workspace
from tests.integration.test_serve import accepted, messages, smtp_channel
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import eventually, wait_until, when

pytestmark = pytest.mark.durable

SECRET = "tracking-test-secret"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
APPLE_PROXY = "Mozilla/5.0"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
PERSON = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"

SALE = "https://shop.example/sale?utm_source=mail&item=a%20b&x=1#top"
BLOG = "http://blog.example/posts/42"

WORKSPACE = f"""
kind: event
name: signed_up
identity: userId
schema: {{type: object}}
---
kind: template
name: promo
channel: email
subject: Our sale
html: >-
  <html><body><p>Hi {{{{ profile.firstName }}}},
  <a href="{SALE.replace("&", "&amp;")}">the sale</a> and
  <a href='{BLOG}'>the blog</a>; <a href="mailto:help@example.com">write to us</a>
  or <a href="#top">go up</a>.</p></body></html>
text: "Hi, the sale: {SALE}"
---
kind: template
name: quiet
channel: email
tracking: false
subject: Quiet
html: <p><a href="{BLOG}">blog</a></p>
---
kind: template
name: receipt
channel: email
transactional: true
subject: Receipt
html: <p><a href="{BLOG}">your order</a></p>
---
kind: journey
name: promo
entry: {{event: signed_up}}
steps:
  - {{id: promo, send: promo}}
  - {{id: quiet, send: quiet}}
  - {{id: receipt, send: receipt}}
  - {{id: done, end: done}}
"""


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def journeyman(tmp_path: Path, store_url: str, smtp_server: SmtpServer) -> Iterator[Journeyman]:
    workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp_server.port))
    with Journeyman(workspace, store_url, tmp_path, {"JOURNEYMAN_SECRET": SECRET}) as server:
        yield server.start()


@pytest.fixture
def api(journeyman: Journeyman) -> Iterator[httpx.Client]:
    with journeyman.client() as client:
        yield client


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    """A client with no key that does not follow redirects, as a test sees each answer."""
    with httpx.Client(timeout=20, trust_env=False, follow_redirects=False) as client:
        yield client


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def hrefs(html: str) -> list[str]:
    return [a or b for a, b in re.findall(r"<a [^>]*href=(?:\"([^\"]*)\"|'([^']*)')", html)]


def sent_emails(api: httpx.Client, smtp_server: SmtpServer, user: str) -> dict[str, str]:
    """Sign ``user`` up and wait for the three emails: subject -> HTML part."""
    traits = {"firstName": "Ada", "email": f"{user}@example.com"}
    accepted(api.post("/v1/identify", json={"userId": user, "traits": traits}, headers=WRITE))
    accepted(api.post("/v1/track", json={"userId": user, "event": "signed_up"}, headers=WRITE))
    wait_until(lambda: len(smtp_server.received) >= 3, "the three emails")
    return {str(m.message["Subject"]): html_of(m.message) for m in smtp_server.received}


def events(api: httpx.Client, user: str, name: str) -> list[dict[str, Any]]:
    answer = api.get(f"/v1/profiles/{user}")
    assert answer.status_code == 200, answer.text
    return [e for e in answer.json()["events"] if e["name"] == name]


def test_links_in_marketing_email_lead_through_journeyman_to_exactly_the_original(
    journeyman: Journeyman, api: httpx.Client, smtp_server: SmtpServer, browser: httpx.Client
) -> None:
    mail = sent_emails(api, smtp_server, "ada")["Our sale"]
    sale, blog, mailto, anchor = hrefs(mail)
    assert sale.startswith(f"{journeyman.url}/c/")
    assert blog.startswith(f"{journeyman.url}/c/")
    assert (mailto, anchor) == ("mailto:help@example.com", "#top")
    assert "shop.example" not in mail
    assert "blog.example" not in mail
    [pixel] = re.findall(r'<img src="([^"]+)" width="1" height="1"', mail)
    assert pixel.startswith(f"{journeyman.url}/o/")
    assert mail.index(pixel) < mail.index("</body>")

    checked = browser.head(sale)  # a link checker's look: answered, not counted
    assert (checked.status_code, checked.headers["location"]) == (302, SALE)
    answer = browser.get(sale, headers={"User-Agent": PERSON})
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == SALE
    assert "no-store" in answer.headers["cache-control"]
    assert browser.get(blog).headers["location"] == BLOG

    [promo] = [m for m in messages(api, profile="ada") if m["step"] == "promo"]
    clicked = wait_until(lambda: events(api, "ada", "message_clicked"), "the clicks")
    assert len(clicked) == 2
    by_url = {e["properties"]["url"]: e["properties"] for e in clicked}
    assert by_url[SALE] == {
        "journey": "promo",
        "version": 1,
        "step": "promo",
        "instance": promo["instance_id"],
        "message": promo["key"],
        "channel": "email",
        "url": SALE,
        "user_agent": PERSON,
    }


def test_the_pixel_records_opens_and_flags_mail_proxies_as_machine_opens(
    api: httpx.Client, smtp_server: SmtpServer, browser: httpx.Client
) -> None:
    mail = sent_emails(api, smtp_server, "bo")["Our sale"]
    [pixel] = re.findall(r'<img src="([^"]+)"', mail)
    for agent in (APPLE_PROXY, GMAIL_PROXY, PERSON):
        answer = browser.get(pixel, headers={"User-Agent": agent})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/gif"
        assert answer.content.startswith(b"GIF89a")
        assert len(answer.content) < 100
        assert "no-store" in answer.headers["cache-control"]
    assert browser.get(pixel, headers={"User-Agent": PERSON}).status_code == 200  # a repeat

    opened = events(api, "bo", "message_opened")
    machine = {e["properties"]["user_agent"]: e["properties"]["machine"] for e in opened}
    assert machine == {APPLE_PROXY: True, GMAIL_PROXY: True, PERSON: False}
    assert len(opened) == 3, "a repeat at once is the same open"


def test_untracked_and_transactional_email_is_sent_as_written(
    api: httpx.Client, smtp_server: SmtpServer
) -> None:
    mails = sent_emails(api, smtp_server, "cy")
    assert mails["Quiet"].strip() == '<p><a href="http://blog.example/posts/42">blog</a></p>'
    assert mails["Receipt"].strip() == (
        '<p><a href="http://blog.example/posts/42">your order</a></p>'
    )


def test_forged_altered_and_unknown_tokens_are_refused_and_record_nothing(
    journeyman: Journeyman, api: httpx.Client, smtp_server: SmtpServer, browser: httpx.Client
) -> None:
    mail = sent_emails(api, smtp_server, "di")["Our sale"]
    sale = hrefs(mail)[0]
    [pixel] = re.findall(r'<img src="([^"]+)"', mail)
    token = sale.rsplit("/", 1)[1]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    pixel_token = pixel.rsplit("/", 1)[1]
    bad = [
        flipped,
        token[:-1],
        token[:10],
        token + "A",
        "A" * 5000,
        "%00",
        token + "%00",
        "not-a-token",
    ]
    [promo] = [m for m in messages(api, profile="di") if m["step"] == "promo"]
    signed = Links(journeyman.url, SECRET.encode())
    bad += [  # signed with the deployment's secret, for what does not exist
        signed.url("/c", "click", promo["key"], "2").rsplit("/", 1)[1],  # only links 0, 1
        signed.url("/c", "click", promo["key"], "-1").rsplit("/", 1)[1],
        signed.url("/c", "click", "no-such-message", "0").rsplit("/", 1)[1],
        signed.url("/c", "click", promo["key"]).rsplit("/", 1)[1],
        signed.url("/o", "open", "no-such-message").rsplit("/", 1)[1],
    ]
    assert signed.read("click", token) == (promo["key"], "0")  # the secret is the server's
    for each in [*bad, pixel_token]:  # an open token is no click token
        answer = browser.get(f"{journeyman.url}/c/{each}")
        assert 400 <= answer.status_code < 500, (each, answer.status_code)
        assert "location" not in answer.headers
    for each in [*bad, token]:  # nor a click token an open token
        opened = browser.get(f"{journeyman.url}/o/{each}")
        assert opened.status_code == 404, (each, opened.status_code)
        assert opened.headers["content-type"] == "image/gif"  # the image still draws
    assert events(api, "di", "message_clicked") == []
    assert events(api, "di", "message_opened") == []


def test_a_channel_that_sends_in_batches_gets_the_tracked_email_too(
    tmp_path: Path, store_url: str
) -> None:
    """The file channel takes many messages at once; each is tracked as a lone send is."""
    loaded = load_texts({"w.yaml": WORKSPACE})
    assert loaded.workspace is not None
    workspace = loaded.workspace
    mail = tmp_path / "mail.jsonl"

    async def send() -> list[dict[str, Any]]:
        channel = FileChannel("email", mail)
        runtime = Runtime(workspace, open_store(store_url), {"email": channel}, env={})
        runtime.public_url = "https://go.example.com"
        await runtime.start()
        try:
            now = runtime.processor.clock()
            events = [
                Event(
                    name="identify",
                    type="identify",
                    profile_id=f"u{n}",
                    timestamp=now,
                    properties={"email": f"u{n}@example.com"},
                )
                for n in range(5)
            ] + [Event(name="signed_up", profile_id=f"u{n}", timestamp=now) for n in range(5)]
            await runtime.accept(events)
            await eventually(when(lambda: _lines(mail) == 15), "the 15 emails")
        finally:
            await runtime.stop()
        return [json.loads(line) for line in mail.read_text().splitlines()]

    sent = asyncio.run(send())
    promos = [m["content"]["html"] for m in sent if m["template"] == "promo"]
    assert len(promos) == 5
    for html in promos:
        sale, blog, mailto, _ = hrefs(html)
        assert sale.startswith("https://go.example.com/c/")
        assert blog.startswith("https://go.example.com/c/")
        assert mailto == "mailto:help@example.com"
        assert '<img src="https://go.example.com/o/' in html
    untouched = [m["content"]["html"] for m in sent if m["template"] != "promo"]
    assert all("go.example.com" not in html for html in untouched)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
