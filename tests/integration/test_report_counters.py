"""Where the report's step numbers come from, on every backend: the report (API, CSV and
the console's Report tab) reads the counters and never the step log nor the instances;
and a database from before the steps were counted gets them from its step log once, at
migration, equal to what counting them all along would have given."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from journeyman.api import Keys, create_app
from journeyman.channels.file import FileChannel
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store, sqlite_path
from journeyman.storage.migrations import POSTGRES, SQLITE, STEP_COUNTERS_WHAT
from journeyman.storage.sqlite import SQLiteStore
from journeyman.web import ConsoleSettings
from journeyman.workspace import load_workspace
from tests.conftest import write_workspace
from tests.integration.test_report_funnel import BUYERS, FIRST, PRO, WORKSPACE
from tests.unit.test_web import log_in
from tests.waiting import eventually

KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}
ADMIN = {"Authorization": "Bearer a-key"}
Client = httpx.AsyncClient
# What reads the step log or the instances: a report must call none of them.
SCANS = {"step_counts", "step_records", "trace", "instances_of", "running_of", "instance_counts"}


def in_process(
    tmp_path: Path, store_url: str, test: Callable[[Client, Runtime], Awaitable[None]]
) -> None:
    """Run ``test`` with a client of the whole app (console too) over a runtime on
    ``store_url``; the workspace has no SMTP server to reach: email goes to a file."""
    folder = write_workspace(tmp_path / "ws", WORKSPACE)
    workspace = load_workspace(folder).workspace
    assert workspace is not None

    async def main() -> None:
        channels = {"email": FileChannel("email", tmp_path / "mail.jsonl")}
        runtime = Runtime(workspace, open_store(store_url), channels, env={}, root=folder)
        await runtime.start()
        try:
            app = create_app(runtime, KEYS, ConsoleSettings(users={}))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://j.test") as client:
                await test(client, runtime)
        finally:
            await runtime.stop()

    asyncio.run(main())


async def scenario(client: Client) -> dict[str, Any]:
    """Sign-ups (pro and free, some held out), exits while waiting, and a merge that ends
    an instance; answers the report once it has counted them all."""
    for index, user in enumerate(FIRST):
        plan = "pro" if user in PRO else "free"
        for call, body in (
            ("identify", {"userId": user, "traits": {"email": f"{user}@x.test"}}),
            ("track", {"userId": user, "event": "signed_up", "properties": {"plan": plan}}),
        ):
            answer = await client.post(f"/v1/{call}", json=body, headers=WRITE)
            assert answer.status_code == 202, (index, answer.text)
    for user in BUYERS:
        body = {"userId": user, "event": "bought"}
        assert (await client.post("/v1/track", json=body, headers=WRITE)).status_code == 202
    body = {"userId": "anon", "event": "signed_up", "properties": {"plan": "pro"}}
    assert (await client.post("/v1/track", json=body, headers=WRITE)).status_code == 202
    link = {"userId": "a02", "anonymousId": "anon"}  # a02 waits too: anon's instance ends
    assert (await client.post("/v1/identify", json=link, headers=WRITE)).status_code == 202

    async def counted() -> dict[str, Any] | None:
        found = await report(client)
        ends = found["ended"]
        done = ends.get("exited") == len(BUYERS) and ends.get("merged") == 1
        return found if done and found["entries"] == len(FIRST) + 1 else None

    return await eventually(counted, "the entries, exits and the merge")


async def report(client: Client) -> dict[str, Any]:
    answer = await client.get("/v1/journeys/flow/report", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


class Spy:
    """A read model that notes the name of every method asked of it."""

    def __init__(self, reads: Any) -> None:
        self.reads = reads
        self.asked: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.asked.add(name)
        return getattr(self.reads, name)


def test_the_report_reads_its_counters_and_never_the_step_log(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        found = await scenario(client)
        spy = Spy(runtime.reads)
        runtime.reads = spy  # type: ignore[assignment]
        statements = trace_sql(runtime)
        assert await report(client) == found
        csv = await client.get("/v1/journeys/flow/report.csv", headers=ADMIN)
        assert csv.status_code == 200
        assert (await log_in(client)).status_code == 303
        page = await client.get("/journeys/flow/report")
        assert page.status_code == 200
        assert 'aria-label="Funnel of the steps"' in page.text
        assert "counters" in spy.asked
        assert spy.asked.isdisjoint(SCANS), spy.asked & SCANS
        scans = [s for s in statements if " steps " in f"{s} " or " instances" in s]
        assert scans == []

    in_process(tmp_path, store_url, test)


def trace_sql(runtime: Runtime) -> list[str]:
    """Every SQL statement a SQLite store runs from now on (nothing for other stores)."""
    statements: list[str] = []
    store = runtime.store
    if isinstance(store, SQLiteStore):
        connections = [store.db, getattr(store, "_reader", None)]
        for connection in connections:
            if connection is not None:
                connection.set_trace_callback(statements.append)
    return statements


# a database from before


@pytest.mark.durable
def test_an_upgraded_database_gets_its_step_numbers_from_the_step_log_once(
    tmp_path: Path, store_url: str
) -> None:
    found: dict[str, Any] = {}

    async def first(client: Client, runtime: Runtime) -> None:
        found["before"] = await scenario(client)

    async def second(client: Client, runtime: Runtime) -> None:
        found["after"] = await report(client)

    in_process(tmp_path, store_url, first)
    before = found["before"]
    assert before["steps"][2]["numbers"]["left"] == len(BUYERS) + 1  # the exits, the merge
    asyncio.run(forget_step_counters(store_url))
    in_process(tmp_path, store_url, second)
    after = found["after"]
    for was, now in zip(before["steps"], after["steps"], strict=True):
        assert (now["id"], now["numbers"], now["counts"]) == (
            was["id"],
            was["numbers"],
            was["counts"],
        )
    assert after["ended"] == before["ended"]
    in_process(tmp_path, store_url, second)  # a migration runs once: nothing counts twice
    assert found["after"]["steps"] == after["steps"]


async def forget_step_counters(url: str) -> None:
    """Make the database what a journeyman from before the steps were counted left: no
    step counters of every instance (a ``sent`` that began late), no ends by merge, and
    the schema version before theirs."""
    steps = SQLITE if url.startswith("sqlite:") else POSTGRES
    theirs = next(m.version for m in steps if m.what == STEP_COUNTERS_WHAT)
    statements = [
        "DELETE FROM report_counters WHERE arm = '' "
        "AND (metric LIKE 'step:%' OR metric = 'ended:merged')",
        "INSERT INTO report_counters VALUES ('flow', 1, '', '', 'step:greet:sent', 1, 0)",
        # the steps from theirs on run again at the next open (the later ones are idempotent)
        f"UPDATE meta SET value = '{theirs - 1}' WHERE key = 'schema'",
    ]
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        assert path is not None
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            for statement in statements:
                db.execute(statement)
        return
    db = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await db.execute(statement)
    finally:
        await db.close()
