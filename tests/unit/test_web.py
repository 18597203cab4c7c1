"""The web console in-process: login, sessions and CSRF, each page's JSON twin, and that
whatever customers send (traits, event properties, template output) is shown inert."""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import re
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from journeyman.api import Keys, create_app
from journeyman.channels.base import Channel
from journeyman.channels.catcher import MailCatcher
from journeyman.channels.file import FileChannel
from journeyman.channels.smtp import SmtpChannel
from journeyman.runtime.processor import utc_now
from journeyman.runtime.service import Runtime
from journeyman.server import SettingError, console_users
from journeyman.storage.sqlite import SQLiteStore
from journeyman.web import ConsoleSettings, UsersError, parse_users
from journeyman.web.auth import LoginLimit
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace
from tests.waiting import eventually

KEYS = Keys(write="w-key", admin="a-key")
WRITE = {"Authorization": "Bearer w-key"}
ADMIN = {"Authorization": "Bearer a-key"}
JSON = {"Accept": "application/json"}
USERS = {"sam": "sam-password"}

JOURNEY = """
kind: journey
name: hello
description: Greet new sign-ups; pro plans wait a day first.
entry: {event: signed_up}
steps:
  - id: route
    branch:
      - when: event.plan == "pro"
        goto: pro_wait
      - otherwise: greet
  - id: pro_wait
    wait: 1d
  - id: greet
    send: hello_page
  - id: hold
    wait: 1d
---
kind: template
name: hello_page
channel: email
subject: "Hello {{ profile.firstName }}"
html: "<p>Hi {{ profile.firstName }}, your plan is {{ entry.plan }}</p>"
"""

XSS = "<script>alert('x')</script>"
XSS_IMG = '<img src=x onerror="alert(1)">'

Client = httpx.AsyncClient


def run_console(
    tmp_path: Path,
    test: Callable[[Client, Runtime], Awaitable[None]],
    *,
    catcher: bool = False,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Run ``test`` with a client of the whole app over a runtime on a SQLite file.

    With ``catcher``, email goes over SMTP to the built-in mail catcher, as with
    ``journeyman serve --catcher``; otherwise to a file.
    """
    folder = write_workspace(tmp_path / "ws", BASE, JOURNEY)
    workspace = load_workspace(folder).workspace
    assert workspace is not None

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            email: Channel = FileChannel("email", tmp_path / "mail.jsonl")
            settings = ConsoleSettings(users=USERS)
            if catcher:
                mail = await stack.enter_async_context(
                    MailCatcher(tmp_path / "caught.jsonl", port=0)
                )
                email = SmtpChannel(
                    "email",
                    host=mail.host,
                    port=mail.port,
                    sender="j@localhost",
                    security="none",
                    local_hostname="localhost",
                )
                settings = ConsoleSettings(users=USERS, mail_file=mail.path)
            store = SQLiteStore(tmp_path / "j.db")
            runtime = Runtime(workspace, store, {"email": email}, env={}, root=folder, clock=clock)
            await runtime.start()
            stack.push_async_callback(runtime.stop)
            transport = httpx.ASGITransport(app=create_app(runtime, KEYS, settings))
            async with httpx.AsyncClient(transport=transport, base_url="http://j.test") as client:
                await test(client, runtime)

    asyncio.run(main())


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


async def log_in(client: Client, user: str = "", key: str = "a-key") -> httpx.Response:
    form = await client.get("/login")
    fields = {"csrf": _csrf(form.text), "user": user, "key": key, "next": "/journeys"}
    return await client.post("/login", data=fields)


async def csrf_of(client: Client, path: str = "/journeys") -> str:
    return _csrf((await client.get(path)).text)


async def track(client: Client, body: dict[str, Any]) -> None:
    answer = await client.post("/v1/track", json=body, headers=WRITE)
    assert answer.status_code == 202, answer.text


async def identify(client: Client, user: str, traits: dict[str, Any]) -> None:
    answer = await client.post(
        "/v1/identify", json={"userId": user, "traits": traits}, headers=WRITE
    )
    assert answer.status_code == 202, answer.text


def test_pages_need_a_login_with_the_admin_key_or_a_configured_user(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        answer = await client.get("/journeys/hello?step=greet")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login?next=%2Fjourneys%2Fhello%3Fstep%3Dgreet"
        assert (await client.get("/journeys", headers=JSON)).status_code == 401

        wrong = await log_in(client, key="nope")
        assert wrong.status_code == 401
        assert "That user name or key is wrong." in wrong.text
        assert "jm_session" not in client.cookies

        answer = await log_in(client)
        assert (answer.status_code, answer.headers["location"]) == (303, "/journeys")
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        page = await client.get("/journeys")
        assert page.status_code == 200
        assert ">hello</a>" in page.text
        assert "Content-Security-Policy" in page.headers

        logout = await client.post("/logout", data={"csrf": _csrf(page.text)})
        assert logout.status_code == 303
        assert (await client.get("/journeys")).status_code == 303

        assert (await log_in(client, "sam", "wrong")).status_code == 401
        assert (await log_in(client, "sam", "sam-password")).status_code == 303
        assert "sam" in (await client.get("/journeys")).text

    run_console(tmp_path, test)


def test_a_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await log_in(client)
        for fields in ({}, {"csrf": "forged"}):
            answer = await client.post("/journeys/hello/pause", data=fields)
            assert answer.status_code == 403
            assert "The form has expired" in answer.text
        answer = await client.post("/journeys/hello/pause", json={"csrf": await csrf_of(client)})
        assert answer.status_code == 403  # a form, not JSON
        assert await runtime.store.journey_states() == {}
        assert (await client.post("/workspace", data={})).status_code == 403

        # The login form has its own token, tied to a cookie: a forged login is refused too.
        client.cookies.clear()
        fields = {"csrf": "guess", "key": "a-key"}
        assert (await client.post("/login", data=fields)).status_code == 403

    run_console(tmp_path, test)


def test_pausing_confirms_how_many_instances_it_affects_and_keeps_new_events_out(
    tmp_path: Path,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for user in ("u1", "u2"):
            await track(
                client, {"userId": user, "event": "signed_up", "properties": {"plan": "pro"}}
            )
        await log_in(client)
        confirm = await client.get("/journeys/hello/pause")
        assert "2 instances" in confirm.text
        assert "Pause hello (2 affected)" in confirm.text
        answer = await client.post("/journeys/hello/pause", data={"csrf": _csrf(confirm.text)})
        assert answer.status_code == 303
        assert (
            "Paused: new events do not enter it."
            in (await client.get(answer.headers["location"])).text
        )
        await track(client, {"userId": "u3", "event": "signed_up"})
        profile = (await client.get("/profiles/u3", headers=JSON)).json()
        assert profile["instances"] == []
        assert profile["not_entered"][0]["detail"] == "the journey is paused"

        confirm = await client.get("/journeys/hello/stop")
        assert "2 running instances" in confirm.text
        await client.post("/journeys/hello/stop", data={"csrf": _csrf(confirm.text)})
        journeys = (await client.get("/v1/journeys", headers=ADMIN)).json()["journeys"]
        assert (journeys[0]["state"], journeys[0]["waiting"]) == ("stopped", 0)

    run_console(tmp_path, test)


def test_a_stop_the_database_refuses_says_so_and_a_second_stop_finishes_it(
    tmp_path: Path,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for user in ("u1", "u2"):
            await track(client, {"userId": user, "event": "signed_up"})
        await log_in(client)
        commit = runtime.store.commit

        async def refused(changes: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        runtime.store.commit = refused  # type: ignore[method-assign]
        confirm = await client.get("/journeys/hello/stop")
        answer = await client.post("/journeys/hello/stop", data={"csrf": _csrf(confirm.text)})
        assert answer.status_code == 303
        page = (await client.get(answer.headers["location"])).text
        assert "The stop could not be completed: the database or the bus did not answer." in page
        journeys = (await client.get("/v1/journeys", headers=ADMIN)).json()["journeys"]
        assert journeys[0]["waiting"] == 2  # nothing ended

        runtime.store.commit = commit  # type: ignore[method-assign]
        confirm = await client.get("/journeys/hello/stop")
        answer = await client.post("/journeys/hello/stop", data={"csrf": _csrf(confirm.text)})
        page = (await client.get(answer.headers["location"])).text
        assert "Stopped: 2 instance(s) ended." in page
        journeys = (await client.get("/v1/journeys", headers=ADMIN)).json()["journeys"]
        assert (journeys[0]["state"], journeys[0]["waiting"]) == ("stopped", 0)
        # A failure the redirect did not come from shows nothing.
        forged = await client.get("/journeys/hello?failed=<b>x</b>:busy")
        assert "could not be completed" not in forged.text

    run_console(tmp_path, test)


def test_the_journeys_page_and_its_json_twin_give_live_numbers(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"email": "u1@example.com", "firstName": "Ada"})
        await track(client, {"userId": "u1", "event": "signed_up", "properties": {"plan": "free"}})
        await track(client, {"userId": "u2", "event": "signed_up", "properties": {"plan": "pro"}})
        await track(client, {"userId": "u2", "event": "signed_up", "properties": {"plan": "pro"}})
        (row,) = (await client.get("/v1/journeys", headers=ADMIN)).json()["journeys"]
        assert row["entered_last_hour"] == row["entered_last_day"] == row["entered"] == 2
        assert (row["waiting"], row["errors"], row["completion_rate"]) == (2, 0, 0.0)
        assert row["description"].startswith("Greet new sign-ups")

        await log_in(client)
        twin = (await client.get("/journeys", headers=JSON)).json()
        assert twin["journeys"] == [row]
        counts = (await client.get("/journeys/hello", headers=JSON)).json()
        assert counts["nodes"]["__entry__"] == {"entered": 2, "not_entered": 1}
        assert counts["nodes"]["route"]["passed"] == 2
        assert counts["nodes"]["pro_wait"]["waiting"] == 1
        assert counts["nodes"]["greet"]["passed"] == 1
        assert counts["nodes"]["hold"]["waiting"] == 1

        page = (await client.get("/journeys/hello")).text
        assert page.count('class="node kind-') == 6  # entry, four steps, the end of the path
        assert ">end: completed</text>" in page
        assert 'data-live-url="/journeys/hello"' in page

    run_console(tmp_path, test)


def test_a_step_shows_its_definition_template_and_the_last_instances(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"email": "u1@example.com", "firstName": "Ada"})
        await track(client, {"userId": "u1", "event": "signed_up", "properties": {"plan": "free"}})
        step = (await client.get("/v1/journeys/hello/steps/greet", headers=ADMIN)).json()
        assert step["definition"] == {"id": "greet", "send": "hello_page"}
        assert step["preview"]["profile"] == "u1"
        assert step["preview"]["fields"]["html"] == "<p>Hi Ada, your plan is free</p>"
        assert [(r["profile_id"], r["outcome"]) for r in step["records"]] == [("u1", "sent")]
        entry = (await client.get("/v1/journeys/hello/steps/entry", headers=ADMIN)).json()
        assert entry["definition"] == {"entry": {"event": "signed_up"}}
        missing = await client.get("/v1/journeys/hello/steps/nope", headers=ADMIN)
        assert missing.status_code == 404

        await log_in(client)
        page = (await client.get("/journeys/hello?step=greet")).text
        assert 'sandbox=""' in page
        assert 'srcdoc="&lt;p&gt;Hi Ada, your plan is free&lt;/p&gt;"' in page

    run_console(tmp_path, test)


def test_profiles_are_found_by_id_or_email_and_show_why_a_branch_was_taken(
    tmp_path: Path,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"email": "Ada@Example.com", "firstName": "Ada"})
        await track(client, {"userId": "u1", "event": "signed_up", "properties": {"plan": "pro"}})
        found = await client.get("/v1/profiles", params={"q": "ada@example.com"}, headers=ADMIN)
        assert found.json() == {"query": "ada@example.com", "profiles": ["u1"], "next": None}
        assert (await client.get("/v1/profiles?q=u1", headers=ADMIN)).json()["profiles"] == ["u1"]
        for start in ("ADA", "ada@ex", "U", "ad"):  # the start of an email, an id, a name
            found = await client.get("/v1/profiles", params={"q": start}, headers=ADMIN)
            assert found.json()["profiles"] == ["u1"], start
        await identify(client, "u2", {"firstName": "Bo"})
        first = (await client.get("/v1/profiles?limit=1", headers=ADMIN)).json()
        assert (first["profiles"], first["next"]) == (["u1"], "u1")
        rest = await client.get("/v1/profiles?limit=1&after=u1", headers=ADMIN)
        assert rest.json()["profiles"] == ["u2"]
        bad = await client.get("/v1/profiles?limit=0", headers=ADMIN)
        assert (bad.status_code, bad.json()["error"]["field"]) == (400, "limit")

        await log_in(client)
        search = await client.get("/profiles", params={"q": "ada@example.com"})
        assert (search.status_code, search.headers["location"]) == (303, "/profiles/u1")
        nobody = await client.get("/profiles", params={"q": "nobody"})
        assert "No profile is known by" in nobody.text
        page = (await client.get("/profiles/u1")).text
        assert "event.plan == &#34;pro&#34; is true: to pro_wait" in page
        twin = (await client.get("/profiles/u1", headers=JSON)).json()
        (instance,) = twin["instances"]
        assert [r["outcome"] for r in instance["trace"]] == ["entered", "branched", "waiting"]

        assert '<a href="/journeys/hello?instance=u1%3Ahello%3A1">path on the graph</a>' in page
        graph = (await client.get("/journeys/hello?instance=u1:hello:1")).text
        assert "waiting at <code>pro_wait</code>" in graph
        visited = re.findall(
            r'class="node kind-\w+( chosen)? visited( current)?"[^>]*data-node="(\w+)"', graph
        )
        assert [(node, bool(now)) for _, now, node in visited] == [
            ("__entry__", False),
            ("route", False),
            ("pro_wait", True),
        ]
        assert graph.count('class="edge taken"') == 2  # entry to route, route to pro_wait

    run_console(tmp_path, test)


def test_the_events_page_shows_rejections_and_why_an_event_started_nothing(
    tmp_path: Path,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await track(client, {"userId": "u1", "event": "signed_up"})
        await track(client, {"userId": "u1", "event": "signed_up"})
        await track(client, {"userId": "u1", "event": "deleted"})
        await track(client, {"userId": "u1", "event": "unknown_thing"})
        bad = {"userId": "u2", "event": "purchased", "properties": {"total": "lots"}}
        assert (await client.post("/v1/track", json=bad, headers=WRITE)).status_code == 400

        await log_in(client)
        events = (await client.get("/events", headers=JSON)).json()["events"]
        assert events[0]["error"]["field"] == "properties.total"
        assert "no kind: event document defines 'unknown_thing'" in events[1]["journeys"]
        assert events[2]["journeys"] == "no journey starts on 'deleted'"
        assert events[3]["journeys"] == [
            {
                "journey": "hello",
                "outcome": "not_entered",
                "detail": "the profile is already in this journey",
            }
        ]
        assert events[4]["journeys"][0]["outcome"] == "entered"
        assert (await client.get("/v1/events", headers=ADMIN)).json()["events"] == events
        only = (await client.get("/events?status=rejected", headers=JSON)).json()["events"]
        assert [e["profile_id"] for e in only] == ["u2"]
        page = (await client.get("/events", params={"profile": "u2"})).text
        assert "<code>properties.total</code> breaks <code>type</code>" in page
        assert "signed_up" not in page.split("<tbody>")[1]

    run_console(tmp_path, test)


def test_messages_workspace_and_versions_pages_have_their_json_twins(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"email": "u1@example.com"})
        await track(client, {"userId": "u1", "event": "signed_up"})
        await log_in(client)
        messages = (await client.get("/messages", headers=JSON)).json()
        assert [m["step"] for m in messages["messages"]] == ["greet"]
        assert messages["caught_mail"] == []
        assert (await client.get("/v1/mail", headers=ADMIN)).json() == {
            "catcher": False,
            "mail": [],
        }

        status = (await client.get("/v1/workspace", headers=ADMIN)).json()
        assert status["valid"] is True
        assert status["plan"]["unchanged"] == ["hello"]
        assert status["running"]["version"] == 1
        assert status["running"]["from"] == "serve"
        assert (await client.get("/workspace", headers=JSON)).json() == status

        folder = runtime.root
        assert folder is not None
        (folder / "doc01.yaml").write_text(JOURNEY.replace("wait: 1d", "wait: 2d"))
        page = await client.get("/workspace")
        assert "hello → v2" in page.text
        answer = await client.post("/workspace", data={"csrf": _csrf(page.text)})
        assert answer.status_code == 303
        assert runtime.workspace.journeys["hello"].version == 2
        page = await client.get("/workspace")
        assert "Running workspace version 2, published from the console at" in page.text

        diff = await client.get("/v1/journeys/hello/versions/2?against=1", headers=ADMIN)
        assert "-  wait: 1d\n+  wait: 2d\n" in diff.json()["diff"]
        assert (await client.get("/v1/journeys/hello/versions/3", headers=ADMIN)).status_code == 404
        page = await client.get("/journeys/hello?version=2&against=1")
        assert '<span class="add">+  wait: 2d</span>' in page.text
        old = (await client.get("/journeys/hello?version=1")).text
        assert 'aria-label="Steps of hello v1"' in old  # the earlier version, drawn
        assert ">wait 1d</text>" in old

        (folder / "doc01.yaml").write_text(JOURNEY.replace("send: hello_page", "send: nope"))
        broken = (await client.get("/workspace", headers=JSON)).json()
        assert broken["valid"] is False
        assert "template 'nope' is not defined" in broken["problems"][0]["message"]

    run_console(tmp_path, test)


def test_what_customers_send_is_shown_inert_on_every_page(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"email": "u1@example.com", "firstName": XSS, "note": XSS_IMG})
        await track(client, {"userId": "u1", "event": "signed_up", "properties": {"plan": XSS_IMG}})
        bad = {"userId": XSS, "event": "purchased", "properties": {"total": XSS}}
        await client.post("/v1/track", json=bad, headers=WRITE)
        await log_in(client)
        pages = [
            "/journeys",
            "/journeys/hello?step=greet",
            "/profiles/u1",
            "/events",
            "/messages",
        ]
        for path in pages:
            text = (await client.get(path)).text
            assert "<script>alert" not in text, path
            assert "<img src=x" not in text, path
        profile = (await client.get("/profiles/u1")).text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in profile
        assert '<iframe class="preview" sandbox=""' in profile  # the sent email, isolated
        events = (await client.get("/events")).text
        assert "&lt;img src=x onerror=" in events

    run_console(tmp_path, test)


def test_a_profile_is_found_by_its_phone_number(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"phone": "+15550100"})
        await identify(client, "u2", {"phone": "+15550199"})
        found = await client.get("/v1/profiles", params={"q": "+1 555-0100"}, headers=ADMIN)
        assert found.json()["profiles"] == ["u1"]

    run_console(tmp_path, test)


def test_console_users_are_read_from_name_password_pairs() -> None:
    assert parse_users("ana:one, ben:two:three,") == {"ana": "one", "ben": "two:three"}
    assert parse_users(None) == parse_users("") == {}
    for bad in ("ana", "ana:", ":pw", "admin:pw"):
        with pytest.raises(UsersError):
            parse_users(bad)
    with pytest.raises(SettingError, match="JOURNEYMAN_CONSOLE_USERS: 'ana' is not written"):
        console_users({"JOURNEYMAN_CONSOLE_USERS": "ana"})


def test_two_events_of_one_batch_are_each_told_their_own_entry_decision(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        call = {"type": "track", "userId": "u1", "event": "signed_up"}
        answer = await client.post("/v1/batch", json={"batch": [call, call]}, headers=WRITE)
        assert answer.status_code == 200
        events = (await client.get("/v1/events", headers=ADMIN)).json()["events"]
        assert [e["journeys"][0]["outcome"] for e in events] == ["not_entered", "entered"]

    run_console(tmp_path, test)


def test_an_events_entry_decision_is_found_however_long_its_batch_took(tmp_path: Path) -> None:
    # Every read of the clock is 10 ms later: the engine decides well after the call came.
    start, reads = utc_now(), itertools.count()

    def clock() -> datetime:
        return start + next(reads) * timedelta(milliseconds=10)

    async def test(client: Client, runtime: Runtime) -> None:
        await track(client, {"userId": "u1", "event": "signed_up"})
        (event,) = (await client.get("/v1/events", headers=ADMIN)).json()["events"]
        assert event["journeys"] == [
            {"journey": "hello", "outcome": "entered", "detail": "by signed_up"}
        ]

    run_console(tmp_path, test, clock=clock)


def test_logins_are_refused_for_a_while_after_many_failures(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for _ in range(10):
            assert (await log_in(client, "sam", "guess")).status_code == 401
        refused = await log_in(client, "sam", "sam-password")
        assert refused.status_code == 429
        assert "Too many failed logins" in refused.text
        assert "jm_session" not in client.cookies

    run_console(tmp_path, test)


def test_the_login_limit_forgets_failures_after_its_window() -> None:
    limit = LoginLimit(attempts=2, window=60)
    limit.failed("a", now=0)
    limit.failed("a", now=1)
    assert not limit.allowed("a", now=30)
    assert limit.allowed("b", now=30)
    assert limit.allowed("a", now=61.5)


ODD_IDS = ("acme/ana", "a/../b", "what? #1 at 100%", "zoë smith", "plus+and&amp")


def test_profiles_whose_ids_need_escaping_open_from_every_link(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for user in ODD_IDS:
            await identify(client, user, {"email": f"{len(user)}@example.com"})
            await track(client, {"userId": user, "event": "signed_up"})
        await log_in(client)
        events = (await client.get("/events")).text
        messages = (await client.get("/messages")).text
        for user in ODD_IDS:
            api = await client.get(f"/v1/profiles/{quote(user, safe='')}", headers=ADMIN)
            assert api.status_code == 200, user
            assert api.json()["id"] == user
            search = await client.get("/profiles", params={"q": user})
            link = search.headers["location"]
            assert link == f"/profiles/{quote(user, safe='')}"
            assert f'href="{html.escape(link)}"' in events
            assert f'href="{html.escape(link)}"' in messages
            page = await client.get(link)
            assert page.status_code == 200, user
            assert f"<h1>{html.escape(user)}</h1>" in page.text
            twin = (await client.get(link, headers=JSON)).json()
            assert [i["journey"] for i in twin["instances"]] == ["hello"]
            path = re.search(r'href="([^"]+)">path on the graph', page.text)
            assert path is not None
            graph = (await client.get(html.unescape(path.group(1)))).text
            assert f'href="{html.escape(link)}">{html.escape(user)}</a>' in graph
        slash = await client.get("/profiles/acme/ana", headers=JSON)
        assert slash.json()["id"] == "acme/ana"  # an unescaped '/' still finds it

        anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://j.test")
        async with anonymous:
            to_login = await anonymous.get(f"/profiles/{quote('what? #1 at 100%', safe='')}")
            target = to_login.headers["location"].removeprefix("/login?next=")
            assert unquote(target) == "/profiles/what%3F%20%231%20at%20100%25"

    run_console(tmp_path, test)


async def republish(runtime: Runtime, text: str) -> None:
    """Publish the workspace folder with ``text`` in place of the journey's file."""
    assert runtime.root is not None
    (runtime.root / "doc01.yaml").write_text(text)
    workspace = load_workspace(runtime.root).workspace
    assert workspace is not None
    await runtime.publish(workspace)


def test_the_graph_counts_the_version_it_draws_and_an_instance_is_drawn_on_its_own(
    tmp_path: Path,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for user in ("u1", "u2"):
            await identify(client, user, {"email": f"{user}@example.com"})
        await track(client, {"userId": "u1", "event": "signed_up"})  # waits at hold, v1
        await republish(runtime, JOURNEY.replace("- id: hold", "- id: linger"))
        await track(client, {"userId": "u2", "event": "signed_up"})  # waits at linger, v2
        await log_in(client)

        latest = (await client.get("/journeys/hello", headers=JSON)).json()
        assert (latest["version"], latest["counts_version"]) == (2, 2)
        assert latest["nodes"]["__entry__"]["entered"] == 1
        assert latest["nodes"]["linger"]["waiting"] == 1
        first = (await client.get("/journeys/hello?version=1", headers=JSON)).json()
        assert (first["version"], first["counts_version"]) == (1, 1)
        assert first["nodes"]["__entry__"]["entered"] == 1
        assert first["nodes"]["hold"]["waiting"] == 1
        every = (await client.get("/journeys/hello?version=all", headers=JSON)).json()
        assert (every["version"], every["counts_version"]) == (2, "all")
        assert every["nodes"]["__entry__"]["entered"] == 2
        assert every["nodes"]["greet"]["passed"] == 2

        api = (await client.get("/v1/journeys/hello", headers=ADMIN)).json()
        assert (api["version"], api["counts_version"], api["entered"]) == (2, 2, 1)
        api = (await client.get("/v1/journeys/hello?version=1", headers=ADMIN)).json()
        assert (api["version"], api["counts_version"], api["entered"]) == (1, 1, 1)
        assert [s["id"] for s in api["steps"]][-1] == "hold"
        api = (await client.get("/v1/journeys/hello?version=all", headers=ADMIN)).json()
        assert (api["version"], api["counts_version"], api["entered"]) == (2, "all", 2)
        missing = await client.get("/v1/journeys/hello?version=3", headers=ADMIN)
        assert missing.status_code == 404

        page = (await client.get("/journeys/hello?version=1")).text
        assert 'data-live-url="/journeys/hello?version=1"' in page
        assert 'aria-label="Steps of hello v1"' in page
        hold = page.split('data-node="hold"')[1].split("</a>")[0]
        assert '<tspan data-count="waiting">1</tspan> waiting' in hold
        assert 'href="?step=greet&amp;version=1#detail"' in page  # a box keeps the version
        assert "counts of v1 only" in page
        latest_here = (await client.get("/journeys/hello?step=greet&version=1")).text
        latest_here = latest_here.split("<h3>Latest here</h3>")[1].split("</aside>")[0]
        assert 'href="/profiles/u1"' in latest_here
        assert 'href="/profiles/u2"' not in latest_here  # u2 is on v2
        assert "counts of every version" in (await client.get("/journeys/hello?version=all")).text

        path = (await client.get("/journeys/hello?instance=u1:hello:1")).text
        assert 'aria-label="Steps of hello v1"' in path
        current = re.search(r'class="node [^"]* current"[^>]*data-node="(\w+)"', path)
        assert current is not None
        assert current.group(1) == "hold"
        assert 'data-live-url="/journeys/hello?version=1"' in path

    run_console(tmp_path, test)


def test_entered_on_a_step_counts_the_instances_that_ended_while_waiting_there(
    tmp_path: Path,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"email": "u1@example.com"})
        await track(client, {"userId": "u1", "event": "signed_up"})
        await track(client, {"userId": "u2", "event": "signed_up", "properties": {"plan": "pro"}})
        assert await runtime.stop_journey("hello") == 2
        await log_in(client)
        nodes = (await client.get("/journeys/hello", headers=JSON)).json()["nodes"]
        assert nodes["greet"]["passed"] == 1
        for step in ("hold", "pro_wait"):
            assert nodes[step]["entered"] == 1, step
            assert (nodes[step]["waiting"], nodes[step]["left"]) == (0, 1)
            counted = ("passed", "waiting", "skipped", "capped", "dropped", "left")
            assert nodes[step]["entered"] == sum(nodes[step][k] for k in counted)
        page = (await client.get("/journeys/hello")).text
        hold = page.split('data-node="hold"')[1].split("</a>")[0]
        assert '<tspan data-count="entered">1</tspan> entered' in hold
        assert ">1 left</text>" in hold

    run_console(tmp_path, test)


def test_a_journey_removed_from_the_workspace_is_listed_and_can_be_stopped(
    tmp_path: Path,
) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await track(client, {"userId": "u1", "event": "signed_up"})
        await republish(runtime, JOURNEY.split("---")[1])  # the template stays
        (row,) = (await client.get("/v1/journeys", headers=ADMIN)).json()["journeys"]
        assert (row["name"], row["state"], row["version"], row["waiting"]) == (
            "hello",
            "removed",
            1,
            1,
        )
        api = (await client.get("/v1/journeys/hello", headers=ADMIN)).json()
        assert (api["state"], api["version"]) == ("removed", 1)

        await log_in(client)
        listed = (await client.get("/journeys")).text
        assert '<span class="badge state-removed">removed</span>' in listed
        assert 'aria-label="Stop hello"' in listed
        assert 'aria-label="Pause hello"' not in listed
        page = (await client.get("/journeys/hello")).text
        assert "no longer in the workspace" in page
        nodes = (await client.get("/journeys/hello", headers=JSON)).json()["nodes"]
        assert nodes["hold"]["waiting"] == 1
        confirm = await client.get("/journeys/hello/stop")
        assert "1 running instance" in confirm.text
        answer = await client.post("/journeys/hello/stop", data={"csrf": _csrf(confirm.text)})
        assert (
            "Stopped: 1 instance(s) ended." in (await client.get(answer.headers["location"])).text
        )
        (row,) = (await client.get("/v1/journeys", headers=ADMIN)).json()["journeys"]
        assert (row["state"], row["waiting"], row["ended"]) == ("removed", 0, 1)
        again = await client.post("/v1/journeys/hello/stop", headers=ADMIN)
        assert (again.status_code, again.json()["stopped"]) == (200, 0)

    run_console(tmp_path, test)


def test_the_profile_page_shows_its_account_and_its_traits_inert(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        await identify(client, "u1", {"email": "u1@example.com"})
        await identify(client, "u2", {"email": "u2@example.com"})
        body = {"userId": "u1", "groupId": XSS, "traits": {"plan": "pro", "name": XSS_IMG}}
        answer = await client.post("/v1/group", json=body, headers=WRITE)
        assert answer.status_code == 202, answer.text
        await log_in(client)
        page = (await client.get("/profiles/u1")).text
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
        assert "attached to account &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
        assert "<dt>plan</dt><dd>pro</dd>" in page
        twin = (await client.get("/profiles/u1", headers=JSON)).json()
        assert (twin["account"]["id"], twin["account"]["traits"]) == (XSS, body["traits"])
        none = (await client.get("/profiles/u2")).text
        assert "No account: no group call named one." in none
        assert (await client.get("/profiles/u2", headers=JSON)).json()["account"] is None

    run_console(tmp_path, test)


def test_the_workspace_page_lists_the_imports_and_their_first_reject(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        rows = b'{"event": "signed_up", "userId": "u1"}\n{"event": "signed_up"}\n'
        answer = await client.post("/v1/import?kind=events", content=rows, headers=ADMIN)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]

        async def finished() -> dict[str, Any] | None:
            job = (await client.get(f"/v1/imports/{job_id}", headers=ADMIN)).json()
            return job if job["status"] != "running" else None

        job = await eventually(finished, "the import to finish")
        assert (job["status"], job["imported"], job["rejected"]) == ("done", 1, 1)
        await log_in(client)
        status = (await client.get("/workspace", headers=JSON)).json()
        assert [j["id"] for j in status["imports"]] == [job_id]
        page = (await client.get("/workspace")).text
        assert "Imports" in page
        assert "first: row 2" in page
        assert "names its profile by &#39;userId&#39;" in page

    run_console(tmp_path, test)


def test_times_are_shown_in_utc_until_a_person_picks_a_zone_kept_in_a_cookie(
    tmp_path: Path,
) -> None:
    at = datetime(2026, 1, 5, 9, 30, 15, tzinfo=UTC)

    async def test(client: Client, runtime: Runtime) -> None:
        await track(client, {"userId": "u1", "event": "signed_up"})
        await log_in(client)
        page = (await client.get("/profiles/u1")).text
        assert "data-zone>UTC</a>" in page
        assert ">2026-01-05 09:30:15 UTC</time>" in page  # entered, to the second

        settings = await client.get("/settings")
        assert "<option selected>UTC</option>" in settings.text
        csrf = _csrf(settings.text)
        for name in ("Mars/Olympus", "../../etc/passwd", "", XSS):
            answer = await client.post("/settings", data={"csrf": csrf, "timezone": name})
            assert answer.status_code == 400
            assert "timezone: " in answer.text
            assert "is not an IANA time zone name" in answer.text
            assert XSS not in answer.text
            assert "jm_timezone" not in client.cookies
        assert (await client.post("/settings", data={"timezone": "Asia/Tokyo"})).status_code == 403

        answer = await client.post("/settings", data={"csrf": csrf, "timezone": "Europe/Paris"})
        assert (answer.status_code, answer.headers["location"]) == (303, "/settings?done=timezone")
        assert "httponly" in answer.headers["set-cookie"].lower()
        done = (await client.get(answer.headers["location"])).text
        assert "Times are now shown in Europe/Paris (+01:00)." in done
        page = (await client.get("/profiles/u1")).text
        assert "data-zone>Europe/Paris (+01:00)</a>" in page
        assert (
            '<time datetime="2026-01-05T09:30:15Z" title="2026-01-05 10:30:15 Europe/Paris '
            '(+01:00)">2026-01-05 10:30:15 +01:00</time>'
        ) in page
        # The data stays in UTC: the JSON twin is the same whatever the zone.
        data = (await client.get("/profiles/u1", headers=JSON)).json()
        assert data["instances"][0]["entered_at"] == "2026-01-05T09:30:15Z"

        client.cookies.set("jm_timezone", "Not/AZone")  # a forged cookie: UTC again
        assert "data-zone>UTC</a>" in (await client.get("/journeys")).text

    run_console(tmp_path, test, clock=lambda: at)


def test_pause_resume_stop_and_publish_are_kept_with_who_and_when_and_shown_per_journey(
    tmp_path: Path,
) -> None:
    at = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)

    async def test(client: Client, runtime: Runtime) -> None:
        await track(client, {"userId": "u1", "event": "signed_up", "properties": {"plan": "pro"}})
        await log_in(client, "sam", "sam-password")
        for command in ("pause", "resume", "stop"):
            confirm = await client.get(f"/journeys/hello/{command}")
            await client.post(f"/journeys/hello/{command}", data={"csrf": _csrf(confirm.text)})
        folder = runtime.root
        assert folder is not None
        (folder / "doc01.yaml").write_text(JOURNEY.replace("wait: 1d", "wait: 2d"))
        await client.post("/workspace", data={"csrf": await csrf_of(client, "/workspace")})

        api = (await client.get("/v1/journeys/hello", headers=ADMIN)).json()
        done = [(a["command"], a["by"], a["via"], a["count"]) for a in api["audit"]]
        assert done == [
            ("publish", "sam", "console", None),
            ("stop", "sam", "console", 1),
            ("resume", "sam", "console", 0),
            ("pause", "sam", "console", None),
            ("publish", "serve", "serve", None),
        ]
        assert api["audit"][0]["at"] == "2026-01-05T09:30:00Z"
        assert (api["audit"][0]["journey_version"], api["audit"][0]["workspace_version"]) == (2, 2)

        page = (await client.get("/journeys/hello")).text
        history = page[page.index('id="history"') :]
        assert re.findall(r'data-audit="(\w+)"', history) == [
            "publish",
            "stop",
            "resume",
            "pause",
            "publish",
        ]
        assert 'stopped</span>\n      <span class="by">by sam</span>' in history
        assert "1 instance(s) ended" in history
        assert "v2 in workspace version 2" in history

        status = (await client.get("/v1/workspace", headers=ADMIN)).json()
        assert [(p["by"], p["workspace_version"]) for p in status["publishes"]] == [
            ("sam", 2),
            ("serve", 1),
        ]

    run_console(tmp_path, test, clock=lambda: at)


def test_an_api_call_may_name_who_gives_it_and_a_bad_name_changes_nothing(tmp_path: Path) -> None:
    async def test(client: Client, runtime: Runtime) -> None:
        for body in ({"by": ""}, {"by": 7}, {"by": "x" * 101}, {"by": "a\x00b"}, ["ops"]):
            answer = await client.post("/v1/journeys/hello/pause", json=body, headers=ADMIN)
            assert answer.status_code == 400, body
            assert answer.json()["error"]["field"] == ("body" if isinstance(body, list) else "by")
        assert await runtime.store.journey_states() == {}
        assert (await client.get("/v1/journeys/hello", headers=ADMIN)).json()["audit"][0][
            "command"
        ] == "publish"  # serve's, at start: nothing else

        answer = await client.post(
            "/v1/journeys/hello/pause", json={"by": "ops@example.com"}, headers=ADMIN
        )
        assert answer.status_code == 200
        assert (await client.post("/v1/journeys/hello/resume", headers=ADMIN)).status_code == 200
        files = {"hello.yaml": BASE + "\n---\n" + JOURNEY.replace("wait: 1d", "wait: 3d")}
        bad = await client.put("/v1/workspace", json={"files": files, "by": ""}, headers=ADMIN)
        assert (bad.status_code, bad.json()["error"]["field"]) == (400, "by")
        assert runtime.version == 1
        answer = await client.put("/v1/workspace", json={"files": files, "by": "ci"}, headers=ADMIN)
        assert answer.status_code == 200, answer.text

        audit = (await client.get("/v1/journeys/hello", headers=ADMIN)).json()["audit"]
        assert [(a["command"], a["by"], a["via"]) for a in audit] == [
            ("publish", "ci", "api"),
            ("resume", "api", "api"),
            ("pause", "ops@example.com", "api"),
            ("publish", "serve", "serve"),
        ]
        publishes = (await client.get("/v1/workspace", headers=ADMIN)).json()["publishes"]
        assert [(p["by"], p["workspace_version"]) for p in publishes] == [("ci", 2), ("serve", 1)]

    run_console(tmp_path, test)
