"""What the API refuses because some backend could not keep it, the same on every backend.

A NUL character anywhere in a call's text, an id or event name over 255 characters, an
empty messageId, a call in a batch over the size of a single call: each is a 400 naming
the field and the rule, and nothing of it is stored; in a batch, the other calls are.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from journeyman.domain.ingest import InvalidEvent, read_track
from journeyman.runtime.service import Runtime
from journeyman.workspace import load_workspace
from tests.conftest import BASE, START, write_workspace
from tests.integration.test_api import ADMIN, WRITE, Client, post, run_api


async def refused(client: Client, path: str, body: Any) -> dict[str, str]:
    answer = await post(client, path, body)
    assert answer.status_code == 400, answer.text
    error: dict[str, str] = answer.json()["error"]
    return error


async def nothing_stored(client: Client, profile: str = "u1") -> None:
    answer = await client.get(f"/v1/profiles/{profile}", headers=ADMIN)
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/track", {"userId": "poison\u0000", "event": "signed_up"}, "userId"),
        ("/v1/track", {"anonymousId": "a\u0000", "event": "signed_up"}, "anonymousId"),
        ("/v1/track", {"userId": "u1", "event": "sign\u0000ed_up"}, "event"),
        ("/v1/track", {"userId": "u1", "event": "x", "messageId": "m\u0000"}, "messageId"),
        (
            "/v1/track",
            {"userId": "u1", "event": "x", "properties": {"a": "b\u0000"}},
            "properties.a",
        ),
        (
            "/v1/track",
            {"userId": "u1", "event": "x", "properties": {"a": [{"b": ["ok", "\u0000"]}]}},
            "properties.a[0].b[1]",
        ),
        (
            "/v1/track",
            {"userId": "u1", "event": "x", "properties": {"k\u0000": 1}},
            "properties.k\\u0000",
        ),
        ("/v1/identify", {"userId": "u1", "traits": {"name": "\u0000"}}, "traits.name"),
        ("/v1/identify", {"userId": "u1", "traits": {"n": {"\u0000": "x"}}}, "traits.n.\\u0000"),
    ],
)
def test_a_nul_character_anywhere_is_refused_naming_the_field(
    tmp_path: Path, store_url: str, path: str, body: dict[str, Any], field: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        error = await refused(client, path, body)
        assert (error["field"], error["rule"]) == (field, "characters")
        assert "NUL" in error["message"]
        await nothing_stored(client)

    run_api(tmp_path, store_url, test)


@pytest.mark.parametrize("field", ["userId", "anonymousId", "messageId", "event"])
def test_an_id_or_event_name_over_255_characters_is_refused(
    tmp_path: Path, store_url: str, field: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        body = {"userId": "u1", "event": "signed_up", field: "x" * 256}
        error = await refused(client, "/v1/track", body)
        assert (error["field"], error["rule"]) == (field, "length")
        assert "at most 255" in error["message"]
        await nothing_stored(client)
        body[field] = "x" * 255  # the limit itself is fine
        assert (await post(client, "/v1/track", body)).status_code == 202

    run_api(tmp_path, store_url, test)


def test_an_email_over_255_characters_is_refused_as_it_would_be_an_identity(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        email = "a" * 250 + "@example.com"
        body = {"userId": "u1", "traits": {"email": email}}
        error = await refused(client, "/v1/identify", body)
        assert (error["field"], error["rule"]) == ("traits.email", "length")
        await nothing_stored(client)

    run_api(tmp_path, store_url, test)


def test_a_twelve_kilobyte_user_id_is_refused_not_stored(tmp_path: Path, store_url: str) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        body = {"userId": "u" * 12_000, "event": "signed_up"}
        error = await refused(client, "/v1/track", body)
        assert (error["field"], error["rule"]) == ("userId", "length")
        batch = {"batch": [{"type": "identify", **body}, {"type": "track", "userId": "u1"}]}
        answer = await post(client, "/v1/batch", batch)
        assert answer.status_code == 400
        assert [(r["index"], r["field"]) for r in answer.json()["rejected"]] == [
            (0, "userId"),
            (1, "event"),
        ]

    run_api(tmp_path, store_url, test)


@pytest.mark.parametrize("message_id", ["", "   "])
def test_an_empty_message_id_is_refused_every_time(
    tmp_path: Path, store_url: str, message_id: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for _ in range(2):
            body = {"userId": "u1", "event": "signed_up", "messageId": message_id}
            error = await refused(client, "/v1/track", body)
            assert (error["field"], error["rule"]) == ("messageId", "type")
        await nothing_stored(client)

    run_api(tmp_path, store_url, test)


def test_a_nul_call_in_a_batch_is_refused_by_index_and_the_others_are_kept(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        batch = [
            {"type": "track", "userId": "u1", "event": "signed_up", "messageId": "m1"},
            {"type": "track", "userId": "poison\u0000", "event": "x"},
            {"type": "identify", "userId": "u2", "traits": {"name": "Ana\u0000"}},
            {"type": "identify", "userId": "u2", "traits": {"name": "Ana"}},
        ]
        answer = await post(client, "/v1/batch", {"batch": batch})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["accepted"] == 2
        assert [(r["index"], r["field"], r["rule"]) for r in body["rejected"]] == [
            (1, "userId", "characters"),
            (2, "traits.name", "characters"),
        ]
        profile = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()
        assert [e["messageId"] for e in profile["events"]] == ["m1"]
        ana = (await client.get("/v1/profiles/u2", headers=ADMIN)).json()
        assert ana["traits"] == {"name": "Ana"}

    run_api(tmp_path, store_url, test)


def test_a_call_in_a_batch_over_32_kib_is_refused_by_index(tmp_path: Path, store_url: str) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        big = {"type": "track", "userId": "u1", "event": "signed_up", "properties": {}}
        big["properties"] = {"text": "x" * (32 * 1024)}
        small = {"type": "track", "userId": "u2", "event": "signed_up"}
        answer = await post(client, "/v1/batch", {"batch": [small, big]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 1
        ((rejected),) = answer.json()["rejected"]
        assert (rejected["index"], rejected["field"], rejected["rule"]) == (1, "body", "size")
        assert "32 KiB" in rejected["message"]
        await nothing_stored(client, "u1")
        assert (await client.get("/v1/profiles/u2", headers=ADMIN)).status_code == 200

    run_api(tmp_path, store_url, test)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer clé-secrète",
        "Bearer \u00e9\u00e9",
        "Basic " + base64.b64encode("ключ:".encode()).decode(),
    ],
)
def test_a_key_that_is_not_ascii_is_refused_with_401(
    tmp_path: Path, store_url: str, header: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        headers = {b"Authorization": header.encode()}  # as UTF-8 bytes on the wire
        body = {"userId": "u1", "event": "signed_up"}
        assert (await post(client, "/v1/track", body, headers)).status_code == 401
        assert (await client.get("/v1/journeys", headers=headers)).status_code == 401
        assert (await client.get("/v1/dead-letters", headers=headers)).status_code == 401

    run_api(tmp_path, store_url, test)


def test_an_email_that_names_the_profile_is_held_to_the_same_length(tmp_path: Path) -> None:
    by_email = "kind: event\nname: subscribed\nidentity: email\n"
    workspace = load_workspace(write_workspace(tmp_path / "ws", BASE, by_email)).workspace
    assert workspace is not None
    body = {"event": "subscribed", "properties": {"email": "a" * 250 + "@example.com"}}
    with pytest.raises(InvalidEvent) as caught:
        read_track(body, workspace.events, START)
    assert (caught.value.field, caught.value.rule) == ("properties.email", "length")
    body["properties"] = {"email": "ana@example.com"}
    assert read_track(body, workspace.events, START).properties == body["properties"]


@pytest.mark.parametrize("digits", [256, 5001])  # str() refuses over 4,300
def test_a_numeric_id_of_more_than_255_digits_is_refused_naming_the_field(digits: int) -> None:
    with pytest.raises(InvalidEvent) as refused:
        read_track({"userId": -(10 ** (digits - 1)), "event": "signed_up"}, {}, START)
    assert (refused.value.field, refused.value.rule) == ("userId", "length")


def test_a_numeric_id_of_255_digits_is_kept_as_text() -> None:
    event = read_track({"userId": 10**254, "event": "signed_up"}, {}, START)
    assert event.user_id == "1" + "0" * 254


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"userId": 1.5, "event": "signed_up"}, "userId", "type"),
        ({"userId": True, "event": "signed_up"}, "userId", "type"),
        ({"anonymousId": ["a"], "event": "signed_up"}, "anonymousId", "type"),
        ({"userId": "u1", "event": "signed_up", "messageId": 7}, "messageId", "type"),
        ({"userId": "u1", "event": 5}, "event", "required"),
        ({"userId": "u1", "event": "signed_up", "properties": "pro"}, "properties", "type"),
        ({"userId": "u1", "event": "signed_up", "timestamp": 1764929000}, "timestamp", "format"),
        (["u1", "signed_up"], "body", "type"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_naming_it(
    tmp_path: Path, store_url: str, body: Any, field: str, rule: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        error = await refused(client, "/v1/track", body)
        assert (error["field"], error["rule"]) == (field, rule)
        batch = [{"type": "identify", "userId": "u2"}]
        if isinstance(body, dict):
            batch.append({"type": "track", **body})
        answer = await post(client, "/v1/batch", {"batch": batch})
        assert answer.status_code == 200, answer.text
        rejected = [(r["index"], r["field"], r["rule"]) for r in answer.json()["rejected"]]
        assert rejected == ([(1, field, rule)] if isinstance(body, dict) else [])
        await nothing_stored(client)

    run_api(tmp_path, store_url, test)


def test_the_segment_fields_journeyman_does_not_read_are_passed_over(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        extra = {
            "context": {"library": {"name": "analytics.js"}, "ip": "10.0.0.1"},
            "integrations": {"All": True},
            "sentAt": 12,
            "type": "identify",  # a single call is what its endpoint says
        }
        body = {"userId": "u1", "event": "signed_up", "messageId": "m1", **extra}
        assert (await post(client, "/v1/track", body)).status_code == 202
        identify = {"userId": "u1", "traits": {"plan": "pro"}, "properties": 5, "event": 9}
        assert (await post(client, "/v1/identify", identify)).status_code == 202
        profile = (await client.get("/v1/profiles/u1", headers=ADMIN)).json()
        tracked = [(e["name"], e["messageId"]) for e in profile["events"] if e["type"] == "track"]
        assert tracked == [("signed_up", "m1")]
        assert profile["traits"] == {"plan": "pro"}

    run_api(tmp_path, store_url, test)


def test_text_that_is_not_utf8_is_refused_even_where_nothing_reads_it(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        body = b'{"userId": "u1", "event": "signed_up", "context": {"ip": "\xff"}}'
        answer = await client.post("/v1/track", content=body, headers=WRITE)
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == "body"
        assert answer.json()["error"]["rule"] == "json"
        assert "UTF-8" in answer.json()["error"]["message"]
        await nothing_stored(client)

    run_api(tmp_path, store_url, test)


def test_a_call_in_a_batch_is_measured_as_compact_json_however_it_was_written(
    tmp_path: Path, store_url: str
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        # 1e15 is 4 characters as sent and 18 as compact JSON: 9 KiB sent, 34 KiB compact.
        numbers = "[" + ",".join(["1e15"] * 1800) + "]"
        big = f'{{"type": "track", "userId": "u1", "event": "x", "properties": {{"n": {numbers}}}}}'
        small = '{"type": "track", "userId": "u2", "event": "signed_up"}'
        content = f'{{"batch": [{small}, {big}]}}'
        answer = await client.post("/v1/batch", content=content, headers=WRITE)
        assert answer.status_code == 200, answer.text
        ((rejected),) = answer.json()["rejected"]
        assert (rejected["index"], rejected["field"], rejected["rule"]) == (1, "body", "size")
        await nothing_stored(client, "u1")

    run_api(tmp_path, store_url, test)
