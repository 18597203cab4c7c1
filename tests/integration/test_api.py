"""The HTTP API in-process: ingest, keys, errors and admin reads over a live runtime."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from journeyman.api import Keys, create_app
from journeyman.channels.file import FileChannel
from journeyman.clicks import TrackingLinks
from journeyman.ingest_api import Ingest
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store
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


def run_api(
    tmp_path: Path, store_url: str, test: Callable[[Client, Runtime], Awaitable[None]]
) -> None:
    """Run ``test`` against a runtime on a fresh database of the backend under test."""
    workspace = load_workspace(write_workspace(tmp_path / "ws", BASE, JOURNEY)).workspace
    assert workspace is not None

    async def main() -> None:
        channels = {"email": FileChannel("email", tmp_path / "mail.jsonl")}
        runtime = Runtime(workspace, open_store(store_url), channels, env={})
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                await test(client, runtime)
        finally:
            await runtime.stop()

    asyncio.run(main())


def post(
    client: Client, path: str, body: Any, headers: Mapping[str, str] | Mapping[bytes, bytes] = WRITE
) -> Any:
    return client.post(path, json=body, headers=headers)


def test_a_track_is_acknowledged_after_commit_and_starts_the_journey(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        identify = {"userId": "u1", "traits": {"email": "u1@example.com"}}
        assert (await post(client, "/v1/identify", identify)).status_code == 202
        answer = await post(client, "/v1/track", {"userId": "u1", "event": "signed_up"})
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1})
        profile = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()
        assert profile["traits"] == {"email": "u1@example.com"}
        assert profile["identities"] == {"userId": ["u1"], "email": ["u1@example.com"]}
        assert profile["consent"] == {
            "unsubscribed": False,
            "channels": {},
            "topics": {},
            "suppressed": {},
            "audit": [],
        }
        (instance,) = profile["instances"]
        assert (instance["journey"], instance["status"], instance["step"]) == (
            "hello",
            "waiting",
            "pause",
        )
        assert [e["name"] for e in profile["events"]] == ["signed_up", "identify"]

    run_api(tmp_path, store_url, test)


def test_a_repeated_message_id_is_accepted_and_ignored(tmp_path: Path, store_url: str) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        body = {"userId": "u1", "event": "signed_up", "messageId": "m-1"}
        for _ in range(2):
            assert (await post(client, "/v1/track", body)).status_code == 202
        profile = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()
        assert len(profile["events"]) == 1
        assert runtime.processor.stats.events_duplicate == 1

    run_api(tmp_path, store_url, test)


def test_keys_are_checked_and_basic_auth_takes_the_key_as_user_name(
    tmp_path: Path, store_url: str
) -> None:
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

    run_api(tmp_path, store_url, test)


def test_bad_input_names_the_field_and_the_rule_and_stores_nothing(
    tmp_path: Path, store_url: str
) -> None:
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
        answer = await client.get("/v1/track", headers=WRITE)
        assert (answer.status_code, answer.headers["allow"]) == (405, "POST")
        assert (await client.get("/v1/profiles/u1", headers=ADMIN)).status_code == 404

    run_api(tmp_path, store_url, test)


def test_a_batch_keeps_the_valid_calls_and_lists_the_rejected(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        batch = [
            {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}},
            {"type": "track", "userId": "u1", "event": "purchased", "properties": {"total": "x"}},
            {"type": "subscribe", "userId": "u1", "groupId": "acme"},
            {"type": "group", "userId": "u1", "groupId": "acme"},
            {"type": "track", "userId": "u1", "event": "signed_up"},
        ]
        answer = await post(client, "/v1/batch", {"batch": batch})
        assert answer.status_code == 200
        assert answer.json()["accepted"] == 3
        assert [(r["index"], r["field"]) for r in answer.json()["rejected"]] == [
            (1, "properties.total"),
            (2, "type"),
        ]

    run_api(tmp_path, store_url, test)


def test_the_event_tail_shows_accepted_and_rejected_calls_with_the_reason(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        track = {"userId": "u1", "event": "signed_up", "messageId": "m1"}
        await post(client, "/v1/track", track)
        await post(client, "/v1/track", track)
        bad = {"userId": "u2", "event": "purchased", "properties": {"total": "lots"}}
        await post(client, "/v1/track", bad)
        await client.post("/v1/track", content=b"{nope", headers=WRITE)
        batch = [{"type": "group", "userId": "u3"}, {"type": "track", "userId": "u3"}]
        await post(client, "/v1/batch", {"batch": batch})

        tail = (await client.get("/v1/events", headers=ADMIN)).json()["events"]
        assert [(e["status"], e["name"], e["profile_id"]) for e in tail] == [
            ("rejected", "", "u3"),
            ("rejected", "group", "u3"),
            ("rejected", "", ""),
            ("rejected", "purchased", "u2"),
            ("duplicate", "signed_up", "u1"),
            ("accepted", "signed_up", "u1"),
        ]
        assert tail[3]["error"] == {
            "field": "properties.total",
            "rule": "type",
            "message": tail[3]["error"]["message"],
        }
        assert '"lots"' in tail[3]["body"]
        assert [e["index"] for e in tail[:2]] == [1, 0]
        assert tail[2]["error"]["rule"] == "json"

        newest = tail[0]["seq"]
        await post(client, "/v1/track", {"userId": "u1", "event": "purchased"})
        newer = (await client.get("/v1/events", params={"after": newest}, headers=ADMIN)).json()
        assert [e["name"] for e in newer["events"]] == ["purchased"]
        only = {"profile": "u2", "status": "rejected"}
        found = (await client.get("/v1/events", params=only, headers=ADMIN)).json()["events"]
        assert [e["name"] for e in found] == ["purchased"]
        answer = await client.get("/v1/events", params={"status": "lost"}, headers=ADMIN)
        assert (answer.status_code, answer.json()["error"]["field"]) == (400, "status")
        assert (await client.get("/v1/events", headers=WRITE)).status_code == 401

    run_api(tmp_path, store_url, test)


def test_health_metrics_and_openapi_need_no_key(tmp_path: Path, store_url: str) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        await post(client, "/v1/track", {"userId": "u1", "event": "signed_up"})
        metrics = (await client.get("/metrics")).text
        assert "journeyman_events_accepted_total 1" in metrics
        spec = (await client.get("/openapi.json")).json()
        assert "/v1/track" in spec["paths"]
        page = await client.get("/docs")
        assert page.headers["content-type"].startswith("text/html")
        assert "<code>POST /v1/track</code>" in page.text
        assert "<script" not in page.text
        assert 'journeyman_instances{journey="hello",status="waiting"} 1' in metrics

    run_api(tmp_path, store_url, test)


def test_pause_holds_entries_resume_lets_them_in_and_stop_ends_instances(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        track = {"userId": "u1", "event": "signed_up"}
        await post(client, "/v1/track", track)
        answer = await client.post("/v1/journeys/hello/pause", headers=ADMIN)
        assert answer.json() == {"journey": "hello", "state": "paused"}
        await post(client, "/v1/track", {"userId": "u2", "event": "signed_up"})
        profile = (await client.get("/v1/profiles/u2", headers=ADMIN)).json()
        assert profile["instances"] == []
        assert profile["not_entered"][0]["detail"] == "the journey is paused"
        journeys = (await client.get("/v1/journeys", headers=ADMIN)).json()["journeys"]
        assert journeys[0]["state"] == "paused"
        answer = await client.post("/v1/journeys/hello/resume", headers=ADMIN)
        assert answer.json()["state"] == "active"
        answer = await client.post("/v1/journeys/hello/stop", headers=ADMIN)
        assert answer.json() == {"journey": "hello", "state": "stopped", "stopped": 1}
        (instance,) = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()["instances"]
        assert (instance["status"], instance["end_state"]) == ("ended", "stopped")
        assert (await client.post("/v1/journeys/hello/explode", headers=ADMIN)).status_code == 404
        assert (await client.post("/v1/journeys/nope/pause", headers=ADMIN)).status_code == 404

    run_api(tmp_path, store_url, test)


CHANGED = JOURNEY.replace("wait: 1d", "wait: 2d")


def test_publishing_a_changed_journey_makes_a_version_and_old_instances_keep_theirs(
    tmp_path: Path,
    store_url: str,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await post(client, "/v1/track", {"userId": "u1", "event": "signed_up"})
        files = {"base.yaml": BASE, "journey.yaml": CHANGED}
        dry = await client.put("/v1/workspace?dry_run=true", json={"files": files}, headers=ADMIN)
        assert dry.json()["published"] is False
        assert dry.json()["plan"]["changed"] == ["hello"]
        assert runtime.workspace.journeys["hello"].version == 1
        answer = await client.put("/v1/workspace", json={"files": files}, headers=ADMIN)
        assert answer.status_code == 200
        assert answer.json()["plan"]["versions"] == {"hello": 2}
        await post(client, "/v1/track", {"userId": "u2", "event": "signed_up"})
        versions = {}
        for user in ("u1", "u2"):
            profile = (await client.get(f"/v1/profiles/{user}", headers=ADMIN)).json()
            versions[user] = profile["instances"][0]["version"]
        assert versions == {"u1": 1, "u2": 2}
        again = await client.put("/v1/workspace", json={"files": files}, headers=ADMIN)
        assert again.json()["plan"]["unchanged"] == ["hello"]

    run_api(tmp_path, store_url, test)


def test_publishing_a_broken_workspace_changes_nothing_and_lists_the_problems(
    tmp_path: Path,
    store_url: str,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        files = {"base.yaml": BASE, "journey.yaml": JOURNEY.replace("hello_email", "nope")}
        answer = await client.put("/v1/workspace", json={"files": files}, headers=ADMIN)
        assert answer.status_code == 422
        assert answer.json()["published"] is False
        assert "template 'nope' is not defined" in answer.json()["problems"][0]["message"]
        assert runtime.workspace.journeys["hello"].version == 1
        bad = await client.put("/v1/workspace", json={"files": ["x"]}, headers=ADMIN)
        assert (bad.status_code, bad.json()["error"]["field"]) == (400, "files")

    run_api(tmp_path, store_url, test)


def test_a_journey_shows_its_definition_and_live_counts_per_step(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for user in ("u1", "u2"):
            await post(client, "/v1/track", {"userId": user, "event": "signed_up"})
        journey = (await client.get("/v1/journeys/hello", headers=ADMIN)).json()
        assert journey["entered"] == 2
        pause = journey["steps"][0]
        assert pause["id"] == "pause"
        assert pause["counts"]["waiting_now"] == 2
        assert journey["definition"]["name"] == "hello"

    run_api(tmp_path, store_url, test)


def test_every_route_is_in_the_openapi_document(tmp_path: Path, store_url: str) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        spec = (await client.get("/openapi.json")).json()
        app = create_app(runtime, KEYS)
        assert isinstance(app, Ingest)
        assert isinstance(app.app, TrackingLinks)
        assert isinstance(app.app.app, Starlette)
        # the ingest fast path and the tracking links answer their own paths; the console
        # is mounted at /
        api = [route for route in app.app.app.routes if isinstance(route, Route)]
        paths = {re.sub(r":\w+}", "}", route.path) for route in api}
        calls = ("track", "identify", "page", "screen", "alias", "group", "batch")
        # and the browser libraries' own (journeyman.browsers)
        browsers = {"/v1/t", "/v1/i", "/v1/p", "/v1/s", "/v1/a", "/v1/g", "/v1/b"}
        assert set(app.paths) == {f"/v1/{call}" for call in calls} | browsers | {"/beacon/v1/batch"}
        links = {f"{prefix}/{{token}}" for prefix in app.app.routes}
        assert links == {"/c/{token}", "/o/{token}"}
        assert paths | set(app.paths) | links == set(spec["paths"])

    run_api(tmp_path, store_url, test)
