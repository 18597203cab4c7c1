"""A publish stores the whole workspace, and every process runs it without a restart.

Real processes: ``journeyman serve`` (on SQLite, or with ``--bus`` on PostgreSQL and NATS)
and a ``journeyman worker`` started from an empty folder with only ``--db`` and ``--bus``;
email goes to a real SMTP server. A template fixed through ``PUT /v1/workspace`` reaches
the next email within moments, while an instance that entered before the fix keeps the
text of the version it entered.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.cluster import NATS_URL, BusServer, WorkerProcess, nats_missing, nats_stream
from tests.servers import ADMIN_KEY, WRITE_KEY, Journeyman, SmtpServer, child_env
from tests.stores import Backend
from tests.waiting import wait_until

SENDER = "Journeyman Tests <hello@example.com>"
TOKEN = "tw-secret-4711"  # the value of ${TWILIO_AUTH_TOKEN}: never stored

EVENTS = """
kind: event
name: signed_up
---
kind: event
name: go
"""

JOURNEY = """
kind: journey
name: notes
entry: {event: signed_up}
reentry: never
steps:
  - id: await_go
    wait_for: {event: go, timeout: 1d}
    on_timeout: done
  - id: note
    send: note_email
  - id: done
    end: finished
"""


def template(text: str) -> str:
    return f"""
kind: template
name: note_email
channel: email
subject: "Note {text}"
text: "The {text} text"
"""


def channels(smtp_port: int) -> str:
    return f"""
kind: channel
name: email
type: smtp
host: 127.0.0.1
port: {smtp_port}
security: none
from: "{SENDER}"
---
kind: channel
name: sms
type: twilio
account_sid: "${{TWILIO_ACCOUNT_SID}}"
auth_token: "${{TWILIO_AUTH_TOKEN}}"
from: "+15550100"
"""


SECRETS = {"TWILIO_ACCOUNT_SID": "AC0001", "TWILIO_AUTH_TOKEN": TOKEN}


def files(smtp_port: int, text: str) -> dict[str, str]:
    return {
        "events.yaml": EVENTS,
        "journey.yaml": JOURNEY,
        "template.yaml": template(text),
        "channels.yaml": channels(smtp_port),
    }


def write(folder: Path, texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    return folder


def post(url: str, kind: str, body: dict[str, object]) -> None:
    answer = httpx.post(
        f"{url}/v1/{kind}", json=body, headers={"Authorization": f"Bearer {WRITE_KEY}"}
    )
    assert answer.status_code == 202, answer.text


def sign_up(url: str, who: str) -> None:
    post(url, "identify", {"userId": who, "traits": {"email": f"{who}@example.com"}})
    post(url, "track", {"userId": who, "event": "signed_up"})


def go(url: str, who: str) -> None:
    post(url, "track", {"userId": who, "event": "go"})


def put_workspace(url: str, texts: dict[str, str], dry_run: bool = False) -> dict[str, object]:
    answer = httpx.put(
        f"{url}/v1/workspace",
        params={"dry_run": "true"} if dry_run else None,
        json={"files": texts},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def subject_to(smtp: SmtpServer, who: str) -> str | None:
    found = [m for m in smtp.received if f"{who}@example.com" in m.recipients]
    return str(found[-1].message["Subject"]) if found else None


def stored_files(rows: list[tuple[object, ...]]) -> str:
    return "".join(bytes(row[0]).decode() for row in rows)  # type: ignore[call-overload]


# ---------------------------------------------------------------- serve on SQLite alone


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_serve_on_sqlite_sends_the_fixed_template_to_new_instances_and_the_old_to_running_ones(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    folder = write(tmp_path / "ws", files(smtp.port, "first"))
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    with Journeyman(folder, db, tmp_path, env=SECRETS) as server:
        url = server.start().url
        sign_up(url, "ada")  # enters before the fix
        plan = put_workspace(url, files(smtp.port, "fixed"))["plan"]
        assert isinstance(plan, dict)
        assert plan["documents"] == {"template note_email": "changed"}
        assert plan["changed"] == ["notes"]
        sign_up(url, "bob")  # enters after it
        go(url, "bob")
        go(url, "ada")
        assert wait_until(lambda: subject_to(smtp, "bob"), "bob's note") == "Note fixed"
        assert wait_until(lambda: subject_to(smtp, "ada"), "ada's note") == "Note first"
    # The database keeps the whole workspace, the secret as its reference only.
    with sqlite3.connect(tmp_path / "jm.db") as connection:
        rows = connection.execute("SELECT files FROM workspaces ORDER BY version").fetchall()
    assert len(rows) == 2
    kept = stored_files(rows)
    assert "${TWILIO_AUTH_TOKEN}" in kept
    assert TOKEN not in kept
    assert "The first text" in kept
    assert "The fixed text" in kept


def test_the_plan_shows_a_template_change_in_the_api_and_the_cli(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    folder = write(tmp_path / "ws", files(smtp.port, "first"))
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    with Journeyman(folder, db, tmp_path, env=SECRETS) as server:
        url = server.start().url
        changed = files(smtp.port, "fixed")
        answer = put_workspace(url, changed, dry_run=True)
        assert answer["published"] is False
        plan = answer["plan"]
        assert isinstance(plan, dict)
        assert plan["documents"] == {"template note_email": "changed"}
        assert (plan["changed"], plan["versions"]) == (["notes"], {"notes": 2})
        edited = write(tmp_path / "edited", changed)
        command = [sys.executable, "-m", "journeyman", "plan", str(edited), "--url", url]
        done = subprocess.run(
            command, env=child_env({}), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "  changed   template note_email" in done.stdout
        assert "  changed   notes (v2)" in done.stdout
        # Nothing was published: the next sign-up still gets the first text.
        sign_up(url, "cy")
        go(url, "cy")
        assert wait_until(lambda: subject_to(smtp, "cy"), "cy's note") == "Note first"


# ---------------------------------------------------------------- PostgreSQL and NATS


class BareWorker(WorkerProcess):
    """``journeyman worker --db URL --bus URL``, run in an empty folder: no workspace."""

    def __init__(self, db: str, bus: str, logs: Path, empty: Path, env: dict[str, str]) -> None:
        super().__init__("bare", empty, db, bus, logs, env)
        self.command = [sys.executable, "-m", "journeyman", "worker", "--db", db, "--bus", bus]
        empty.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        self.folder = empty  # where it runs


@pytest.mark.shared  # several processes share the database: PostgreSQL only
def test_a_worker_from_an_empty_folder_follows_a_template_fixed_through_the_api(
    tmp_path: Path, store_url: str, backend: Backend, smtp: SmtpServer
) -> None:
    reason = nats_missing()
    if reason is not None:
        pytest.fail(reason)  # CI starts NATS: its absence is a failure, not a skip
    folder = write(tmp_path / "ws", files(smtp.port, "first"))
    with ExitStack() as stack:
        stream = stack.enter_context(nats_stream())
        api = BusServer(folder, store_url, tmp_path, NATS_URL, stream, partitions=2)
        api.env |= SECRETS
        url = stack.enter_context(api).start().url
        worker = BareWorker(store_url, NATS_URL, tmp_path, tmp_path / "empty", SECRETS)
        stack.enter_context(worker).start()
        assert list((tmp_path / "empty").iterdir()) == []
        sign_up(url, "ada")  # enters before the fix, and waits
        sign_up(url, "cy")  # so does cy, who moves on after a new worker took over
        wait_until(lambda: _instances(backend, store_url, "cy"), "cy to enter")

        put_workspace(url, files(smtp.port, "fixed"))
        published = time.monotonic()
        wait_until(lambda: "workspace version 2" in worker.output, "the worker to follow", 10)
        assert time.monotonic() - published < 2.0

        sign_up(url, "bob")
        go(url, "bob")
        assert wait_until(lambda: subject_to(smtp, "bob"), "bob's note") == "Note fixed"
        go(url, "ada")
        assert wait_until(lambda: subject_to(smtp, "ada"), "ada's note") == "Note first"
        assert worker.process is not None
        assert worker.process.poll() is None
        assert _instances(backend, store_url, "ada") == [1]
        assert _instances(backend, store_url, "bob") == [2]
        # A worker that starts after the publish finds what cy's version sent.
        assert worker.stop() == 0
        later = BareWorker(store_url, NATS_URL, tmp_path / "later", tmp_path / "empty2", SECRETS)
        stack.enter_context(later).start()
        go(url, "cy")
        assert wait_until(lambda: subject_to(smtp, "cy"), "cy's note") == "Note first"
        assert backend.rows is not None
        kept = stored_files(backend.rows(store_url, "SELECT files FROM workspaces"))
        assert "${TWILIO_AUTH_TOKEN}" in kept
        assert TOKEN not in kept


def _instances(backend: Backend, url: str, who: str) -> list[int]:
    assert backend.rows is not None
    query = f"SELECT version FROM instances WHERE profile_id = '{who}'"
    return [int(row[0]) for row in backend.rows(url, query)]
