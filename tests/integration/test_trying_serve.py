"""Trying a draft on a real ``journeyman serve`` (a SQLite file) with a real SMTP server:
the workspace's tests, a stored profile replayed through the draft, a template preview and
a check answer what they should, and none of them sends an email or writes a row."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_workspace
from tests.integration.test_serve import smtp_channel
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
TABLES = ("profiles", "identities", "events", "instances", "outbox", "steps", "accounts")

WORKSPACE = """
kind: event
name: signed_up
schema:
  type: object
  properties: {plan: {type: string}}
---
kind: template
name: hello_email
channel: email
transactional: true
subject: "Hello {{ profile.firstName }}"
html: "<p>Welcome, {{ profile.firstName }}, to {{ entry.plan }}</p>"
text: "Welcome to {{ entry.plan }}"
---
kind: template
name: nudge_email
channel: email
transactional: true
subject: "Still there, {{ profile.firstName }}?"
text: "Come back"
---
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: hello
    send: hello_email
  - id: rest
    wait: 3d
---
kind: test
name: welcome says hello at once
events:
  - {at: 0s, identify: {userId: t1, traits: {email: t1@x.test, firstName: T}}}
  - {at: 0s, track: {userId: t1, event: signed_up, properties: {plan: pro}}}
expect:
  - {sent: welcome.hello, at: 0s}
"""
DRAFT: dict[str, Any] = {
    "kind": "journey",
    "name": "welcome",
    "entry": {"event": "signed_up"},
    "steps": [
        {"id": "rest", "wait": "1d"},
        {"id": "hello", "send": "hello_email"},
        {"id": "later", "wait": "2d"},
        {"id": "nudge", "send": "nudge_email"},
    ],
}


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "journeyman.db"


@pytest.fixture
def api(tmp_path: Path, database: Path, smtp_server: SmtpServer) -> Iterator[httpx.Client]:
    workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp_server.port))
    with (
        Journeyman(workspace, f"sqlite:///{database}", tmp_path) as server,
        server.start().client() as client,
    ):
        yield client


def rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(database) as db:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in TABLES
        }


def mails(smtp: SmtpServer, count: int) -> list[str]:
    """The recipients of the first ``count`` emails, once they came."""

    def arrived() -> list[str] | None:
        found = [r for mail in smtp.received for r in mail.recipients]
        return found if len(found) >= count else None

    return wait_until(arrived, f"{count} email(s)")


def sent_messages(api: httpx.Client) -> list[Any]:
    found: list[Any] = api.get("/v1/messages").json()["messages"]
    return found if found and all(m["status"] == "sent" for m in found) else []


def test_trying_a_draft_answers_and_sends_and_writes_nothing(
    api: httpx.Client, smtp_server: SmtpServer, database: Path
) -> None:
    traits = {"email": "ada@x.test", "firstName": "<b>Ada</b>"}
    assert api.post("/v1/identify", json={"userId": "ada", "traits": traits}).status_code == 202
    track = {"userId": "ada", "event": "signed_up", "properties": {"plan": "pro"}}
    assert api.post("/v1/track", json=track, headers=WRITE).status_code == 202
    assert mails(smtp_server, 1) == ["ada@x.test"]  # the published journey's hello
    wait_until(lambda: sent_messages(api), "the hello recorded as sent")
    before = rows(database)

    tests = api.post("/v1/journeys/welcome/draft/tests", json={"document": DRAFT})
    assert tests.status_code == 200, tests.text
    [result] = tests.json()["results"]
    assert result["passed"] is False
    assert re.fullmatch(
        r"line \d+: expected sent welcome\.hello at 0s, but got .*", result["failures"][0]
    )

    tried = api.post(
        "/v1/journeys/welcome/draft/try",
        json={"profile": "ada", "document": DRAFT, "until": "end"},
    )
    assert tried.status_code == 200, tried.text
    found = tried.json()
    assert found["visited"] == ["__entry__", "rest", "hello", "later", "nudge"]
    assert (found["state"], found["end_state"], found["sent"]) == ("ended", "completed", False)
    assert [(m["step"], m["to"], m["subject"]) for m in found["messages"]] == [
        ("hello", "ada@x.test", "Hello <b>Ada</b>"),
        ("nudge", "ada@x.test", "Still there, <b>Ada</b>?"),
    ]
    assert found["messages"][0]["html"] == "<p>Welcome, &lt;b&gt;Ada&lt;/b&gt;, to pro</p>"
    assert any("welcome.rest" in line for line in found["trace"])

    shown = api.post("/v1/preview", json={"name": "hello_email", "profile": "ada"})
    assert shown.status_code == 200, shown.text
    assert shown.json()["html"] == "<p>Welcome, &lt;b&gt;Ada&lt;/b&gt;, to </p>"
    checked = api.post("/v1/check", json={"kind": "expression", "text": "entry.plan =="})
    assert checked.json()["problems"][0]["column"] == 14

    # A real send after the tries comes alone: the tries queued nothing before it.
    other = {"userId": "bob", "traits": {"email": "bob@x.test", "firstName": "Bob"}}
    assert api.post("/v1/identify", json=other).status_code == 202
    assert api.post("/v1/track", json={**track, "userId": "bob"}).status_code == 202
    assert mails(smtp_server, 2) == ["ada@x.test", "bob@x.test"]
    after = rows(database)
    for table in TABLES:
        kept = [row for row in after[table] if "bob" not in repr(row)]
        assert kept == before[table], table
    assert len(smtp_server.received) == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/journeys/welcome/draft/try", {"profile": "nobody"}, 404, "profile"),
        ("/v1/journeys/welcome/draft/try", {"profile": "a\x00b"}, 404, "profile"),
        ("/v1/journeys/welcome/draft/try", {"profile": "ada", "document": "x"}, 422, "document"),
        ("/v1/journeys/welcome/draft/try", {"profile": "ada", "document": None}, 404, "profile"),
        ("/v1/journeys/nope/draft/tests", {}, 404, "name"),
        ("/v1/journeys/welcome/draft/tests", {"document": [DRAFT]}, 422, "document"),
        ("/v1/journeys/welcome/draft/tests", {"document": {"kind": "journey"}}, 422, "document"),
        ("/v1/preview", {"name": "hello_email", "profile": "\x00"}, 404, "profile"),
        ("/v1/preview", {"template": {"kind": "template", "name": "t"}}, 422, "template"),
        ("/v1/check", {"kind": "liquid", "text": 5}, 422, "text"),
        ("/v1/check", {"kind": "expression", "text": "x", "by": None}, 422, "by"),
        ("/v1/preview", {"name": "hello_email", "by": 7}, 422, "by"),
    ],
)
def test_bad_tries_are_refused_naming_the_field(
    api: httpx.Client, path: str, body: Any, status: int, field: str
) -> None:
    answer = api.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field


def test_a_huge_or_broken_body_is_refused(api: httpx.Client) -> None:
    path = "/v1/journeys/welcome/draft/try"
    huge = api.post(path, content=b'{"profile": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert (huge.status_code, huge.json()["error"]["field"]) == (413, "body")
    nul = api.post(path, content=b'{"profile": "ada"\x00}')
    assert (nul.status_code, nul.json()["error"]["field"]) == (400, "body")
    deep = api.post("/v1/check", content=b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code in (400, 422)
    assert api.post(path, json={"profile": "ada"}, headers={"Authorization": ""}).status_code == 401
