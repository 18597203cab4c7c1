"""A journey's Report tab in a real headless Chromium against a real ``journeyman serve``:
its charts are visible and labelled (axis titles, the arms in a legend) at a desktop's
1280 px and a phone's 390 px, no console error, the filters work as a plain form, and the
CSV downloads with the report's numbers."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

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
TRIALS = """
kind: event
name: trial_started
---
kind: event
name: trial_converted
---
kind: journey
name: trial
entry: {event: trial_started}
goals:
  - {name: converted, event: trial_converted, within: 7d, primary: true}
steps:
  - id: offer
    experiment:
      - {name: a, weight: 1, goto: pause}
      - {name: b, weight: 1, goto: pause}
    winner: {min_per_variant: 3, min_time: 0s}
  - id: pause
    wait: 7d
---
kind: journey
name: subjects
entry: {event: trial_started}
goals:
  - {name: converted, event: trial_converted, within: 7d, primary: true}
steps:
  - id: subject_test
    experiment:
      - {name: a, weight: 1, send: hello_email}
      - {name: b, weight: 1, send: hello_email}
  - id: pause
    wait: 7d
"""
USERS = [f"r{index:02}" for index in range(24)]
BUYERS = USERS[::3]
TRIAL_USERS = [f"t{index:02}" for index in range(16)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("report")
    workspace = write_workspace(folder / "ws", BASE, PROMO, TRIALS)
    users = {"JOURNEYMAN_CONSOLE_USERS": f"{USER}:{PASSWORD}", "JOURNEYMAN_EXPERIMENT_CHECK": "0.2"}
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
            _run_trials(running, admin)
        yield running


def _run_trials(running: Journeyman, admin: httpx.Client) -> None:
    """Sixteen trials; everyone whom ``trial`` gave b converts, no one with a: serve
    declares b the winner."""
    for user in TRIAL_USERS:
        assert send(running, "/v1/track", {"userId": user, "event": "trial_started"}).is_success

    def variant(user: str) -> str | None:
        for instance in admin.get(f"/v1/profiles/{user}").json()["instances"]:
            for line in instance["trace"] if instance["journey"] == "trial" else ():
                if line["outcome"] == "variant":
                    return str(line["detail"]).split()[0]
        return None

    got = {user: wait_until(partial(variant, user), f"{user}'s variant") for user in TRIAL_USERS}
    for user in [u for u, name in got.items() if name == "b"]:
        assert send(running, "/v1/track", {"userId": user, "event": "trial_converted"}).is_success

    def decided() -> Any:
        return admin.get("/v1/journeys/trial/report").json()["experiments"][0]["decision"]

    assert wait_until(decided, "the trial's winner")["variant"] == "b"


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
    expect(tab.locator("[data-problem]")).to_contain_text("'from' must be a date as YYYY-MM-DD")
    expect(tab.locator("[data-entries]")).to_have_text("24")
    tab.goto("/journeys/promo")
    tab.get_by_role("link", name="Report: goals, lift and charts").click()
    expect(tab).to_have_url(f"{server.url}/journeys/promo/report")
    assert [e for e in errors if "400" not in e] == []  # the bad date's page answers 400
    tab.context.close()


def test_the_experiment_section_shows_the_winner_serve_picked_with_its_data(
    browser: Browser, server: Journeyman
) -> None:
    tab, errors = logged_in(browser, server, 1280)
    tab.goto("/journeys/trial/report")
    section = tab.get_by_role("region", name="Experiment offer")
    expect(section).to_be_visible()
    expect(section.get_by_role("heading")).to_contain_text("Experiment offer")
    expect(section.get_by_role("heading")).to_contain_text("on goal converted")
    decision = section.locator('[data-decision="winner"]')
    expect(decision).to_contain_text("Winner: b")
    expect(decision).to_contain_text("by the winner policy")
    with server.client() as admin:
        stored = admin.get("/v1/journeys/trial/report").json()["experiments"][0]["decision"]
    at = datetime.fromisoformat(stored["at"]).astimezone(UTC)
    expect(decision.locator("time")).to_have_attribute(
        "datetime", at.isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    expect(decision).to_contain_text("P(best)")
    table = section.get_by_role("table", name="Variants of offer")
    expect(table.get_by_role("columnheader")).to_have_text(
        ["variant", "does", "weight", "profiles", "converted", "rate", "P(best)"]
    )
    expect(table.locator('tr[data-variant="b"] .badge')).to_have_text("winner")
    expect(table.locator('tr[data-variant="a"] .badge')).to_have_count(0)
    profiles = [int(c) for c in table.locator("tr[data-variant] td:nth-child(4)").all_inner_texts()]
    assert sum(profiles) == len(TRIAL_USERS)
    shoot(tab, "report-experiment")
    assert errors == []
    tab.context.close()


def test_an_operator_picks_a_winner_then_stops_the_experiment_from_the_report(
    browser: Browser, server: Journeyman
) -> None:
    tab, errors = logged_in(browser, server, 390)
    tab.goto("/journeys/subjects/report")
    section = tab.get_by_role("region", name="Experiment subject_test")
    expect(section.locator('[data-decision="none"]')).to_contain_text("No winner policy")
    pick = section.get_by_role("form", name="Pick the winner of subject_test")
    expect(pick).to_be_visible()
    box = pick.bounding_box()
    assert box is not None
    assert box["x"] + box["width"] <= 390  # the form fits a phone's screen
    pick.get_by_label("Winning variant").select_option("b")
    pick.get_by_role("button", name="Pick winner").click()
    expect(tab).to_have_url(f"{server.url}/journeys/subjects/report?decided=chosen%3Asubject_test")
    expect(tab.get_by_role("status")).to_contain_text("Winner picked")
    expect(section.locator('[data-decision="chosen"]')).to_contain_text("Winner chosen by hand: b")
    expect(section.locator('[data-decision="chosen"]')).to_contain_text(f"by {USER}")
    expect(section.locator('tr[data-variant="b"] .badge')).to_have_text("winner")
    with server.client() as admin:
        stored = admin.get("/v1/journeys/subjects/report").json()["experiments"][0]["decision"]
    assert (stored["variant"], stored["how"], stored["by"]) == ("b", "chosen", USER)

    stop = section.get_by_role("form", name="Stop subject_test")
    stop.get_by_label("New profiles get").select_option("a")
    stop.get_by_role("button", name="Stop experiment").click()
    expect(tab.get_by_role("status")).to_contain_text("Experiment stopped")
    expect(section.locator('[data-decision="stopped"]')).to_contain_text(
        "Stopped: new profiles get a"
    )
    expect(section.locator('tr[data-variant="a"] .badge')).to_have_text("stopped to")
    shoot(tab, "report-experiment-stopped-390")
    assert errors == []
    tab.context.close()


def test_a_decision_form_without_its_token_or_with_an_unknown_variant_changes_nothing(
    browser: Browser, server: Journeyman
) -> None:
    tab, _ = logged_in(browser, server, 1280)
    request = tab.context.request
    url = f"{server.url}/journeys/trial/report/experiments/offer/winner"
    assert request.post(url, form={"variant": "a"}).status == 403  # no CSRF token
    tab.goto("/journeys/trial/report")
    token = tab.locator('form[aria-label="Pick the winner of offer"] input[name="csrf"]')
    csrf = token.get_attribute("value") or ""
    refused = request.post(url, form={"variant": "c", "csrf": csrf})
    assert refused.status == 400
    assert "'variant' must be one of a, b, not 'c'" in html.unescape(refused.text())
    gone = f"{server.url}/journeys/trial/report/experiments/pause/winner"
    assert request.post(gone, form={"variant": "a", "csrf": csrf}).status == 404
    with server.client() as admin:
        stored = admin.get("/v1/journeys/trial/report").json()["experiments"][0]["decision"]
    assert (stored["variant"], stored["how"]) == ("b", "winner")
    tab.context.close()
