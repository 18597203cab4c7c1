"""The journey editor in a real headless Chromium against a real ``journeyman serve``
with a real SMTP server: a journey built from nothing on the canvas, saved as a draft,
tested, tried with a stored profile, published and then run by a real event; the
keyboard; two people saving one draft; a phone.

One server and one browser for the module; each test edits a journey of its own, or
leaves the draft it made discarded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
)

from tests.browser.test_browser import PASSWORD, USER, WAIT_MS, WELCOME, send, shoot, sign_up
from tests.browser.test_console_layout import browser, sideways
from tests.conftest import BASE, write_workspace
from tests.integration.test_serve import smtp_channel
from tests.servers import Journeyman, SmtpServer
from tests.waiting import wait_until

__all__ = ["browser"]  # the layout tests' browser fixture, shared

GREETINGS = """
kind: template
name: pro_email
channel: email
transactional: true
subject: "Welcome to pro, {{ profile.firstName | default: 'friend' }}"
text: "Your pro plan is ready."
---
kind: template
name: free_email
channel: email
transactional: true
subject: "Welcome, {{ profile.firstName | default: 'friend' }}"
text: "Your free plan is ready."
"""

# The test the workspace has of the journey the first test builds (written once the
# journey's draft exists: until then, it names a journey the workspace lacks).
GREETING_TEST = """
kind: test
name: a pro is greeted as a pro
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com, firstName: Una}}
  - at: 0s
    track: {userId: u1, event: signed_up, properties: {plan: pro}}
expect:
  - sent: greet_pro
    journey: greeting
    subject: Welcome to pro, Una
"""


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Path:
    folder = tmp_path_factory.mktemp("editor")
    return write_workspace(folder / "ws", BASE, GREETINGS, WELCOME, smtp_channel(smtp.port))


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[Journeyman]:
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}"}
    folder = workspace.parent
    with Journeyman(workspace, f"sqlite:///{folder / 'j.db'}", folder, env=users) as running:
        running.start()
        yield running


class Tab:
    """A logged-in tab of its own, with the errors its console printed."""

    def __init__(self, browser: Browser, server: Journeyman, width: int, height: int) -> None:
        viewport: ViewportSize = {"width": width, "height": height}
        self.context: BrowserContext = browser.new_context(viewport=viewport, base_url=server.url)
        self.page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        page = self.page
        page.goto("/login")
        page.get_by_label("User name").fill(USER)
        page.get_by_label("Admin key or password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{server.url}/journeys")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def edit(self, path: str) -> Page:
        self.page.goto(path)
        expect(self.page.locator("#editor[data-ready]")).to_have_count(1)
        return self.page


@pytest.fixture
def tab(browser: Browser, server: Journeyman) -> Iterator[Tab]:
    opened = Tab(browser, server, 1280, 1500)
    yield opened
    opened.context.close()


def nodes(page: Page) -> list[str]:
    found: list[str] = page.locator("[data-canvas] [data-node]").evaluate_all(
        "boxes => boxes.map(box => box.dataset.node)"
    )
    return found


def step(page: Page, node: str) -> None:
    """Select a step on the canvas, by keyboard."""
    page.locator(f'[data-canvas] [data-node="{node}"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("[data-inspector] h2")).to_contain_text(node)


def rename(page: Page, name: str) -> None:
    field = page.locator("[data-inspector]").get_by_label("id", exact=True)
    field.fill(name)
    field.press("Tab")
    expect(page.locator(f'[data-canvas] [data-node="{name}"]')).to_have_count(1)


def drag(page: Page, source: str, target: str, way: str) -> None:
    """Draw an edge from ``source``'s handle to ``target``, leaving by ``way``."""
    handle = page.locator(f'[data-handle="{source}"]')
    handle.drag_to(page.locator(f'[data-canvas] [data-node="{target}"] rect').first)
    menu = page.locator("[data-connect-menu]")
    if menu.is_visible():
        menu.get_by_role("button", name=way, exact=True).click()
    expect(page.locator("[data-status]")).to_have_text(f"{source}: {way} goes to {target}.")


def add(page: Page, kind: str) -> str:
    before = set(nodes(page))
    page.locator(f'[data-add="{kind}"]').click()
    expect(page.locator("[data-canvas] [data-node]")).to_have_count(len(before) + 1)
    (added,) = set(nodes(page)) - before
    return added


def test_a_journey_built_from_nothing_on_the_canvas_is_tested_tried_published_and_run(
    tab: Tab, server: Journeyman, smtp: SmtpServer, workspace: Path
) -> None:
    sign_up(server, "tia", "pro")  # a stored profile to try the draft with
    page = tab.page
    page.goto("/journeys")
    page.get_by_role("link", name="New journey").click()
    page.get_by_label("Name", exact=True).fill("greeting")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/journeys/greeting/edit\?new=1$"))
    expect(page.locator("#editor[data-ready]")).to_have_count(1)
    existing = [n for n in nodes(page) if not n.startswith("__")]

    # The entry, in the journey's settings (the entry's box is selected at first).
    settings = page.locator("[data-inspector]")
    expect(settings.locator("h2")).to_have_text("Journey settings")
    settings.locator("#f-entry-event").fill("signed_up")
    expect(page.locator('[data-node="__entry__"]')).to_contain_text("entry: signed_up")

    # wait, branch, two sends, end: each added after the one selected.
    rename_to = {}
    rename_to[add(page, "wait")] = "settle"
    rename_to[add(page, "branch")] = "by_plan"
    rename_to[add(page, "send")] = "greet_pro"
    rename_to[add(page, "send")] = "greet_free"
    ends = page.locator("[data-canvas] .node.kind-end:not([data-node^='__'])")
    end = ends.first.get_attribute("data-node") if ends.count() else add(page, "end")
    assert end is not None
    rename_to[end] = "done"
    for old, new in rename_to.items():
        step(page, old)
        rename(page, new)
    for other in existing:  # whatever else a new journey starts with goes
        if other != end:
            step(page, other)
            page.keyboard.press("Delete")
    assert sorted(nodes(page)) == sorted(["__entry__", *rename_to.values()])

    inspector = page.locator("[data-inspector]")
    step(page, "settle")
    inspector.get_by_label("wait").fill("1s")
    step(page, "by_plan")
    inspector.get_by_label("when").fill('entry.plan == "pro"')
    expect(inspector.locator(".check-result")).to_have_text("✓ reads well")
    inspector.get_by_label("goto").select_option("greet_pro")
    drag(page, "by_plan", "greet_free", "otherwise")
    step(page, "greet_pro")
    inspector.get_by_label("send").fill("pro_email")
    drag(page, "greet_pro", "done", "next")
    step(page, "greet_free")
    inspector.get_by_label("send").fill("free_email")
    step(page, "done")
    inspector.get_by_label("end").fill("greeted")
    expect(page.locator("[data-problem-count]")).to_have_text("0")
    shoot(page, "editor-built")

    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("[data-status]")).to_have_text("Draft saved.")
    expect(page.locator("[data-draft-state]")).to_have_text("draft")
    diff = page.locator("[data-diff]")
    expect(diff).to_contain_text("journeys/greeting.yaml")
    for line in ("event: signed_up", "send: pro_email", "next: done", "end: greeted"):
        expect(diff.locator("span.add", has_text=line)).to_have_count(1)

    (workspace / "greeting_test.yaml").write_text(GREETING_TEST)
    page.get_by_role("button", name="Run tests").click()
    expect(page.locator("[data-test-summary]")).to_have_text("1 passed, 0 failed.")
    expect(page.locator('[data-test="a pro is greeted as a pro"]')).to_contain_text("passed")

    page.locator("[data-try-profile]").fill("tia")
    page.get_by_role("button", name="Try", exact=True).click()
    expect(page.locator("[data-try-summary]")).to_contain_text("tia would go through settle")
    expect(page.locator("[data-canvas] .node.visited")).to_have_count(5)  # entry to done
    expect(page.locator('[data-try-message="greet_pro"]')).to_contain_text("Welcome to pro, Tia")
    shoot(page, "editor-tried")

    page.get_by_role("button", name="Save to folder").click()
    expect(page.locator("[data-status]")).to_contain_text("Saved to journeys/greeting.yaml")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("[data-status]")).to_contain_text("Published as workspace version")
    saved = (workspace / "journeys" / "greeting.yaml").read_text()
    assert "greet_free" in saved

    assert (
        send(
            server,
            "/v1/identify",
            {"userId": "zoe", "traits": {"firstName": "Zoe", "email": "zoe@example.com"}},
        ).status_code
        == 202
    )
    track = {"userId": "zoe", "event": "signed_up", "properties": {"plan": "free"}}
    assert send(server, "/v1/track", track).status_code == 202
    mail = wait_until(
        lambda: next((m for m in smtp.received if "zoe@example.com" in m.recipients), None),
        "the free greeting at the SMTP server",
    )
    assert mail.message["Subject"] == "Welcome, Zoe"

    # A test that fails says why, as `journeyman test` does.
    wrong = GREETING_TEST.replace("a pro is greeted", "a pro is misnamed")
    wrong = wrong.replace("subject: Welcome to pro, Una", "subject: Welcome to pro, Bob")
    (workspace / "greeting_wrong_test.yaml").write_text(wrong)
    try:
        page.get_by_role("button", name="Run tests").click()
        expect(page.locator("[data-test-summary]")).to_have_text("1 passed, 1 failed.")
        failed = page.locator('[data-test="a pro is misnamed as a pro"]')
        expect(failed).to_contain_text("failed")
        expect(failed.locator("pre")).to_contain_text("Welcome to pro, Bob")
    finally:
        (workspace / "greeting_wrong_test.yaml").unlink()
    assert tab.errors == []


def test_undo_redo_and_delete_by_keyboard_with_focus_that_shows(tab: Tab) -> None:
    page = tab.edit("/journeys/welcome/edit")
    steps = ["__entry__", "by_plan", "settle", "greet", "follow_up", "done"]
    assert nodes(page) == steps
    page.locator('[data-node="by_plan"]').focus()
    page.keyboard.press("Tab")  # from box to box
    focused = page.evaluate("document.activeElement.dataset.node")
    assert focused == "settle"
    outline = page.locator('[data-node="settle"] rect').first.evaluate(
        "rect => getComputedStyle(rect).strokeWidth"
    )
    assert outline == "3.5px"  # the focused box is drawn with a thick outline

    step(page, "follow_up")
    page.keyboard.press("Delete")
    without = [s for s in steps if s != "follow_up"]
    expect(page.locator('[data-node="follow_up"]')).to_have_count(0)
    assert nodes(page) == without
    expect(page.locator("[data-diff] span.del", has_text="id: follow_up")).to_have_count(1)
    page.keyboard.press("Control+z")
    expect(page.locator('[data-node="follow_up"]')).to_have_count(1)
    assert nodes(page) == steps
    page.keyboard.press("Control+Shift+z")
    expect(page.locator('[data-node="follow_up"]')).to_have_count(0)
    page.keyboard.press("Control+z")
    expect(page.locator('[data-node="follow_up"]')).to_have_count(1)
    page.keyboard.press("Control+y")
    expect(page.locator('[data-node="follow_up"]')).to_have_count(0)
    # greet led to follow_up, which led to done: greet leads to done now
    expect(page.locator('[data-edge="greet>done"]')).to_have_count(1)
    page.keyboard.press("Control+z")
    # Alt+Down moves greet below follow_up: settle's path then runs on to follow_up.
    step(page, "greet")
    page.keyboard.press("Alt+ArrowDown")
    expect(page.locator('[data-edge="settle>follow_up"]')).to_have_count(1)
    page.keyboard.press("Control+z")
    expect(page.locator('[data-edge="settle>greet"]')).to_have_count(1)
    expect(page.locator("[data-diff]")).to_have_text("The draft is the same as the file.")
    expect(page.get_by_role("button", name="Undo")).to_be_disabled()  # back where it began
    expect(page.get_by_role("button", name="Redo")).to_be_enabled()
    assert tab.errors == []


def test_the_canvas_lays_a_journey_out_as_the_journey_page_does(tab: Tab) -> None:
    corners = """boxes => boxes.map(b => {
        const rect = b.querySelector("rect");
        return [b.dataset.node, Number(rect.getAttribute("x")), Number(rect.getAttribute("y"))];
    })"""
    page = tab.page
    page.goto("/journeys/welcome")
    shown = page.locator(".canvas [data-node]").evaluate_all(corners)
    page = tab.edit("/journeys/welcome/edit")
    drawn = page.locator("[data-canvas] [data-node]").evaluate_all(corners)
    assert sorted(drawn) == sorted(shown)
    edges = "paths => paths.map(p => p.getAttribute('d')).sort()"
    edited = page.locator("[data-canvas] path.edge").evaluate_all(edges)
    page.goto("/journeys/welcome")
    assert page.locator(".canvas path.edge").evaluate_all(edges) == edited


def test_expressions_are_checked_as_they_are_typed_with_the_column(tab: Tab) -> None:
    page = tab.edit("/journeys/welcome/edit")
    step(page, "by_plan")
    when = page.locator("[data-inspector]").get_by_label("when")
    when.fill('event.plan == "pro')
    result = page.locator("[data-inspector] .check-result")
    expect(result).to_contain_text("column 15")
    expect(result).to_contain_text("unterminated string")
    expect(when).to_have_attribute("aria-invalid", "true")
    when.fill('event.plan == "pro"')
    expect(result).to_have_text("✓ reads well")
    expect(when).not_to_have_attribute("aria-invalid", "true")


def test_a_send_steps_template_is_previewed_for_desktop_phone_and_sms(tab: Tab) -> None:
    page = tab.edit("/journeys/welcome/edit")
    step(page, "greet")
    frame = page.locator("[data-preview] iframe")
    expect(page.frame_locator("[data-preview] iframe").locator("h1")).to_contain_text("Welcome")
    page.get_by_role("button", name="Phone").click()
    box = frame.bounding_box()
    assert box is not None
    assert box["width"] == 375
    page.locator("[data-inspector]").get_by_label("send").fill("hello_sms")
    expect(page.locator("[data-sms]")).to_have_text("12 characters, 1 segment (GSM-7)")
    expect(page.locator("[data-preview]")).to_contain_text("Hello by SMS")
    assert tab.errors == []


def test_a_second_save_of_one_draft_is_refused_and_shows_both(
    browser: Browser, server: Journeyman, tab: Tab
) -> None:
    other = Tab(browser, server, 1280, 1000)
    try:
        mine = tab.edit("/journeys/welcome/edit")
        theirs = other.edit("/journeys/welcome/edit")
        for page, text in ((theirs, "Theirs first"), (mine, "Mine second")):
            page.locator("#f-description").fill(text)
        theirs.get_by_role("button", name="Save draft").click()
        expect(theirs.locator("[data-status]")).to_have_text("Draft saved.")
        mine.get_by_role("button", name="Save draft").click()
        conflict = mine.get_by_role("alert", name="Conflict")
        expect(conflict).to_contain_text(f"{USER} saved this draft")
        conflict.get_by_text("Their draft compared with yours").click()
        expect(conflict.locator("pre")).to_contain_text("Theirs first")
        shoot(mine, "editor-conflict")
        conflict.get_by_role("button", name="Load their draft").click()
        expect(mine.locator("#f-description")).to_have_value("Theirs first")
        expect(mine.locator("[data-status]")).to_have_text(
            "Their draft is loaded. Ctrl+Z brings yours back as unsaved changes."
        )
        expect(conflict).to_be_hidden()

        # Now theirs is stale: they keep theirs over mine.
        mine.locator("#f-description").fill("Mine again")
        mine.get_by_role("button", name="Save draft").click()
        expect(mine.locator("[data-status]")).to_have_text("Draft saved.")
        theirs.locator("#f-description").fill("Theirs kept")
        theirs.get_by_role("button", name="Save draft").click()
        their_conflict = theirs.get_by_role("alert", name="Conflict")
        expect(their_conflict).to_contain_text(f"{USER} saved this draft")
        their_conflict.get_by_role("button", name="Keep mine (save over theirs)").click()
        expect(theirs.locator("[data-status]")).to_have_text("Draft saved.")
        expect(their_conflict).to_be_hidden()
        mine.reload()
        expect(mine.locator("#f-description")).to_have_value("Theirs kept")

        mine.get_by_role("button", name="Discard").click()
        expect(mine.locator("[data-status]")).to_have_text(
            "Draft discarded: the editor shows the file again. "
            "Ctrl+Z brings your edits back as unsaved changes."
        )
        expect(mine.locator("#f-description")).to_have_value(re.compile("^Greet every sign-up"))
        mine.locator("body").press("Control+z")
        expect(mine.locator("#f-description")).to_have_value("Theirs kept")
        expect(mine.locator("[data-draft-state]")).to_contain_text("unsaved")
    finally:
        other.context.close()


def test_a_phone_shows_the_journey_read_only_without_scrolling_sideways(
    browser: Browser, server: Journeyman
) -> None:
    phone = Tab(browser, server, 390, 844)
    try:
        page = phone.edit("/journeys/welcome/edit")
        assert sideways(page) <= 0
        expect(page.locator("[data-palette]")).to_be_hidden()
        expect(page.get_by_role("button", name="Save draft")).to_be_hidden()
        graph = page.locator("[data-canvas] svg").bounding_box()
        assert graph is not None
        assert graph["x"] >= 0
        assert graph["x"] + graph["width"] <= 390
        expect(page.locator("#f-description")).to_be_disabled()
        step(page, "follow_up")
        page.keyboard.press("Delete")
        expect(page.locator('[data-node="follow_up"]')).to_have_count(1)
        shoot(page, "editor-phone")
        assert phone.errors == []
    finally:
        phone.context.close()
