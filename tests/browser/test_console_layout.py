"""The console as a person sees it on a phone (390 px wide) and on a laptop (1280 px), in a
real headless Chromium against a real ``journeyman serve``: every page fits the screen's
width, boxes of the graph keep their text inside, and what a page shows is readable.

One server and one browser for the module, as in test_browser; each test uses profiles of
its own. Screenshots go to ``artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.browser.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    USER,
    WAIT_MS,
    WithCatcher,
    shoot,
    sign_up,
)
from tests.conftest import BASE, write_workspace
from tests.servers import Journeyman

WIDTHS = (390, 1280)

# Long names on purpose: a step id, an event and a description a phone must still fit.
JOURNEY = """
kind: journey
name: onboarding_for_enterprise_customers_in_europe
description: Greet every sign-up; pro accounts get a day to settle in first, then a long note.
entry: {event: signed_up}
steps:
  - id: route_by_plan_and_region_of_the_new_customer
    branch:
      - when: event.plan == "pro" and profile.firstName != "nobody in particular"
        goto: settle_in_for_a_whole_day_before_greeting
      - otherwise: greet_with_a_welcome_email
  - id: settle_in_for_a_whole_day_before_greeting
    wait: 1d
  - id: greet_with_a_welcome_email
    send: welcome_email_for_enterprise_customers
  - id: done
    end: welcomed
---
kind: template
name: welcome_email_for_enterprise_customers
channel: email
subject: "Welcome, {{ profile.firstName | default: 'friend' }}"
html: "<h1>Welcome, {{ profile.firstName | default: 'friend' }}</h1>"
"""
NAME = "onboarding_for_enterprise_customers_in_europe"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("layout")
    workspace = write_workspace(folder / "ws", BASE, JOURNEY)
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}"}
    with WithCatcher(workspace, f"sqlite:///{folder / 'j.db'}", folder, env=users) as running:
        running.start()
        sign_up(running, "lea", "pro")
        sign_up(running, "max", "free")
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def logged_in(browser: Browser, server: Journeyman, width: int) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": width, "height": 844}, base_url=server.url)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.goto("/login")
    tab.get_by_label("User name").fill(USER)
    tab.get_by_label("Admin key or password").fill(PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    expect(tab).to_have_url(f"{server.url}/journeys")
    return context, tab


@pytest.fixture(scope="module", params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def page(request: pytest.FixtureRequest, browser: Browser, server: Journeyman) -> Iterator[Page]:
    context, tab = logged_in(browser, server, request.param)
    yield tab
    context.close()


def width_of(page: Page) -> int:
    return int(page.viewport_size["width"]) if page.viewport_size else 0


def sideways(page: Page) -> int:
    """How many pixels the page scrolls sideways (0 when it fits the screen)."""
    return int(page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth"))


PAGES = [
    "/journeys",
    f"/journeys/{NAME}",
    f"/journeys/{NAME}?step=greet_with_a_welcome_email",
    f"/journeys/{NAME}/pause",
    "/events",
    "/profiles",
    "/profiles?q=nobody",
    "/profiles/lea",
    "/messages",
    "/workspace",
    "/journeys/no_such_journey",
]


def test_no_console_page_scrolls_sideways(page: Page) -> None:
    width = width_of(page)
    wide = {}
    for path in PAGES:
        page.goto(path)
        expect(page.locator("main")).to_be_visible()
        name = path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-")
        shoot(page, f"{width}-{name}")
        if sideways(page) > 0:
            wide[path] = sideways(page)
    assert wide == {}, f"pages that scroll sideways at {width} px (by how many px)"


def test_the_menu_and_the_graph_fit_the_screen(page: Page) -> None:
    width = width_of(page)
    page.goto(f"/journeys/{NAME}")
    for link in ("Journeys", "Events", "Profiles", "Messages", "Workspace"):
        box = page.get_by_role("navigation").get_by_role("link", name=link).bounding_box()
        assert box is not None, link
        assert box["x"] >= 0, link
        assert box["x"] + box["width"] <= width, link
    graph = page.locator(".canvas svg").bounding_box()
    canvas = page.locator(".canvas").bounding_box()
    assert graph is not None
    assert canvas is not None
    assert graph["width"] <= canvas["width"] + 1  # the graph shrinks into its card
    page.goto("/login")  # logged in already: the login page still fits
    assert sideways(page) <= 0


INSIDE = """node => {
    const box = node.querySelector("rect").getBBox();
    return [...node.querySelectorAll("text")].filter(t => t.textContent).map(t => {
        const b = t.getBBox();
        return [t.textContent, b.x >= box.x && b.x + b.width <= box.x + box.width];
    });
}"""


def test_every_boxs_text_stays_inside_it_and_long_names_keep_most_of_their_text(
    page: Page,
) -> None:
    page.goto(f"/journeys/{NAME}")
    nodes = page.locator("[data-node]")
    expect(nodes).to_have_count(5)
    for index in range(nodes.count()):
        for text, inside in nodes.nth(index).evaluate(INSIDE):
            assert inside, f"{text!r} overflows its box"
    long = page.locator('[data-node="settle_in_for_a_whole_day_before_greeting"]')
    shown = long.locator("text.title").text_content() or ""
    assert shown.endswith("…")
    assert len(shown) >= 18  # cut where the box ends, not a few characters in
    assert "settle_in_for_a_whole_day_before_greeting" in (
        long.locator("title").text_content() or ""
    )
    fits = page.locator('[data-node="greet_with_a_welcome_email"] text.summary')
    expect(fits).to_have_text(re.compile(r"^send welcome_email_for_e.*…$"))
    shoot(page, f"{width_of(page)}-graph-text")
