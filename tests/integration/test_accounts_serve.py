"""Group calls on a real ``journeyman serve`` (SQLite file, PostgreSQL): the account's traits
decide who enters a journey and appear in the email it sends (real SMTP); the profile shows
its account; a bad group call is refused naming the field and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_workspace
from tests.integration.test_serve import profile, smtp_channel
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable

WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}

WORKSPACE = """
kind: event
name: signed_up
---
kind: template
name: team_email
channel: email
subject: "Welcome to the {{ account.plan }} plan"
html: "<p>Your team {{ account.name }} ({{ account.id }}) is on {{ account.plan }}.</p>"
---
kind: journey
name: team_welcome
entry: {event: signed_up, when: account.plan == "pro"}
steps:
  - id: hello
    send: team_email
---
kind: journey
name: upgraded
entry: {event: account_updated, when: event.plan == "enterprise"}
steps:
  - id: congrats
    send: team_email
"""


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def server(tmp_path: Path, store_url: str, smtp_server: SmtpServer) -> Iterator[Journeyman]:
    workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp_server.port))
    with Journeyman(workspace, store_url, tmp_path) as running:
        yield running.start()


@pytest.fixture
def api(server: Journeyman) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def mail_to(smtp: SmtpServer, address: str, count: int = 1) -> list[EmailMessage]:
    def arrived() -> list[EmailMessage] | None:
        found = [m.message for m in smtp.received if address in m.recipients]
        return found if len(found) >= count else None

    return wait_until(arrived, f"{count} email(s) to {address}")


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def identify(api: httpx.Client, user: str) -> None:
    answer = api.post("/v1/identify", json={"userId": user, "traits": {"email": f"{user}@x.test"}})
    assert answer.status_code == 202, answer.text


def test_a_group_call_puts_the_member_in_a_journey_whose_condition_and_email_read_the_account(
    api: httpx.Client, smtp_server: SmtpServer
) -> None:
    identify(api, "ada")
    traits = {"plan": "pro", "name": "<b>Acme</b>"}
    answer = api.post("/v1/group", json={"userId": "ada", "groupId": "acme", "traits": traits})
    assert answer.status_code == 202, answer.text
    assert api.post("/v1/track", json={"userId": "ada", "event": "signed_up"}).status_code == 202
    (mail,) = mail_to(smtp_server, "ada@x.test")
    assert mail["Subject"] == "Welcome to the pro plan"
    assert "Your team &lt;b&gt;Acme&lt;/b&gt; (acme) is on pro." in html_of(mail)
    found = profile(api, "ada")
    assert found is not None
    assert (found["account"]["id"], found["account"]["traits"]) == ("acme", traits)
    (attached,) = found["account"]["attached"]
    assert attached["detail"] == "attached to account acme"
    # a member of an account on another plan does not enter
    identify(api, "bob")
    api.post("/v1/group", json={"userId": "bob", "groupId": "initech", "traits": {"plan": "free"}})
    api.post("/v1/track", json={"userId": "bob", "event": "signed_up"})
    wait_until(lambda: _not_entered(api, "bob"), "bob's refused entry")
    assert [m for m in smtp_server.received if "bob@x.test" in m.recipients] == []


def _not_entered(api: httpx.Client, user: str) -> Any:
    found = profile(api, user)
    return found and [r for r in found["not_entered"] if r["journey"] == "team_welcome"]


def test_a_group_call_in_a_batch_updates_the_account_and_starts_account_updated_journeys(
    api: httpx.Client, smtp_server: SmtpServer
) -> None:
    identify(api, "cy")
    batch = [
        {"type": "group", "userId": "cy", "groupId": 42, "traits": {"plan": "pro", "name": "Q"}},
        {"type": "track", "userId": "cy", "event": "signed_up"},
        {"type": "group", "userId": "cy", "groupId": 42, "traits": {"plan": "enterprise"}},
        {"type": "group", "userId": "cy", "traits": {"plan": "free"}},  # no groupId: refused
    ]
    answer = api.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 3
    (refused,) = answer.json()["rejected"]
    assert (refused["index"], refused["field"], refused["rule"]) == (3, "groupId", "required")
    first, second = mail_to(smtp_server, "cy@x.test", 2)
    # each email renders the account as it was at its step: the calls apply in order
    assert sorted([first["Subject"], second["Subject"]]) == [
        "Welcome to the enterprise plan",
        "Welcome to the pro plan",
    ]
    found = profile(api, "cy")
    assert found is not None
    assert found["account"]["traits"] == {"plan": "enterprise", "name": "Q"}
    updates = [e["properties"] for e in found["events"] if e["name"] == "account_updated"]
    assert sorted(updates, key=len) == [{"plan": "enterprise"}, {"plan": "pro", "name": "Q"}]


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"userId": "dee", "traits": {"plan": "pro"}}, "groupId", "required"),
        ({"userId": "dee", "groupId": ["acme"]}, "groupId", "type"),
        ({"userId": "dee", "groupId": "a" * 256}, "groupId", "length"),
        ({"userId": "dee", "groupId": "ac\u0000me"}, "groupId", "characters"),
        ({"userId": "dee", "groupId": "acme", "traits": "pro"}, "traits", "type"),
        (
            {"userId": "dee", "groupId": "acme", "traits": {"k": "v\u0000"}},
            "traits.k",
            "characters",
        ),
        ({"groupId": "acme"}, "userId", "identity"),
    ],
)
def test_a_bad_group_call_is_refused_naming_the_field_and_keeps_nothing(
    server: Journeyman, api: httpx.Client, body: dict[str, Any], field: str, rule: str
) -> None:
    with httpx.Client(base_url=server.url, headers=WRITE, trust_env=False) as client:
        answer = client.post("/v1/group", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert (error["error"]["field"], error["error"]["rule"], error["code"]) == (field, rule, rule)
    assert field in error["message"]
    assert profile(api, "dee") is None


def test_a_huge_group_call_is_refused_as_too_large(server: Journeyman) -> None:
    body = {"userId": "eve", "groupId": "acme", "traits": {"blob": "x" * 40_000}}
    with httpx.Client(base_url=server.url, headers=WRITE, trust_env=False) as client:
        answer = client.post("/v1/group", json=body)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["field"] == "body"
