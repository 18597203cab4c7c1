"""Customer values in email HTML are text, not markup; subjects and addresses add no headers.

The ``html`` of an email template escapes every value it outputs (``| safe`` marks trusted
HTML); subjects, text parts and SMS bodies are sent as they render. Sends go to a real SMTP
server on 127.0.0.1 (aiosmtpd, see ``tests/servers.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from journeyman.api import Keys, create_app
from journeyman.channels.smtp import SmtpChannel
from journeyman.cli import main
from journeyman.domain.model import Workspace
from journeyman.domain.templates import _LOOP_LIMIT, _OUTPUT_LIMIT, compile_template
from journeyman.runtime.service import Runtime
from journeyman.storage.base import MessageRow
from journeyman.storage.sqlite import SQLiteStore
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace
from tests.servers import SmtpServer
from tests.waiting import eventually

XSS_IMG = '<img src=x onerror="alert(1)">'
ESCAPED_IMG = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"
FOOTER = '<a href="https://example.com/help">Help</a>'

TEMPLATES = """
kind: template
name: note_email
channel: email
tracking: false  # the tests compare the HTML received with the HTML rendered
subject: "Hi {{ profile.firstName }}"
html: '<p title="{{ profile.firstName }}">Hi {{ profile.firstName }}</p>{{ profile.footer | safe }}'
text: "Hi {{ profile.firstName }}"
---
kind: template
name: note_sms
channel: sms
body: "Hi {{ profile.firstName }}"
---
kind: template
name: work_email
channel: email
to: "{{ profile.work_email }}"
subject: "For {{ profile.firstName }}"
text: "Hello"
---
kind: journey
name: note
entry: {event: signed_up}
steps:
  - id: mail
    send: note_email
  - id: done
    end: done
---
kind: journey
name: work
entry: {event: purchased}
steps:
  - id: mail
    send: work_email
  - id: done
    end: done
"""

PROFILE = {"firstName": XSS_IMG, "footer": FOOTER}


def scope(**profile: Any) -> dict[str, Any]:
    return {"profile": profile, "event": {}, "entry": {}, "journey": {}}


def fields(ws: Workspace, template: str, **profile: Any) -> dict[str, str]:
    found = ws.templates[template]
    return {name: part.render(scope(**profile)) for name, part in found.fields.items()}


# Rendering


def test_a_trait_with_markup_is_escaped_text_in_the_html_of_an_email(
    workspace: Callable[..., Workspace],
) -> None:
    html = fields(workspace(TEMPLATES), "note_email", **PROFILE)["html"]

    assert html == f'<p title="{ESCAPED_IMG}">Hi {ESCAPED_IMG}</p>{FOOTER}'


def test_quotes_are_escaped_so_a_value_cannot_leave_an_attribute(
    workspace: Callable[..., Workspace],
) -> None:
    html = fields(workspace(TEMPLATES), "note_email", firstName="x\" onmouseover='y")["html"]

    assert html.startswith('<p title="x&#34; onmouseover=&#39;y">')


def test_the_safe_filter_outputs_trusted_html_as_it_is(
    workspace: Callable[..., Workspace],
) -> None:
    html = fields(workspace(TEMPLATES), "note_email", firstName="Ada", footer=XSS_IMG)["html"]

    assert html.endswith(XSS_IMG)


def test_subject_text_and_sms_parts_are_not_escaped(workspace: Callable[..., Workspace]) -> None:
    ws = workspace(TEMPLATES)

    email = fields(ws, "note_email", firstName="Tom & <Jerry>")
    sms = fields(ws, "note_sms", firstName="Tom & <Jerry>")

    assert email["subject"] == email["text"] == sms["body"] == "Hi Tom & <Jerry>"
    parts = ws.templates["note_email"].fields
    assert [name for name, part in parts.items() if part.escapes] == ["html"]


def test_filters_that_make_html_escape_the_value_once(
    workspace: Callable[..., Workspace],
) -> None:
    source = "{{ profile.a | escape }} {{ profile.a | newline_to_br }} {{ profile.a | upcase }}"

    html = compile_template(source, escape=True).render(scope(a="<b>\n&"))

    assert html == "&lt;b&gt;\n&amp; &lt;b&gt;<br />\n&amp; &lt;B&gt;\n&amp;"


def test_a_loop_over_the_limit_in_html_renders_the_rest_and_does_not_raise() -> None:
    source = "<p>{% for i in (1..100000) %}{{ profile.a }}{% endfor %}</p>{{ profile.a }}"

    html = compile_template(source, escape=True).render(scope(a="<"))

    assert html == "<p></p>&lt;"
    assert _LOOP_LIMIT == 10_000  # the limit the documentation names


@pytest.mark.parametrize(
    "source", ["{{ profile.a }}", "<p>{{ profile.a | append: '' }}</p>", "{{ profile.a | safe }}"]
)
def test_output_over_the_limit_once_escaped_is_bounded_and_does_not_raise(source: str) -> None:
    # Each '<' becomes four characters: under the limit as a trait, over it as HTML.
    value = "<" * (_OUTPUT_LIMIT // 2)

    html = compile_template(source, escape=True).render(scope(a=value))

    assert len(html.encode()) <= _OUTPUT_LIMIT
    assert "<<" not in html.removeprefix("<p>") or "safe" in source


# Sending


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}


def send_through(
    tmp_path: Path, smtp: SmtpServer, calls: list[tuple[str, dict[str, Any]]]
) -> list[MessageRow]:
    """Make the API calls on a runtime that sends email to ``smtp``; wait until no message
    waits to be sent, and return the message log."""
    folder = write_workspace(tmp_path / "ws", BASE, TEMPLATES)
    ws = load_workspace(folder).workspace
    assert ws is not None
    email = SmtpChannel(
        "email", host="127.0.0.1", port=smtp.port, sender="j@example.com", security="none"
    )

    async def main() -> list[MessageRow]:
        runtime = Runtime(ws, SQLiteStore(tmp_path / "j.db"), {"email": email}, env={})
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j.test") as client:
                for path, body in calls:
                    answer = await client.post(path, json=body, headers=WRITE)
                    assert answer.status_code == 202, answer.text

            async def settled() -> list[MessageRow] | None:
                rows = await runtime.reads.messages(limit=100)
                done = rows and all(row.status in ("sent", "failed") for row in rows)
                return rows if done else None

            return await eventually(settled, "every message to be sent")
        finally:
            await runtime.stop()

    return asyncio.run(main())


def identify(traits: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "/v1/identify", {"userId": "u1", "traits": traits}


def track(event: str) -> tuple[str, dict[str, Any]]:
    return "/v1/track", {"userId": "u1", "event": event}


def test_the_email_received_shows_a_trait_with_markup_as_text(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    traits = {"email": "ada@example.com", **PROFILE}

    [row] = send_through(tmp_path, smtp_server, [identify(traits), track("signed_up")])

    assert row.status == "sent"
    [mail] = smtp_server.received
    html, text = mail.message.get_body(("html",)), mail.message.get_body(("plain",))
    assert html is not None
    assert text is not None
    assert html.get_content().strip() == f'<p title="{ESCAPED_IMG}">Hi {ESCAPED_IMG}</p>{FOOTER}'
    assert text.get_content().strip() == f"Hi {XSS_IMG}"
    assert mail.message["Subject"] == f"Hi {XSS_IMG}"


def test_a_line_break_in_a_rendered_subject_adds_no_header(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    traits = {"email": "ada@example.com", "firstName": "Ada\r\nBcc: eve@example.com\nX-Evil: 1"}

    [row] = send_through(tmp_path, smtp_server, [identify(traits), track("signed_up")])

    assert row.status == "sent"
    [mail] = smtp_server.received
    assert mail.recipients == ["ada@example.com"]
    assert mail.message["Bcc"] is None
    assert mail.message["X-Evil"] is None
    assert mail.message["Subject"] == "Hi Ada Bcc: eve@example.com X-Evil: 1"


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com\r\nBcc: eve@example.com",
        "ada@example.com\nSubject: free money",
        "ada@example.com\rBcc: eve@example.com",
        "ada@example.com, eve@example.com",
    ],
)
def test_an_address_that_would_add_headers_or_recipients_fails_cleanly_and_sends_nothing(
    tmp_path: Path, smtp_server: SmtpServer, address: str
) -> None:
    traits = {"email": "ada@example.com", "work_email": address, "firstName": "Ada"}

    [row] = send_through(tmp_path, smtp_server, [identify(traits), track("purchased")])

    assert (row.status, row.attempts) == ("failed", 1)
    assert "address" in row.detail
    assert smtp_server.received == []


# Saying which parts escape


def test_the_console_step_page_says_which_fields_escape(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, TEMPLATES)
    ws = load_workspace(folder).workspace
    assert ws is not None

    async def main() -> tuple[dict[str, Any], str]:
        runtime = Runtime(ws, SQLiteStore(tmp_path / "j.db"), {}, env={})
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j.test") as client:
                admin = {"Authorization": "Bearer a-key"}
                step = await client.get("/v1/journeys/note/steps/mail", headers=admin)
                form = await client.get("/login")
                token = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert token is not None
                login = {"csrf": token.group(1), "user": "", "key": "a-key", "next": "/"}
                assert (await client.post("/login", data=login)).status_code == 303
                page = await client.get("/journeys/note?step=mail")
                return step.json(), page.text
        finally:
            await runtime.stop()

    step, page = asyncio.run(main())

    assert step["preview"]["escaped"] == ["html"]
    assert "html: values escaped as HTML" in page
    assert "subject, text: values as written." in page


def test_validate_says_which_templates_escape_their_html(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, TEMPLATES)

    result = CliRunner().invoke(main, ["validate", str(folder)])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:-1] == [
        "escaping: the html of 1 template (note_email) escapes the values it outputs; "
        "subjects, text and other bodies are sent as written"
    ]
