"""A journey's Report tab in a real headless Chromium against a real ``journeyman serve``:
its charts are visible and labelled (axis titles, the arms in a legend) at a desktop's
1280 px and a phone's 390 px, no console error, the filters work as a plain form, and the
CSV downloads with the report's numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    USER,
    WAIT_MS,
    WithCatcher,
    send,
    shoot,
)
from tests.conftest import BASE, write_workspace
from tests.servers import Journeyman
from tests.waiting import wait_until

PROMO = """
kind: journey
name: promo
entry: {event: signed_up}
holdout: 30%
goals:
  - {name: purchased, event: purchased, within: 7d, value: event.total, primary: true}
steps:
  - id: hello
    send: hello_email
  - id: pause
    wait: 7d
"""
USERS = [f"r{index:02}" for index in range(24)]
BUYERS = USERS[::3]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("report")
    workspace = write_workspace(folder / "ws", BASE, PROMO)
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}"}
    with WithCatcher(workspace, f"sqlite:///{folder / 'j.db'}", folder, env=users) as running:
        running.start()
        for user in USERS:
            traits = {"email": f"{user}@example.com"}
            assert send(running, "/v1/identify", {"userId": user, "traits": traits}).is_success
            track = {"userId": user, "event": "signed_up", "properties": {"plan": "pro"}}
            assert send(running, "/v1/track", track).is_success
        for user in BUYERS:
            bought = {"userId": user, "event": "purchased", "properties": {"total": 20}}
            assert send(running, "/v1/track", bought).is_success
        with running.client() as admin:
            wait_until(lambda: _counted(admin), "the entries and purchases counted")
        yield running


def _counted(admin: httpx.Client) -> bool | None:
    found = admin.get("/v1/journeys/promo/report").json()
    return (found["entries"], found["goals"][0]["conversions"]) == (24, len(BUYERS)) or None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the browser tests need it.")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def logged_in(browser: Browser, server: Journeyman, width: int) -> tuple[Page, list[str]]:
    """A logged-in tab ``width`` px wide, and the console errors it will collect."""
    context = browser.new_context(
        viewport={"width": width, "height": 900}, base_url=server.url, accept_downloads=True
    )
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto("/journeys/promo/report")
    tab.get_by_label("User name").fill(USER)
    tab.get_by_label("Admin key or password").fill(PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    expect(tab).to_have_url(f"{server.url}/journeys/promo/report")
    return tab, errors


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_tab_draws_labelled_charts_and_downloads_the_csv(
    browser: Browser, server: Journeyman, width: int
) -> None:
    tab, errors = logged_in(browser, server, width)
    chart = tab.locator('svg[data-chart="conversion"]')
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute(
        "aria-label", "Conversion to purchased over time, by arm, with the 95% interval"
    )
    expect(chart.locator("text", has_text="Day of entry (UTC)")).to_have_count(1)
    expect(chart.locator("text", has_text="Converted to purchased")).to_have_count(1)
    expect(chart.locator("polygon.band")).to_have_count(2)
    for arm in ("holdout", "treated"):
        expect(tab.locator(f'.legend li[data-legend="{arm}"]')).to_be_visible()
        expect(tab.locator(f'.legend li[data-legend="{arm}"]')).to_contain_text(arm)
    expect(tab.locator('svg[data-chart="funnel"]')).to_be_visible()
    expect(tab.locator('svg[data-chart="funnel"] text', has_text="hello")).to_have_count(1)
    expect(tab.locator('svg[data-chart="time"] text', has_text="median")).to_have_count(1)
    expect(tab.locator("[data-entries]")).to_have_text("24")
    box = chart.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width  # the chart fits the screen: nothing to scroll
    assert box["height"] > 120
    shoot(tab, f"report-{width}")

    with tab.expect_download() as caught:
        tab.get_by_role("link", name="Download CSV").click()
    download = caught.value
    assert download.suggested_filename == "promo-report.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert rows[0] == ["section", "name", "arm", "day", "metric", "value"]
    cells = {tuple(r[:5]): r[5] for r in rows[1:]}
    assert cells[("journey", "promo", "", "", "entries")] == "24"
    assert cells[("goal", "purchased", "", "", "conversions")] == str(len(BUYERS))
    assert errors == []
    tab.context.close()


def test_the_filters_are_a_plain_form_and_bad_dates_are_named(
    browser: Browser, server: Journeyman
) -> None:
    tab, errors = logged_in(browser, server, 1280)
    tab.get_by_label("Entered from").fill("2099-01-01")
    tab.get_by_role("button", name="Apply").click()
    expect(tab).to_have_url(f"{server.url}/journeys/promo/report?version=1&from=2099-01-01&to=")
    expect(tab.locator("[data-entries]")).to_have_text("0")
    expect(tab.locator('svg[data-chart="conversion"]')).to_contain_text("No entries in this range")
    href = tab.get_by_role("link", name="Download CSV").get_attribute("href")
    assert href == "/journeys/promo/report.csv?version=1&from=2099-01-01"
    tab.goto("/journeys/promo/report?from=soon")
    expect(tab.locator("[data-problem]")).to_contain_text("'from' must be a UTC date as YYYY-MM-DD")
    expect(tab.locator("[data-entries]")).to_have_text("24")
    tab.goto("/journeys/promo")
    tab.get_by_role("link", name="Report: goals, lift and charts").click()
    expect(tab).to_have_url(f"{server.url}/journeys/promo/report")
    assert [e for e in errors if "400" not in e] == []  # the bad date's page answers 400
    tab.context.close()
