"""An operator reads and changes a profile's consent through the admin API of a real
``journeyman serve``, with email to a real SMTP server: a topic turned off skips the next
newsletter while the receipt goes, a suppressed address gets nothing (receipts included)
until it is taken off, and the audit says who changed what (one-click, the preference
page, an operator, a bounce). Bad bodies change nothing. Runs on every durable backend.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_workspace
from tests.integration.test_serve import smtp_channel
from tests.servers import WRITE_KEY, Journeyman, Mail, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable  # a server in another process needs a database that outlives it

WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
FORM = {"content-type": "application/x-www-form-urlencoded"}

WORKSPACE = """
kind: event
name: purchased
---
kind: subscription
name: news
channel: email
description: The monthly newsletter
default: opt_out
---
kind: subscription
name: tips
channel: email
default: opt_in
---
kind: template
name: news_email
channel: email
topic: news
subject: News
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


@pytest.fixture
def api(tmp_path: Path, store_url: str, smtp: SmtpServer) -> Iterator[httpx.Client]:
    """An admin client of ``journeyman serve``; profile u1 has the email ada@example.com."""
    folder = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
    with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as client:
        identify = {"userId": "u1", "traits": {"email": "ada@example.com"}}
        accepted(client.post("/v1/identify", json=identify, headers=WRITE))
        yield client


def accepted(answer: httpx.Response) -> None:
    assert answer.status_code == 202, answer.text


def purchase(api: httpx.Client, smtp: SmtpServer, emails: int) -> list[str]:
    """Track a purchase; the subjects of the emails once ``emails`` in all have arrived
    and both sends of the purchase have run (sent or skipped)."""
    runs = len(outcomes(api)) + 2
    accepted(api.post("/v1/track", json={"userId": "u1", "event": "purchased"}, headers=WRITE))
    wait_until(lambda: len(outcomes(api)) >= runs, "both sends to run", 30)
    wait_until(lambda: len(smtp.received) >= emails, f"{emails} emails", 30)
    return sorted(str(mail.message["Subject"]) for mail in smtp.received)


def outcomes(api: httpx.Client) -> list[tuple[str, str, str]]:
    """(step, outcome, detail) of every send the profile's instances ran."""
    shown = api.get("/v1/profiles/u1").json()
    return [
        (r["step"], r["outcome"], r["detail"])
        for i in shown["instances"]
        for r in i["trace"]
        if r["outcome"] in ("sent", "skipped")
    ]


def consent(api: httpx.Client, profile: str = "u1") -> dict[str, Any]:
    answer = api.get(f"/v1/profiles/{profile}/consent")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def topic(shown: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in shown["topics"] if t["name"] == name)


def test_an_operator_turns_a_topic_off_and_the_newsletter_is_skipped_while_the_receipt_goes(
    api: httpx.Client, smtp: SmtpServer
) -> None:
    news = topic(consent(api), "news")
    assert (news["subscribed"], news["chosen"], news["channel"]) == (True, False, "email")
    change = {"topics": {"news": False}, "by": "alice@example.com"}
    answer = api.patch("/v1/profiles/u1/consent", json=change)
    assert answer.status_code == 202, answer.text
    [recorded] = answer.json()["recorded"]
    assert (recorded["event"], recorded["source"], recorded["by"]) == (
        "unsubscribed",
        "operator",
        "alice@example.com",
    )
    again = api.patch("/v1/profiles/u1/consent", json=change)
    assert (again.status_code, again.json()) == (200, {"recorded": []})  # nothing to change

    assert purchase(api, smtp, 1) == ["Receipt"]
    assert ("news", "skipped", "unsubscribed from topic news") in outcomes(api)
    shown = consent(api)
    assert topic(shown, "news")["subscribed"] is False
    assert topic(shown, "news")["chosen"] is True
    assert topic(shown, "tips") | {"subscribed": False, "chosen": False} == topic(shown, "tips")
    [entry] = shown["audit"]
    assert entry["change"] == {"topic": "news", "subscribed": False}
    assert (entry["source"], entry["by"]) == ("operator", "alice@example.com")

    # Turned on again, and the whole channel off: the receipt still goes.
    change = {"topics": {"news": True}, "channels": {"email": False}, "by": "alice@example.com"}
    assert len(api.patch("/v1/profiles/u1/consent", json=change).json()["recorded"]) == 2
    assert purchase(api, smtp, 2) == ["Receipt", "Receipt"]
    assert {"name": "email", "consent": False} in consent(api)["channels"]


def test_an_operator_suppression_stops_even_the_receipt_until_it_is_taken_off(
    api: httpx.Client, smtp: SmtpServer
) -> None:
    body = {"address": "Ada@Example.com", "reason": "asked by phone", "by": "bob@example.com"}
    answer = api.post("/v1/profiles/u1/suppressions", json=body)
    assert answer.status_code == 202, answer.text
    assert api.post("/v1/profiles/u1/suppressions", json=body).json() == {"recorded": []}

    assert purchase(api, smtp, 0) == []
    skipped = [detail for _, outcome, detail in outcomes(api) if outcome == "skipped"]
    assert len(skipped) == 2
    assert all(d.startswith("ada@example.com is suppressed (asked by phone, ") for d in skipped)
    [entry] = consent(api)["suppressed"]
    assert entry | {"at": None} == {
        "address": "ada@example.com",
        "reason": "asked by phone",
        "source": "operator",
        "by": "bob@example.com",
        "at": None,
    }

    gone = api.delete("/v1/profiles/u1/suppressions/ADA@example.com?by=bob@example.com")
    assert gone.status_code == 202, gone.text
    again = api.delete("/v1/profiles/u1/suppressions/ada@example.com?by=bob@example.com")
    assert (again.status_code, again.json()["error"]["field"]) == (404, "address")
    assert purchase(api, smtp, 2) == ["News", "Receipt"]
    shown = consent(api)
    assert shown["suppressed"] == []
    assert [a["event"] for a in shown["audit"]] == ["address_unsuppressed", "address_suppressed"]


def preferences_link(mail: Mail) -> str:
    part = mail.message.get_body(("plain",))
    assert part is not None
    found = re.search(r"https?://\S+/preferences/[\w-]+", str(part.get_content()))
    assert found is not None
    return found.group(0)


def test_the_audit_says_who_changed_what_and_the_console_shows_it_escaped(
    api: httpx.Client, smtp: SmtpServer
) -> None:
    purchase(api, smtp, 2)
    news = next(m for m in smtp.received if m.message["Subject"] == "News")
    header = " ".join(str(news.message["List-Unsubscribe"]).split())
    one_click = re.match(r"<(https?://[^>]+)>", header)
    assert one_click is not None
    with httpx.Client(trust_env=False) as browser:
        answer = browser.post(
            one_click.group(1), content=b"List-Unsubscribe=One-Click", headers=FORM
        )
        assert answer.status_code == 200, answer.text
        saved = browser.post(preferences_link(news), data={"topic": ["tips"]})
        assert saved.status_code == 200, saved.text
    by = "<b>eve</b>@example.com"
    change = {"unsubscribed": True, "by": by}
    assert api.patch("/v1/profiles/u1/consent", json=change).status_code == 202
    bounce = {"bounce": "hard", "address": "ada@example.com", "source": "smtp", "reason": "550"}
    body = {"userId": "u1", "event": "message_bounced", "properties": bounce}
    accepted(api.post("/v1/track", json=body, headers=WRITE))

    audit = wait_until(lambda: _audit_of(api, 4), "four consent changes", 30)
    assert [(a["source"], a["by"], a["change"]) for a in audit] == [
        (
            "bounce",
            None,
            {"address": "ada@example.com", "suppressed": True, "reason": "hard bounce"},
        ),
        ("operator", by, {"unsubscribed": True}),
        ("preferences", None, {"topic": "tips", "subscribed": True}),
        ("one-click", None, {"topic": "news", "subscribed": False}),
    ]
    assert audit[0]["via"] == "smtp"
    assert all(a["at"] for a in audit)

    page = _console_profile(api)
    assert "Consent changes" in page
    assert "by &lt;b&gt;eve&lt;/b&gt;@example.com" in page
    assert "<b>eve</b>" not in page
    assert "resubscribed to topic tips" in page


def _audit_of(api: httpx.Client, count: int) -> list[dict[str, Any]] | None:
    audit: list[dict[str, Any]] = consent(api)["audit"]
    return audit if len(audit) >= count else None


def _console_profile(api: httpx.Client) -> str:
    with httpx.Client(base_url=str(api.base_url), trust_env=False) as console:
        form = console.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        key = api.headers["Authorization"].removeprefix("Bearer ")
        login = {"csrf": token.group(1), "user": "", "key": key, "next": "/"}
        assert console.post("/login", data=login).status_code == 303
        page = console.get("/profiles/u1")
        assert page.status_code == 200, page.text
        return page.text


def test_the_preference_page_turns_a_whole_channel_off_and_on_without_javascript(
    api: httpx.Client, smtp: SmtpServer
) -> None:
    purchase(api, smtp, 2)
    news = next(m for m in smtp.received if m.message["Subject"] == "News")
    link = preferences_link(news)
    with httpx.Client(trust_env=False) as browser:
        page = browser.get(link)
        assert 'name="nothing" value="email">' in page.text  # not checked
        assert "<script" not in page.text
        saved = browser.post(link, data={"topic": ["news"], "nothing": ["email", "fax"]})
        assert 'name="nothing" value="email" checked>' in saved.text
        assert purchase(api, smtp, 3) == ["News", "Receipt", "Receipt"]
        assert {"name": "email", "consent": False} in consent(api)["channels"]
        assert ("news", "skipped", "no consent for email") in outcomes(api)

        browser.post(link, data={"topic": ["news"]})  # the box left unchecked
    assert {"name": "email", "consent": True} in consent(api)["channels"]
    assert purchase(api, smtp, 5) == ["News", "News", "Receipt", "Receipt", "Receipt"]
    audit = consent(api)["audit"]
    assert [(a["source"], a["change"]) for a in audit] == [
        ("preferences", {"channel": "email", "consent": True}),
        ("preferences", {"channel": "email", "consent": False}),
    ]


BY = "ops@example.com"
ADA = "ada@example.com"
BAD = [
    ("PATCH", "consent", {"topics": {"newz": False}, "by": BY}, 400, "topics.newz"),
    ("PATCH", "consent", {"channels": {"fax": False}, "by": BY}, 400, "channels.fax"),
    ("PATCH", "consent", {"topics": {"news": "no"}, "by": BY}, 400, "topics.news"),
    ("PATCH", "consent", {"topics": ["news"], "by": BY}, 400, "topics"),
    ("PATCH", "consent", {"unsubscribed": 1, "by": BY}, 400, "unsubscribed"),
    ("PATCH", "consent", {"unsubscribed": True}, 400, "by"),
    ("PATCH", "consent", {"unsubscribed": True, "by": "  "}, 400, "by"),
    ("PATCH", "consent", {"unsubscribed": True, "by": "a\x00b"}, 400, "by"),
    ("PATCH", "consent", {"unsubscribed": True, "by": "x" * 201}, 400, "by"),
    ("PATCH", "consent", {"unsubscribed": True, "by": BY, "colour": 1}, 400, "colour"),
    ("PATCH", "consent", {"by": BY}, 400, "body"),
    ("PATCH", "consent", [1], 400, "body"),
    ("PATCH", "consent", {"unsubscribed": True, "by": BY, "x": "y" * 20000}, 413, "body"),
    ("POST", "suppressions", {"address": "a@b.c"}, 400, "by"),
    ("POST", "suppressions", {"address": "a\x00@b.c", "by": BY}, 400, "address"),
    ("POST", "suppressions", {"address": "a" * 321, "by": BY}, 400, "address"),
    ("POST", "suppressions", {"address": 7, "by": BY}, 400, "address"),
    ("POST", "suppressions", {"address": "a@b.c", "reason": ["x"], "by": BY}, 400, "reason"),
    ("DELETE", "suppressions/ada@example.com", None, 400, "by"),
    ("DELETE", "suppressions/a%00b?by=ops", None, 400, "address"),
    ("DELETE", "suppressions/nobody@example.com?by=ops", None, 404, "address"),
    ("PATCH", "../nobody/consent", {"unsubscribed": True, "by": BY}, 404, "profile_id"),
]


def test_bad_changes_get_a_4xx_naming_the_field_and_change_nothing(
    api: httpx.Client,
) -> None:
    api.post("/v1/profiles/u1/suppressions", json={"address": "ada@example.com", "by": BY})
    before = consent(api)
    for method, tail, body, status, field in BAD:
        path = f"/v1/profiles/u1/{tail}".replace("u1/../", "")
        answer = api.request(method, path, json=body)
        assert answer.status_code == status, (method, tail, answer.text)
        assert answer.json()["error"]["field"] == field, (method, tail, answer.text)
    not_json = api.patch("/v1/profiles/u1/consent", content=b"{nope")
    assert (not_json.status_code, not_json.json()["error"]["rule"]) == (400, "json")
    assert consent(api) == before


def test_a_profile_id_with_slashes_has_its_consent_at_the_path_as_sent(
    api: httpx.Client,
) -> None:
    for user in ("team/ada", "x/consent"):
        accepted(api.post("/v1/identify", json={"userId": user, "traits": {"a": 1}}, headers=WRITE))
    change = {"channels": {"sms": False}, "by": BY}
    assert api.patch("/v1/profiles/team/ada/consent", json=change).status_code == 202
    assert {"name": "sms", "consent": False} in consent(api, "team/ada")["channels"]
    assert consent(api, "team%2Fada")["profile"] == "team/ada"
    # The id 'x/consent' itself: its slash sent as %2F, so that the path is no consent's.
    assert api.get("/v1/profiles/x%2Fconsent").json()["id"] == "x/consent"
    assert consent(api, "x/consent")["profile"] == "x/consent"
    assert api.get("/v1/profiles/x/consent").json()["error"]["field"] == "profile_id"
