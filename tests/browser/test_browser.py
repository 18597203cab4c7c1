"""The console in a real headless Chromium against a real ``journeyman serve``.

One server (with its mail catcher, and a console user from JOURNEYMAN_CONSOLE_USERS) and
one browser for the module; the tests run in order, each on profiles of its own, and
the pause comes last. Every page visited is saved as a screenshot under
``artifacts/screenshots/`` (git-ignored), for a person to look at after the run.

Chromium is the Debian ``chromium`` package, launched by its path: ``.ci/run`` installs
it. Without it these tests fail, saying so; they never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import BASE, write_workspace
from tests.servers import WRITE_KEY, Journeyman

CHROMIUM = os.environ.get("JOURNEYMAN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "ana", "correct-horse"
SCREENSHOTS = Path(__file__).parents[2] / "artifacts" / "screenshots"
WAIT_MS = 20_000  # generous: the machine may be busy; a passing test waits much less
expect.set_options(timeout=WAIT_MS)  # what expect() waits for, as page actions do

WELCOME = """
kind: journey
name: welcome
description: Greet every sign-up; pro accounts get a day to settle in first.
entry: {event: signed_up}
steps:
  - id: by_plan
    branch:
      - when: event.plan == "pro"
        goto: settle
      - otherwise: greet
  - id: settle
    wait: 1d
  - id: greet
    send: welcome_email
  - id: follow_up
    wait: 2d
  - id: done
    end: welcomed
---
kind: template
name: welcome_email
channel: email
subject: "Welcome, {{ profile.firstName | default: 'friend' }}"
html: >-
  <h1>Welcome, {{ profile.firstName | default: 'friend' }}</h1>
  <p>Your {{ entry.plan }} plan is ready.</p>
---
kind: segment
name: bought_recently
description: "<em>fresh</em> buyers"
when: count("purchased", "30d") >= 1
"""


class WithCatcher(Journeyman):
    """The server with its built-in mail catcher, on a port the system picks."""

    def command(self) -> list[str]:
        return [*super().command(), "--catcher", "0"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("browser")
    workspace = write_workspace(folder / "ws", BASE, WELCOME)
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}"}
    db = f"sqlite:///{folder / 'j.db'}"
    with WithCatcher(workspace, db, folder, env=users) as running:
        running.start()
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests need it. "
            "Install the Debian package (apt-get install -y chromium; .ci/run does), "
            "or point JOURNEYMAN_TEST_CHROMIUM at a Chromium binary."
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(browser: Browser, server: Journeyman) -> Iterator[Page]:
    """One logged-in tab; the session cookie lasts the whole module."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=server.url)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.goto("/journeys")
    expect(tab).to_have_url(f"{server.url}/login?next=%2Fjourneys")
    shoot(tab, "login")
    tab.get_by_label("User name").fill(USER)
    tab.get_by_label("Admin key or password").fill(PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    expect(tab).to_have_url(f"{server.url}/journeys")
    expect(tab.locator(".who")).to_have_text(USER)
    yield tab
    context.close()


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def send(server: Journeyman, path: str, body: Mapping[str, object]) -> httpx.Response:
    with server.client(WRITE_KEY) as client:
        return client.post(path, json=body)


def sign_up(server: Journeyman, user: str, plan: str) -> None:
    traits = {"firstName": user.title(), "email": f"{user}@example.com"}
    assert send(server, "/v1/identify", {"userId": user, "traits": traits}).status_code == 202
    track = {"userId": user, "event": "signed_up", "properties": {"plan": plan}}
    assert send(server, "/v1/track", track).status_code == 202


def test_the_journeys_page_lists_the_welcome_journey_after_login(page: Page) -> None:
    row = page.locator("tr", has=page.get_by_role("link", name="welcome", exact=True))
    expect(row).to_contain_text("active")
    expect(row.get_by_role("link", name="Pause welcome")).to_be_visible()
    shoot(page, "journeys")


def test_the_graph_counts_change_as_events_arrive(page: Page, server: Journeyman) -> None:
    page.get_by_role("link", name="welcome", exact=True).click()
    entry = page.locator('[data-node="__entry__"] [data-count="entered"]')
    expect(entry).to_have_text("0")
    settle = page.locator('[data-node="settle"] [data-count="waiting"]')
    sign_up(server, "ada", "pro")
    sign_up(server, "ben", "pro")
    sign_up(server, "cy", "free")
    # No reload: the page polls its JSON twin every few seconds.
    expect(entry).to_have_text("3")
    expect(settle).to_have_text("2")
    expect(page.locator('[data-node="greet"] [data-count="passed"]')).to_have_text("1")
    shoot(page, "journey")
    page.locator('[data-node="greet"]').click()
    expect(page.locator("#detail")).to_contain_text("Template welcome_email for profile cy")
    preview = page.frame_locator("iframe.preview").first
    expect(preview.locator("h1")).to_have_text("Welcome, Cy")
    shoot(page, "journey-step")


def test_a_profile_tells_why_its_branch_was_taken(page: Page) -> None:
    page.get_by_label("Find a profile").fill("ada@example.com")
    page.get_by_label("Find a profile").press("Enter")
    expect(page.get_by_role("heading", name="ada", exact=True)).to_be_visible()
    instance = page.get_by_role("region", name="welcome instance ada:welcome:1")
    expect(instance).to_contain_text('event.plan == "pro" is true: to settle')
    expect(instance).to_contain_text("waiting for timer")
    shoot(page, "profile")
    instance.get_by_role("link", name="path on the graph").click()
    expect(page.locator(".node.current")).to_have_attribute("data-node", "settle")
    expect(page.locator(".edge.taken")).to_have_count(2)
    shoot(page, "journey-path")


def test_a_rejected_event_shows_its_error(page: Page, server: Journeyman) -> None:
    bad = {"userId": "dee", "event": "purchased", "properties": {"total": "lots"}}
    assert send(server, "/v1/track", bad).status_code == 400
    page.goto("/events")
    row = page.locator("tr", has_text="purchased")
    expect(row).to_contain_text("rejected")
    expect(row).to_contain_text("properties.total breaks type")
    page.get_by_label("Status").select_option("rejected")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#tail tbody tr")).to_have_count(1)
    shoot(page, "events")


def test_messages_show_the_log_and_caught_mail_and_the_workspace_its_plan(page: Page) -> None:
    page.goto("/messages")
    expect(page.locator("tbody tr", has_text="welcome · greet")).to_contain_text("Welcome, Cy")
    mail = page.locator("details.message", has_text="Welcome, Cy")
    mail.locator("summary").click()
    expect(mail.frame_locator("iframe").locator("h1")).to_have_text("Welcome, Cy")
    shoot(page, "messages")
    page.goto("/workspace")
    expect(page.get_by_text("The workspace is valid")).to_be_visible()
    expect(page.locator("table.plain")).to_contain_text("welcome")
    shoot(page, "workspace")


def test_a_profile_whose_id_holds_a_slash_and_a_question_mark_opens(
    page: Page, server: Journeyman
) -> None:
    user = "acme/eve?x"
    identify = {"userId": user, "traits": {"email": "eve@example.com"}}
    assert send(server, "/v1/identify", identify).status_code == 202
    track = {"userId": user, "event": "signed_up", "properties": {"plan": "pro"}}
    assert send(server, "/v1/track", track).status_code == 202
    page.goto("/events")
    page.locator("#tail").get_by_role("link", name=user, exact=True).first.click()
    expect(page.get_by_role("heading", name=user, exact=True)).to_be_visible()
    instance = page.get_by_role("region", name=f"welcome instance {user}:welcome:1")
    instance.get_by_role("link", name="path on the graph").click()
    expect(page.locator(".node.current")).to_have_attribute("data-node", "settle")
    page.locator(".alert.path").get_by_role("link", name=user, exact=True).click()
    expect(page.get_by_role("heading", name=user, exact=True)).to_be_visible()


def test_the_segments_page_shows_definitions_sizes_and_entries_escaped(
    page: Page, server: Journeyman
) -> None:
    user = "<i>fay</i>"
    track = {"userId": user, "event": "purchased", "properties": {"total": 12}}
    assert send(server, "/v1/track", track).status_code == 202
    page.get_by_role("link", name="Segments", exact=True).click()
    row = page.locator('tr[data-segment="bought_recently"]')
    expect(row).to_contain_text('count("purchased", "30d") >= 1')
    expect(row).to_contain_text("<em>fresh</em> buyers")  # as text, not markup
    expect(row.locator("em")).to_have_count(0)
    expect(row.locator("td.num")).not_to_have_text("0")
    shoot(page, "segments")
    row.get_by_role("link", name="bought_recently").click()
    changes = page.get_by_role("region", name="Recent entries and exits")
    expect(changes).to_contain_text(f"entered {user}")
    expect(changes.locator("i")).to_have_count(0)
    shoot(page, "segment")
    changes.get_by_role("link", name=user, exact=True).click()
    expect(page.get_by_role("heading", name=user, exact=True)).to_be_visible()
    mine = page.get_by_role("region", name="Segments")
    expect(mine.get_by_role("link", name="bought_recently")).to_be_visible()
    expect(mine).to_contain_text("since")
    shoot(page, "profile-segments")


def test_a_paused_journey_takes_no_new_entries(page: Page, server: Journeyman) -> None:
    page.goto("/journeys/welcome")
    page.get_by_role("link", name="Pause", exact=True).click()
    expect(page.get_by_role("heading")).to_contain_text("Pause the journey welcome?")
    expect(page.locator(".confirm")).to_contain_text("4 instances")  # ada, ben, cy, acme/eve?x
    shoot(page, "pause-confirm")
    page.get_by_role("button", name="Pause welcome (4 affected)").click()
    expect(page.get_by_role("status")).to_have_text("Paused: new events do not enter it.")
    expect(page.locator("[data-state]")).to_have_text("paused")

    sign_up(server, "eve", "free")
    page.goto("/events?profile=eve&event=signed_up")
    expect(page.locator("#tail")).to_contain_text("not entered welcome: the journey is paused")
    page.goto("/journeys/welcome")
    expect(page.locator('[data-node="__entry__"] [data-count="not_entered"]')).to_have_text("1")
    shoot(page, "journey-paused")
