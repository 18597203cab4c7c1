"""Drafts of templates on a real ``journeyman serve`` (SQLite file, PostgreSQL): two people
edit one template, the second save is refused with the first one's draft; a draft is
checked, saved to the workspace folder changing only its own lines, and published, and
the next sign-up gets the new subject at a real SMTP server."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_drafts_serve import USERS, Console
from tests.integration.test_serve import smtp_channel
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable

EVENTS = """\
kind: event
name: signed_up
"""
WELCOME = """\
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: greet
    send: welcome_email
"""
MESSAGES = """\
# The welcome series' messages: keep them short.
kind: template
name: welcome_email
channel: email
transactional: true   # a welcome is no marketing
subject: "Welcome, {{ profile.firstName | default: 'friend' }}"
html: |
  <h1>Welcome, {{ profile.firstName | default: 'friend' }}</h1>
  <p>We are glad you came.</p>
text: Welcome!   # for mail readers without HTML

# a reminder, by SMS
---
kind: template
name: nudge_sms
channel: sms
body: "Still there?"
"""
DRAFT = "/editor/api/templates/welcome_email/draft"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def server(tmp_path: Path, store_url: str, smtp: SmtpServer) -> Iterator[Journeyman]:
    folder = tmp_path / "ws"
    (folder / "journeys").mkdir(parents=True)
    (folder / "templates").mkdir()
    (folder / "events.yaml").write_text(EVENTS)
    (folder / "email.yaml").write_text(smtp_channel(smtp.port))
    (folder / "journeys" / "welcome.yaml").write_text(WELCOME)
    (folder / "templates" / "messages.yaml").write_text(MESSAGES)
    with Journeyman(folder, store_url, tmp_path, env=USERS) as running:
        yield running.start()


def changed_lines(old: str, new: str) -> list[str]:
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_two_people_edit_a_template_save_only_its_lines_and_publish_the_new_subject(
    server: Journeyman, smtp: SmtpServer
) -> None:
    with ExitStack() as stack:
        ana, bob = Console(server.url, "ana"), Console(server.url, "bob")
        stack.callback(ana.http.close)
        stack.callback(bob.http.close)

        fresh = ana.get(DRAFT).json()
        assert (fresh["template"], fresh["stored"], fresh["file"]) == (
            "welcome_email",
            False,
            "templates/messages.yaml",
        )
        assert (fresh["text"], fresh["diff"], fresh["problems"]) == (MESSAGES, "", [])

        # Ana changes the subject; Bob opens her draft and adds a line to the text.
        subject = "Your account is ready, {{ profile.firstName }}"
        edited = {**fresh["document"], "subject": subject}
        first = ana.send("PUT", DRAFT, {"document": edited, "revision": None})
        assert first.status_code == 200, first.text
        mine = first.json()
        assert (mine["stored"], mine["by"]) == (True, "ana")
        assert changed_lines(MESSAGES, mine["text"]) == [
            "-subject: \"Welcome, {{ profile.firstName | default: 'friend' }}\"",
            f'+subject: "{subject}"',
        ]
        seen = bob.get(DRAFT).json()
        assert (seen["revision"], seen["document"]["subject"]) == (mine["revision"], subject)
        theirs = {**seen["document"], "text": "Welcome aboard!"}
        answer = bob.send("PUT", DRAFT, {"document": theirs, "revision": seen["revision"]})
        assert answer.status_code == 200, answer.text
        bobs = answer.json()

        # Ana saves again from the revision Bob replaced: refused, his draft kept.
        late = ana.send("PUT", DRAFT, {"document": edited, "revision": mine["revision"]})
        assert late.status_code == 409, late.text
        refused = late.json()
        assert refused["error"]["field"] == "revision"
        assert refused["error"]["message"].startswith("bob saved this draft at ")
        assert refused["theirs"]["revision"] == bobs["revision"]
        assert "+text: Welcome aboard!" in refused["diff"]
        assert ana.get(DRAFT).json()["revision"] == bobs["revision"]

        # Saving to the folder from the stale revision is refused too; the file stays.
        stale = ana.send("POST", f"{DRAFT}/save", {"revision": mine["revision"]})
        assert stale.status_code == 409, stale.text
        assert (server.workspace / "templates" / "messages.yaml").read_text() == MESSAGES

        # Checked as she types: a Liquid error names the template's line.
        broken = {**bobs["document"], "subject": "Hi {{ profile.firstName"}
        checked = ana.send("POST", f"{DRAFT}/check", {"document": broken})
        assert checked.status_code == 200, checked.text
        problems = checked.json()["problems"]
        assert [p["path"] for p in problems] == ["subject"], problems
        assert "Liquid" in problems[0]["message"]
        line = checked.json()["text"].splitlines()[problems[0]["line"] - 1]
        assert line == 'subject: "Hi {{ profile.firstName"'

        # Saved to the folder: only the template's changed lines, comments kept.
        saved = ana.send("POST", f"{DRAFT}/save", {"revision": bobs["revision"]})
        assert saved.status_code == 200, saved.text
        assert saved.json() == {"file": "templates/messages.yaml", "saved": True}
        written = (server.workspace / "templates" / "messages.yaml").read_text()
        assert changed_lines(MESSAGES, written) == [
            "-subject: \"Welcome, {{ profile.firstName | default: 'friend' }}\"",
            f'+subject: "{subject}"',
            "-text: Welcome!   # for mail readers without HTML",
            "+text: Welcome aboard! # for mail readers without HTML",
        ]

        # Before the publish, a sign-up gets the subject as published.
        signed_up(server, "u1", "Una")
        assert mail_to(smtp, "u1@example.com")["Subject"] == "Welcome, Una"

        published = ana.send("POST", f"{DRAFT}/publish", {"revision": bobs["revision"]})
        assert published.status_code == 200, published.text
        plan = published.json()["plan"]
        assert plan["changed"] == ["welcome"]  # the journey that sends it: a new version
        after = ana.get(DRAFT).json()
        assert (after["stored"], after["diff"]) == (False, "")
        assert [(a["command"], a["by"], a["via"]) for a in after["audit"]] == [
            ("publish", "ana", "console"),
            ("save", "ana", "console"),
            ("edit", "bob", "console"),
            ("draft", "ana", "console"),
        ]
        assert after["audit"][0]["workspace_version"] == published.json()["workspace"]

        signed_up(server, "u2", "Uli")
        assert mail_to(smtp, "u2@example.com")["Subject"] == "Your account is ready, Uli"


def signed_up(server: Journeyman, user: str, name: str) -> None:
    with server.client(WRITE_KEY) as client:
        traits = {"email": f"{user}@example.com", "firstName": name}
        assert client.post("/v1/identify", json={"userId": user, "traits": traits}).is_success
        track = {"userId": user, "event": "signed_up"}
        assert client.post("/v1/track", json=track).status_code == 202


def mail_to(smtp: SmtpServer, address: str) -> Any:
    found = wait_until(
        lambda: next((m for m in smtp.received if address in m.recipients), None),
        f"an email to {address} at the SMTP server",
    )
    return found.message


def test_the_admin_api_keeps_template_drafts_and_starts_new_ones(server: Journeyman) -> None:
    with server.client() as admin:
        path = "/v1/templates/nudge_sms/draft"
        document = {**admin.get(path).json()["document"], "body": "Still there? 🙂"}
        missing = admin.put(path, json={"document": document, "revision": None})
        assert missing.status_code == 422
        assert missing.json()["error"]["field"] == "by"
        answer = admin.put(path, json={"document": document, "revision": None, "by": "ci"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["by"] == "ci"
        assert '+body: "Still there? 🙂"\n' in answer.json()["diff"]
        assert admin.request("DELETE", path, params={"by": "ci"}).status_code == 204
        assert admin.get(path).json()["stored"] is False
        audit = admin.get(path).json()["audit"]
        assert [(a["command"], a["by"], a["via"]) for a in audit] == [
            ("discard", "ci", "api"),
            ("draft", "ci", "api"),
        ]

        assert admin.get("/v1/templates/receipt/draft").status_code == 404
        new = admin.get("/v1/templates/receipt/draft", params={"new": "1"}).json()
        assert (new["stored"], new["file"], new["document"]["kind"]) == (
            False,
            "templates/receipt.yaml",
            "template",
        )
        # A journey's draft of the same name is another draft.
        assert admin.get("/v1/journeys/nudge_sms/draft").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"document": {"kind": "journey", "name": "welcome_email"}, "revision": None},
            "document.kind",
        ),
        (
            {"document": {"kind": "template", "name": "nudge_sms"}, "revision": None},
            "document.name",
        ),
        ({"document": [], "revision": None}, "document"),
        ({"document": {"kind": "template", "name": "welcome_email"}, "revision": 1}, "revision"),
    ],
)
def test_a_bad_template_draft_is_refused_naming_the_field_and_changes_nothing(
    server: Journeyman, body: Any, field: str
) -> None:
    ana = Console(server.url, "ana")
    try:
        answer = ana.send("PUT", DRAFT, body)
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.json()["error"]["field"] == field
        assert ana.get(DRAFT).json()["stored"] is False
    finally:
        ana.http.close()


def test_the_templates_page_lists_them_and_starts_a_new_one(server: Journeyman) -> None:
    ana = Console(server.url, "ana")
    try:
        listed = ana.http.get("/templates", headers={"Accept": "application/json"})
        assert listed.status_code == 200, listed.text
        assert [(t["name"], t["channel"], t["file"]) for t in listed.json()["templates"]] == [
            ("nudge_sms", "sms", "templates/messages.yaml"),
            ("welcome_email", "email", "templates/messages.yaml"),
        ]
        page = ana.get("/templates").text
        assert 'href="/templates/welcome_email/edit"' in page
        new = ana.http.get("/templates", params={"name": "receipt"})
        assert new.status_code == 303
        assert new.headers["location"] == "/templates/receipt/edit?new=1"
        known = ana.http.get("/templates", params={"name": "nudge_sms"})
        assert known.headers["location"] == "/templates/nudge_sms/edit"
        bad = ana.http.get("/templates", params={"name": "no good"})
        assert bad.status_code == 400
        assert "A template&#39;s name is letters" in bad.text
        editor = ana.get("/templates/receipt/edit?new=1")
        assert editor.status_code == 200
        assert 'data-template="receipt"' in editor.text
        assert 'data-new="true"' in editor.text
    finally:
        ana.http.close()
