"""Scheduled entry on a real ``journeyman serve`` (SQLite and PostgreSQL): a run enters
the segment's members and the email goes out through a real SMTP server; a run killed
mid-way (SIGKILL) goes on after a restart with nobody entered twice and nobody skipped;
a run can be cancelled; a `timezone: profile` schedule enters each member at their own
local time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_workspace
from tests.integration.test_serve import WRITE, accepted, mails_to, smtp_channel
from tests.servers import Journeyman, SmtpServer
from tests.stores import Backend
from tests.waiting import wait_until

pytestmark = pytest.mark.durable  # a server in another process needs a database that outlives it

NEWSLETTER = """
kind: settings
traits: [plan]
---
kind: segment
name: newsletter
when: profile.plan == "pro"
---
kind: template
name: news
channel: email
transactional: true
subject: "This week's news"
text: "Hello {{ profile.email }}"
---
kind: journey
name: weekly
reentry: always
entry:
  segment: newsletter
  schedule: {{at: "{at}", timezone: UTC, rate: {rate}}}
steps:
  - id: news
    send: news
"""

EVERYONE = """
kind: journey
name: everyone
reentry: always
entry:
  schedule: {{at: "{at}", timezone: UTC, rate: {rate}}}
steps:
  - id: done
    end: completed
"""


def _soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


# The moment a test's run is for, as the folder has it: far off, so that no run starts
# before the test has its profiles in (a busy machine may take seconds to start a server).
LATER = "2099-01-01T09:00:00"


def _run_soon(api: httpx.Client, folder: Path, seconds: float = 2) -> None:
    """Publish the folder again with its run's moment ``seconds`` from now."""
    files = {p.name: p.read_text().replace(LATER, _soon(seconds)) for p in folder.glob("*.yaml")}
    answer = api.put("/v1/workspace", json={"files": files, "by": "test"})
    assert answer.status_code == 200, answer.text


def _people(api: httpx.Client, count: int, **traits: Any) -> None:
    for start in range(0, count, 100):
        batch = [
            {
                "type": "identify",
                "userId": f"p{n:05d}",
                "traits": {"email": f"p{n}@example.com", **traits},
            }
            for n in range(start, min(count, start + 100))
        ]
        accepted(api.post("/v1/batch", json={"batch": batch}, headers=WRITE), len(batch))


def _journey(api: httpx.Client, name: str) -> dict[str, Any]:
    answer = api.get(f"/v1/journeys/{name}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _run(api: httpx.Client, name: str) -> dict[str, Any] | None:
    runs = _journey(api, name)["runs"]
    return runs[0] if runs else None


def test_a_run_enters_the_members_of_the_segment_and_the_email_goes_out(
    tmp_path: Path, store_url: str
) -> None:
    with SmtpServer() as smtp:
        text = NEWSLETTER.format(at=LATER, rate=50)
        folder = write_workspace(tmp_path / "ws", text, smtp_channel(smtp.port))
        with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as api:
            for user, plan in (("u1", "pro"), ("u2", "free"), ("u3", "pro")):
                body = {"userId": user, "traits": {"email": f"{user}@example.com", "plan": plan}}
                accepted(api.post("/v1/identify", json=body, headers=WRITE))
            _run_soon(api, folder)
            for address in ("u1@example.com", "u3@example.com"):
                mail = wait_until(lambda a=address: mails_to(smtp, a), "the news")  # type: ignore[misc]
                assert mail[0]["Subject"] == "This week's news"
            run = wait_until(
                lambda: (r := _run(api, "weekly")) and r["state"] == "done" and r, "done"
            )
            assert (run["entered"], run["total"], run["rate"], run["eta"]) == (2, 2, 50.0, None)
            assert mails_to(smtp, "u2@example.com") == []
            assert _journey(api, "weekly")["entered"] == 2


def test_a_run_killed_midway_goes_on_after_a_restart_entering_each_profile_once(
    tmp_path: Path, store_url: str
) -> None:
    count = 600
    folder = write_workspace(tmp_path / "ws", EVERYONE.format(at=LATER, rate=60))
    with Journeyman(folder, store_url, tmp_path) as server:
        with server.start().client() as api:
            _people(api, count)
            _run_soon(api, folder)
            wait_until(
                lambda: (r := _run(api, "everyone")) and r["entered"] >= 120, "a part entered"
            )
        server.kill()
        with server.start().client() as api:
            before = _run(api, "everyone")
            assert before is not None
            assert before["state"] == "running", before
            assert before["entered"] < count
            done = wait_until(
                lambda: (r := _run(api, "everyone")) and r["state"] == "done" and r,
                "the run to finish",
                timeout=60,
            )
            assert (done["entered"], done["total"]) == (count, count)
            # each profile entered once: count instances, ended at once, of this journey
            assert _journey(api, "everyone")["entered"] == count


def test_a_run_can_be_cancelled_and_enters_nobody_more(tmp_path: Path, store_url: str) -> None:
    count = 300
    folder = write_workspace(tmp_path / "ws", EVERYONE.format(at=LATER, rate=10))
    with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as api:
        _people(api, count)
        _run_soon(api, folder)
        run = wait_until(lambda: (r := _run(api, "everyone")) and r["entered"] > 0 and r, "started")
        assert run["state"] == "running"
        assert run["eta"] > 0
        answer = api.post(f"/v1/journeys/everyone/runs/{run['id']}/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "cancelled"
        again = api.post(f"/v1/journeys/everyone/runs/{run['id']}/cancel")
        assert again.status_code == 409
        assert again.json()["error"]["field"] == "id"
        missing = api.post("/v1/journeys/everyone/runs/nope/cancel")
        assert missing.status_code == 404
        stopped = _run(api, "everyone")
        assert stopped is not None
        assert stopped["state"] == "cancelled"
        # the page in flight (at most one second's worth) is the last one entered
        wait_until(lambda: _journey(api, "everyone")["entered"] >= stopped["entered"], "entries")
        assert _journey(api, "everyone")["entered"] <= stopped["entered"] + 10
        assert stopped["entered"] < count


SIGNED_UP = """
kind: event
name: signed_up
"""

MORNING = """
kind: journey
name: morning
reentry: always
entry:
  schedule: {{every: "day {time}", timezone: profile}}
steps:
  - id: done
    end: completed
"""


def _identify(api: httpx.Client, user: str, zone: str) -> None:
    body = {"userId": user, "traits": {"timezone": zone}}
    accepted(api.post("/v1/identify", json=body, headers=WRITE))


def _entered_at(api: httpx.Client, user: str) -> list[datetime]:
    found = api.get(f"/v1/profiles/{user}")
    assert found.status_code == 200, found.text
    instances = [i for i in found.json()["instances"] if i["journey"] == "morning"]
    return [datetime.fromisoformat(i["entered_at"]) for i in instances]


def test_each_member_is_entered_at_their_own_local_time_by_their_own_clock(
    tmp_path: Path, store_url: str, backend: Backend
) -> None:
    """Members there before the schedule was published get their clocks from its first
    run, later ones with their own event; each is entered when their own wall clock says
    the schedule's time, and a member far away keeps a clock for their own time."""
    folder = write_workspace(tmp_path / "ws", SIGNED_UP)
    with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as api:
        _identify(api, "early", "UTC")
        _identify(api, "tokyo", "Asia/Tokyo")
        # the schedule's time: UTC's wall clock 30 to 90 seconds from now
        moment = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0)
        morning = MORNING.format(time=moment.strftime("%H:%M"))
        files = {"events.yaml": SIGNED_UP, "morning.yaml": morning}
        answer = api.put("/v1/workspace", json={"files": files})
        assert answer.status_code == 200, answer.text
        clocks = wait_until(
            lambda: (r := _run(api, "morning")) and r["state"] == "done" and r, "the clocks run"
        )
        assert clocks["id"].startswith("morning@clocks-")
        assert clocks["entered"] == clocks["total"] == 2
        _identify(api, "late", "UTC")

        for user in ("early", "late"):
            (entered,) = wait_until(lambda u=user: _entered_at(api, u), f"{user} entered", 120)  # type: ignore[misc]
            assert moment <= entered < moment + timedelta(seconds=30)
        assert _entered_at(api, "tokyo") == []
        # Tokyo's own HH:MM is nine hours before UTC's: its clock is set for the next one
        tokyo = moment - timedelta(hours=9)
        while tokyo <= moment:
            tokyo += timedelta(days=1)
        assert backend.rows is not None
        rows = backend.rows(store_url, "SELECT wake_at FROM profiles WHERE id = 'tokyo'")
        assert rows == [(int(tokyo.timestamp() * 1000),)]
        assert [r["id"] for r in _journey(api, "morning")["runs"]] == [clocks["id"]]
