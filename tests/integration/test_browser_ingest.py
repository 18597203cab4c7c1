"""Ingest from web pages, in-process: the browser libraries' paths, the client key and what
the workspace's ``browser:`` settings let it send, CORS for the configured origins only,
the per-address rate limit, and the attacks on them (forged keys, secret keys in a page,
other origins, reads with the client key)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from journeyman.api import Keys, create_app
from journeyman.channels.file import FileChannel
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace

KEYS = Keys(write="w-key", admin="a-key", client="c-key")
ADMIN = {"Authorization": "Bearer a-key"}
SHOP = "http://shop.test:8080"
PAGE = {"Origin": SHOP, "Content-Type": "text/plain"}

JOURNEY = """
kind: journey
name: hello
entry: {event: trial_started}
steps:
  - id: pause
    wait: 1d
  - id: greet
    send: hello_email
---
kind: event
name: trial_started
identity: anonymousId
schema: {type: object, properties: {plan: {type: string}}}
---
kind: event
name: page
identity: anonymousId
---
kind: settings
browser:
  traits: [firstName, plan]
  rate: 1
  burst: 40
"""

Client = httpx.AsyncClient


def run_api(
    tmp_path: Path,
    store_url: str,
    test: Callable[[Client, Runtime], Awaitable[None]],
    *documents: str,
) -> None:
    """Run ``test`` against a runtime whose API lets pages of SHOP send."""
    folder = write_workspace(tmp_path / "ws", BASE, *(documents or (JOURNEY,)))
    workspace = load_workspace(folder).workspace
    assert workspace is not None

    async def main() -> None:
        channels = {"email": FileChannel("email", tmp_path / "mail.jsonl")}
        runtime = Runtime(workspace, open_store(store_url), channels, env={})
        await runtime.start()
        try:
            app = create_app(runtime, KEYS, origins=[SHOP])
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                await test(client, runtime)
        finally:
            await runtime.stop()

    asyncio.run(main())


def send(
    client: Client, path: str, body: Any, headers: Mapping[str, str] = PAGE
) -> Awaitable[httpx.Response]:
    """A call as a browser library sends it: JSON as text/plain."""
    return client.post(path, content=json.dumps(body), headers=dict(headers))


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


async def profile(client: Client, profile_id: str) -> Any:
    answer = await client.get(f"/v1/profiles/{profile_id}", headers=ADMIN)
    return answer.json() if answer.status_code == 200 else None


def test_segment_browser_calls_with_the_client_key_land_on_the_profile_and_start_a_journey(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        key = {"writeKey": "c-key", "anonymousId": "anon-1"}
        page = await send(client, "/v1/p", {**key, "name": "Home", "properties": {}})
        track = {**key, "event": "trial_started", "properties": {"plan": "pro"}}
        tracked = await send(client, "/v1/t", track)
        identify = {**key, "traits": {"firstName": "Ada"}}
        identified = await send(
            client, "/v1/i", identify, {**PAGE, "Authorization": basic("c-key")}
        )
        for answer in (page, tracked, identified):
            assert answer.status_code == 202, answer.text
            assert answer.headers["access-control-allow-origin"] == SHOP
            assert "retry-after" in answer.headers["access-control-expose-headers"]
        found = await profile(client, "anon-1")
        assert found["traits"]["firstName"] == "Ada"
        events = (await client.get("/v1/events?profile=anon-1", headers=ADMIN)).json()["events"]
        assert {e["name"] for e in events} >= {"page", "trial_started", "identify"}
        assert await runtime.reads.instance_counts() == {("hello", "waiting"): 1}

    run_api(tmp_path, store_url, test)


def test_rudderstack_calls_and_batches_take_the_key_from_basic_auth_or_the_beacon_query(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        headers = {"Origin": SHOP, "Authorization": basic("c-key"), "AnonymousId": "YQ=="}
        # As the SDK sends it for a visitor it does not know: userId "".
        call = {"type": "track", "anonymousId": "anon-2", "userId": "", "event": "trial_started"}
        answer = await client.post("/v1/track", json=call, headers=headers)
        assert answer.status_code == 202, answer.text
        batch = {"batch": [{**call, "messageId": "m-1"}], "sentAt": "2026-01-01T00:00:00Z"}
        answer = await client.post("/v1/batch", json=batch, headers=headers)
        assert (answer.status_code, answer.json()["accepted"]) == (200, 1)
        beacon = {**batch, "batch": [{**call, "messageId": "m-2"}]}
        answer = await send(client, "/beacon/v1/batch?writeKey=c-key", beacon)
        assert (answer.status_code, answer.json()["accepted"]) == (200, 1)
        assert answer.headers["access-control-allow-origin"] == SHOP
        events = (await client.get("/v1/events?profile=anon-2", headers=ADMIN)).json()["events"]
        assert len([e for e in events if e["status"] == "accepted"]) == 3

    run_api(tmp_path, store_url, test)


def test_preflight_is_answered_for_the_configured_origins_only(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        ask = {"Access-Control-Request-Method": "POST"}
        answer = await client.options("/v1/t", headers={"Origin": SHOP, **ask})
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == SHOP
        assert answer.headers["access-control-allow-methods"] == "POST"
        allowed = answer.headers["access-control-allow-headers"]
        assert {"authorization", "content-type", "anonymousid"} <= set(allowed.split(", "))
        other = await client.options("/v1/t", headers={"Origin": "http://evil.test", **ask})
        assert other.status_code == 403
        assert other.json()["error"]["field"] == "Origin"
        assert "access-control-allow-origin" not in other.headers
        # No admin route answers a preflight: no page can read it or write through it.
        admin = await client.options("/v1/profiles/x", headers={"Origin": SHOP, **ask})
        assert "access-control-allow-origin" not in admin.headers
        assert admin.status_code in (404, 405)

    run_api(tmp_path, store_url, test)


def test_a_page_of_another_origin_is_refused_without_cors_headers_and_nothing_is_kept(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for origin in ("http://evil.test", "null", SHOP + "/", "http://shop.test:8081"):
            body = {"writeKey": "c-key", "anonymousId": "anon-3", "event": "trial_started"}
            answer = await send(client, "/v1/t", body, {**PAGE, "Origin": origin})
            assert answer.status_code == 403, origin
            assert (answer.json()["code"], answer.json()["error"]["field"]) == ("cors", "Origin")
            assert "access-control-allow-origin" not in answer.headers
        assert await profile(client, "anon-3") is None

    run_api(tmp_path, store_url, test)


def test_forged_absent_and_secret_keys_from_a_page_are_refused(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        call = {"anonymousId": "anon-4", "event": "trial_started"}
        cases = [
            ({**call, "writeKey": "forged"}, PAGE, 401, "key"),
            (call, PAGE, 401, "key"),
            ({**call, "writeKey": ""}, PAGE, 401, "key"),
            ({**call, "writeKey": 12}, PAGE, 401, "key"),
            (call, {**PAGE, "Authorization": basic("forged")}, 401, "key"),
            # The secret keys in a page: refused, even though they are right.
            ({**call, "writeKey": "a-key"}, PAGE, 403, "secret"),
            ({**call, "writeKey": "w-key"}, PAGE, 403, "secret"),
            (call, {**PAGE, "Authorization": "Bearer a-key"}, 403, "secret"),
        ]
        for body, headers, status, code in cases:
            answer = await send(client, "/v1/t", body, headers)
            assert (answer.status_code, answer.json()["code"]) == (status, code), body
            assert answer.json()["message"]
            assert answer.headers["access-control-allow-origin"] == SHOP  # the page may read why
        assert await profile(client, "anon-4") is None
        # A server may put its key in the body, as Segment's HTTP API allows.
        answer = await send(client, "/v1/t", {**call, "writeKey": "w-key"}, {})
        assert answer.status_code == 202

    run_api(tmp_path, store_url, test)


def test_the_client_key_sends_only_what_the_browser_settings_allow(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        key = {"writeKey": "c-key", "anonymousId": "anon-5"}
        mail = {"traits": {"email": "x@example.com"}}
        refused = [
            ("/v1/t", {**key, "event": "not_defined"}, "event"),
            ("/v1/t", {**key, "event": "message_opened"}, "event"),  # journeyman's own
            ("/v1/t", {**key, "userId": "ceo", "event": "trial_started"}, "userId"),
            ("/v1/p", {**key, "userId": "ceo", "name": "Home"}, "userId"),
            ("/v1/s", {**key, "name": "Home"}, "name"),  # no `screen` event is defined
            ("/v1/a", {**key, "userId": "ceo", "previousId": "anon-5"}, "type"),
            ("/v1/i", {**key, "traits": {"email": "ceo@example.com"}}, "traits.email"),
            ("/v1/i", {**key, "traits": {"unsubscribed": False}}, "traits.unsubscribed"),
            ("/v1/t", {**key, "event": "trial_started", "context": mail}, "context.traits.email"),
        ]
        for path, body, field in refused:
            answer = await send(client, path, body)
            assert answer.status_code == 403, (path, body, answer.text)
            error = answer.json()
            assert (error["code"], error["error"]["field"]) == ("browser", field)
        assert await profile(client, "ceo") is None
        assert await profile(client, "anon-5") is None
        batch = {
            "writeKey": "c-key",
            "batch": [
                {**key, "type": "track", "event": "not_defined"},
                {**key, "type": "identify", "traits": {"plan": "pro"}},
            ],
        }
        answer = await send(client, "/v1/b", batch)
        assert (answer.status_code, answer.json()["accepted"]) == (200, 1)
        assert answer.json()["rejected"][0]["rule"] == "browser"
        assert (await profile(client, "anon-5"))["traits"] == {"plan": "pro"}
        # an account's traits are shared by its members: no page may set them
        group = {**key, "groupId": "g1", "traits": {"plan": "enterprise"}}
        for path in ("/v1/g", "/v1/group"):
            answer = await send(client, path, group)
            assert answer.status_code == 403, answer.text
            assert (answer.json()["code"], answer.json()["error"]["field"]) == ("browser", "type")
        assert (await profile(client, "anon-5"))["account"] is None

    run_api(tmp_path, store_url, test)


def test_a_trusted_user_id_and_its_alias_are_taken_when_the_workspace_says_so(
    tmp_path: Path, store_url: str
) -> None:
    trusted = JOURNEY.replace("  rate: 1", "  user_id: trusted\n  rate: 1")

    async def test(client: Client, runtime: Runtime) -> None:
        key = {"writeKey": "c-key", "anonymousId": "anon-6"}
        answer = await send(client, "/v1/t", {**key, "userId": "ada", "event": "trial_started"})
        assert answer.status_code == 202, answer.text
        answer = await send(client, "/v1/a", {**key, "userId": "ada", "previousId": "anon-7"})
        assert answer.status_code == 202, answer.text
        assert (await profile(client, "ada"))["identities"]["userId"] == ["ada"]

    run_api(tmp_path, store_url, test, trusted)


def test_the_client_key_can_never_read_nor_publish(tmp_path: Path, store_url: str) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await send(
            client, "/v1/t", {"writeKey": "c-key", "anonymousId": "a8", "event": "trial_started"}
        )
        for key in ("Bearer c-key", basic("c-key")):
            headers = {"Authorization": key}
            for path in ("/v1/profiles/a8", "/v1/journeys", "/v1/events", "/v1/messages"):
                answer = await client.get(path, headers=headers)
                assert answer.status_code == 403, path
                assert answer.json()["error"]["rule"] == "scope"
                assert "a8" not in answer.text
            published = await client.put("/v1/workspace", json={"files": {}}, headers=headers)
            assert published.status_code == 403
            stop = await client.post("/v1/journeys/hello/stop", headers=headers)
            assert stop.status_code == 403
            rows = b'{"type": "track", "userId": "ada", "event": "trial_started"}\n'
            imported = await client.post("/v1/import?kind=events", content=rows, headers=headers)
            assert imported.status_code == 403
            assert imported.json()["error"]["rule"] == "scope"
        assert await runtime.reads.instance_counts() == {("hello", "waiting"): 1}

    run_api(tmp_path, store_url, test)


def test_each_address_is_held_to_the_browser_rate_with_retry_after(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        body = {"writeKey": "c-key", "anonymousId": "anon-9", "event": "trial_started"}
        answers = [await send(client, "/v1/t", body) for _ in range(9)]
        assert [a.status_code for a in answers] == [202] * 8 + [429]
        limited = answers[-1]
        assert limited.json()["code"] == "rate"
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["access-control-allow-origin"] == SHOP
        # The server keys are never limited.
        server = {"Authorization": "Bearer w-key"}
        answer = await send(client, "/v1/track", {**body, "writeKey": None}, server)
        assert answer.status_code == 202

    run_api(tmp_path, store_url, test, JOURNEY.replace("burst: 40", "burst: 8"))


def test_huge_and_nul_bodies_from_a_page_are_refused_and_change_nothing(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        call = {"writeKey": "c-key", "anonymousId": "anon-10", "event": "trial_started"}
        huge = {**call, "properties": {"plan": "x" * 40_000}}
        answer = await send(client, "/v1/t", huge)
        assert (answer.status_code, answer.json()["code"]) == (413, "size")
        big = {"writeKey": "c-key", "batch": [call] * 600}
        answer = await send(client, "/v1/b", big)
        assert answer.status_code in (400, 413)
        nul = {**call, "properties": {"plan": "pro\x00"}}
        answer = await send(client, "/v1/t", nul)
        assert (answer.status_code, answer.json()["code"]) == (400, "characters")
        answer = await send(client, "/v1/t", {**call, "anonymousId": "a\x00"})
        assert answer.status_code == 400
        raw = await client.post("/v1/t", content=b'{"writeKey": "c-key", \x00}', headers=PAGE)
        assert raw.status_code in (400, 401)
        assert await profile(client, "anon-10") is None

    run_api(tmp_path, store_url, test)


def test_a_page_cannot_pose_as_a_customer_by_sending_their_id_as_its_anonymous_id(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        server = {"Authorization": "Bearer w-key"}
        identify = {"userId": "ada", "traits": {"email": "ada@example.com"}}
        assert (await client.post("/v1/identify", json=identify, headers=server)).is_success
        for posing in ("ada", "ada@example.com"):
            call = {"writeKey": "c-key", "anonymousId": posing, "event": "trial_started"}
            answer = await send(client, "/v1/t", call)
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["field"] == "anonymousId"
            traits = {"writeKey": "c-key", "anonymousId": posing, "traits": {"plan": "x"}}
            assert (await send(client, "/v1/i", traits)).status_code == 403
        batch = {
            "writeKey": "c-key",
            "batch": [
                {"type": "track", "anonymousId": "ada", "event": "trial_started"},
                {"type": "track", "anonymousId": "visitor-1", "event": "trial_started"},
            ],
        }
        answer = await send(client, "/v1/b", batch)
        assert (answer.status_code, answer.json()["accepted"]) == (200, 1)
        assert [(r["index"], r["field"]) for r in answer.json()["rejected"]] == [(0, "anonymousId")]
        ada = await profile(client, "ada")
        assert ada["traits"] == {"email": "ada@example.com"}
        assert ada["instances"] == []
        assert (await profile(client, "visitor-1"))["instances"] != []
        # The server ties the visitor to the customer: the page's calls then reach her.
        linked = {"userId": "ada", "anonymousId": "visitor-1"}
        assert (await client.post("/v1/identify", json=linked, headers=server)).is_success
        visit: dict[str, Any] = {"writeKey": "c-key", "anonymousId": "visitor-1"}
        visit["traits"] = {"plan": "pro"}
        assert (await send(client, "/v1/i", visit)).status_code == 202
        assert (await profile(client, "ada"))["traits"]["plan"] == "pro"

    run_api(tmp_path, store_url, test)
