"""The journey editor's endpoints under attack, on a real ``journeyman serve``: names that
would leave the workspace folder, symlinks and files it cannot read, NUL and control
characters, deep, huge and broken documents, forged and missing CSRF tokens, cross-site
requests, two saves at once, and journeys, templates and profiles that would keep the
server busy. Each is refused with a 4xx naming the field and the rule (or answered within
its time), changes nothing, and leaves the server answering."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_drafts_serve import Console
from tests.servers import WRITE_KEY, Journeyman
from tests.waiting import wait_until

pytestmark = pytest.mark.durable

EVENTS = """\
kind: event
name: signed_up
---
kind: template
name: hello
channel: email
transactional: true
subject: "Hello {{ profile.firstName | default: 'there' }}"
text: "Hello"
"""
ONBOARD = """\
# Onboarding
kind: journey
name: onboard
entry:
  event: signed_up
steps:
  - id: settle
    wait: 1d
  - id: greet
    send: hello
  - id: done
    end: settled
"""
ONBOARD_TEST = """\
kind: test
name: a sign-up is greeted after a day
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 0s
    track: {userId: u1, event: signed_up}
expect:
  - sent: greet
    journey: onboard
"""
USERS = {"JOURNEYMAN_CONSOLE_USERS": "ana:ana-password"}
# A journey that waits in a loop: it has a timer forever.
LOOPING = [
    {"id": "settle", "wait": "1s"},
    {"id": "greet", "send": "hello", "next": "settle"},
    {"id": "done", "end": "settled"},
]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the workspace's, with a journey file in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "stolen.yaml").write_text(ONBOARD.replace("onboard", "stolen"))
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "ws"
    (folder / "journeys").mkdir(parents=True)
    (folder / "tests").mkdir()
    (folder / "events.yaml").write_text(EVENTS)
    (folder / "journeys" / "onboard.yaml").write_text(ONBOARD)
    (folder / "journeys" / "onboard.yaml").chmod(0o644)
    (folder / "tests" / "onboard.yaml").write_text(ONBOARD_TEST)
    return folder


@pytest.fixture
def server(tmp_path: Path, store_url: str, folder: Path) -> Iterator[Journeyman]:
    with Journeyman(folder, store_url, tmp_path, env=USERS) as running:
        yield running.start()


@pytest.fixture
def admin(server: Journeyman) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def refused(answer: httpx.Response, status: int, field: str, rule: str) -> None:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["field"], error["rule"]) == (field, rule), error


def document(admin: httpx.Client, name: str = "onboard") -> dict[str, Any]:
    answer = admin.get(f"/v1/journeys/{name}/draft")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["document"]
    return found


def no_draft(admin: httpx.Client, name: str = "onboard") -> None:
    assert admin.get(f"/v1/journeys/{name}/draft").json()["stored"] is False


def test_names_that_would_leave_the_folder_or_hold_control_characters_are_refused(
    admin: httpx.Client, folder: Path
) -> None:
    before = files(folder)
    bad = ["%2e%2e", ".hidden", "a%00b", "a%0Ab", "a%1Bb", "-x", "x" * 101, "caf%C3%A9", "a%20b"]
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "draft?new=1", None),
        ("PUT", "draft?by=eve", {"document": {}, "revision": None}),
        ("DELETE", "draft?by=eve", None),
        ("POST", "draft/check", {"document": {}}),
        ("POST", "draft/save?by=eve", {"revision": None}),
        ("POST", "draft/publish?by=eve", {"revision": None}),
        ("POST", "draft/tests", {}),
        ("POST", "draft/try", {"profile": "u1"}),
    ]
    for name in bad:
        for method, path, body in calls:
            answer = admin.request(method, f"/v1/journeys/{name}/{path}", json=body)
            refused(answer, 422, "name", "pattern")
    # A slash, encoded or not, is no journey's: no such endpoint.
    for name in ["..%2F..%2Fetc", "../x", "a/b"]:
        assert admin.get(f"/v1/journeys/{name}/draft?new=1").status_code == 404
    assert files(folder) == before


def test_a_journey_file_that_leads_out_of_the_folder_is_never_written(
    admin: httpx.Client, folder: Path, outside: Path
) -> None:
    (folder / "journeys" / "stolen.yaml").symlink_to(outside / "stolen.yaml")
    theirs = (outside / "stolen.yaml").read_bytes()
    draft = admin.get("/v1/journeys/stolen/draft").json()
    edited = {**draft["document"], "description": "written through a link"}
    put = admin.put("/v1/journeys/stolen/draft?by=eve", json={"document": edited, "revision": None})
    assert put.status_code == 200, put.text
    answer = admin.post(
        "/v1/journeys/stolen/draft/save?by=eve", json={"revision": put.json()["revision"]}
    )
    refused(answer, 422, "file", "inside")
    assert (outside / "stolen.yaml").read_bytes() == theirs
    assert sorted(p.name for p in outside.iterdir()) == ["stolen.yaml"]


def test_a_file_that_cannot_be_read_is_not_replaced_by_a_new_journey(
    admin: httpx.Client, folder: Path
) -> None:
    latin = "kind: journey\nname: caf\xe9\n".encode("latin-1")
    (folder / "journeys" / "cafe.yaml").write_bytes(latin)
    fresh = admin.get("/v1/journeys/cafe/draft?new=1").json()
    assert fresh["file"] == "journeys/cafe.yaml"
    mine = {**fresh["document"], "entry": {"event": "signed_up"}}
    put = admin.put("/v1/journeys/cafe/draft?by=eve", json={"document": mine, "revision": None})
    assert put.status_code == 200, put.text
    answer = admin.post(
        "/v1/journeys/cafe/draft/save?by=eve", json={"revision": put.json()["revision"]}
    )
    refused(answer, 409, "file", "readable")
    assert (folder / "journeys" / "cafe.yaml").read_bytes() == latin
    # A folder where the file would go is not replaced either.
    (folder / "journeys" / "shelf.yaml").mkdir()
    shelf = admin.get("/v1/journeys/shelf/draft?new=1").json()["document"]
    mine = {**shelf, "entry": {"event": "signed_up"}}
    put = admin.put("/v1/journeys/shelf/draft?by=eve", json={"document": mine, "revision": None})
    answer = admin.post(
        "/v1/journeys/shelf/draft/save?by=eve", json={"revision": put.json()["revision"]}
    )
    refused(answer, 409, "file", "readable")
    assert (folder / "journeys" / "shelf.yaml").is_dir()


def test_saving_a_draft_keeps_the_files_mode_and_writes_nothing_else(
    admin: httpx.Client, folder: Path
) -> None:
    before = files(folder)
    edited = {**document(admin), "description": "Greets after a day"}
    put = admin.put(
        "/v1/journeys/onboard/draft?by=eve", json={"document": edited, "revision": None}
    )
    saved = admin.post(
        "/v1/journeys/onboard/draft/save?by=eve", json={"revision": put.json()["revision"]}
    )
    assert saved.status_code == 200, saved.text
    target = folder / "journeys" / "onboard.yaml"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    after = files(folder)
    assert set(after) == set(before)  # no temporary file left, nothing new
    assert [name for name in after if after[name] != before[name]] == ["journeys/onboard.yaml"]


def test_broken_deep_huge_and_nul_documents_are_refused_and_store_nothing(
    admin: httpx.Client, folder: Path
) -> None:
    before = files(folder)
    mine = document(admin)
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    many = [{"id": f"s{i}", "wait": "1s"} for i in range(7000)]
    draft = "/v1/journeys/onboard/draft?by=eve"
    cases: list[tuple[Any, int, str, str]] = [
        ({**mine, "x": deep}, 422, "document", "depth"),
        ({**mine, "steps": many}, 422, "document", "size"),
        ({**mine, "description": "a\x00b"}, 422, "document", "text"),
        ({**mine, "steps": [{"id": "a\x00", "wait": "1s"}]}, 422, "document", "text"),
        ({**mine, "kind": "template"}, 422, "document.kind", "value"),
        ({**mine, "name": "other"}, 422, "document.name", "value"),
        ([mine], 422, "document", "type"),
    ]
    for body, status, field, rule in cases:
        refused(admin.put(draft, json={"document": body, "revision": None}), status, field, rule)
        refused(
            admin.post(draft.replace("?", "/check?"), json={"document": body}), status, field, rule
        )
    raw = [
        (b'{"document": {"kind": "journey", "name": "onboard", "x": "\\ud800"}}', 400, "body"),
        (b"[" * 100_000, 400, "body"),
        (b'{"document": 1', 400, "body"),
        (b'{"document": "' + b"x" * (1024 * 1024 + 1) + b'"}', 413, "body"),
        (b'{"documen\\u0000t": 1, "revision": null}', 422, "documen\x00t"),
    ]
    for content, status, field in raw:
        headers = {"Content-Type": "application/json"}
        answer = admin.put(draft, content=content, headers=headers)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["field"] == field
    # Control characters other than NUL are text: kept, and read back the same.
    odd = "tab\there, escape \x1b[31m, line\u2028separator, \x85 and \x7f"
    put = admin.put(draft, json={"document": {**mine, "description": odd}, "revision": None})
    assert put.status_code == 200, put.text
    assert admin.get("/v1/journeys/onboard/draft").json()["document"]["description"] == odd
    assert admin.delete(draft).status_code == 204
    no_draft(admin)
    assert files(folder) == before


def test_console_writes_need_the_sessions_csrf_token_and_reads_change_nothing(
    server: Journeyman, admin: httpx.Client
) -> None:
    ana = Console(server.url, "ana")
    path = "/editor/api/journeys/onboard/draft"
    body = {"document": document(admin), "revision": None}
    try:
        for headers in [{}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}]:
            for method, where, sent in [
                ("PUT", path, body),
                ("DELETE", path, None),
                ("POST", f"{path}/save", {"revision": None}),
                ("POST", f"{path}/publish", {"revision": None}),
                ("POST", f"{path}/check", {"document": body["document"]}),
                ("POST", f"{path}/tests", {}),
                ("POST", "/editor/api/preview", {"name": "hello"}),
            ]:
                answer = ana.http.request(method, where, json=sent, headers=headers)
                refused(answer, 403, "X-CSRF-Token", "csrf")
        # Another site's page: its own origin, the session cookie (SameSite=Strict keeps
        # browsers from sending it), no token it could read.
        cross = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
        answer = ana.http.put(path, content=b'{"document": {}}', headers=cross)
        refused(answer, 403, "X-CSRF-Token", "csrf")
        preflight = ana.http.options(
            path,
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "x-csrf-token",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers
        # Without a session: 401, whatever the token.
        with httpx.Client(base_url=server.url, trust_env=False) as stranger:
            answer = stranger.put(path, json=body, headers={"X-CSRF-Token": ana.csrf})
            refused(answer, 401, "session", "login")
        # Reads change nothing: a new journey's draft is not stored, a GET of a write is 405.
        assert ana.get("/editor/api/journeys/brand_new/draft?new=1").status_code == 200
        assert ana.get("/editor/api/journeys/brand_new/draft").status_code == 404
        for where in [f"{path}/save", f"{path}/publish", f"{path}/check", "/editor/api/preview"]:
            assert ana.get(where).status_code == 405
        no_draft(admin)
        assert ana.send("PUT", path, body).status_code == 200  # the page's own token works
    finally:
        ana.http.close()


def test_of_two_saves_at_once_exactly_one_wins(server: Journeyman, admin: httpx.Client) -> None:
    mine = document(admin)
    path = "/v1/journeys/onboard/draft"

    def race(revision: str | None) -> list[int]:
        answers: list[int] = []
        start = threading.Barrier(4)

        def save(who: str) -> None:
            with server.client() as client:
                start.wait()
                sent = {"document": {**mine, "description": who}, "revision": revision}
                answers.append(client.put(f"{path}?by={who}", json=sent).status_code)

        threads = [threading.Thread(target=save, args=(f"p{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sorted(answers)

    assert race(None) == [200, 409, 409, 409]
    stored = admin.get(path).json()
    assert race(stored["revision"]) == [200, 409, 409, 409]
    latest = admin.get(path).json()
    assert latest["revision"] != stored["revision"]
    assert latest["by"] == latest["document"]["description"]  # one whole save, not a mix


def answers_meanwhile(server: Journeyman, work: Any) -> tuple[httpx.Response, float, int]:
    """Run ``work()`` (a request) in a thread; how it answered, how long it took, and how
    many health checks the server answered meanwhile."""
    done: list[httpx.Response] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: done.append(work()))
    thread.start()
    healthy = 0
    with httpx.Client(base_url=server.url, trust_env=False, timeout=2) as probe:
        while thread.is_alive():
            healthy += probe.get("/healthz").status_code == 200
            thread.join(0.2)
    return done[0], time.monotonic() - started, healthy


def test_a_journey_that_waits_in_a_loop_stops_its_tests_and_tries_in_time(
    server: Journeyman, admin: httpx.Client
) -> None:
    calls = [
        {"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}},
        {"type": "track", "userId": "u1", "event": "signed_up"},
    ]
    with server.client(WRITE_KEY) as ingest:
        assert ingest.post("/v1/batch", json={"batch": calls}).status_code == 200

    def stored() -> bool:
        found = admin.post("/v1/journeys/onboard/draft/try", json={"profile": "u1"})
        return found.status_code == 200 and found.json()["events"] == 2

    wait_until(stored, "the profile's events to be stored")
    looping = {**document(admin), "steps": LOOPING}
    with server.client() as client:
        client.timeout = httpx.Timeout(60)
        answer, took, healthy = answers_meanwhile(
            server,
            lambda: client.post("/v1/journeys/onboard/draft/tests", json={"document": looping}),
        )
        # It makes trace lines faster than it takes time: the trace limit stops it first.
        assert answer.status_code == 200, answer.text
        assert answer.json()["failed"] >= 1
        failures = [f for r in answer.json()["results"] for f in r["failures"]]
        assert any(f.startswith("stopped at the trace limit of 100,000 lines") for f in failures)
        assert took < 12
        assert healthy > 0
        answer, took, healthy = answers_meanwhile(
            server,
            lambda: client.post(
                "/v1/journeys/onboard/draft/try",
                json={"profile": "u1", "document": looping, "until": "end"},
            ),
        )
        refused(answer, 422, "profile", "trace")
        assert "more than 100,000 trace lines" in answer.json()["error"]["message"]
        assert took < 12
        assert healthy > 0
    # The same draft tried until now, and the workspace's tests as they are, still answer.
    tried = admin.post(
        "/v1/journeys/onboard/draft/try", json={"profile": "u1", "document": looping}
    )
    assert tried.status_code == 200, tried.text
    assert admin.post("/v1/journeys/onboard/draft/tests", json={}).json()["failed"] == 0


def test_templates_that_would_render_for_minutes_stop_within_seconds(
    server: Journeyman, admin: httpx.Client
) -> None:
    def template(html: str) -> dict[str, Any]:
        body = {"kind": "template", "name": "t", "channel": "email", "subject": "s", "text": "t"}
        return {"template": {**body, "html": html}}

    busy = [
        "{% for i in (1..9999) %}{% cycle 'a', 'b' %}{% endfor %}" * 500,
        "{% for i in (1..9999) %}{% if i > 0 and i > 1 and i > 2 %}{% endif %}{% endfor %}" * 500,
        "{% assign s = 'xxxxxxxxxx' %}"
        + "{% assign s = s | append: s %}" * 16
        + "{% for i in (1..9999) %}{% assign t = s | replace: 'x', 'y' %}{% endfor %}" * 50,
        "{% for i in (1..1000000000) %}x{% endfor %}{{ (1..100000000) | join: ',' }}",
    ]
    for html in busy:
        answer, took, _ = answers_meanwhile(
            server, lambda html=html: admin.post("/v1/preview", json=template(html))
        )
        assert took < 8, html[:60]
        if answer.status_code == 422:
            refused(answer, 422, "template", "time")
        else:
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["html"]) <= 1_000_000
    refused(
        admin.post("/v1/check", json={"kind": "liquid", "text": "{{" * 200_000}),
        422,
        "text",
        "length",
    )
    checked = admin.post("/v1/check", json={"kind": "liquid", "text": "{% if a %}" * 5000})
    assert checked.status_code == 200
    assert checked.json()["problems"]


def test_a_profile_with_many_events_and_big_traits_is_tried_within_its_limits(
    server: Journeyman, admin: httpx.Client
) -> None:
    big = {f"trait_{i}": "x" * 200 for i in range(100)}
    calls = [{"type": "identify", "userId": "busy", "traits": {"email": "b@e.com", **big}}]
    calls += [{"type": "track", "userId": "busy", "event": "signed_up"} for _ in range(1199)]
    with server.client(WRITE_KEY) as ingest:
        for start in range(0, len(calls), 400):
            answer = ingest.post("/v1/batch", json={"batch": calls[start : start + 400]})
            assert answer.status_code == 200, answer.text

    def stored() -> bool:
        found = admin.post("/v1/journeys/onboard/draft/try", json={"profile": "busy"})
        return found.status_code == 200 and found.json()["events"] >= 1000

    wait_until(stored, "the profile's events to be stored")
    answer, took, _healthy = answers_meanwhile(
        server,
        lambda: admin.post(
            "/v1/journeys/onboard/draft/try", json={"profile": "busy", "until": "end"}
        ),
    )
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 200:
        assert answer.json()["events"] == 1000  # the latest thousand, and no more
    else:
        refused(answer, 422, "profile", "time")
    assert took < 20
    preview = admin.post("/v1/preview", json={"name": "hello", "profile": "busy"})
    assert preview.status_code == 200, preview.text


def test_tests_without_a_document_run_with_the_stored_draft(admin: httpx.Client) -> None:
    path = "/v1/journeys/onboard/draft"
    assert admin.post(f"{path}/tests", json={}).json()["passed"] == 1
    mine = document(admin)
    without_greet = {**mine, "steps": [s for s in mine["steps"] if s["id"] != "greet"]}
    put = admin.put(f"{path}?by=eve", json={"document": without_greet, "revision": None})
    assert put.status_code == 200, put.text
    # The workspace's test expects the step the stored draft took out.
    refused(admin.post(f"{path}/tests", json={}), 422, "document", "valid")
    assert admin.delete(f"{path}?by=eve").status_code == 204
    assert admin.post(f"{path}/tests", json={}).json()["passed"] == 1
