"""Unsubscribe end to end: the headers and links a real SMTP server receives, the one-click
POST that stops the next newsletter while the receipt still goes, forged links that change
nothing, and the preference page. Runs on every storage backend.

Email goes to aiosmtpd on 127.0.0.1 (tests/servers.py); the HTTP calls go to the API app
of the same runtime through httpx.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from journeyman.api import Keys, create_app
from journeyman.channels.smtp import SmtpChannel
from journeyman.domain.state import Event
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace
from tests.servers import Mail, SmtpServer
from tests.waiting import eventually

PUBLIC = "https://mail.example.com"
KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}
ADMIN = {"Authorization": "Bearer a-key"}
ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}

WORKSPACE = """
kind: subscription
name: news
channel: email
description: The monthly newsletter
default: opt_out
---
kind: subscription
name: tips
channel: email
description: Tips & <tricks>
default: opt_in
---
kind: template
name: news_email
channel: email
topic: news
subject: News
html: '<p>News for {{ profile.firstName }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'
text: "News. Your choices: {{ preferences_url }}"
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


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


Scenario = Callable[[Runtime, httpx.AsyncClient], Awaitable[None]]


def play(tmp_path: Path, store_url: str, smtp: SmtpServer, scenario: Scenario) -> None:
    """Run ``scenario`` on a runtime over the backend under test that mails ``smtp``."""
    loaded = load_workspace(write_workspace(tmp_path / "ws", BASE, WORKSPACE))
    workspace = loaded.workspace
    assert workspace is not None, loaded.errors
    email = SmtpChannel(
        "email", host="127.0.0.1", port=smtp.port, sender="Shop <hi@shop.example>", security="none"
    )

    async def main() -> None:
        runtime = Runtime(workspace, open_store(store_url), {"email": email}, env={})
        runtime.public_url = PUBLIC
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as client:
                await scenario(runtime, client)
        finally:
            await runtime.stop()

    asyncio.run(main())


async def call(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    answer = await client.post(path, json={"userId": "u1", **body}, headers=WRITE)
    assert answer.status_code == 202, answer.text


async def purchase(client: httpx.AsyncClient, smtp: SmtpServer, mails: int) -> list[Mail]:
    """Track a purchase; wait until ``mails`` emails in all have arrived."""
    await call(client, "/v1/track", {"event": "purchased"})

    async def arrived() -> list[Mail] | None:
        return smtp.received if len(smtp.received) >= mails else None

    return await eventually(arrived, f"{mails} emails")


async def unsubscribes(runtime: Runtime) -> list[Event]:
    return [e.event for e in await runtime.reads.history("u1") if e.event.name == "unsubscribed"]


def by_subject(mails: list[Mail], *subjects: str) -> list[Mail]:
    """One email of each subject (sends of one instant may arrive in any order)."""
    return [next(m for m in mails if m.message["Subject"] == subject) for subject in subjects]


def header(mail: Mail, name: str) -> str:
    """A header as a mail client reads it: unfolded, white space squeezed."""
    return " ".join(str(mail.message[name]).split())


def link(mail: Mail) -> str:
    """The one-click URL of a received email, from its List-Unsubscribe header."""
    found = re.match(r"<(https://[^>]+)>", header(mail, "List-Unsubscribe"))
    assert found is not None, mail.message["List-Unsubscribe"]
    return found.group(1)


def body(mail: Mail, kind: str) -> str:
    part = mail.message.get_body((kind,))
    assert part is not None
    return str(part.get_content())


def test_marketing_email_carries_one_click_headers_and_links_and_a_receipt_none(
    tmp_path: Path, store_url: str, smtp: SmtpServer
) -> None:
    async def scenario(runtime: Runtime, client: httpx.AsyncClient) -> None:
        await call(client, "/v1/identify", {"traits": {"email": "ada@example.com"}})
        news, receipt = by_subject(await purchase(client, smtp, 2), "News", "Receipt")

        url = link(news)
        token = url.rsplit("/", 1)[1]
        assert url == f"{PUBLIC}/u/{token}"
        assert header(news, "List-Unsubscribe") == (
            f"<{url}>, <mailto:unsubscribe@shop.example?subject=unsubscribe-{token}>"
        )
        assert news.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f'<a href="{url}">Unsubscribe</a>' in body(news, "html")
        assert re.search(
            rf"Your choices: {PUBLIC}/preferences/[\w-]+$", body(news, "plain").strip()
        )
        assert receipt.message["List-Unsubscribe"] is None
        assert receipt.message["List-Unsubscribe-Post"] is None

    play(tmp_path, store_url, smtp, scenario)


def test_a_one_click_post_stops_the_topic_and_a_receipt_still_goes(
    tmp_path: Path, store_url: str, smtp: SmtpServer
) -> None:
    async def scenario(runtime: Runtime, client: httpx.AsyncClient) -> None:
        await call(client, "/v1/identify", {"traits": {"email": "ada@example.com"}})
        [news] = by_subject(await purchase(client, smtp, 2), "News")
        url = link(news)

        for _ in range(2):  # a second POST is answered alike and changes nothing more
            answer = await client.post(
                url, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK
            )
            assert answer.status_code == 200, answer.text
            assert "You will no longer receive The monthly newsletter" in answer.text

        [event] = await unsubscribes(runtime)
        assert event.properties["topic"] == "news"
        assert event.properties["source"] == "one-click"
        assert event.properties["message"] == "u1:shop:1:news:1"
        shown = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()["consent"]
        assert shown["topics"] == {"news": False}

        mails = await purchase(client, smtp, 3)
        assert sorted(m.message["Subject"] for m in mails) == ["News", "Receipt", "Receipt"]
        trace = await runtime.reads.trace("u1")
        [skipped] = [r for r in trace if r.outcome == "skipped"]
        assert (skipped.step, skipped.detail) == ("news", "unsubscribed from topic news")

    play(tmp_path, store_url, smtp, scenario)


def forgeries(token: str) -> list[str]:
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    return [
        flipped,
        "A" + token[1:] if token[0] != "A" else "B" + token[1:],
        token[:-4],
        "x",
        "%00",
    ]


def test_forged_or_altered_links_get_a_404_and_change_nothing(
    tmp_path: Path, store_url: str, smtp: SmtpServer
) -> None:
    async def scenario(runtime: Runtime, client: httpx.AsyncClient) -> None:
        await call(client, "/v1/identify", {"traits": {"email": "ada@example.com"}})
        [news] = by_subject(await purchase(client, smtp, 2), "News")
        token = link(news).rsplit("/", 1)[1]
        preferences = re.findall(rf"{PUBLIC}(/preferences/[\w-]+)", body(news, "plain"))[0]
        before = await runtime.reads.profile("u1")

        for forged in forgeries(token):
            for method in ("GET", "POST"):
                answer = await client.request(method, f"/u/{forged}", headers=ONE_CLICK)
                assert answer.status_code == 404, (forged, answer.text)
        # An unsubscribe token is no preferences token, and the other way round.
        assert (await client.get(f"/preferences/{token}")).status_code == 404
        other = preferences.rsplit("/", 1)[1]
        assert (await client.post(f"/u/{other}", headers=ONE_CLICK)).status_code == 404
        for forged in forgeries(other):
            answer = await client.post(f"/preferences/{forged}", data={"all": "yes"})
            assert answer.status_code == 404, forged

        assert await unsubscribes(runtime) == []
        assert await runtime.reads.profile("u1") == before

    play(tmp_path, store_url, smtp, scenario)


def test_the_unsubscribe_page_and_the_preference_page_work_without_javascript(
    tmp_path: Path, store_url: str, smtp: SmtpServer
) -> None:
    async def scenario(runtime: Runtime, client: httpx.AsyncClient) -> None:
        traits = {"email": "ada@example.com", "firstName": "<b>Ada</b>"}
        await call(client, "/v1/identify", {"traits": traits})
        [news] = by_subject(await purchase(client, smtp, 2), "News")
        url = link(news)
        path = url.removeprefix(PUBLIC)
        preferences = re.findall(rf"{PUBLIC}(/preferences/[\w-]+)", body(news, "plain"))[0]

        page = await client.get(url)
        assert page.status_code == 200
        assert f'<form method="post" action="{path}">' in page.text
        assert "<script" not in page.text
        assert page.headers["referrer-policy"] == "no-referrer"

        page = await client.get(preferences)
        assert page.status_code == 200
        assert "<script" not in page.text
        assert 'name="topic" value="news" checked>' in page.text
        assert 'name="topic" value="tips">' in page.text  # opt_in: no yes yet
        assert "Tips &amp; &lt;tricks&gt;" in page.text

        saved = await client.post(preferences, data={"topic": ["tips"]})
        assert saved.status_code == 200
        assert "Your choices are saved." in saved.text
        assert 'name="topic" value="tips" checked>' in saved.text
        profile = await runtime.reads.profile("u1")
        assert profile is not None
        assert profile.traits["subscriptions"] == {"news": False, "tips": True}
        sources = {e.event.properties.get("source") for e in await runtime.reads.history("u1")}
        assert "preferences" in sources

        await client.post(preferences, data={"topic": ["tips"], "all": "yes"})
        profile = await runtime.reads.profile("u1")
        assert profile is not None
        assert profile.traits["unsubscribed"] is True
        mails = await purchase(client, smtp, 3)
        assert sorted(m.message["Subject"] for m in mails[2:]) == ["Receipt"]

    play(tmp_path, store_url, smtp, scenario)


def test_a_hard_bounce_suppresses_the_address_and_the_profile_shows_why(
    tmp_path: Path, store_url: str, smtp: SmtpServer
) -> None:
    async def scenario(runtime: Runtime, client: httpx.AsyncClient) -> None:
        await call(client, "/v1/identify", {"traits": {"email": "Ada@Example.com"}})
        bounce = {"bounce": "hard", "address": "ada@example.com", "source": "smtp"}
        await call(client, "/v1/track", {"event": "message_bounced", "properties": bounce})
        await call(client, "/v1/track", {"event": "purchased"})

        async def skipped() -> list[str] | None:
            trace = await runtime.reads.trace("u1")
            found = [r.detail for r in trace if r.outcome == "skipped"]
            return found if len(found) == 2 else None

        details = await eventually(skipped, "both sends to be skipped")
        assert all(d.startswith("Ada@Example.com is suppressed (hard bounce, ") for d in details)
        shown = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()["consent"]
        [(address, why)] = shown["suppressed"].items()
        assert (address, why["reason"], why["source"]) == ("ada@example.com", "hard bounce", "smtp")
        assert smtp.received == []

    play(tmp_path, store_url, smtp, scenario)
