"""The journey editor shows hostile text as text: script in a journey's description, a
step's id and description, an event name, an end state, a template's subject and HTML,
a profile's traits, and the problems that quote them never runs in the editor's page,
and an email's HTML previews in a sandboxed frame that runs no script.

A real headless Chromium against a real ``journeyman serve``; each attack would set
``window.pwned`` (or mark the document) if it ran.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_browser import PASSWORD, USER
from tests.browser.test_console_layout import browser
from tests.browser.test_editor import Tab
from tests.conftest import write_workspace
from tests.servers import WRITE_KEY, Journeyman
from tests.waiting import wait_until

__all__ = ["browser"]  # the layout tests' browser fixture, shared

# A valid workspace: an event, and a template whose subject and HTML are hostile.
WORKSPACE = """
kind: event
name: signed_up
---
kind: template
name: evil_email
channel: email
transactional: true
subject: "Hi {{ profile.firstName }} <img src=x onerror=\\"window.pwned='subject'\\">"
html: >-
  <script>document.documentElement.dataset.ran = 'script'</script>
  <img src=x onerror="parent.pwned = 'frame'"><h1>Hello {{ profile.firstName }}</h1>
text: Hello
"""
# A journey written into the folder once the server runs: markup everywhere, an id and an
# event that are not valid, so that the problems quote them too.
JOURNEY = """
kind: journey
name: evil
description: "<img src=x onerror=\\"window.pwned='description'\\">"
entry:
  event: signed_up
steps:
  - id: greet
    description: "<script>window.pwned = 'step description'</script>"
    send: evil_email
  - id: wait
    wait_for:
      event: "<svg onload=window.pwned='event'>"
      timeout: 1d
  - id: "bad<img src=x onerror=window.pwned='id'>"
    end: "<b onmouseover=window.pwned='end'>done</b>"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("attacks")
    workspace = write_workspace(folder / "ws", WORKSPACE)
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}"}
    with Journeyman(workspace, f"sqlite:///{folder / 'j.db'}", folder, env=users) as running:
        running.start()
        (workspace / "evil.yaml").write_text(JOURNEY)
        yield running


@pytest.fixture
def tab(browser: Browser, server: Journeyman) -> Iterator[Tab]:
    opened = Tab(browser, server, 1280, 1500)
    yield opened
    opened.context.close()


BLOCKED = "Blocked script execution in 'about:srcdoc' because the document's frame is sandboxed"


def unexpected(errors: list[str]) -> list[str]:
    """The page's errors but the sandbox's own report of the script it refused to run."""
    return [error for error in errors if not error.startswith(BLOCKED)]


def ran(page: Page) -> object:
    return page.evaluate("window.pwned ?? document.documentElement.dataset.ran ?? null")


def test_hostile_text_in_a_journey_and_its_problems_shows_as_text(tab: Tab) -> None:
    page = tab.edit("/journeys/evil/edit")
    canvas = page.locator("[data-canvas]")
    expect(canvas.locator('[data-node="greet"]')).to_have_count(1)
    expect(canvas).to_contain_text("bad<img")  # the step whose id is markup: its id as text
    # The problems quote the id and the event, as text.
    expect(page.locator("[data-problems]")).to_contain_text("<svg onload=")
    # Each step's form shows its fields (descriptions, the event, the end state) as text.
    boxes = canvas.locator("[data-node]")
    for index in range(boxes.count()):
        boxes.nth(index).focus()
        page.keyboard.press("Enter")
        expect(page.locator("[data-inspector]")).not_to_be_empty()
        page.locator("[data-inspector]").hover()
    expect(page.locator("[data-diff], [data-inspector]").first).to_be_attached()
    assert (
        page.locator("#editor img[src='x'], #editor svg[onload], #editor b[onmouseover]").count()
        == 0
    )
    assert page.locator("#editor script").count() == 0
    assert ran(page) is None
    assert unexpected(tab.errors) == []


def test_an_emails_html_previews_in_a_frame_that_runs_no_script(
    tab: Tab, server: Journeyman
) -> None:
    hostile = "<img src=x onerror=\"window.pwned='trait'\">"
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as http:
        answer = http.post(
            "/v1/identify",
            headers={"Authorization": f"Bearer {WRITE_KEY}"},
            json={"userId": "mallory", "traits": {"firstName": hostile, "email": "m@e.com"}},
        )
        assert answer.status_code == 202, answer.text
    page = tab.edit("/journeys/evil/edit")
    canvas = page.locator("[data-canvas]")
    canvas.locator('[data-node="greet"]').focus()
    page.keyboard.press("Enter")
    frame = page.locator("[data-preview] iframe")
    expect(frame).to_have_count(1)
    assert frame.get_attribute("sandbox") == ""  # no allow-scripts, no allow-same-origin
    inside = page.frame_locator("[data-preview] iframe")
    expect(inside.locator("h1")).to_contain_text("Hello")
    assert inside.locator("html[data-ran]").count() == 0

    # The same template for a profile whose trait is markup: escaped in the HTML, and
    # text in the subject the page shows.
    preview = page.evaluate(
        """async () => {
            const csrf = document.querySelector('#editor').dataset.csrf;
            const template = {kind: 'template', name: 't', channel: 'email',
                subject: 'Hi {{ profile.firstName }}', html: '<p>{{ profile.firstName }}</p>'};
            const answer = await fetch('/editor/api/preview', {method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
                body: JSON.stringify({template, profile: 'mallory'})});
            return answer.json();
        }"""
    )
    assert (
        preview["html"] == "<p>&lt;img src=x onerror=&#34;window.pwned=&#39;trait&#39;&#34;&gt;</p>"
    )
    wait_until(lambda: ran(page) is None or None, "nothing to have run", 1)
    assert ran(page) is None
    assert any(error.startswith(BLOCKED) for error in tab.errors)  # it tried, and was stopped
    assert unexpected(tab.errors) == []
