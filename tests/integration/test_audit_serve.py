"""Who did what, on a real ``journeyman serve`` (SQLite file, PostgreSQL): pauses,
resumes and stops from the console and the API, publishes through the API, the console
and ``serve --publish`` at start are kept with who, when and what, and survive a restart."""

from __future__ import annotations

import re
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_workspace
from tests.servers import WRITE_KEY, Journeyman
from tests.waiting import wait_until

WORKSPACE = """
kind: event
name: signed_up
---
kind: journey
name: onboard
entry: {event: signed_up}
steps:
  - id: settle
    wait: {wait}
"""


class Serve(Journeyman):
    """``journeyman serve`` with extra options."""

    def __init__(self, *args: Any, options: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = options

    def command(self) -> list[str]:
        return [*super().command(), *self.options]


def log_in(url: str, user: str, password: str) -> httpx.Client:
    console = httpx.Client(base_url=url, trust_env=False, timeout=20)
    token = re.search(r'name="csrf" value="([^"]+)"', console.get("/login").text)
    assert token is not None
    fields = {"csrf": token.group(1), "user": user, "key": password, "next": "/journeys"}
    assert console.post("/login", data=fields).status_code == 303
    return console


def console_command(console: httpx.Client, command: str) -> None:
    confirm = console.get(f"/journeys/onboard/{command}").text
    token = re.search(r'name="csrf" value="([^"]+)"', confirm)
    assert token is not None
    answer = console.post(f"/journeys/onboard/{command}", data={"csrf": token.group(1)})
    assert answer.status_code == 303
    assert f"done={command}" in answer.headers["location"], answer.headers["location"]


def audit(admin: httpx.Client) -> list[dict[str, Any]]:
    answer = admin.get("/v1/journeys/onboard")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["audit"]
    return found


def what(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(a["command"], a["by"], a["via"], a["count"], a["journey_version"]) for a in entries]


def files(wait: str) -> dict[str, str]:
    return {"onboard.yaml": WORKSPACE.replace("{wait}", wait)}


@pytest.mark.durable
def test_pause_resume_stop_and_publish_are_kept_with_who_when_and_what(
    tmp_path: Path, store_url: str
) -> None:
    began = datetime.now(UTC) - timedelta(seconds=1)
    folder = write_workspace(tmp_path / "ws", WORKSPACE.replace("{wait}", "1d"))
    users = {"JOURNEYMAN_CONSOLE_USERS": "ana:correct-horse"}
    with ExitStack() as stack:
        server = stack.enter_context(Journeyman(folder, store_url, tmp_path, env=users)).start()
        client = stack.enter_context(server.client(WRITE_KEY))
        admin = stack.enter_context(server.client())
        for user in ("u1", "u2"):
            answer = client.post("/v1/track", json={"userId": user, "event": "signed_up"})
            assert answer.status_code == 202, answer.text
        wait_until(
            lambda: admin.get("/v1/journeys").json()["journeys"][0]["waiting"] == 2, "2 waiting"
        )

        console = log_in(server.url, "ana", "correct-horse")
        stack.callback(console.close)
        console_command(console, "pause")
        answer = admin.post("/v1/journeys/onboard/resume", json={"by": "ops@example.com"})
        assert answer.status_code == 200, answer.text
        assert admin.post("/v1/journeys/onboard/stop").json()["stopped"] == 2
        answer = admin.put("/v1/workspace", json={"files": files("2d"), "by": "ci"})
        assert answer.status_code == 200, answer.text
        assert server.stop() == 0

    # serve --publish at start: the folder again, as version 3, kept as serve's.
    (tmp_path / "again").mkdir()
    with ExitStack() as stack:
        server = stack.enter_context(
            Serve(folder, store_url, tmp_path / "again", env=users, options=("--publish",))
        ).start()
        admin = stack.enter_context(server.client())
        entries = audit(admin)
        assert what(entries) == [
            ("publish", "serve", "serve", None, 3),
            ("publish", "ci", "api", None, 2),
            ("stop", "api", "api", 2, None),
            ("resume", "ops@example.com", "api", 0, None),
            ("pause", "ana", "console", None, None),
            ("publish", "serve", "serve", None, 1),
        ]
        times = [datetime.fromisoformat(a["at"]) for a in entries]
        assert times == sorted(times, reverse=True)
        assert began <= times[-1]
        assert times[0] <= datetime.now(UTC)
        workspace = admin.get("/v1/workspace").json()
        assert [(p["by"], p["workspace_version"]) for p in workspace["publishes"]] == [
            ("serve", 3),
            ("ci", 2),
            ("serve", 1),
        ]

        console = log_in(server.url, "ana", "correct-horse")
        stack.callback(console.close)
        page = console.get("/journeys/onboard").text
        history = page[page.index('id="history"') :]
        assert re.findall(r'data-audit="(\w+)"', history) == [
            "publish", "publish", "stop", "resume", "pause", "publish"
        ]  # fmt: skip
        assert "by ops@example.com" in history
        assert "2 instance(s) ended" in history
        assert "v2 in workspace version 2" in history
