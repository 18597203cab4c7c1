"""Trying a draft before publishing: its tests, a real profile, a template, a text.

The pure parts are checked on their own; the endpoints run over an in-memory store in
this process, whose tables must be the same after every try.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import shutil
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from journeyman.api import Keys, create_app
from journeyman.cli import main
from journeyman.runtime.service import Runtime
from journeyman.storage.memory import MemoryStore
from journeyman.trying import check_text, sms_size, with_journey
from journeyman.workspace import load_workspace
from tests.conftest import BASE, START, write_workspace

KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}
ADMIN = {"Authorization": "Bearer a-key"}
Client = httpx.AsyncClient

JOURNEY = """
# the welcome series
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: settle
    wait: 1h   # give them time to look around
  - id: hello
    send: hello_email
"""
TESTS = """
kind: test
name: welcome sends hello after an hour
events:
  - {at: 0s, identify: {userId: u1, traits: {email: ada@example.com}}}
  - {at: 0s, track: {userId: u1, event: signed_up, properties: {plan: pro}}}
expect:
  - {sent: welcome.hello, at: 1h}
"""
PAGE = """
kind: template
name: page
channel: email
subject: "Hi {{ profile.firstName }}"
html: "<p>Dear {{ profile.firstName }} of {{ profile.company }}</p>"
"""
DRAFT: dict[str, Any] = {
    "kind": "journey",
    "name": "welcome",
    "entry": {"event": "signed_up"},
    "steps": [
        {"id": "settle", "wait": "2h"},
        {
            "id": "plan",
            "branch": [{"when": 'entry.plan == "pro"', "goto": "hello"}, {"otherwise": "bye"}],
        },
        {"id": "hello", "send": "hello_email", "next": "done"},
        {"id": "bye", "send": "hello_sms"},
        {"id": "done", "end": "greeted"},
    ],
}


# ---------------------------------------------------------------- pure parts


def test_a_draft_replaces_only_its_own_document_in_a_file_of_several() -> None:
    text = f"kind: event\nname: other  # kept\n---{JOURNEY}---\nkind: event\nname: last\n"
    texts, file = with_journey({"all.yaml": text, "b.yaml": "x: 1\n"}, "welcome", DRAFT)
    assert file == "all.yaml"
    assert texts["b.yaml"] == "x: 1\n"
    new = texts["all.yaml"]
    assert new.startswith("kind: event\nname: other  # kept\n---\n")
    assert new.endswith("---\nkind: event\nname: last\n")
    documents = list(yaml.safe_load_all(new))
    assert [d["name"] for d in documents] == ["other", "welcome", "last"]
    assert documents[1] == DRAFT


def test_a_new_journey_gets_a_file_of_its_own() -> None:
    fresh = {**DRAFT, "name": "fresh"}
    texts, file = with_journey({"journeys/fresh.yaml": "kind: event\nname: e\n"}, "fresh", fresh)
    assert file == "journeys/fresh-2.yaml"
    assert yaml.safe_load(texts[file]) == fresh


@pytest.mark.parametrize(
    ("text", "encoding", "length", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        # € is in the extension table: two septets, and never split from its escape
        ("€" * 80, "GSM-7", 80, 1),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 163, 2),
        ("a" + "€" * 80, "GSM-7", 81, 2),
        ("é" * 160, "GSM-7", 160, 1),  # é is in the basic set
        ("ê" * 70, "UCS-2", 70, 1),  # ê is not
        ("ê" * 71, "UCS-2", 71, 2),
        ("😀" * 35, "UCS-2", 35, 1),  # two UTF-16 units each
        ("😀" * 36, "UCS-2", 36, 2),
    ],
)
def test_an_sms_counts_segments_as_carriers_do(
    text: str, encoding: str, length: int, segments: int
) -> None:
    size = sms_size(text)
    assert (size["encoding"], size["length"], size["segments"]) == (encoding, length, segments)


def test_a_check_gives_the_message_validate_prints_with_its_column(tmp_path: Path) -> None:
    assert check_text("expression", 'entry.plan == "pro"') == []
    assert check_text("liquid", "Hi {{ profile.firstName }}") == []
    [expression] = check_text("expression", "entry.plan ==", "when")
    html = "<p>Dear {{ profile.firstName }} of {{ profile.company | nope }}</p>"
    [liquid] = check_text("liquid", html, "html")
    folder = write_workspace(
        tmp_path / "ws",
        BASE,
        JOURNEY.replace(
            "entry: {event: signed_up}", "entry: {event: signed_up, when: entry.plan ==}"
        ),
        PAGE.replace("profile.company }}", "profile.company | nope }}"),
    )
    printed = [str(p) for p in load_workspace(folder).errors]
    assert any(p.endswith(expression["message"]) for p in printed), (printed, expression)
    assert any(p.endswith(liquid["message"]) for p in printed), (printed, liquid)
    assert expression["column"] == 14
    assert (liquid["line"], liquid["column"]) == (1, html.index("nope") + 1)


# ---------------------------------------------------------------- the endpoints


def tables(store: MemoryStore) -> dict[str, Any]:
    """Every row the store holds, to compare before and after."""
    db = store.db
    return {
        f.name: copy.deepcopy(getattr(db, f.name))
        for f in dataclasses.fields(db)
        if f.name not in ("outbox_ids", "letter_ids")
    }


def run_api(
    tmp_path: Path, test: Callable[[Client, MemoryStore, list[datetime]], Awaitable[None]]
) -> None:
    folder = write_workspace(tmp_path / "ws", BASE, JOURNEY, TESTS, PAGE)
    workspace = load_workspace(folder).workspace
    assert workspace is not None
    clock = [START]

    async def main() -> None:
        store = MemoryStore()
        runtime = Runtime(workspace, store, {}, env={}, root=folder, clock=lambda: clock[0])
        await runtime.start()
        try:
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS))
            async with httpx.AsyncClient(transport=transport, base_url="http://j") as client:
                await test(client, store, clock)
        finally:
            await runtime.stop()

    asyncio.run(main())


async def post(client: Client, path: str, body: Any, status: int = 200) -> Any:
    if isinstance(body, bytes):
        answer = await client.post(path, content=body, headers=ADMIN)
    else:
        answer = await client.post(path, json=body, headers=ADMIN)
    assert answer.status_code == status, answer.text
    return answer.json()


async def sign_up(client: Client, clock: list[datetime], traits: dict[str, Any]) -> None:
    identify = {"userId": "u1", "traits": traits}
    assert (await client.post("/v1/identify", json=identify, headers=WRITE)).status_code == 202
    clock[0] += timedelta(minutes=5)
    track = {"userId": "u1", "event": "signed_up", "properties": {"plan": "pro"}}
    assert (await client.post("/v1/track", json=track, headers=WRITE)).status_code == 202
    clock[0] += timedelta(minutes=10)


def test_a_profile_is_tried_on_the_draft_and_nothing_is_kept(tmp_path: Path) -> None:
    async def test(client: Client, store: MemoryStore, clock: list[datetime]) -> None:
        await sign_up(client, clock, {"email": "ada@example.com", "firstName": "Ada"})
        before = tables(store)
        tried = await post(
            client,
            "/v1/journeys/welcome/draft/try",
            {"profile": "u1", "document": DRAFT, "until": "end"},
        )
        assert tried["visited"] == ["__entry__", "settle", "plan", "hello", "done"]
        # the email's delivery, noted on its step after the end, draws no edge back to it
        assert tried["taken"] == [
            ["__entry__", "settle"],
            ["settle", "plan"],
            ["plan", "hello"],
            ["hello", "done"],
        ]
        assert (tried["state"], tried["end_state"], tried["sent"]) == ("ended", "greeted", False)
        [message] = tried["messages"]
        assert message["step"] == "hello"
        assert (message["channel"], message["to"]) == ("email", "ada@example.com")
        assert (message["subject"], message["text"]) == ("Hello Ada", "Plan pro")
        # two hours after the sign-up, five minutes after the identify
        assert message["at"] == (START + timedelta(minutes=5, hours=2)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert any("welcome.plan" in line and "hello" in line for line in tried["trace"])
        assert tables(store) == before

        # Up to now only: the profile still waits at the draft's two hours.
        waiting = await post(
            client, "/v1/journeys/welcome/draft/try", {"profile": "u1", "document": DRAFT}
        )
        assert (waiting["state"], waiting["step"], waiting["messages"]) == ("waiting", "settle", [])
        # Without a document, the workspace's own journey.
        own = await post(
            client, "/v1/journeys/welcome/draft/try", {"profile": "u1", "until": "end"}
        )
        assert own["visited"] == ["__entry__", "settle", "hello"]
        assert tables(store) == before

    run_api(tmp_path, test)


def test_trying_an_unknown_profile_or_a_bad_body_is_refused(tmp_path: Path) -> None:
    async def test(client: Client, store: MemoryStore, clock: list[datetime]) -> None:
        await sign_up(client, clock, {"email": "ada@example.com"})
        before = tables(store)
        path = "/v1/journeys/welcome/draft/try"
        for body, status, field in [
            ({"profile": "nobody"}, 404, "profile"),
            ({"profile": "u1\x00"}, 404, "profile"),
            (b'{"profile": "\\ud800"}', 400, "body"),  # a lone surrogate is no JSON
            ({}, 422, "profile"),
            ({"profile": 7}, 422, "profile"),
            ({"profile": "u1", "document": []}, 422, "document"),
            ({"profile": "u1", "document": {**DRAFT, "kind": "event"}}, 422, "document"),
            ({"profile": "u1", "document": {**DRAFT, "name": "other"}}, 422, "document"),
            ({"profile": "u1", "until": "later"}, 422, "until"),
            ({"profile": "u1", "colour": "red"}, 422, "colour"),
            ([1, 2], 422, "body"),
        ]:
            answer = await post(client, path, body, status)
            assert answer["error"]["field"] == field, (body, answer)
        broken = {**DRAFT, "steps": [{"id": "settle", "wait": "soon"}]}
        answer = await post(client, path, {"profile": "u1", "document": broken}, 422)
        assert any("wait" in p["message"] for p in answer["problems"]), answer
        unknown = await post(client, "/v1/journeys/nope/draft/try", {"profile": "u1"}, 404)
        assert unknown["error"]["field"] == "name"
        huge = {"profile": "u1", "document": {**DRAFT, "description": "x" * 2_000_000}}
        assert (await client.post(path, json=huge, headers=ADMIN)).status_code == 413
        not_json = await client.post(path, content=b"{nope", headers=ADMIN)
        assert not_json.status_code == 400
        assert (await client.post(path, json={"profile": "u1"})).status_code == 401
        assert tables(store) == before

    run_api(tmp_path, test)


def test_the_workspace_tests_run_with_the_draft_as_the_cli_reports_them(tmp_path: Path) -> None:
    async def test(client: Client, store: MemoryStore, clock: list[datetime]) -> None:
        own = await post(client, "/v1/journeys/welcome/draft/tests", {})
        assert (own["passed"], own["failed"]) == (1, 0)
        ran = await post(client, "/v1/journeys/welcome/draft/tests", {"document": DRAFT})
        assert (ran["passed"], ran["failed"]) == (0, 1)
        [result] = ran["results"]
        assert (result["name"], result["journey"], result["passed"]) == (
            "welcome sends hello after an hour",
            "welcome",
            False,
        )
        [failure] = result["failures"]
        assert failure.startswith(
            "line 8: expected sent welcome.hello at 1h, but got welcome.hello"
        )
        # What `journeyman test` prints of the folder with the draft written in.
        texts = {p.name: p.read_text() for p in (tmp_path / "ws").iterdir()}
        texts, _ = with_journey(texts, "welcome", DRAFT)
        copied = tmp_path / "copy"
        copied.mkdir()
        for name, text in texts.items():
            (copied / name).write_text(text)
        printed = CliRunner().invoke(main, ["test", str(copied)]).output
        assert f"     {failure}\n" in printed
        assert any("welcome.settle" in line for line in result["trace"])

    run_api(tmp_path, test)


def test_a_template_preview_escapes_a_customers_html_and_names_what_is_missing(
    tmp_path: Path,
) -> None:
    async def test(client: Client, store: MemoryStore, clock: list[datetime]) -> None:
        await sign_up(client, clock, {"email": "x@example.com", "firstName": "<img src=x>"})
        before = tables(store)
        shown = await post(client, "/v1/preview", {"name": "page", "profile": "u1"})
        assert shown["subject"] == "Hi <img src=x>"  # a subject is not HTML
        assert shown["html"] == "<p>Dear &lt;img src=x&gt; of </p>"
        assert shown["missing"] == ["profile.company"]
        assert (shown["channel"], shown["to"], shown["sms"]) == ("email", "x@example.com", None)

        sms = {
            "kind": "template",
            "name": "t",
            "channel": "sms",
            "body": "Hi {{ profile.firstName }} €",
        }
        sample = await post(client, "/v1/preview", {"template": sms, "profile": None})
        assert sample["text"] == "Hi Ada €"
        assert sample["sms"] == {"length": 8, "units": 9, "segments": 1, "encoding": "GSM-7"}
        assert sample["missing"] == []

        bad = {**sms, "body": "Hi {{ profile.firstName | nope }}"}
        refused = await post(client, "/v1/preview", {"template": bad}, 422)
        assert refused["error"]["field"] == "template"
        assert "unknown filter 'nope'" in refused["problems"][0]["message"]
        for body, status, field in [
            ({}, 422, "template"),
            ({"name": "page", "template": sms}, 422, "template"),
            ({"name": "nope"}, 404, "name"),
            ({"template": "page"}, 422, "template"),
            ({"name": "page", "profile": "nobody"}, 404, "profile"),
        ]:
            answer = await post(client, "/v1/preview", body, status)
            assert answer["error"]["field"] == field, (body, answer)
        assert tables(store) == before

    run_api(tmp_path, test)


def test_the_check_endpoint_answers_problems_with_columns(tmp_path: Path) -> None:
    async def test(client: Client, store: MemoryStore, clock: list[datetime]) -> None:
        good = await post(client, "/v1/check", {"kind": "expression", "text": "entry.plan"})
        assert good == {"problems": []}
        bad = await post(
            client, "/v1/check", {"kind": "liquid", "text": "{{ x", "field": "subject"}
        )
        [problem] = bad["problems"]
        assert problem["message"].startswith("'subject': Liquid error at line 1, column")
        assert problem["column"] >= 1
        for body, field in [
            ({"kind": "python", "text": "1"}, "kind"),
            ({"kind": "liquid"}, "text"),
            ({"kind": "liquid", "text": "x", "field": 3}, "field"),
            ({"kind": "liquid", "text": "x\x00", "extra": 1}, "extra"),
        ]:
            answer = await post(client, "/v1/check", body, 422)
            assert answer["error"]["field"] == field
        nul = await post(client, "/v1/check", {"kind": "expression", "text": "a\x00b"})
        assert nul["problems"][0]["column"] == 2

    run_api(tmp_path, test)


def test_a_workspace_folder_gone_since_the_start_is_a_503_naming_it(tmp_path: Path) -> None:
    async def test(client: Client, store: MemoryStore, clock: list[datetime]) -> None:
        shutil.rmtree(tmp_path / "ws")
        answer = await post(client, "/v1/journeys/welcome/draft/tests", {}, 503)
        assert answer["error"]["field"] == "workspace"

    run_api(tmp_path, test)
