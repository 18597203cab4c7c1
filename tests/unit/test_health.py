"""``/healthz`` (liveness) and ``/readyz`` (readiness) tell a full disk from a healthy one.

The store is a SQLite file whose commits, or reads, fail on demand, as they do when the
disk is full or the database is gone.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

import journeyman.api
from journeyman.api import Keys, create_app
from journeyman.domain.core import Changes
from journeyman.runtime.service import Runtime
from journeyman.storage.sqlite import SQLiteStore
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace

KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}
ADMIN = {"Authorization": "Bearer a-key"}
FULL = "database or disk is full"

Client = httpx.AsyncClient


class FlakyStore(SQLiteStore):
    """A SQLite store whose commits (``full``) or reads (``gone``) fail while set, or whose
    commits meet a fault of journeyman's own (``faulty``: a bug, not the disk)."""

    full = False
    gone = False
    faulty = False

    async def commit(self, batch: Changes) -> None:
        if self.full:
            raise sqlite3.OperationalError(FULL)
        if self.faulty:
            raise TypeError("a fault in the code, not in the storage")
        await super().commit(batch)

    async def get_setting(self, key: str) -> str | None:
        if self.gone:
            raise sqlite3.OperationalError("unable to open database file")
        return await super().get_setting(key)


def run_api(tmp_path: Path, test: Callable[[Client, FlakyStore], Awaitable[None]]) -> None:
    workspace = load_workspace(write_workspace(tmp_path / "ws", BASE)).workspace
    assert workspace is not None

    async def main() -> None:
        store = FlakyStore(tmp_path / "j.db")
        runtime = Runtime(workspace, store, {}, env={})
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                await test(client, store)
        finally:
            store.full = store.gone = store.faulty = False
            await runtime.stop()

    asyncio.run(main())


async def track(client: Client) -> int:
    body = {"userId": "u1", "event": "signed_up"}
    return (await client.post("/v1/track", json=body, headers=WRITE)).status_code


def test_a_healthy_server_is_live_and_ready(tmp_path: Path) -> None:
    async def test(client: Client, store: FlakyStore) -> None:
        assert await track(client) == 202
        health = await client.get("/healthz")
        assert (health.status_code, health.json()) == (
            200,
            {"status": "ok", "storage": "ok", "backlog": 0},
        )
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready", "storage": "ok"})

    run_api(tmp_path, test)


def test_while_commits_fail_the_server_is_live_but_degraded_and_not_ready(
    tmp_path: Path,
) -> None:
    async def test(client: Client, store: FlakyStore) -> None:
        store.full = True
        assert await track(client) == 503

        health = await client.get("/healthz")
        assert health.status_code == 200  # alive: restarting would not free the disk
        assert health.json()["status"] == "degraded"
        assert health.json()["storage"] == f"failing: OperationalError: {FULL}"
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "unready",
            "storage": f"failing: OperationalError: {FULL}",
        }

        store.full = False  # the disk has room again: the next commit clears it
        assert await track(client) == 202
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/healthz")).json()["status"] == "ok"

    run_api(tmp_path, test)


def test_a_store_that_does_not_answer_makes_the_server_not_ready(tmp_path: Path) -> None:
    async def test(client: Client, store: FlakyStore) -> None:
        store.gone = True
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["storage"].startswith("failing: the store does not answer")
        assert (await client.get("/healthz")).status_code == 200

    run_api(tmp_path, test)


def test_a_failure_long_past_no_longer_keeps_the_server_out_of_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With nothing sent its way, a server kept unready would never learn that the disk
    # has room again: an old failure stops counting.
    async def test(client: Client, store: FlakyStore) -> None:
        store.full = True
        assert await track(client) == 503
        store.full = False
        assert (await client.get("/readyz")).status_code == 503
        monkeypatch.setattr(journeyman.api, "FAILURE_SECONDS", 0.0)
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/healthz")).json()["status"] == "ok"

    run_api(tmp_path, test)


def test_readiness_is_in_the_openapi_document(tmp_path: Path) -> None:
    async def test(client: Client, store: FlakyStore) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
        assert "/healthz" in paths

    run_api(tmp_path, test)


def test_a_fault_in_journeyman_answers_a_logged_500_not_a_503_to_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(client: Client, store: FlakyStore) -> None:
        store.faulty = True
        body = {"userId": "u1", "traits": {"plan": "pro"}}
        answer = await client.post("/v1/identify", json=body, headers=WRITE)
        assert answer.status_code == 500
        assert "retry-after" not in answer.headers
        assert answer.json()["error"]["rule"] == "internal"
        logged = [r for r in caplog.records if r.name == "journeyman.api" and r.exc_info]
        assert [type(r.exc_info[1]) for r in logged if r.exc_info] == [TypeError]
        events = (await client.get("/v1/events", headers=ADMIN)).json()["events"]
        assert [(e["status"], e["error"]["rule"]) for e in events] == [("rejected", "internal")]

        store.faulty = False
        assert (await client.post("/v1/identify", json=body, headers=WRITE)).status_code == 202

    run_api(tmp_path, test)
