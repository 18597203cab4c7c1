"""A journey that waits for the reaction to its own message takes the same path on a real
``journeyman serve`` as in ``journeyman test``: the open of the welcome email, posted
through the track API as a provider's feedback would arrive, moves the instance down its
event path; without it, the timeout path is taken."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from journeyman.cli import main
from tests.conftest import write_workspace
from tests.integration.test_serve import (
    WRITE,
    accepted,
    ended,
    instance,
    messages,
    smtp_channel,
)
from tests.servers import Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable  # a server in another process needs a database that outlives it

WORKSPACE = """
kind: event
name: signed_up
---
kind: template
name: welcome_email
channel: email
subject: Welcome
text: "Good to have you."
---
kind: template
name: nudge_email
channel: email
subject: Did you see our welcome?
text: "Just checking."
---
kind: journey
name: onboarding
entry: {event: signed_up}
steps:
  - id: welcome
    send: welcome_email
  - id: await_open
    wait_for: {reaction: opened, to: welcome, timeout: 3s, machine: false}
    on_event: engaged
    on_timeout: nudge
  - id: nudge
    send: nudge_email
    next: nudged
  - id: engaged
    end: engaged
  - id: nudged
    end: nudged
---
kind: test
name: an opened welcome engages, an unopened one nudges
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 0s
    identify: {userId: u2, traits: {email: u2@example.com}}
  - at: 0s
    track: {userId: u1, event: signed_up}
  - at: 0s
    track: {userId: u2, event: signed_up}
  - at: 1s
    opened: welcome
    profile: u1
    machine: true
  - at: 2s
    opened: welcome
    profile: u1
expect:
  - ended: engaged
    profile: u1
    at: 2s
  - ended: nudged
    profile: u2
  - sent: nudge
    profile: u2
  - sent: nudge
    profile: u1
    times: 0
"""


def test_an_open_posted_to_the_track_api_takes_the_event_path_as_in_a_journey_test(
    tmp_path: Path, store_url: str
) -> None:
    with SmtpServer() as smtp:
        folder = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        result = CliRunner().invoke(main, ["test", str(folder)])
        assert result.exit_code == 0, result.output
        assert "1 passed, 0 failed" in result.output
        with (
            Journeyman(folder, store_url, tmp_path) as server,
            server.start().client() as api,
        ):
            _run_on_serve(api)


def _opened(api: httpx.Client, profile: str, machine: bool) -> None:
    """Post the open of the profile's welcome, naming its instance and step."""
    welcome = wait_until(lambda: messages(api, profile=profile), f"{profile}'s welcome")[0]
    properties = {
        "journey": welcome["journey"],
        "step": welcome["step"],
        "instance": welcome["instance_id"],
        "message": welcome["key"],
        "channel": welcome["channel"],
        "machine": machine,
        "user_agent": "Mozilla/5.0",
    }
    body = {"userId": profile, "event": "message_opened", "properties": properties}
    accepted(api.post("/v1/track", json=body, headers=WRITE))


def _run_on_serve(api: httpx.Client) -> None:
    for user in ("u1", "u2"):
        traits = {"email": f"{user}@example.com"}
        accepted(api.post("/v1/identify", json={"userId": user, "traits": traits}, headers=WRITE))
        accepted(api.post("/v1/track", json={"userId": user, "event": "signed_up"}, headers=WRITE))
    _opened(api, "u1", machine=True)  # a mail proxy's prefetch: not counted
    assert instance(api, "u1", "onboarding")["status"] == "waiting"
    _opened(api, "u1", machine=False)

    engaged = instance(api, "u1", "onboarding")
    assert (engaged["status"], engaged["end_state"]) == ("ended", "engaged")
    details = [r["detail"] for r in engaged["trace"] if r["step"] == "await_open"]
    assert details[0].startswith("for opened of welcome by a person until")
    assert "message_opened of welcome arrived" in details

    nudged = wait_until(lambda: ended(api, "u2", "onboarding"), "u2's wait to time out")
    assert nudged["end_state"] == "nudged"
    assert sorted(m["step"] for m in messages(api, profile="u2")) == ["nudge", "welcome"]
    assert [m["step"] for m in messages(api, profile="u1")] == ["welcome"]
    # The welcome's open is in the profile's history, like any event.
    history = api.get("/v1/events", params={"profile": "u1", "event": "message_opened"})
    assert history.status_code == 200, history.text
    assert len(history.json()["events"]) == 2
