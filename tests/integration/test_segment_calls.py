"""The calls of the Segment spec beyond track and identify: page, screen and alias, on their
own paths and in a batch; the context journeyman reads; errors the analytics libraries
can read. In-process, over a live runtime on the backend under test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from journeyman.api import create_app
from journeyman.channels.file import FileChannel
from journeyman.runtime.service import Runtime
from journeyman.storage import open_store
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace
from tests.integration.test_api import ADMIN, KEYS, WRITE

Client = httpx.AsyncClient

VIEWS = """
kind: event
name: pricing_viewed
page: Pricing
identity: anonymousId     # the visitor may not have signed in
schema:
  type: object
  properties:
    plan: {type: string}
---
kind: event
name: app_opened
screen: Home
---
kind: event
name: page
---
kind: journey
name: pricing
entry: {event: pricing_viewed}
steps:
  - id: settle
    wait: 1d
---
kind: journey
name: docs
entry:
  event: page
  when: event.category == "Docs" and event.properties.name == "Install"
steps:
  - id: settle
    wait: 1d
---
kind: journey
name: onboarding
entry: {event: signed_up}
steps:
  - id: await_app
    wait_for: {event: app_opened, timeout: 2d}
  - id: opened
    wait: 1d
"""


def run(tmp_path: Path, store_url: str, test: Callable[[Client], Awaitable[None]]) -> None:
    workspace = load_workspace(write_workspace(tmp_path / "ws", BASE, VIEWS)).workspace
    assert workspace is not None

    async def main() -> None:
        channels = {"email": FileChannel("email", tmp_path / "mail.jsonl")}
        runtime = Runtime(workspace, open_store(store_url), channels, env={})
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with Client(transport=transport, base_url="http://j") as client:
                await test(client)
        finally:
            await runtime.stop()

    asyncio.run(main())


async def profile(client: Client, profile_id: str) -> Any:
    answer = await client.get(f"/v1/profiles/{profile_id}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()


def steps(found: Any) -> dict[str, tuple[str, str]]:
    return {i["journey"]: (i["status"], i["step"]) for i in found["instances"]}


def test_a_page_named_in_an_event_definition_is_that_event_and_starts_its_journey(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client) -> None:
        call = {"anonymousId": "a1", "name": "Pricing", "properties": {"plan": "pro"}}
        answer = await client.post("/v1/page", json=call, headers=WRITE)
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1})
        found = await profile(client, "a1")
        assert steps(found) == {"pricing": ("waiting", "settle")}
        (event,) = found["events"]
        assert (event["name"], event["type"]) == ("pricing_viewed", "page")
        assert event["properties"] == {"plan": "pro", "name": "Pricing"}

    run(tmp_path, store_url, test)


def test_any_other_page_is_the_event_page_with_its_name_and_category(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client) -> None:
        for name in ("Install", "Changelog"):
            call = {"userId": f"u-{name}", "name": name, "category": "Docs"}
            assert (await client.post("/v1/page", json=call, headers=WRITE)).status_code == 202
        install, changelog = (
            await profile(client, "u-Install"),
            await profile(client, "u-Changelog"),
        )
        assert steps(install) == {"docs": ("waiting", "settle")}
        assert steps(changelog) == {}
        (event,) = changelog["events"]
        assert (event["name"], event["type"]) == ("page", "page")
        assert event["properties"] == {"name": "Changelog", "category": "Docs"}

    run(tmp_path, store_url, test)


def test_a_journey_waiting_for_a_screen_moves_on_when_the_app_shows_it(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client) -> None:
        track = {"userId": "u1", "event": "signed_up"}
        assert (await client.post("/v1/track", json=track, headers=WRITE)).status_code == 202
        assert steps(await profile(client, "u1")) == {"onboarding": ("waiting", "await_app")}
        other = {"userId": "u1", "name": "Settings"}
        assert (await client.post("/v1/screen", json=other, headers=WRITE)).status_code == 202
        assert steps(await profile(client, "u1")) == {"onboarding": ("waiting", "await_app")}
        home = {"userId": "u1", "name": "Home"}
        assert (await client.post("/v1/screen", json=home, headers=WRITE)).status_code == 202
        found = await profile(client, "u1")
        assert steps(found) == {"onboarding": ("waiting", "opened")}
        assert [(e["name"], e["type"]) for e in found["events"]][:2] == [
            ("app_opened", "screen"),
            ("screen", "screen"),
        ]

    run(tmp_path, store_url, test)


def test_an_alias_merges_the_previous_id_into_the_user_and_the_trace_says_so(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client) -> None:
        page = {"anonymousId": "visitor", "name": "Pricing"}
        assert (await client.post("/v1/page", json=page, headers=WRITE)).status_code == 202
        alias = {"userId": "u1", "previousId": "visitor"}
        answer = await client.post("/v1/alias", json=alias, headers=WRITE)
        assert (answer.status_code, answer.json()) == (202, {"accepted": 1})
        found = await profile(client, "u1")
        assert steps(found) == {"pricing": ("waiting", "settle")}
        (instance,) = found["instances"]
        details = [r["detail"] for r in instance["trace"]]
        assert "moved from profile visitor (an alias named them one person)" in details
        # later calls under the old id reach the user
        later = {"anonymousId": "visitor", "event": "clicked"}
        assert (await client.post("/v1/track", json=later, headers=WRITE)).status_code == 202
        found = await profile(client, "u1")
        assert [e["name"] for e in found["events"]] == ["clicked", "alias", "pricing_viewed"]

    run(tmp_path, store_url, test)


def test_a_batch_takes_every_call_of_the_spec_and_answers_200(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client) -> None:
        batch = [
            {"type": "page", "anonymousId": "visitor", "name": "Pricing"},
            {"type": "alias", "userId": "u1", "previousId": "visitor"},
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
            {"type": "track", "userId": "u1", "event": "signed_up"},
            {"type": "screen", "userId": "u1", "name": "Home"},
            {"type": "group", "userId": "u1", "groupId": "acme"},
            {"type": "register", "userId": "u1"},
        ]
        answer = await client.post("/v1/batch", json={"batch": batch}, headers=WRITE)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 6
        (refused,) = answer.json()["rejected"]
        assert (refused["index"], refused["field"], refused["rule"]) == (6, "type", "enum")
        found = await profile(client, "u1")
        assert found["account"]["id"] == "acme"
        assert steps(found) == {
            "pricing": ("waiting", "settle"),
            "onboarding": ("waiting", "opened"),
        }
        assert found["traits"] == {"plan": "pro"}

    run(tmp_path, store_url, test)


def test_bad_calls_name_the_field_and_the_rule_and_say_it_where_the_libraries_read_it(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client) -> None:
        cases = [
            ("/v1/alias", {"userId": "u1"}, "previousId", "required"),
            ("/v1/alias", {"previousId": "a1"}, "userId", "required"),
            ("/v1/alias", {"userId": "u1", "previousId": ["a"]}, "previousId", "type"),
            ("/v1/page", {"userId": "u1", "name": 5}, "name", "type"),
            ("/v1/screen", {"userId": "u1", "category": "x\x00"}, "category", "characters"),
            (
                "/v1/page",
                {"anonymousId": "a1", "name": "Pricing", "properties": {"plan": 1}},
                "properties.plan",
                "type",
            ),
            ("/v1/page", {"userId": "u1", "name": "Pricing"}, "anonymousId", "identity"),
            ("/v1/page", {"name": "Changelog"}, "userId", "identity"),
        ]
        for path, body, field, rule in cases:
            answer = await client.post(path, json=body, headers=WRITE)
            assert answer.status_code == 400, (path, body, answer.text)
            error = answer.json()
            assert (error["error"]["field"], error["error"]["rule"]) == (field, rule), body
            assert error["code"] == rule
            assert error["message"].startswith(f"{field}: ")
        batch = {"batch": [{"type": "alias", "userId": "u1"}]}
        answer = await client.post("/v1/batch", json=batch, headers=WRITE)
        assert answer.status_code == 400
        assert answer.json()["code"] == "required"
        assert "previousId" in answer.json()["message"]
        tail = (await client.get("/v1/events", headers=ADMIN)).json()["events"]
        assert (tail[0]["type"], tail[0]["name"], tail[0]["index"]) == ("alias", "alias", 0)
        assert (await client.get("/v1/profiles/u1", headers=ADMIN)).status_code == 404

    run(tmp_path, store_url, test)


def test_the_context_fills_timezone_locale_and_traits_the_profile_lacks(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client) -> None:
        identify = {"userId": "u1", "traits": {"plan": "pro", "locale": "fr-FR"}}
        assert (await client.post("/v1/identify", json=identify, headers=WRITE)).status_code == 202
        context = {
            "timezone": "Europe/Amsterdam",
            "locale": "nl-NL",
            "ip": "203.0.113.9",
            "userAgent": "Mozilla/5.0",
            "traits": {"plan": "free", "firstName": "Ada"},
            "library": {"name": "analytics-python"},
        }
        track = {"userId": "u1", "event": "signed_up", "context": context}
        assert (await client.post("/v1/track", json=track, headers=WRITE)).status_code == 202
        found = await profile(client, "u1")
        # what the profile had stays; what it lacked is filled
        assert found["traits"] == {
            "plan": "pro",
            "locale": "fr-FR",
            "timezone": "Europe/Amsterdam",
            "firstName": "Ada",
        }
        event = found["events"][0]
        assert event["context"] == {k: v for k, v in context.items() if k != "library"}

    run(tmp_path, store_url, test)


def test_an_identify_takes_the_traits_rudderstack_sends_in_its_context(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client) -> None:
        identify = {
            "userId": "u1",
            "context": {"traits": {"plan": "pro", "email": "u1@example.com"}},
            "traits": {"plan": "team"},
        }
        assert (await client.post("/v1/identify", json=identify, headers=WRITE)).status_code == 202
        found = await profile(client, "u1")
        assert found["traits"] == {"plan": "team", "email": "u1@example.com"}
        assert found["identities"]["email"] == ["u1@example.com"]

    run(tmp_path, store_url, test)


def test_a_clock_that_is_off_is_corrected_as_segment_does(tmp_path: Path, store_url: str) -> None:
    async def test(client: Client) -> None:
        now = datetime.now(UTC)
        # the device's clock is an hour fast: it stamped the call 2 s before sending it
        device = now + timedelta(hours=1)
        call = {
            "userId": "u1",
            "event": "signed_up",
            "originalTimestamp": (device - timedelta(seconds=2)).isoformat(),
            "sentAt": device.isoformat(),
        }
        assert (await client.post("/v1/track", json=call, headers=WRITE)).status_code == 202
        # a timestamp given wins; a sentAt that is no time is passed over
        given = {
            "userId": "u1",
            "event": "purchased",
            "timestamp": "2026-01-05T09:30:00Z",
            "sentAt": "soon",
            "originalTimestamp": 5,
        }
        assert (await client.post("/v1/track", json=given, headers=WRITE)).status_code == 202
        events = {e["name"]: e["timestamp"] for e in (await profile(client, "u1"))["events"]}
        happened = datetime.fromisoformat(events["signed_up"])
        assert now - timedelta(seconds=5) < happened < now
        assert events["purchased"].startswith("2026-01-05T09:30:00")

    run(tmp_path, store_url, test)
