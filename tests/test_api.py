"""The HTTP API in-process: ingest, keys, errors and admin reads over a live runtime."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from journeyman.api import Keys, create_app
from journeyman.channels.file import FileChannel
from journeyman.runtime.service import Runtime
from journeyman.storage.sqlite import SQLiteStore
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace

KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}
ADMIN = {"Authorization": "Bearer a-key"}

JOURNEY = """
kind: journey
name: hello
entry: {event: signed_up}
steps:
  - id: pause
    wait: 1d
  - id: greet
    send: hello_email
"""

Client = httpx.AsyncClient


def run_api(tmp_path: Path, test: Callable[[Client, Runtime], Awaitable[None]]) -> None:
    """Run ``test`` against a runtime on a SQLite file in ``tmp_path``."""
    workspace = load_workspace(write_workspace(tmp_path / "ws", BASE, JOURNEY)).workspace
    assert workspace is not None

    async def main() -> None:
        channels = {"email": FileChannel("email", tmp_path / "mail.jsonl")}
        runtime = Runtime(workspace, SQLiteStore(tmp_path / "j.db"), channels, env={})
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                await test(client, runtime)
        finally:
            await runtime.stop()

    asyncio.run(main())


def post(client: Client, path: str, body: Any, headers: dict[str, str] = WRITE) -> Any:
    return client.post(path, json=body, headers=headers)


def test_a_track_is_acknowledged_after_commit_and_starts_the_journey(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        identify = {"userId": "u1", "traits": {"email": "u1@example.com"}}
        assert (await post(client, "/v1/identify", identify)).status_code == 202
        answer = await post(client, "/v1/track", {"userId": "u1", "event": "signed_up"})
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1})
        profile = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()
        assert profile["traits"] == {"email": "u1@example.com"}
        (instance,) = profile["instances"]
        assert (instance["journey"], instance["status"], instance["step"]) == (
            "hello",
            "waiting",
            "pause",
        )
        assert [e["name"] for e in profile["events"]] == ["signed_up", "identify"]

    run_api(tmp_path, test)


def test_a_repeated_message_id_is_accepted_and_ignored(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        body = {"userId": "u1", "event": "signed_up", "messageId": "m-1"}
        for _ in range(2):
            assert (await post(client, "/v1/track", body)).status_code == 202
        profile = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()
        assert len(profile["events"]) == 1
        assert runtime.processor.stats.events_duplicate == 1

    run_api(tmp_path, test)


def test_keys_are_checked_and_basic_auth_takes_the_key_as_user_name(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        body = {"userId": "u1", "event": "signed_up"}
        assert (await post(client, "/v1/track", body, {})).status_code == 401
        assert (
            await post(client, "/v1/track", body, {"Authorization": "Bearer no"})
        ).status_code == 401
        basic = base64.b64encode(b"w-key:").decode()
        answer = await post(client, "/v1/track", body, {"Authorization": f"Basic {basic}"})
        assert answer.status_code == 202
        assert (await client.get("/v1/profiles/u1", headers=WRITE)).status_code == 401

    run_api(tmp_path, test)


def test_bad_input_names_the_field_and_the_rule_and_stores_nothing(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        cases = [
            (
                {"userId": "u1", "event": "purchased", "properties": {"total": "lots"}},
                "properties.total",
                "type",
            ),
            ({"event": "signed_up"}, "userId", "identity"),
            ({"userId": "u1"}, "event", "required"),
            ({"userId": "u1", "event": "signed_up", "timestamp": "soon"}, "timestamp", "format"),
        ]
        for body, field, rule in cases:
            answer = await post(client, "/v1/track", body)
            assert answer.status_code == 400, body
            assert answer.json()["error"]["field"] == field
            assert answer.json()["error"]["rule"] == rule
        answer = await client.post("/v1/track", content=b"{nope", headers=WRITE)
        assert (answer.status_code, answer.json()["error"]["rule"]) == (400, "json")
        assert (await client.get("/v1/profiles/u1", headers=ADMIN)).status_code == 404

    run_api(tmp_path, test)


def test_a_batch_keeps_the_valid_calls_and_lists_the_rejected(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        batch = [
            {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}},
            {"type": "track", "userId": "u1", "event": "purchased", "properties": {"total": "x"}},
            {"type": "page", "userId": "u1"},
            {"type": "track", "userId": "u1", "event": "signed_up"},
        ]
        answer = await post(client, "/v1/batch", {"batch": batch})
        assert answer.status_code == 202
        assert answer.json()["accepted"] == 2
        assert [(r["index"], r["field"]) for r in answer.json()["rejected"]] == [
            (1, "properties.total"),
            (2, "type"),
        ]

    run_api(tmp_path, test)


def test_health_metrics_and_openapi_need_no_key(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        await post(client, "/v1/track", {"userId": "u1", "event": "signed_up"})
        metrics = (await client.get("/metrics")).text
        assert "journeyman_events_accepted_total 1" in metrics
        spec = (await client.get("/openapi.json")).json()
        assert "/v1/track" in spec["paths"]

    run_api(tmp_path, test)
