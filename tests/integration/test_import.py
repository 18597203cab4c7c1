"""Bulk imports: `journeyman import` run as a user runs it (a child process), and
`POST /v1/import` against a real `journeyman serve`, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from journeyman.runtime.importing import Checkpoint
from journeyman.storage import open_store
from journeyman.storage.base import Database, StoredEvent
from tests.conftest import BASE, write_workspace
from tests.servers import WRITE_KEY, Journeyman, child_env, spawn
from tests.waiting import wait_until

pytestmark = pytest.mark.durable  # the import runs in another process than the test

T = TypeVar("T")

JOURNEY = """
kind: journey
name: hello
entry: {event: signed_up}
steps:
  - id: wait
    wait: 1d
  - id: done
    end: greeted
"""

PRO_ONLY = """
kind: journey
name: pro_welcome
entry:
  event: purchased
  when: profile.plan == "pro"
steps:
  - id: wait
    wait: 1d
  - id: done
    end: welcomed
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return write_workspace(tmp_path / "ws", BASE, JOURNEY, PRO_ONLY)


def import_command(kind: str, file: Path, db: str, workspace: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "journeyman",
        "import",
        kind,
        str(file),
        "--db",
        db,
        "--workspace",
        str(workspace),
        *extra,
    ]


def run_import(
    kind: str, file: Path, db: str, workspace: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        import_command(kind, file, db, workspace, *extra),
        capture_output=True,
        text=True,
        env=child_env({}),
        timeout=300,
        check=False,
    )


def with_store(url: str, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        store = open_store(url)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def history(url: str, profile_id: str) -> list[StoredEvent]:
    return with_store(url, lambda store: store.history(profile_id, limit=100_000))


def events_kept(url: str) -> int:
    async def count(store: Database) -> int:
        return int(await store._value("SELECT count(*) FROM events"))  # type: ignore[attr-defined]

    return with_store(url, count)


def running_journeys(url: str, profile_id: str) -> list[str]:
    async def of(store: Database) -> list[str]:
        return [i.journey for i in await store.instances_of(profile_id)]

    return with_store(url, of)


def ndjson(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


def signups(count: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for n in range(start, start + count):
        yield {
            "type": "track",
            "event": "signed_up",
            "userId": f"u{n % 1000}",
            "messageId": f"m{n}",
            "timestamp": "2025-06-01T12:00:00Z",
            "properties": {"plan": "pro"},
        }


def test_imported_events_land_in_history_and_start_no_journey(
    tmp_path: Path, store_url: str, workspace: Path
) -> None:
    file = ndjson(tmp_path / "events.ndjson", list(signups(3)))
    done = run_import("events", file, store_url, workspace)
    assert done.returncode == 0, done.stderr
    assert "3 imported" in done.stdout
    [kept] = history(store_url, "u1")
    assert kept.event.name == "signed_up"
    assert kept.event.properties == {"plan": "pro"}
    assert kept.event.timestamp.isoformat() == "2025-06-01T12:00:00+00:00"
    assert running_journeys(store_url, "u1") == []


BUYERS = """
kind: segment
name: buyers
when: count("purchased", "30d") >= 2
---
kind: journey
name: thank_buyers
entry: {segment: buyers}
steps:
  - id: wait
    wait: 1d
  - id: done
    end: thanked
"""


def test_imported_history_moves_profiles_into_segments_but_starts_no_journey(
    tmp_path: Path, store_url: str
) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, JOURNEY, BUYERS)
    now = datetime.now(UTC)

    def order(user: str, n: int, days_ago: int) -> dict[str, Any]:
        at = (now - timedelta(days=days_ago)).isoformat()
        return {
            "type": "track",
            "event": "purchased",
            "userId": user,
            "timestamp": at,
            "messageId": f"{user}-{n}",
            "properties": {"total": 10},
        }

    rows = [order("recent", 1, 3), order("recent", 2, 20), order("once", 1, 2)]
    rows += [order("long_ago", 1, 60), order("long_ago", 2, 90)]
    done = run_import("events", ndjson(tmp_path / "orders.ndjson", rows), store_url, folder)
    assert done.returncode == 0, done.stderr

    def segments(profile_id: str) -> list[str]:
        async def of(store: Database) -> list[str]:
            profile = await store.profile(profile_id)
            return sorted(profile.segments) if profile is not None else []

        return with_store(store_url, of)

    assert segments("recent") == ["buyers"]
    assert segments("once") == []
    assert segments("long_ago") == []
    # newest first: the segment was entered as the import ran
    assert [e.event.name for e in history(store_url, "recent")] == [
        "segment_entered",
        "purchased",
        "purchased",
    ]
    for user in ("recent", "once", "long_ago"):
        assert running_journeys(store_url, user) == []


def test_trigger_runs_imported_events_through_journeys(
    tmp_path: Path, store_url: str, workspace: Path
) -> None:
    file = ndjson(tmp_path / "events.ndjson", list(signups(2)))
    done = run_import("events", file, store_url, workspace, "--trigger")
    assert done.returncode == 0, done.stderr
    assert running_journeys(store_url, "u0") == ["hello"]
    assert running_journeys(store_url, "u1") == ["hello"]


def test_a_second_run_imports_nothing_twice(
    tmp_path: Path, store_url: str, workspace: Path
) -> None:
    rows: list[Any] = list(signups(50))
    rows.append({"event": "purchased", "userId": "u7", "properties": {"order_id": "o1"}})
    file = ndjson(tmp_path / "events.ndjson", rows)
    first = run_import("events", file, store_url, workspace)
    assert "51 imported" in first.stdout, first.stdout + first.stderr
    again = run_import("events", file, store_url, workspace, "--restart")
    assert again.returncode == 0, again.stderr
    assert "0 imported, 51 already there" in again.stdout
    assert events_kept(store_url) == 51


def test_a_key_column_is_the_messageid_of_csv_rows(
    tmp_path: Path, store_url: str, workspace: Path
) -> None:
    file = tmp_path / "orders.csv"
    file.write_text(
        "event,userId,order_id,total\n"
        "purchased,u1,o-1,10.5\n"
        "purchased,u1,o-2,20\n"
        "purchased,u1,o-1,10.5\n"  # the same order again
    )
    done = run_import("events", file, store_url, workspace, "--key", "order_id")
    assert done.returncode == 0, done.stderr
    assert "2 imported, 1 already there" in done.stdout
    totals = sorted(e.event.properties["total"] for e in history(store_url, "u1"))
    assert totals == [10.5, 20]  # numbers, as the schema wants them


def test_rejected_rows_go_to_the_rejects_file_with_their_reasons(
    tmp_path: Path, store_url: str, workspace: Path
) -> None:
    file = ndjson(
        tmp_path / "events.ndjson",
        [
            {"event": "purchased", "userId": "u1", "properties": {"total": 5}},
            {"event": "purchased", "userId": "u1", "properties": {"total": "five"}},
            {"event": "purchased", "properties": {"total": 1}},
            "{not json\n",
            {"event": "signed_up", "userId": "u2"},
        ],
    )
    done = run_import("events", file, store_url, workspace)
    assert done.returncode == 0, done.stderr
    assert "2 imported" in done.stdout
    assert "3 rejected" in done.stdout
    rejects = tmp_path / "events.ndjson.rejects.ndjson"
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [line["row"] for line in lines] == [2, 3, 4]
    assert [line["errors"][0]["field"] for line in lines] == [
        "properties.total",
        "userId",
        "body",
    ]
    assert lines[0]["errors"][0]["rule"] == "type"
    assert json.loads(lines[0]["input"])["properties"] == {"total": "five"}


def test_an_interrupted_import_resumes_and_the_totals_are_exact(
    tmp_path: Path, store_url: str, workspace: Path
) -> None:
    total = 300_000  # several seconds of work: the kill lands before the end
    rows: list[Any] = list(signups(total))
    rows[10] = {"event": "purchased", "userId": "u1", "properties": {"total": "bad"}}
    file = ndjson(tmp_path / "big.ndjson", rows)
    log = tmp_path / "import.log"
    process = spawn(
        import_command("events", file, store_url, workspace), log, child_env({}), tmp_path
    )
    try:
        key = Checkpoint.key("events", file)

        def kept() -> str | None:
            return with_store(store_url, lambda store: store.get_setting(key))

        wait_until(lambda: kept() or process.poll() is not None, "a checkpoint")
        process.kill()
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    assert events_kept(store_url) < total - 1, "the import finished before it was killed"
    done = run_import("events", file, store_url, workspace)
    assert done.returncode == 0, done.stderr
    assert "resumed after row" in done.stdout
    assert f"{total:,} rows read" in done.stdout
    assert events_kept(store_url) == total - 1
    rejects = (tmp_path / "big.ndjson.rejects.ndjson").read_text().splitlines()
    assert [json.loads(line)["row"] for line in rejects] == [11]


def test_profiles_are_upserts_of_traits(tmp_path: Path, store_url: str, workspace: Path) -> None:
    first = tmp_path / "profiles.csv"
    # as a spreadsheet saves it: a byte order mark first
    first.write_text("\ufeffuserId,email,plan,seats\nu1,Ada@Example.com,free,3\nu2,,pro,\n")
    assert run_import("profiles", first, store_url, workspace).returncode == 0
    second = ndjson(tmp_path / "more.ndjson", [{"userId": "u1", "traits": {"plan": "pro"}}])
    done = run_import("profiles", second, store_url, workspace)
    assert done.returncode == 0, done.stderr

    async def traits(store: Database) -> list[dict[str, Any]]:
        found = [await store.profile(p) for p in ("u1", "u2")]
        return [p.traits for p in found if p is not None]

    assert with_store(store_url, traits) == [
        {"email": "Ada@Example.com", "plan": "pro", "seats": 3},
        {"plan": "pro"},
    ]
    assert running_journeys(store_url, "u1") == []


def test_the_command_says_clearly_what_it_cannot_do(tmp_path: Path, workspace: Path) -> None:
    db = f"sqlite:///{tmp_path / 'j.db'}"
    missing = run_import("events", tmp_path / "nowhere.ndjson", db, workspace)
    assert missing.returncode == 2
    assert "nowhere.ndjson" in missing.stderr
    assert "does not exist" in missing.stderr
    odd = tmp_path / "events.txt"
    odd.write_text("{}\n")
    unknown = run_import("events", odd, db, workspace)
    assert unknown.returncode == 2
    assert "cannot tell the format of events.txt" in unknown.stderr
    bad_db = run_import("events", odd, "mysql://somewhere/db", workspace, "--format", "ndjson")
    assert bad_db.returncode == 1
    assert "mysql://" in bad_db.stderr
    unpublished = subprocess.run(
        [*import_command("events", odd, db, workspace)[:8], "--format", "ndjson"],
        capture_output=True,
        text=True,
        env=child_env({}),
        timeout=60,
        check=False,
    )
    assert unpublished.returncode == 1
    assert "no workspace was published" in unpublished.stderr


# over HTTP, against a real serve


@pytest.fixture
def server(tmp_path: Path, store_url: str, workspace: Path) -> Iterator[Journeyman]:
    with Journeyman(workspace, store_url, tmp_path) as running:
        yield running.start()


def post_import(client: httpx.Client, body: bytes, **params: str) -> dict[str, Any]:
    answer = client.post("/v1/import", params=params, content=body)
    assert answer.status_code == 202, answer.text
    found: dict[str, Any] = answer.json()
    assert answer.headers["location"] == f"/v1/imports/{found['id']}"
    return found


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/v1/imports/{job_id}").json()
        return job if job["status"] != "running" else None

    return wait_until(check, "the import to finish", timeout=60)


def test_an_http_import_runs_as_a_job_until_done(server: Journeyman) -> None:
    rows = [json.dumps(r) for r in signups(2000)] + ['{"event": "signed_up"}']
    body = gzip.compress("\n".join(rows).encode())
    with server.client() as client:
        answer = client.post(
            "/v1/import",
            params={"kind": "events"},
            content=body,
            headers={"Content-Encoding": "gzip"},
        )
        assert answer.status_code == 202, answer.text
        job = finished(client, answer.json()["id"])
        assert job["status"] == "done", job
        assert (job["read"], job["imported"], job["rejected"]) == (2001, 2000, 1)
        assert job["rejects"][0]["errors"][0]["field"] == "userId"
        profile = client.get("/v1/profiles/u1").json()
        assert profile["instances"] == []  # imported history starts no journey
        listed = client.get("/v1/imports").json()["imports"]
        assert [j["id"] for j in listed] == [job["id"]]
        plain = "\n".join(rows).encode()
        again = finished(client, post_import(client, plain, kind="events")["id"])
        assert (again["imported"], again["duplicate"]) == (0, 2000)


def test_imported_traits_are_what_a_journey_condition_reads(server: Journeyman) -> None:
    rows = [
        {"userId": "u1", "traits": {"plan": "pro"}},
        {"userId": "u2", "traits": {"plan": "free"}},
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    with server.client() as client:
        job = finished(client, post_import(client, body, kind="profiles")["id"])
        assert (job["status"], job["imported"]) == ("done", 2), job
    with server.client(WRITE_KEY) as writer:
        for user in ("u1", "u2"):
            sent = writer.post("/v1/track", json={"userId": user, "event": "purchased"})
            assert sent.status_code == 202, sent.text
    with server.client() as client:
        journeys = {
            user: [i["journey"] for i in client.get(f"/v1/profiles/{user}").json()["instances"]]
            for user in ("u1", "u2")
        }
    assert journeys == {"u1": ["pro_welcome"], "u2": []}


def test_http_import_with_trigger_starts_journeys(server: Journeyman) -> None:
    body = "".join(json.dumps(r) + "\n" for r in signups(3)).encode()
    with server.client() as client:
        job = finished(client, post_import(client, body, kind="events", trigger="true")["id"])
        assert job["status"] == "done", job
        instances = client.get("/v1/profiles/u2").json()["instances"]
        assert [i["journey"] for i in instances] == ["hello"]


def test_bad_import_requests_get_a_4xx_naming_the_field(server: Journeyman) -> None:
    with server.client() as client:
        cases = [
            ({}, b"{}", None, 400, "kind"),
            ({"kind": "people"}, b"{}", None, 400, "kind"),
            ({"kind": "events", "format": "xml"}, b"{}", None, 400, "format"),
            ({"kind": "events", "trigger": "maybe"}, b"{}", None, 400, "trigger"),
            ({"kind": "events"}, b"", None, 400, "body"),
            ({"kind": "events"}, b"{}", "br", 415, "Content-Encoding"),
            ({"kind": "events"}, b"not gzip", "gzip", 400, "body"),
        ]
        for params, body, encoding, status, field in cases:
            headers = {"Content-Encoding": encoding} if encoding else {}
            answer = client.post("/v1/import", params=params, content=body, headers=headers)
            assert answer.status_code == status, (params, answer.text)
            assert answer.json()["error"]["field"] == field, answer.text
        assert client.get("/v1/imports/nope").status_code == 404
        assert client.get("/v1/imports").json()["imports"] == []
    with httpx.Client(base_url=server.url, trust_env=False) as anonymous:
        assert anonymous.post("/v1/import", params={"kind": "events"}).status_code == 401


def test_a_job_running_when_serve_is_killed_is_marked_interrupted(
    server: Journeyman,
) -> None:
    body = "".join(json.dumps(r) + "\n" for r in signups(200_000)).encode()
    with server.client() as client:
        job_id = post_import(client, body, kind="events")["id"]

        def moving() -> bool:
            job = client.get(f"/v1/imports/{job_id}").json()
            return bool(job["read"] > 0 or job["status"] != "running")

        wait_until(moving, "the import to move")
    server.kill()
    server.start()
    with server.client() as client:
        job = client.get(f"/v1/imports/{job_id}").json()
    assert job["status"] == "interrupted", job
    assert "post the file again" in job["error"]
