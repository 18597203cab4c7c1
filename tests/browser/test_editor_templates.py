"""The template editor in a real headless Chromium against a real ``journeyman serve``
with a real SMTP server: a template opened from a journey's send step, edited beside a
preview rendered for a stored profile, its missing variables marked in the text, seen at
a phone's width, published, and then sent by a real event with the new subject.

One server and one browser for the module; each test edits a template of its own, or
leaves the draft it made discarded.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_browser import PASSWORD, USER, shoot, sign_up
from tests.browser.test_console_layout import browser, sideways
from tests.browser.test_editor import Tab, step
from tests.conftest import BASE, write_workspace
from tests.integration.test_serve import smtp_channel
from tests.servers import Journeyman, SmtpServer
from tests.waiting import wait_until

__all__ = ["browser"]  # the layout tests' browser fixture, shared

WELCOME = """
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: greet
    send: welcome_email
"""
MESSAGES = """\
# The welcome email: short and kind.
kind: template
name: welcome_email
channel: email
transactional: true   # no unsubscribe link in a welcome
subject: "Welcome, {{ profile.firstName | default: 'friend' }}"
html: |
  <h1>Welcome, {{ profile.firstName | default: 'friend' }}</h1>
  <p>Glad you came.</p>
text: Welcome!   # for mail readers without HTML
"""


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Path:
    folder = write_workspace(
        tmp_path_factory.mktemp("templates") / "ws", BASE, WELCOME, smtp_channel(smtp.port)
    )
    (folder / "messages.yaml").write_text(MESSAGES)
    return folder


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[Journeyman]:
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}"}
    folder = workspace.parent
    with Journeyman(workspace, f"sqlite:///{folder / 'j.db'}", folder, env=users) as running:
        running.start()
        yield running


@pytest.fixture
def tab(browser: Browser, server: Journeyman) -> Iterator[Tab]:
    opened = Tab(browser, server, 1280, 1500)
    yield opened
    opened.context.close()


def mail_to(smtp: SmtpServer, address: str) -> str:
    mail = wait_until(
        lambda: next((m for m in smtp.received if address in m.recipients), None),
        f"an email to {address} at the SMTP server",
    )
    return str(mail.message["Subject"])


def open_template(tab: Tab, name: str) -> Page:
    tab.page.goto(f"/templates/{name}/edit")
    expect(tab.page.locator("#template-editor[data-ready]")).to_have_count(1)
    return tab.page


def use_profile(page: Page, profile: str) -> None:
    page.locator("[data-profile]").fill(profile)
    page.get_by_role("button", name="Use", exact=True).click()
    expect(page.locator("[data-preview-about]")).to_have_text(f"Profile {profile}, as stored now.")


def test_a_template_edited_beside_its_preview_is_published_and_sent_by_the_next_event(
    tab: Tab, server: Journeyman, smtp: SmtpServer, workspace: Path
) -> None:
    sign_up(server, "tia", "pro")  # a stored profile to preview with
    assert mail_to(smtp, "tia@example.com") == "Welcome, Tia"

    # From the journey's send step to its template.
    page = tab.edit("/journeys/welcome/edit")
    step(page, "greet")
    page.locator("[data-inspector]").get_by_role("link", name="Edit template welcome_email").click()
    expect(page).to_have_url(re.compile(r"/templates/welcome_email/edit\?journey=welcome$"))
    expect(page.locator("#template-editor[data-ready]")).to_have_count(1)
    expect(page.get_by_role("link", name="Edit welcome")).to_have_attribute(
        "href", "/journeys/welcome/edit"
    )
    frame = page.frame_locator("[data-preview] iframe")
    expect(page.locator("[data-subject]")).to_have_text("subject Welcome, Ada")  # a sample

    use_profile(page, "tia")
    expect(page.locator("[data-subject]")).to_have_text("subject Welcome, Tia")
    expect(frame.locator("h1")).to_have_text("Welcome, Tia")

    # A variable the profile lacks: marked in the text, named beside the preview.
    subject = page.get_by_label("subject", exact=True)
    subject.fill("Your {{ profile.plan }} account is ready, {{ profile.firstName }}")
    expect(page.locator("[data-subject]")).to_have_text("subject Your  account is ready, Tia")
    marked = page.locator('[data-path="subject"] mark.missing')
    expect(marked).to_have_text("profile.plan")
    expect(page.locator("[data-missing]")).to_contain_text("profile.plan")
    assert _overlaps(page), "the mark is drawn over the variable's text"
    shoot(page, "template-editor-missing")

    # Liquid is checked as it is typed.
    html = page.get_by_label("html", exact=True)
    html.fill("<h1>Hi {{ profile.firstName </h1>")
    expect(page.locator("#t-html-check")).to_contain_text("Liquid error")
    expect(html).to_have_attribute("aria-invalid", "true")
    html.fill("<h1>Ready, {{ profile.firstName }}</h1>\n<p>Glad you came.</p>\n")
    expect(page.locator("#t-html-check")).to_have_text("✓ reads well")
    expect(frame.locator("h1")).to_have_text("Ready, Tia")

    subject.fill("Your account is ready, {{ profile.firstName }}")
    expect(page.locator("[data-subject]")).to_have_text("subject Your account is ready, Tia")
    expect(marked).to_have_count(0)
    expect(page.locator("[data-missing]")).to_have_count(0)

    # Desktop and phone widths.
    box = page.locator("[data-preview] iframe").bounding_box()
    assert box is not None
    assert box["width"] == 600
    page.get_by_role("button", name="Phone").click()
    box = page.locator("[data-preview] iframe").bounding_box()
    assert box is not None
    assert box["width"] == 375
    expect(frame.locator("h1")).to_have_text("Ready, Tia")
    shoot(page, "template-editor-phone")

    diff = page.locator("[data-diff]")
    expect(diff.locator("span.add", has_text="subject:")).to_have_count(1)
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("[data-status]")).to_contain_text("Published as workspace version")
    expect(page.locator("[data-draft-state]")).to_have_text("as in the folder")
    written = (workspace / "messages.yaml").read_text()
    changed = [
        line
        for line in difflib.unified_diff(MESSAGES.splitlines(), written.splitlines(), n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert changed == [
        "-subject: \"Welcome, {{ profile.firstName | default: 'friend' }}\"",
        '+subject: "Your account is ready, {{ profile.firstName }}"',
        "-  <h1>Welcome, {{ profile.firstName | default: 'friend' }}</h1>",
        "+  <h1>Ready, {{ profile.firstName }}</h1>",
    ], changed
    assert "# for mail readers without HTML" in written

    # The next sign-up gets the new subject at the SMTP server.
    sign_up(server, "zoe", "free")
    assert mail_to(smtp, "zoe@example.com") == "Your account is ready, Zoe"
    assert tab.errors == []


def _overlaps(page: Page) -> bool:
    """Whether the first mark lies inside the subject's box (drawn under its text)."""
    mark = page.locator('[data-path="subject"] mark.missing').bounding_box()
    field = page.get_by_label("subject", exact=True).bounding_box()
    assert mark is not None
    assert field is not None
    x, y, right, bottom = (
        field["x"],
        field["y"],
        field["x"] + field["width"],
        field["y"] + field["height"],
    )
    return x <= mark["x"] <= mark["x"] + mark["width"] <= right and y <= mark["y"] < bottom


def test_a_journeys_send_step_previews_its_templates_draft(tab: Tab) -> None:
    page = open_template(tab, "hello_email")
    page.get_by_label("subject", exact=True).fill("Drafted hello, {{ profile.firstName }}")
    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("[data-status]")).to_have_text("Draft saved.")
    try:
        page = tab.edit("/journeys/welcome/edit")
        step(page, "greet")
        page.locator("[data-inspector]").get_by_label("send").fill("hello_email")
        about = page.locator("[data-preview-about]")
        expect(about).to_contain_text(f"Template hello_email (the draft {USER} saved at")
        expect(page.locator("[data-preview]")).to_contain_text("Drafted hello, Ada")
    finally:
        page = open_template(tab, "hello_email")
        page.get_by_role("button", name="Discard").click()
        expect(page.locator("[data-status]")).to_contain_text("Draft discarded")
    expect(page.get_by_label("subject", exact=True)).to_have_value(re.compile("^Hello "))
    assert tab.errors == []


def test_a_stale_save_of_a_template_offers_keeping_mine_or_loading_theirs(
    browser: Browser, server: Journeyman, tab: Tab
) -> None:
    other = Tab(browser, server, 1280, 1000)
    try:
        mine = open_template(tab, "hello_push")
        theirs = open_template(other, "hello_push")
        for page, text in ((theirs, "Theirs first"), (mine, "Mine second")):
            page.get_by_label("title", exact=True).fill(text)
        theirs.get_by_role("button", name="Save draft").click()
        expect(theirs.locator("[data-status]")).to_have_text("Draft saved.")

        # Mine is refused, shown beside theirs, and kept on asking.
        mine.get_by_role("button", name="Save draft").click()
        conflict = mine.get_by_role("alert", name="Conflict")
        expect(conflict).to_contain_text(f"{USER} saved this draft")
        expect(conflict.get_by_role("button", name="Load their draft")).to_be_focused()
        conflict.get_by_text("Their draft compared with yours").click()
        expect(conflict.locator("pre")).to_contain_text("Theirs first")
        conflict.get_by_role("button", name="Keep mine (save over theirs)").click()
        expect(mine.locator("[data-status]")).to_have_text("Draft saved.")
        expect(conflict).to_be_hidden()

        # Now theirs is stale: they load mine instead.
        theirs.get_by_label("title", exact=True).fill("Theirs again")
        theirs.get_by_role("button", name="Publish").click()
        their_conflict = theirs.get_by_role("alert", name="Conflict")
        expect(their_conflict).to_be_visible()
        their_conflict.get_by_role("button", name="Load their draft").click()
        expect(theirs.locator("[data-status]")).to_have_text("Their draft is loaded.")
        expect(theirs.get_by_label("title", exact=True)).to_have_value("Mine second")
        expect(theirs.locator("[data-draft-state]")).to_have_text("draft")
    finally:
        other.context.close()
        page = open_template(tab, "hello_push")
        page.get_by_role("button", name="Discard").click()
        expect(page.locator("[data-status]")).to_have_text(
            "Draft discarded: the editor shows the file again."
        )
    expect(page.locator("[data-draft-state]")).to_have_text("as in the folder")
    # The refused save is the browser's one complaint; no script failed.
    assert [e for e in tab.errors if "409 (Conflict)" not in e] == []


def test_an_sms_shows_its_length_segments_and_encoding_as_it_is_typed(tab: Tab) -> None:
    page = tab.page
    page.goto("/journeys")
    page.get_by_role("link", name="Templates", exact=True).click()
    row = page.locator('tr[data-template="hello_sms"]')
    expect(row).to_contain_text("sms")
    row.get_by_role("link", name="hello_sms").click()
    expect(page.locator("#template-editor[data-ready]")).to_have_count(1)
    expect(page.locator("[data-sms]")).to_have_text("12 characters, 1 segment (GSM-7)")
    body = page.get_by_label("body", exact=True)
    body.fill("x" * 161)
    expect(page.locator("[data-sms]")).to_have_text("161 characters, 2 segments (GSM-7)")
    body.fill("Hi 🙂")
    expect(page.locator("[data-sms]")).to_have_text("4 characters, 1 segment (UCS-2)")
    expect(page.locator("[data-preview] iframe")).to_have_count(0)
    assert page.get_by_role("link", name="welcome_email").is_visible()  # the template list
    assert tab.errors == []


def test_a_phone_shows_templates_read_only_without_scrolling_sideways(
    browser: Browser, server: Journeyman
) -> None:
    phone = Tab(browser, server, 390, 844)
    try:
        page = phone.page
        page.goto("/templates")
        expect(page.locator('tr[data-template="welcome_email"]')).to_have_count(1)
        assert sideways(page) <= 0
        page = open_template(phone, "welcome_email")
        expect(page.locator("[data-subject]")).to_contain_text("Ada")
        assert sideways(page) <= 0
        expect(page.get_by_label("subject", exact=True)).to_be_disabled()
        expect(page.get_by_role("button", name="Publish")).to_be_hidden()
        shoot(page, "template-editor-on-a-phone")
        assert phone.errors == []
    finally:
        phone.context.close()
