"""Segment backfill on a real ``journeyman serve``: a segment published over profiles that
already have events is computed for them from the stored event log (members join, with
``segment_entered``, but the journey that enters on the segment starts for none of them),
its progress and its size over time are shown by the API, a changed ``when`` is
backfilled again, and ``journeyman segments backfill`` runs one by hand with its progress.
A backfill cut off half way is taken up from its cursor by another process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from journeyman.cli import main
from journeyman.domain.core import BACKFILL, Changes
from journeyman.domain.model import Workspace
from journeyman.domain.state import Event, Profile
from journeyman.runtime import backfills as backfilling
from journeyman.runtime.backfills import LEASE, Backfiller
from journeyman.storage import open_store
from journeyman.storage.backfills import BackfillStore
from tests.conftest import write_workspace
from tests.integration.test_serve import WRITE, accepted, mails_to, profile, smtp_channel
from tests.servers import ADMIN_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable  # a server in another process needs a database that outlives it

BEFORE = """
kind: event
name: order_completed
schema:
  type: object
  properties: {total: {type: number}}
---
kind: settings
traits: [plan]
"""

VIP = """
kind: segment
name: vip
description: orders within 30 days
when: count("order_completed", "30d") >= {least}
---
kind: segment
name: pro
when: profile.plan == "pro"
---
kind: segment
name: newsletter
list: true
---
kind: template
name: vip_email
channel: email
subject: "You are a VIP now"
text: "Welcome to the club."
---
kind: journey
name: vip_welcome
entry: {segment: vip}
steps:
  - id: hello
    send: vip_email
"""


def _track(api: httpx.Client, user: str, at: datetime) -> None:
    body = {"userId": user, "event": "order_completed", "timestamp": at.isoformat()}
    accepted(api.post("/v1/track", json=body, headers=WRITE))


def _publish(server: Journeyman, folder: Path) -> None:
    args = ["publish", str(folder), "--url", server.url, "--key", ADMIN_KEY]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def _segment(api: httpx.Client, name: str) -> dict[str, Any]:
    answer = api.get(f"/v1/segments/{name}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _backfilled(api: httpx.Client, name: str, least: int = 1) -> dict[str, Any]:
    """The segment once its latest backfill (the ``least``-th at least) is done."""

    def done() -> dict[str, Any] | None:
        found = _segment(api, name)
        over = found["backfill"] is not None and found["backfill"]["state"] == "done"
        return found if over and len(found["backfills"]) >= least else None

    return wait_until(done, f"the backfill of {name}", 30)


def test_a_new_segment_is_backfilled_from_old_events_without_entering_its_journey(
    tmp_path: Path, store_url: str
) -> None:
    with SmtpServer() as smtp:
        first = write_workspace(tmp_path / "v1", BEFORE, smtp_channel(smtp.port))
        with Journeyman(first, store_url, tmp_path) as server, server.start().client() as api:
            now = datetime.now(UTC)
            for user, days in (("u1", (12, 1)), ("u2", (3,)), ("u3", (40, 2))):
                identify = {"userId": user, "traits": {"email": f"{user}@example.com"}}
                accepted(api.post("/v1/identify", json=identify, headers=WRITE))
                for ago in days:
                    _track(api, user, now - timedelta(days=ago))
            identify = {"userId": "u3", "traits": {"plan": "pro"}}
            accepted(api.post("/v1/identify", json=identify, headers=WRITE))
            assert profile(api, "u1")["segments"] == {}  # type: ignore[index]

            second = write_workspace(
                tmp_path / "v2", BEFORE, VIP.replace("{least}", "2"), smtp_channel(smtp.port)
            )
            _publish(server, second)
            vip = _backfilled(api, "vip")
            assert vip["size"] == 1  # u1: two orders within 30 days; u3's first is older
            assert vip["backfill"] | {"rate": 0, "started_at": "", "updated_at": ""} == {
                "id": vip["backfill"]["id"],
                "state": "done",
                "done": 3,
                "total": 3,
                "percent": 100.0,
                "rate": 0,
                "eta": None,
                "started_at": "",
                "updated_at": "",
            }
            assert _backfilled(api, "pro")["size"] == 1  # a trait alone: u3
            assert _segment(api, "newsletter")["backfill"] is None  # a list is uploaded
            shown = profile(api, "u1")
            assert shown is not None
            assert list(shown["segments"]) == ["vip"]
            assert [c["outcome"] for c in shown["segment_changes"]] == ["segment_entered"]
            assert [i for i in shown["instances"] if i["journey"] == "vip_welcome"] == []

            # A profile that qualifies from now on enters the journey as before.
            identify = {"userId": "u4", "traits": {"email": "u4@example.com"}}
            accepted(api.post("/v1/identify", json=identify, headers=WRITE))
            _track(api, "u4", now - timedelta(days=1))
            _track(api, "u4", now)
            wait_until(lambda: mails_to(smtp, "u4@example.com"), "u4's VIP email")
            assert [m.recipients for m in smtp.received] == [["u4@example.com"]]  # none for u1
            sizes = _segment(api, "vip")["sizes"]
            assert sizes["size"] == 2
            assert sum(p["entered"] for p in sizes["points"]) == 2
            assert sizes["points"][-1]["size"] == 2
            assert sizes["start"] == 0

            # A changed `when`: backfilled again, u2 and u3 join now.
            third = write_workspace(
                tmp_path / "v3", BEFORE, VIP.replace("{least}", "1"), smtp_channel(smtp.port)
            )
            _publish(server, third)
            again = _backfilled(api, "vip", least=2)
            assert again["size"] == 4
            assert again["backfill"]["id"] != vip["backfill"]["id"]
            assert len(smtp.received) == 1


def test_a_backfill_by_hand_shows_its_progress_and_refuses_a_list(
    tmp_path: Path, store_url: str
) -> None:
    with SmtpServer() as smtp:
        folder = write_workspace(
            tmp_path / "ws", BEFORE, VIP.replace("{least}", "1"), smtp_channel(smtp.port)
        )
        with Journeyman(folder, store_url, tmp_path) as server, server.start().client() as api:
            _track(api, "u1", datetime.now(UTC))
            _backfilled(api, "vip")
            args = ["segments", "backfill", "vip", "--url", server.url, "--key", ADMIN_KEY]
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, result.output
            assert "backfilled segment vip: 1 profiles, 1 members now" in result.output
            assert len(_segment(api, "vip")["backfills"]) == 2

            listed = api.post("/v1/segments/newsletter/backfill")
            assert listed.status_code == 409, listed.text
            assert listed.json()["error"]["field"] == "name"
            missing = api.post("/v1/segments/nobody/backfill")
            assert missing.status_code == 404
            assert api.get("/v1/segments/nobody").status_code == 404
            assert len(_segment(api, "vip")["backfills"]) == 2


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backfilling, "PAGE", 2)


class _Killed(BaseException):
    """The process handing pages over dies."""


def test_a_backfill_cut_off_goes_on_from_its_cursor_in_another_process(
    store_url: str, small_pages: None, workspace: Callable[..., Workspace]
) -> None:
    """Two backfillers on one store: the first dies after two pages, the second claims
    the backfill once its lease has passed and hands over the rest, none skipped."""
    published = workspace('kind: segment\nname: vip\nwhen: count("purchased", "30d") >= 1\n')
    now = datetime.now(UTC)

    async def scenario() -> tuple[list[str], list[str], dict[str, Any]]:
        store = open_store(store_url)
        await store.open()
        try:
            assert isinstance(store, BackfillStore)
            await _profiles(store, [f"p{n}" for n in range(7)])
            first: list[str] = []

            async def dies(triggers: list[Event]) -> list[str]:
                if len(first) == 4:
                    raise _Killed
                first.extend(t.profile_id for t in triggers if t.type == BACKFILL)
                return ["accepted"] * len(triggers)

            one = Backfiller(store, lambda: published, dies, lambda: now)
            with pytest.raises(_Killed):
                await one.tick()
            second: list[str] = []

            async def takes(triggers: list[Event]) -> list[str]:
                second.extend(t.profile_id for t in triggers)
                return ["accepted"] * len(triggers)

            later = now + LEASE + timedelta(seconds=1)
            other = Backfiller(store, lambda: published, takes, lambda: later)
            await other.tick()
            (done,) = await store.backfills_of("vip", 5)
            return first, second, done.progress()
        finally:
            await store.close()

    first, second, done = asyncio.run(scenario())
    assert first == ["p0", "p1", "p2", "p3"]
    assert second == ["p4", "p5", "p6"]  # from the cursor: nothing again, nothing skipped
    assert (done["state"], done["done"], done["total"]) == ("done", 7, 7)


async def _profiles(store: Any, ids: list[str]) -> None:
    await store.commit(Changes(profiles={i: Profile(id=i) for i in ids}))
