"""A publish stores the whole workspace, and every process runs it without a restart.

Real processes: ``journeyman serve`` (on SQLite, or with ``--bus`` on PostgreSQL and NATS)
and a ``journeyman worker`` started from an empty folder with only ``--db`` and ``--bus``;
email goes to a real SMTP server. A template fixed through ``PUT /v1/workspace`` reaches
the next email within moments, while an instance that entered before the fix keeps the
text of the version it entered.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from journeyman.domain.model import Workspace
from journeyman.runtime.following import UnloadableWorkspace
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store
from journeyman.workspace import load_texts
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
transactional: true
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


def test_a_running_instance_keeps_its_template_while_events_and_channels_follow_the_latest(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    folder = write(tmp_path / "ws", files(smtp.port, "first"))
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    with Journeyman(folder, db, tmp_path, env=SECRETS) as server:
        url = server.start().url
        sign_up(url, "ada")  # enters version 1 and waits for go
        later = files(smtp.port, "fixed")
        later["events.yaml"] = EVENTS + "schema: {type: object, required: [code]}\n"
        later["channels.yaml"] = channels(smtp.port).replace(SENDER, "Renamed <new@example.com>")
        put_workspace(url, later)
        # The new event definition applies to ada's instance too: a go without a code is
        # refused, and she waits on.
        bare = httpx.post(
            f"{url}/v1/track",
            json={"userId": "ada", "event": "go"},
            headers={"Authorization": f"Bearer {WRITE_KEY}"},
        )
        assert bare.status_code == 400, bare.text
        assert "code" in bare.text
        post(url, "track", {"userId": "ada", "event": "go", "properties": {"code": "x"}})
        # Her version's text, through the channel published last.
        assert wait_until(lambda: subject_to(smtp, "ada"), "ada's note") == "Note first"
        (mail,) = [m for m in smtp.received if "ada@example.com" in m.recipients]
        assert mail.message["From"] == "Renamed <new@example.com>"


def plan_of(folder: Path, url: str) -> str:
    """What ``journeyman plan FOLDER --url URL`` prints."""
    command = [sys.executable, "-m", "journeyman", "plan", str(folder), "--url", url]
    done = subprocess.run(command, env=child_env({}), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


UNSENT = """
kind: template
name: spare_sms
channel: sms
body: "Spare {text}"
"""


def test_the_plan_names_templates_channels_events_and_rules_when_no_journey_changes(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    first = {**files(smtp.port, "first"), "spare.yaml": UNSENT.format(text="one")}
    folder = write(tmp_path / "ws", first)
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    with Journeyman(folder, db, tmp_path, env=SECRETS) as server:
        url = server.start().url
        assert plan_of(folder, url).splitlines()[1:] == [
            "  unchanged notes (v1)",
            "  nothing changes: every document is as published",
        ]
        edited = {
            **first,
            "spare.yaml": UNSENT.format(text="two"),  # a template no journey sends
            "channels.yaml": channels(smtp.port).replace("+15550100", "+15550199"),
            "events.yaml": EVENTS + "schema: {type: object, required: [code]}\n",
            "rules.yaml": "kind: rules\ncaps:\n  - {channels: [email], max: 3, per: 1d}\n",
        }
        out = plan_of(write(tmp_path / "edited", edited), url)
        assert out.splitlines()[1:] == [
            "  unchanged notes (v1)",
            "  changed   channel sms",
            "  changed   event go",
            "  new       rules",
            "  changed   template spare_sms",
        ]
        answer = put_workspace(url, edited)
        assert answer["plan"] == {
            "new": [],
            "changed": [],
            "unchanged": ["notes"],
            "removed": [],
            "versions": {"notes": 1},
            "documents": {
                "channel sms": "changed",
                "event go": "changed",
                "rules": "new",
                "template spare_sms": "changed",
            },
            "workspace": 2,
        }
        # The console's plan of the folder names them too, the other way round.
        with server.client() as client:
            documents = client.get("/v1/workspace").json()["plan"]["documents"]
        assert documents == {
            "channel sms": "changed",
            "event go": "changed",
            "rules": "removed",
            "template spare_sms": "changed",
        }


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


# ---------------------------------------------------------------- restarts


class Serve(Journeyman):
    """``journeyman serve`` with extra options."""

    def __init__(self, *args: Any, options: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = options

    def command(self) -> list[str]:
        return [*super().command(), *self.options]


def test_a_restart_with_the_folder_unchanged_keeps_a_template_fixed_through_the_api(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    folder = write(tmp_path / "ws", files(smtp.port, "first"))
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    with Journeyman(folder, db, tmp_path, env=SECRETS) as server:
        url = server.start().url
        assert "workspace  version 1, published from the folder now" in server.output
        put_workspace(url, files(smtp.port, "fixed"))
        assert server.stop() == 0

        url = server.start().url  # the folder still holds the first text
        banner = server.output
        assert "workspace  version 2, published through the API" in banner, banner
        assert "unchanged since it was published as version 1" in banner
        assert "--publish" in banner
        sign_up(url, "bob")
        go(url, "bob")
        assert wait_until(lambda: subject_to(smtp, "bob"), "bob's note") == "Note fixed"
        # The plan of the folder says what publishing it would undo.
        plan = put_workspace(url, files(smtp.port, "first"), dry_run=True)["plan"]
        assert isinstance(plan, dict)
        assert plan["documents"] == {"template note_email": "changed"}
        assert server.stop() == 0

        # A folder that changed since is published at start, as always.
        write(folder, {"template.yaml": template("second")})
        url = server.start().url
        assert "workspace  version 3, published from the folder now" in server.output
        sign_up(url, "cy")
        go(url, "cy")
        assert wait_until(lambda: subject_to(smtp, "cy"), "cy's note") == "Note second"
        assert server.stop() == 0

        url = server.start().url  # unchanged, and the latest: nothing new
        assert "workspace  version 3, the folder\n" in server.output
    with sqlite3.connect(tmp_path / "jm.db") as connection:
        assert connection.execute("SELECT count(*) FROM workspaces").fetchone() == (3,)


def test_serve_publish_publishes_the_folder_over_a_newer_version_from_the_api(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    folder = write(tmp_path / "ws", files(smtp.port, "first"))
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    with Journeyman(folder, db, tmp_path, env=SECRETS) as server:
        put_workspace(server.start().url, files(smtp.port, "fixed"))
        assert server.stop() == 0
    with Serve(folder, db, tmp_path / "again", env=SECRETS, options=("--publish",)) as server:
        (tmp_path / "again").mkdir()
        url = server.start().url
        assert "workspace  version 3, published from the folder now" in server.output
        sign_up(url, "ada")
        go(url, "ada")
        assert wait_until(lambda: subject_to(smtp, "ada"), "ada's note") == "Note first"


# ---------------------------------------------------------------- the rule, on the Runtime


def loaded(texts: dict[str, str], env: dict[str, str] | None = None) -> Workspace:
    workspace = load_texts(texts, env=env).workspace
    assert workspace is not None
    return workspace


async def started(db: Path, texts: dict[str, str], **options: Any) -> Runtime:
    """A runtime on ``db`` started from a folder that holds ``texts``."""
    env = options.pop("env", {})
    runtime = Runtime(loaded(texts, env), open_store(f"sqlite:///{db}"), {}, env=env)
    runtime.always_publish = options.pop("always_publish", False)
    await runtime.start()
    return runtime


def test_a_console_publish_of_the_folder_counts_as_the_folder(tmp_path: Path) -> None:
    db, first, edited = tmp_path / "jm.db", files(2525, "first"), files(2525, "edited")

    async def test() -> None:
        runtime = await started(db, first)
        await runtime.publish(loaded(edited), source="console")  # the folder, edited on disk
        await runtime.stop()
        # The folder as the console published it: no new version, nothing kept.
        runtime = await started(db, edited)
        assert (runtime.version, runtime.kept, runtime.published_at_start) == (2, None, False)
        await runtime.stop()
        # The folder changed back since (a git checkout): it is published, as always.
        runtime = await started(db, first)
        assert (runtime.version, runtime.kept, runtime.published_at_start) == (3, None, True)
        await runtime.stop()

    asyncio.run(test())


def test_a_database_that_never_recorded_a_folder_keeps_a_newer_api_version(
    tmp_path: Path,
) -> None:
    db, first = tmp_path / "jm.db", files(2525, "first")

    async def test() -> None:
        runtime = await started(db, first)
        await runtime.publish(loaded(files(2525, "fixed")))
        await runtime.publish(loaded(files(2525, "fixed again")))
        await runtime.stop()
        with sqlite3.connect(db) as connection:  # as a database published before the record
            connection.execute("DELETE FROM meta WHERE key LIKE 'setting:workspace_%'")
        runtime = await started(db, first)
        assert runtime.kept is not None
        assert (runtime.version, runtime.kept.folder_version) == (3, 1)
        assert runtime.kept.origin is None  # not recorded: the banner says "after the folder"
        assert "The fixed again text" in runtime.kept.published.files["template.yaml"]
        await runtime.stop()

    asyncio.run(test())


def test_a_newer_version_that_cannot_run_here_stops_the_start_and_names_publish(
    tmp_path: Path,
) -> None:
    db, first = tmp_path / "jm.db", files(2525, "first")
    texting = {**first, "sms.yaml": "kind: template\nname: hi_sms\nchannel: sms\nbody: Hi\n"}
    del texting["channels.yaml"]  # no channel for sms, nor email: production refuses it
    production = {"JOURNEYMAN_MODE": "production", **SECRETS}

    async def test() -> None:
        runtime = await started(db, first, env=production)
        await runtime.publish(loaded(texting))
        await runtime.stop()
        store = open_store(f"sqlite:///{db}")
        runtime = Runtime(loaded(first, production), store, {}, env=production)
        with pytest.raises(UnloadableWorkspace, match="start with --publish"):
            await runtime.start()
        await store.close()
        runtime = await started(db, first, env=production, always_publish=True)
        assert (runtime.version, runtime.kept, runtime.published_at_start) == (3, None, True)
        await runtime.stop()

    asyncio.run(test())
