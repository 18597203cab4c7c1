"""A journey that waits for its own email to be opened, driven by the real pixel: a real
SMTP server receives the email, an HTTP client fetches the pixel in it as a mail reader
would, and the instance takes its event path; a profile that never opens takes the
timeout path. On every backend another process can open."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_workspace
from tests.integration.test_serve import accepted, smtp_channel
from tests.integration.test_tracking import PERSON, html_of
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable

WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
WORKSPACE = """
kind: event
name: signed_up
schema: {type: object}
---
kind: subscription
name: onboarding
channel: email
default: opt_out
---
kind: template
name: welcome_email
channel: email
topic: onboarding
subject: "Welcome {{ profile.id }}"
html: >-
  <html><body><p>Welcome! <a href="https://example.com/start">Start here</a>.
  <a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>
---
kind: journey
name: onboarding
entry: {event: signed_up}
steps:
  - id: welcome
    send: welcome_email
  - id: await_open
    wait_for: {reaction: opened, to: welcome, timeout: 4s, machine: false}
    on_event: engaged
    on_timeout: unopened
  - id: engaged
    end: engaged
  - id: unopened
    end: unopened
"""


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_the_pixel_takes_the_event_path_and_silence_the_timeout_path(
    tmp_path: Path, store_url: str, smtp_server: SmtpServer
) -> None:
    folder = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp_server.port))
    with Journeyman(folder, store_url, tmp_path) as server:
        server.start()
        with server.client() as api:
            open_and_ignore(api, smtp_server)
        assert server.stop() == 0, server.output


def open_and_ignore(api: httpx.Client, smtp_server: SmtpServer) -> None:
    """Two profiles sign up; one opens the welcome email (after its provider's proxy has
    fetched the pixel), the other never does: each takes its own path out of the wait."""
    with httpx.Client(trust_env=False, timeout=20) as reader:
        for user in ("reader", "silent"):
            traits = {"email": f"{user}@example.com"}
            accepted(api.post("/v1/identify", json={"userId": user, "traits": traits}))
            accepted(api.post("/v1/track", json={"userId": user, "event": "signed_up"}))
        wait_until(lambda: len(smtp_server.received) >= 2, "the two welcome emails")
        mail = {m.recipients[0]: html_of(m.message) for m in smtp_server.received}
        (pixel,) = re.findall(
            r'<img src="([^"]+)" width="1" height="1"', mail["reader@example.com"]
        )
        # Apple's proxy fetches first: a machine open, which this wait leaves aside
        assert reader.get(pixel, headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
        assert reader.get(pixel, headers={"User-Agent": PERSON}).status_code == 200

    def end_of(user: str) -> str | None:
        found = api.get(f"/v1/profiles/{user}").json()["instances"]
        return found[0]["end_state"] if found and found[0]["status"] == "ended" else None

    assert wait_until(lambda: end_of("reader"), "the reader's instance to end") == "engaged"
    assert wait_until(lambda: end_of("silent"), "the silent one's timeout") == "unopened"
    trace = api.get("/v1/profiles/reader").json()["instances"][0]["trace"]
    outcomes = [(r["step"], r["outcome"]) for r in trace]
    assert ("welcome", "machine_opened") in outcomes
    assert ("welcome", "opened") in outcomes
    assert ("await_open", "event") in outcomes
