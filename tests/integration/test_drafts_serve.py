"""The editor's drafts on a real ``journeyman serve`` (SQLite file, PostgreSQL): two people
edit one journey, the second save is refused with the first one's draft; a draft is
checked, discarded, saved to the workspace folder with its comments, and published, and
the next event takes the new step. A removal is published from the console too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import WRITE_KEY, Journeyman
from tests.waiting import wait_until

pytestmark = pytest.mark.durable

EVENTS = """\
kind: event
name: signed_up
"""
ONBOARD = """\
# Onboarding: new accounts settle, then end.
kind: journey
name: onboard
entry:
  event: signed_up   # every sign-up
steps:
  - id: settle
    wait: 1d        # long: the editor changes it

  # the end
  - id: done
    end: settled
"""
USERS = {"JOURNEYMAN_CONSOLE_USERS": "ana:ana-password,bob:bob-password"}
DRAFT = "/editor/api/journeys/onboard/draft"


class Console:
    """A logged-in person's console session, sending the page's CSRF token on writes."""

    def __init__(self, url: str, user: str) -> None:
        self.http = httpx.Client(base_url=url, trust_env=False, timeout=20)
        token = re.search(r'name="csrf" value="([^"]+)"', self.http.get("/login").text)
        assert token is not None
        fields = {"csrf": token.group(1), "user": user, "key": f"{user}-password"}
        assert self.http.post("/login", data=fields).status_code == 303
        page = re.search(r'name="csrf" value="([^"]+)"', self.http.get("/journeys").text)
        assert page is not None
        self.csrf = page.group(1)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf}
        return self.http.request(method, path, json=body, headers=headers)


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[Journeyman]:
    folder = tmp_path / "ws"
    (folder / "journeys").mkdir(parents=True)
    (folder / "events.yaml").write_text(EVENTS)
    (folder / "journeys" / "onboard.yaml").write_text(ONBOARD)
    with Journeyman(folder, store_url, tmp_path, env=USERS) as running:
        yield running.start()


def with_greeting(document: dict[str, Any]) -> dict[str, Any]:
    """The journey with a first step that marks the profile greeted, and a short wait."""
    steps = [{"id": "greet", "update_profile": {"set": {"greeted": True}}}, *document["steps"]]
    steps[1] = {**steps[1], "wait": "1h"}
    return {**document, "steps": steps}


def test_two_people_edit_a_draft_save_it_with_its_comments_and_publish_it(
    server: Journeyman,
) -> None:
    with ExitStack() as stack:
        ana, bob = Console(server.url, "ana"), Console(server.url, "bob")
        stack.callback(ana.http.close)
        stack.callback(bob.http.close)
        admin = stack.enter_context(server.client())

        fresh = ana.get(DRAFT).json()
        assert (fresh["stored"], fresh["revision"], fresh["file"]) == (
            False,
            None,
            "journeys/onboard.yaml",
        )
        assert fresh["text"] == ONBOARD
        assert fresh["diff"] == ""
        assert fresh["problems"] == []

        # Ana starts a draft; Bob opens it and saves his change on top.
        edited = with_greeting(fresh["document"])
        first = ana.send("PUT", DRAFT, {"document": edited, "revision": None})
        assert first.status_code == 200, first.text
        mine = first.json()
        assert (mine["stored"], mine["by"]) == (True, "ana")
        assert "+  - id: greet\n" in mine["diff"]
        assert "-    wait: 1d        # long: the editor changes it\n" in mine["diff"]
        assert "+    wait: 1h        # long: the editor changes it\n" in mine["diff"]
        seen = bob.get(DRAFT).json()
        assert (seen["revision"], seen["by"]) == (mine["revision"], "ana")
        theirs = {**seen["document"], "description": "Bob was here"}
        answer = bob.send("PUT", DRAFT, {"document": theirs, "revision": seen["revision"]})
        assert answer.status_code == 200, answer.text
        bobs = answer.json()

        # Ana's next save starts from the revision Bob replaced: refused, nothing written.
        again = {**edited, "timeout": "30d"}
        late = ana.send("PUT", DRAFT, {"document": again, "revision": mine["revision"]})
        assert late.status_code == 409, late.text
        refused = late.json()
        assert refused["error"]["field"] == "revision"
        assert refused["error"]["message"].startswith("bob saved this draft at ")
        assert refused["theirs"]["revision"] == bobs["revision"]
        assert "Bob was here" in refused["theirs"]["text"]
        assert "-timeout: 30d\n" in refused["diff"]
        assert "+description: Bob was here\n" in refused["diff"]
        assert ana.get(DRAFT).json()["revision"] == bobs["revision"]

        # Checked as she types: problems with the path, line and column of the draft.
        broken = {**edited, "steps": [edited["steps"][0], {"id": "settle", "wait": "soon"}]}
        checked = ana.send("POST", f"{DRAFT}/check", {"document": broken})
        assert checked.status_code == 200, checked.text
        problems = checked.json()["problems"]
        soon = [p for p in problems if "soon" in p["message"]]
        assert [(p["path"], p["column"]) for p in soon] == [("steps[1].wait", 5)]
        assert soon[0]["message"].startswith(f"journeys/onboard.yaml:{soon[0]['line']}: ")
        line = checked.json()["text"].splitlines()[soon[0]["line"] - 1]
        assert line.startswith("    wait: soon ")

        # Bob discards; the draft is the folder's again.
        assert bob.send("DELETE", DRAFT).status_code == 204
        assert ana.get(DRAFT).json()["stored"] is False

        # A draft with errors is stored, but not saved to the folder.
        answer = ana.send("PUT", DRAFT, {"document": broken, "revision": None})
        assert answer.status_code == 200, answer.text
        assert any("soon" in p["message"] for p in answer.json()["problems"])
        revision = answer.json()["revision"]
        refused = ana.send("POST", f"{DRAFT}/save", {"revision": revision})
        assert refused.status_code == 422, refused.text
        assert any("soon" in p["message"] for p in refused.json()["problems"])
        assert (server.workspace / "journeys" / "onboard.yaml").read_text() == ONBOARD

        # Fixed, saved to the folder with the comments, then published.
        answer = ana.send("PUT", DRAFT, {"document": edited, "revision": revision})
        assert answer.status_code == 200, answer.text
        revision = answer.json()["revision"]
        saved = ana.send("POST", f"{DRAFT}/save", {"revision": revision})
        assert saved.status_code == 200, saved.text
        assert saved.json() == {"file": "journeys/onboard.yaml", "saved": True}
        written = (server.workspace / "journeys" / "onboard.yaml").read_text()
        assert written == answer.json()["text"]
        for comment in ("# Onboarding", "# every sign-up", "# long: the editor", "# the end"):
            assert comment in written
        published = ana.send("POST", f"{DRAFT}/publish", {"revision": revision})
        assert published.status_code == 200, published.text
        plan = published.json()["plan"]
        assert (plan["changed"], plan["versions"]["onboard"]) == (["onboard"], 2)
        assert ana.get(DRAFT).json()["stored"] is False

        # The next sign-up takes the new first step.
        with server.client(WRITE_KEY) as client:
            sent = client.post("/v1/track", json={"userId": "u1", "event": "signed_up"})
            assert sent.status_code == 202, sent.text

        def greeted() -> bool:
            answer = admin.get("/v1/profiles/u1")
            return answer.status_code == 200 and answer.json()["traits"].get("greeted") is True

        wait_until(greeted, "u1 to be greeted by the published draft")

        audit = admin.get("/v1/journeys/onboard").json()["audit"]
        assert [(a["command"], a["by"], a["via"]) for a in audit] == [
            ("publish", "ana", "console"),
            ("save", "ana", "console"),
            ("edit", "ana", "console"),
            ("draft", "ana", "console"),
            ("discard", "bob", "console"),
            ("edit", "bob", "console"),
            ("draft", "ana", "console"),
            ("publish", "serve", "serve"),
        ]


def test_the_admin_api_keeps_drafts_with_who_made_them(server: Journeyman) -> None:
    with server.client() as admin:
        path = "/v1/journeys/onboard/draft"
        document = admin.get(path).json()["document"]
        missing = admin.put(path, json={"document": document, "revision": None})
        assert missing.status_code == 422
        assert missing.json()["error"]["field"] == "by"
        answer = admin.put(path, json={"document": document, "revision": None, "by": "ci"})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["by"], answer.json()["diff"]) == ("ci", "")
        assert admin.get(path).json()["revision"] == answer.json()["revision"]
        assert admin.request("DELETE", path, params={"by": "ci"}).status_code == 204
        new = admin.get("/v1/journeys/fresh/draft", params={"new": "1"}).json()
        assert (new["stored"], new["file"], new["document"]["name"]) == (
            False,
            "journeys/fresh.yaml",
            "fresh",
        )
        assert admin.get("/v1/journeys/fresh/draft").status_code == 404
        schema = admin.get("/v1/editor/schema").json()
        assert "signed_up" in schema["completions"]["events"]
        assert schema["completions"]["steps"]["onboard"] == ["settle", "done"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"revision": None}, "document"),
        ({"document": "kind: journey", "revision": None}, "document"),
        ({"document": {"kind": "event", "name": "onboard"}, "revision": None}, "document.kind"),
        ({"document": {"kind": "journey", "name": "other"}, "revision": None}, "document.name"),
        ({"document": {"kind": "journey", "name": "onboard"}, "revision": 5}, "revision"),
        ({"document": {"kind": "journey", "name": "onboard"}, "colour": "red"}, "colour"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field_and_changes_nothing(
    server: Journeyman, body: Any, field: str
) -> None:
    ana = Console(server.url, "ana")
    try:
        answer = ana.send("PUT", DRAFT, body)
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.json()["error"]["field"] == field
        assert ana.get(DRAFT).json()["stored"] is False
    finally:
        ana.http.close()


def test_the_console_api_needs_a_session_and_its_csrf_token_for_writes(
    server: Journeyman,
) -> None:
    ana = Console(server.url, "ana")
    try:
        document = ana.get(DRAFT).json()["document"]
        body = {"document": document, "revision": None}
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            answer = ana.http.put(DRAFT, json=body, headers=headers)
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["field"] == "X-CSRF-Token"
        with httpx.Client(base_url=server.url, trust_env=False) as stranger:
            answer = stranger.get(DRAFT)
            assert answer.status_code == 401
            assert answer.json()["error"]["field"] == "session"
            answer = stranger.put(DRAFT, json=body, headers={"X-CSRF-Token": ana.csrf})
            assert answer.status_code == 401
        assert ana.get(DRAFT).json()["stored"] is False
    finally:
        ana.http.close()


def test_the_console_publishes_a_folder_whose_only_change_is_a_removed_journey(
    server: Journeyman,
) -> None:
    extra = server.workspace / "journeys" / "spare.yaml"
    with server.client() as admin:
        ana = Console(server.url, "ana")
        try:
            extra.write_text(ONBOARD.replace("name: onboard", "name: spare"))
            publish(ana)
            assert "spare" in admin.get("/v1/workspace").json()["plan"]["unchanged"]
            extra.unlink()
            page = ana.get("/workspace").text
            assert "Nothing to publish" not in page
            assert re.search(r'plan-removed">spare', page)
            assert "remove 1" in page
            done = publish(ana)
            assert "1 removed (spare)" in done
            status = admin.get("/v1/workspace").json()
            assert status["plan"]["removed"] == []
            assert status["running"]["version"] == 3
            assert "Nothing to publish" in ana.get("/workspace").text
            journeys = {j["name"]: j["state"] for j in admin.get("/v1/journeys").json()["journeys"]}
            assert journeys["spare"] == "removed"
        finally:
            ana.http.close()


def publish(person: Console) -> str:
    """Press the workspace page's Publish button; the message the page then shows."""
    page = person.get("/workspace").text
    assert 'type="submit" class="primary">Publish' in page, page
    answer = person.http.post("/workspace", data={"csrf": person.csrf})
    assert answer.status_code == 303, answer.text
    return person.get(answer.headers["location"]).text
