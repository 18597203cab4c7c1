"""A segment's console page in a real headless Chromium against a real ``journeyman
serve``: the size over time is a visible, labelled chart at a desktop's 1280 px and a
phone's 390 px, the backfill shows done of total, and there is no console error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

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

BUYERS = """
kind: segment
name: buyers
description: bought within 30 days
when: count("purchased", "30d") >= 1
"""
USERS = [f"b{index:02}" for index in range(6)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("segment")
    workspace = write_workspace(folder / "ws", BASE, BUYERS)
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}"}
    with WithCatcher(workspace, f"sqlite:///{folder / 'j.db'}", folder, env=users) as running:
        running.start()
        for user in USERS:
            bought = {"userId": user, "event": "purchased", "properties": {"total": 20}}
            assert send(running, "/v1/track", bought).is_success
        with running.client() as admin:
            wait_until(
                lambda: admin.get("/v1/segments/buyers").json()["size"] == len(USERS), "buyers"
            )
            assert admin.post("/v1/segments/buyers/backfill").status_code == 202

            def backfilled() -> bool:
                shown = admin.get("/v1/segments/buyers").json()["backfill"]
                return (shown["state"], shown["done"]) == ("done", len(USERS))

            wait_until(backfilled, "the buyers and the backfill")
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the browser tests need it.")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_segment_page_draws_its_size_over_time_and_its_backfill(
    browser: Browser, server: Journeyman, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=server.url)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto("/segments/buyers")
    tab.get_by_label("User name").fill(USER)
    tab.get_by_label("Admin key or password").fill(PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    expect(tab).to_have_url(f"{server.url}/segments/buyers")

    chart = tab.locator('svg[data-chart="segment-size"]')
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("aria-label", "Size of segment buyers over time")
    expect(chart.locator("text", has_text="Members")).to_have_count(1)
    expect(chart.locator("text", has_text="Time (UTC)")).to_have_count(1)
    expect(chart.locator("polyline.line")).to_have_count(1)
    expect(chart.locator("g.series title")).to_have_text("buyers: 6 now")
    box = chart.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width  # the chart fits the screen: nothing to scroll
    assert box["height"] > 100
    backfill = tab.get_by_role("region", name="Backfill")
    expect(backfill.locator("[data-backfill-state]")).to_have_text("done")
    expect(backfill).to_contain_text("of 6 profiles (100.0%)")
    expect(backfill.get_by_label("Backfill progress")).to_be_visible()
    shoot(tab, f"segment-{width}")
    assert errors == []
    context.close()
