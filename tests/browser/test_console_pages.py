"""What the console's pages tell a person, in a real headless Chromium against a real
``journeyman serve``: where an event's profile went, the same step counts in every
place, emails shown when asked for, search, times with their zone, and who did what.

One server and one browser for the module; each test uses profiles of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_browser import (
    PASSWORD,
    USER,
    WELCOME,
    WithCatcher,
    send,
    shoot,
    sign_up,
)
from tests.browser.test_console_layout import browser, logged_in
from tests.conftest import BASE, write_workspace
from tests.servers import Journeyman
from tests.waiting import wait_until

__all__ = ["browser"]  # the module's browser fixture, shared with the layout tests


QUICK = """
kind: journey
name: quick
entry: {event: purchased}
steps:
  - id: thank
    send: hello_email
  - id: finish
    end: thanked
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("pages")
    workspace = write_workspace(folder / "ws", BASE, WELCOME, QUICK)
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}"}
    with WithCatcher(workspace, f"sqlite:///{folder / 'j.db'}", folder, env=users) as running:
        running.start()
        yield running


@pytest.fixture(scope="module")
def page(browser: Browser, server: Journeyman) -> Iterator[Page]:
    context, tab = logged_in(browser, server, 1280)
    yield tab
    context.close()


def test_an_events_profile_link_leads_to_the_profile_it_was_merged_into(
    page: Page, server: Journeyman
) -> None:
    anonymous = {"anonymousId": "visitor-7", "traits": {"firstName": "Vi"}}
    assert send(server, "/v1/identify", anonymous).status_code == 202
    known = {"userId": "vi", "anonymousId": "visitor-7", "traits": {"email": "vi@example.com"}}
    assert send(server, "/v1/identify", known).status_code == 202
    page.goto("/events?profile=visitor-7")
    row = page.locator("#tail tbody tr").first
    expect(row).to_contain_text("merged from visitor-7")
    row.get_by_role("link", name="vi", exact=True).click()
    expect(page.get_by_role("heading", name="vi", exact=True)).to_be_visible()
    page.goto("/profiles/visitor-7")  # an old link to the anonymous profile
    expect(page.get_by_role("heading", name="vi", exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("visitor-7 was merged into this profile")
    shoot(page, "profile-merged")


def test_a_rejected_calls_profile_is_shown_without_a_link(page: Page, server: Journeyman) -> None:
    bad = {"userId": "ghost", "event": "purchased", "properties": {"total": "lots"}}
    assert send(server, "/v1/track", bad).status_code == 400
    page.goto("/events?profile=ghost")
    row = page.locator("#tail tbody tr").first
    expect(row).to_contain_text("no profile: the call was rejected")
    expect(row).to_contain_text("properties.total breaks type")
    expect(row.get_by_role("link", name="ghost")).to_have_count(0)


def test_a_steps_numbers_read_the_same_on_its_box_its_panel_and_the_api(
    page: Page, server: Journeyman
) -> None:
    assert send(
        server, "/v1/identify", {"userId": "pat", "traits": {"email": "p@x.org"}}
    ).is_success
    bought = {"userId": "pat", "event": "purchased", "properties": {"total": 5}}
    assert send(server, "/v1/track", bought).status_code == 202
    page.goto("/journeys/quick?step=finish")
    box = page.locator('[data-node="finish"]')
    expect(box.locator("text.counts")).to_have_text("1 entered · 0 waiting · 1 passed")
    expect(box.locator("[data-issues]")).to_have_text("")  # completing is not leaving
    numbers = page.locator("#detail [data-number]")
    expect(numbers).to_have_text(["entered1", "waiting0", "passed1"])
    expect(page.locator("#detail")).not_to_contain_text("waiting_now")
    with server.client() as client:
        steps = client.get("/v1/journeys/quick").json()["steps"]
    finish = next(s for s in steps if s["id"] == "finish")
    assert finish["numbers"] == {
        "entered": 1,
        "waiting": 0,
        "passed": 1,
        "left": 0,
        "skipped": 0,
        "capped": 0,
        "dropped": 0,
        "failed": 0,
    }
    assert "left" not in finish["counts"]
    shoot(page, "step-numbers")


def caught(server: Journeyman) -> int:
    with server.client() as client:
        return len(client.get("/v1/mail").json()["mail"])


def test_the_messages_page_draws_an_email_only_when_it_is_opened(
    page: Page, server: Journeyman
) -> None:
    before = caught(server)
    for n in range(15):
        sign_up(server, f"reader{n:02}", "free")
    wait_until(lambda: caught(server) >= before + 15, "15 welcome emails caught")
    page.goto("/messages")
    mails = page.locator("details.message")
    expect(mails).to_have_count(caught(server))
    expect(page.locator("iframe")).to_have_count(0)  # none drawn before it is asked for
    mail = mails.filter(has_text="Welcome, Reader07")
    mail.locator("summary").click()
    expect(page.locator("iframe")).to_have_count(1)
    expect(mail.frame_locator("iframe").locator("h1")).to_have_text("Welcome, Reader07")
    mail.locator("summary").click()  # closed and opened again: still one frame
    mail.locator("summary").click()
    expect(page.locator("iframe")).to_have_count(1)
    shoot(page, "messages-on-demand")


def test_profiles_are_found_by_the_start_of_a_name_whatever_its_case(
    page: Page, server: Journeyman
) -> None:
    for user, name in (("g-1", "Grace"), ("g-2", "Gracie")):
        traits = {"firstName": name, "lastName": "Hopper", "email": f"{user}@example.com"}
        assert send(server, "/v1/identify", {"userId": user, "traits": traits}).is_success
    page.get_by_label("Find a profile").fill("GRAC")
    page.get_by_label("Find a profile").press("Enter")
    found = page.get_by_role("region", name="Profiles found")
    expect(found.locator("tbody tr")).to_have_count(2)
    expect(found).to_contain_text("Gracie Hopper")
    found.get_by_role("link", name="g-2").click()
    expect(page.get_by_role("heading", name="g-2", exact=True)).to_be_visible()
    page.goto("/profiles?q=")
    expect(page.get_by_role("region", name="Profiles found")).to_contain_text("g-1@example.com")


def test_a_person_picks_a_time_zone_and_sees_every_time_in_it(
    browser: Browser, server: Journeyman
) -> None:
    sign_up(server, "zed", "free")
    context, tab = logged_in(browser, server, 1280)  # a browser of its own: its own cookie
    try:
        tab.goto("/profiles/zed")
        entered = tab.locator("time").first
        expect(entered).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
        zone = tab.locator("[data-zone]")
        expect(zone).to_have_text("UTC")
        zone.click()
        tab.get_by_label("Show times in").select_option("Asia/Kolkata")  # +05:30, no DST
        tab.get_by_role("button", name="Save").click()
        expect(tab.get_by_role("status")).to_have_text(
            "Times are now shown in Asia/Kolkata (+05:30)."
        )
        expect(zone).to_have_text("Asia/Kolkata (+05:30)")

        tab.goto("/profiles/zed")
        instant = datetime.fromisoformat(str(entered.get_attribute("datetime")))
        local = instant + timedelta(hours=5, minutes=30)
        expect(entered).to_have_text(f"{local:%Y-%m-%d %H:%M:%S} +05:30")
        expect(entered).to_have_attribute(
            "title", f"{local:%Y-%m-%d %H:%M:%S} Asia/Kolkata (+05:30)"
        )

        # What a person did shows in that zone too, in the journey's history.
        tab.goto("/journeys/welcome/pause")
        tab.get_by_role("button", name=re.compile("^Pause welcome")).click()
        expect(tab.get_by_role("status")).to_contain_text("Paused")
        paused = tab.locator('#history [data-audit="pause"]').first
        expect(paused).to_contain_text(f"paused by {USER} via console")
        expect(paused.locator("time")).to_have_text(re.compile(r" \+05:30$"))
        shoot(tab, "history-in-a-time-zone")
    finally:
        with server.client() as admin:
            assert admin.post("/v1/journeys/welcome/resume").status_code == 200
        context.close()
