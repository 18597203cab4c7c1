"""Segments on a real ``journeyman serve``: two orders within 30 days put a profile in
``vip``, a journey that enters on ``vip`` sends its email through a real SMTP server, and
leaving the segment ends the journey; the admin API lists the segment's size and members.
The same workspace's journey test passes under ``journeyman test``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from journeyman.cli import main
from tests.conftest import write_workspace
from tests.integration.test_serve import WRITE, accepted, instance, mails_to, profile, smtp_channel
from tests.servers import Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable  # a server in another process needs a database that outlives it

WORKSPACE = """
kind: event
name: order_completed
schema:
  type: object
  properties: {total: {type: number}}
---
kind: segment
name: vip
description: two orders within 30 days, unless blocked
when: count("order_completed", "30d") >= 2 and profile.blocked != true
---
kind: settings
traits: [blocked]
---
kind: template
name: vip_email
channel: email
subject: "You are a VIP now"
text: "Your last order came to {{ profile.firstName | default: 'you' }}."
---
kind: journey
name: vip_welcome
entry: {segment: vip}
exit:
  - segment_exited: vip
steps:
  - id: hello
    send: vip_email
  - id: later
    wait: 7d
  - id: done
    end: completed
---
kind: test
name: two orders within 30 days make a vip, who leaves when blocked
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 0s
    track: {userId: u1, event: order_completed, properties: {total: 20}}
  - at: 10d
    track: {userId: u1, event: order_completed, properties: {total: 30}}
  - at: 11d
    identify: {userId: u1, traits: {blocked: true}}
expect:
  - entered_segment: vip
    at: 10d
  - sent: hello
    at: 10d
  - exited_segment: vip
    at: 11d
  - exited: vip_welcome
    at: 11d
"""


def _order(api: httpx.Client, user: str, at: datetime, total: float) -> None:
    body = {
        "userId": user,
        "event": "order_completed",
        "properties": {"total": total},
        "timestamp": at.isoformat(),
    }
    accepted(api.post("/v1/track", json=body, headers=WRITE))


def _identify(api: httpx.Client, user: str, **traits: Any) -> None:
    accepted(api.post("/v1/identify", json={"userId": user, "traits": traits}, headers=WRITE))


def _segments(api: httpx.Client) -> dict[str, Any]:
    answer = api.get("/v1/segments")
    assert answer.status_code == 200, answer.text
    return {s["name"]: s for s in answer.json()["segments"]}


def test_two_orders_make_a_vip_who_gets_the_email_and_leaves_when_blocked(
    tmp_path: Path, store_url: str
) -> None:
    with SmtpServer() as smtp:
        folder = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        result = CliRunner().invoke(main, ["test", str(folder)])
        assert result.exit_code == 0, result.output
        with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as api:
            now = datetime.now(UTC)
            for user in ("u1", "u2", "u3"):
                _identify(api, user, email=f"{user}@example.com")
            _order(api, "u1", now - timedelta(days=12), 20)
            _order(api, "u2", now - timedelta(days=40), 20)  # outside the window
            _order(api, "u2", now, 20)
            assert _segments(api)["vip"]["size"] == 0
            _order(api, "u1", now, 30)
            _order(api, "u3", now, 5)
            _order(api, "u3", now, 5)

            mail = wait_until(lambda: mails_to(smtp, "u1@example.com"), "the VIP email")
            assert mail[0]["Subject"] == "You are a VIP now"
            assert mails_to(smtp, "u2@example.com") == []
            assert _segments(api)["vip"] == {
                "name": "vip",
                "description": "two orders within 30 days, unless blocked",
                "when": 'count("order_completed", "30d") >= 2 and profile.blocked != true',
                "list": False,
                "size": 2,
            }
            _check_members(api)
            shown = profile(api, "u1")
            assert shown is not None
            assert list(shown["segments"]) == ["vip"]
            assert [c["outcome"] for c in shown["segment_changes"]] == ["segment_entered"]
            assert instance(api, "u1", "vip_welcome")["status"] == "waiting"

            _identify(api, "u1", blocked=True)
            left = instance(api, "u1", "vip_welcome")
            assert (left["status"], left["end_state"]) == ("ended", "exited")
            assert _segments(api)["vip"]["size"] == 1
            gone = profile(api, "u1")
            assert gone is not None
            assert gone["segments"] == {}
            events = api.get("/v1/profiles/u1").json()["events"]
            names = [e["name"] for e in events]
            assert "segment_entered" in names
            assert "segment_exited" in names

            # A trait the call's context fills in (as analytics.js sends the page's) moves
            # the segments that read it, as an identify does: here a group call's, which
            # no segment or journey reads itself.
            context = {"traits": {"blocked": True}}
            body = {"userId": "u3", "groupId": "acme", "context": context}
            accepted(api.post("/v1/group", json=body, headers=WRITE))
            assert _segments(api)["vip"]["size"] == 0
            third = profile(api, "u3")
            assert third is not None
            assert third["segments"] == {}


def _check_members(api: httpx.Client) -> None:
    first = api.get("/v1/segments/vip/members", params={"limit": "1"})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [m["profile_id"] for m in page["members"]] == ["u1"]
    rest = api.get("/v1/segments/vip/members", params={"after": page["next"], "limit": "1"})
    assert [m["profile_id"] for m in rest.json()["members"]] == ["u3"]
    missing = api.get("/v1/segments/nobody/members")
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "name"
    bad = api.get("/v1/segments/vip/members", params={"limit": "0"})
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "limit"


LAPSING = """
kind: event
name: order_completed
schema:
  type: object
  properties: {total: {type: number}}
---
kind: segment
name: recent
description: ordered within the last 30 days
when: days_since("order_completed") < 30
---
kind: template
name: miss_you
channel: email
subject: "We miss you"
text: "It has been a while."
---
kind: journey
name: winback
entry: {event: segment_exited, when: event.segment == "recent"}
steps:
  - id: miss_you
    send: miss_you
"""


def test_a_profile_leaves_a_days_since_segment_when_the_time_comes_with_no_event(
    tmp_path: Path, store_url: str
) -> None:
    with SmtpServer() as smtp:
        folder = write_workspace(tmp_path / "ws", LAPSING, smtp_channel(smtp.port))
        with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as api:
            _identify(api, "u1", email="u1@example.com")
            # an order of almost 30 days ago: 30 whole days will have passed in 3 seconds
            _order(api, "u1", datetime.now(UTC) - timedelta(days=30, seconds=-3), 20)
            assert _segments(api)["recent"]["size"] == 1
            assert mails_to(smtp, "u1@example.com") == []
            mail = wait_until(lambda: mails_to(smtp, "u1@example.com"), "the win-back email")
            assert mail[0]["Subject"] == "We miss you"
            assert _segments(api)["recent"]["size"] == 0
            shown = profile(api, "u1")
            assert shown is not None
            assert shown["segments"] == {}
            outcomes = [c["outcome"] for c in shown["segment_changes"]]
            assert outcomes == ["segment_entered", "segment_exited"]


LISTS = """
kind: segment
name: newsletter
description: subscribers exported from the CRM
list: true
---
kind: segment
name: vip
when: profile.plan == "vip"
---
kind: template
name: issue_one
channel: email
subject: "Welcome to the newsletter"
text: "Issue one."
---
kind: journey
name: newsletter_welcome
entry: {segment: newsletter}
exit: [{segment_exited: newsletter}]
steps:
  - id: welcome
    send: issue_one
  - id: later
    wait: 30d
"""


def test_a_list_takes_members_by_api_and_by_import_and_each_gets_the_journey(
    tmp_path: Path, store_url: str
) -> None:
    from tests.servers import ADMIN_KEY

    with SmtpServer() as smtp:
        folder = write_workspace(tmp_path / "ws", LISTS, smtp_channel(smtp.port))
        with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as api:
            _identify(api, "u1", email="Ann@Example.com")
            path = "/v1/segments/newsletter/members"
            added = api.post(path, json={"members": [{"email": "ann@example.com"}]})
            assert added.status_code == 202, added.text
            assert added.json() == {"accepted": 1}
            mail = wait_until(lambda: mails_to(smtp, "Ann@Example.com"), "the welcome issue")
            assert mail[0]["Subject"] == "Welcome to the newsletter"
            assert _segments(api)["newsletter"]["list"] is True
            assert _segments(api)["newsletter"]["when"] is None

            # a file: u2 and u3 by userId, one more by email; u1 again changes nothing
            for user in ("u2", "u3"):
                _identify(api, user, email=f"{user}@example.com")
            members = tmp_path / "members.csv"
            members.write_text("userId,email\nu2,\nu3,u3@example.com\n,new@example.com\nu1,\n")
            result = CliRunner().invoke(
                main,
                ["import", "segment", "newsletter", str(members), "--url", server.url],
                env={"JOURNEYMAN_ADMIN_KEY": ADMIN_KEY},
            )
            assert result.exit_code == 0, result.output
            assert "4 of 4 members sent" in result.output
            wait_until(lambda: mails_to(smtp, "u3@example.com"), "u3's welcome issue")
            assert _segments(api)["newsletter"]["size"] == 4
            assert len(mails_to(smtp, "Ann@Example.com")) == 1

            gone = api.delete(f"{path}/u2")
            assert gone.status_code == 202, gone.text
            left = instance(api, "u2", "newsletter_welcome")
            assert (left["status"], left["end_state"]) == ("ended", "exited")
            assert _segments(api)["newsletter"]["size"] == 3


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "rule"),
    [
        ("/v1/segments/nobody/members", {"members": [{"userId": "u1"}]}, 404, "name", "exists"),
        ("/v1/segments/vip/members", {"members": [{"userId": "u1"}]}, 409, "name", "list"),
        ("/v1/segments/newsletter/members", {"members": []}, 400, "members", "size"),
        ("/v1/segments/newsletter/members", {"people": []}, 400, "body", "shape"),
        (
            "/v1/segments/newsletter/members",
            {"members": [{"userId": "u1"}, {"email": "nobody"}]},
            400,
            "members[1].email",
            "email",
        ),
        (
            "/v1/segments/newsletter/members",
            {"members": [{"userId": "a\u0000b"}]},
            400,
            "members[0].userId",
            "characters",
        ),
        (
            "/v1/segments/newsletter/members",
            {"members": [{"userId": "u1", "x": 1}]},
            400,
            "members[0]",
            "shape",
        ),
    ],
)
def test_a_bad_list_change_is_refused_naming_the_field_and_changes_nothing(
    tmp_path: Path, store_url: str, path: str, body: Any, status: int, field: str, rule: str
) -> None:
    folder = write_workspace(tmp_path / "ws", LISTS)
    with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as api:
        answer = api.post(path, json=body)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["field"] == field
        assert answer.json()["error"]["rule"] == rule
        assert _segments(api)["newsletter"]["size"] == 0
        assert api.get("/v1/profiles/u1").status_code == 404


def test_import_names_the_bad_line_and_sends_nothing(tmp_path: Path) -> None:
    members = tmp_path / "members.ndjson"
    members.write_text('{"userId": "u1"}\n{"email": "not an address"}\n')
    result = CliRunner().invoke(
        main,
        ["import", "segment", "newsletter", str(members), "--url", "http://127.0.0.1:9"],
        env={"JOURNEYMAN_ADMIN_KEY": "k"},
    )
    assert result.exit_code == 1
    assert "members.ndjson line 2: 'not an address' is no email address" in result.output
    headless = tmp_path / "members.csv"
    headless.write_text("id\nu1\n")
    result = CliRunner().invoke(
        main,
        ["import", "segment", "newsletter", str(headless)],
        env={"JOURNEYMAN_ADMIN_KEY": "k"},
    )
    assert result.exit_code == 1
    assert "line 1: the header must name a userId or an email column, not id" in result.output
