"""The browser analytics libraries, as a website ships them, sending to a real
``journeyman serve`` from a page in a real headless Chromium.

Segment's ``@segment/analytics-next`` and RudderStack's ``@rudderstack/analytics-js`` come
from npm as tests/sdk's lock file says, bundled here with esbuild (from npm too), never
from a CDN. The page is served by a small HTTP server on another loopback port than
journeyman's, so every call is cross-origin: journeyman allows that origin
(``JOURNEYMAN_CORS_ORIGINS``) and the page sends with the client key only. Its page view
and track land on the visitor's profile and start a journey; a page of an origin not
allowed gets nothing in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.test_browser import CHROMIUM, CHROMIUM_ARGS, WAIT_MS
from tests.conftest import write_workspace
from tests.servers import LOOPBACK, Journeyman
from tests.waiting import wait_until

SDK_FOLDER = Path(__file__).parents[1] / "sdk"
CLIENT_KEY = "test-client-key"

WORKSPACE = """
kind: event
name: page
identity: anonymousId
---
kind: event
name: trial_started
identity: anonymousId
schema:
  type: object
  required: [plan]
  properties: {plan: {type: string}}
---
kind: settings
browser:
  traits: [firstName]
---
kind: template
name: tips
channel: email
subject: "Tips for your {{ entry.plan }} trial"
text: "Hello"
---
kind: journey
name: trial
entry: {event: trial_started}
steps:
  - id: settle
    wait: 1d
  - id: tips
    send: tips
"""

# What a site's build does: the library from npm, put where the page's script finds it.
ENTRIES = {
    "segment.js": (
        "import { AnalyticsBrowser } from '@segment/analytics-next';\n"
        "window.AnalyticsBrowser = AnalyticsBrowser;\n"
    ),
    "rudderstack.js": (
        "import { RudderAnalytics } from '@rudderstack/analytics-js/bundled';\n"
        "window.RudderAnalytics = RudderAnalytics;\n"
    ),
}

SEGMENT_PAGE = """<!doctype html><meta charset=utf-8><title>shop</title>
<script src="/segment.js"></script>
<script>
  const host = API.replace('http://', '') + '/v1';  // apiHost has no scheme
  const settings = {'Segment.io': {apiKey: KEY, apiHost: host, protocol: 'http'}};
  window.analytics = AnalyticsBrowser.load(
    {writeKey: KEY, cdnSettings: {integrations: settings}},
    {integrations: settings});
  window.sent = Promise.all([
    analytics.page('Pricing'),
    analytics.track('trial_started', {plan: 'pro'}),
    analytics.identify({firstName: 'Ada'}),
  ]).then(async () => (await analytics.user()).anonymousId());
</script>
"""

RUDDERSTACK_PAGE = """<!doctype html><meta charset=utf-8><title>shop</title>
<script src="/rudderstack.js"></script>
<script>
  window.rudderanalytics = new RudderAnalytics();
  const source = {source: {id: 'web', name: 'web', workspaceId: 'web', enabled: true,
                           config: {}, destinations: []}};
  rudderanalytics.load(KEY, API, {getSourceConfig: () => source, logLevel: 'WARN'});
  window.sent = new Promise((resolve) => rudderanalytics.ready(() => {
    rudderanalytics.page('Pricing');
    rudderanalytics.track('trial_started', {plan: 'pro'});
    rudderanalytics.identify({firstName: 'Ada'});
    resolve(rudderanalytics.getAnonymousId());
  }));
</script>
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A folder of the shop's pages and scripts, served on a loopback port of its own."""
    folder = tmp_path_factory.mktemp("site")
    server = ThreadingHTTPServer((LOOPBACK, 0), partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def bundles(site: tuple[str, Path]) -> Path:
    """The libraries bundled from tests/sdk's node_modules into the site's folder."""
    npm = shutil.which("npm")
    assert npm, "the browser library tests need npm (make services installs it)"
    if not (SDK_FOLDER / "node_modules" / "@segment" / "analytics-next").is_dir():
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
        done = subprocess.run(command, cwd=SDK_FOLDER, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    esbuild = SDK_FOLDER / "node_modules" / ".bin" / "esbuild"
    folder = site[1]
    for name, entry in ENTRIES.items():
        command = [str(esbuild), "--bundle", "--format=iife", f"--outfile={folder / name}"]
        command += ["--log-level=warning", f"--sourcefile={name}"]
        done = subprocess.run(
            command, input=entry, cwd=SDK_FOLDER, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, site: tuple[str, Path]
) -> Iterator[Journeyman]:
    folder = tmp_path_factory.mktemp("journeyman")
    workspace = write_workspace(folder / "ws", WORKSPACE)
    env = {"JOURNEYMAN_CLIENT_KEY": CLIENT_KEY, "JOURNEYMAN_CORS_ORIGINS": site[0]}
    with Journeyman(workspace, f"sqlite:///{folder / 'j.db'}", folder, env=env) as running:
        running.start()
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: the browser tests need it.")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(
    browser: Browser, folder: Path, server: Journeyman, name: str, text: str
) -> tuple[Page, list[str], list[str]]:
    """A fresh tab for the shop's page ``name`` (not opened yet); the addresses it asks for
    beyond loopback, and what its console says."""
    settings = f"<script>const KEY = {json.dumps(CLIENT_KEY)}, API = {json.dumps(server.url)};"
    (folder / name).write_text(text.replace("<script>", settings + "</script><script>", 1))
    tab = browser.new_context().new_page()
    tab.set_default_timeout(WAIT_MS)
    outside: list[str] = []
    said: list[str] = []
    tab.on("console", lambda message: said.append(f"{message.type}: {message.text}"))

    def only_loopback(route: Any) -> None:
        url = route.request.url
        if url.startswith((f"http://{LOOPBACK}:", "http://localhost:", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    tab.route("**/*", only_loopback)
    return tab, outside, said


def landed(server: Journeyman, visitor: str) -> Any:
    """The visitor's profile once its page view, track and traits are all on it."""
    with server.client() as api:
        answer = api.get(f"/v1/profiles/{visitor}")
        if answer.status_code != 200:
            return None
        found = answer.json()
    names = {event["name"] for event in found["events"]}
    entered = [i for i in found["instances"] if i["journey"] == "trial"]
    if {"page", "trial_started"} <= names and found["traits"].get("firstName") and entered:
        return found
    return None


def tail(server: Journeyman) -> str:
    """The server's latest calls, for a failure to show what came."""
    with server.client() as api:
        events = api.get("/v1/events", params={"limit": 20}).json()["events"]
    shown = [(e["status"], e["name"], e["profile_id"], e.get("error")) for e in events]
    return "\n".join(map(str, shown))


@pytest.mark.parametrize(
    ("name", "text"),
    [("segment.html", SEGMENT_PAGE), ("rudderstack.html", RUDDERSTACK_PAGE)],
    ids=["segment-analytics-next", "rudderstack-analytics-js"],
)
def test_a_page_view_and_a_track_from_the_library_land_on_the_profile_and_start_a_journey(
    browser: Browser,
    site: tuple[str, Path],
    bundles: Path,
    server: Journeyman,
    name: str,
    text: str,
) -> None:
    tab, outside, said = open_page(browser, bundles, server, name, text)
    tab.goto(f"{site[0]}/{name}")
    visitor = tab.evaluate("window.sent")
    assert isinstance(visitor, str)
    try:
        found = wait_until(lambda: landed(server, visitor), f"{name}'s calls", WAIT_MS / 1000)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{tail(server)}\nconsole: {said}\n{outside}") from None
    page = next(e for e in found["events"] if e["name"] == "page")
    assert page["properties"]["name"] == "Pricing"
    track = next(e for e in found["events"] if e["name"] == "trial_started")
    assert track["properties"] == {"plan": "pro"}
    assert found["traits"]["firstName"] == "Ada"
    assert [i["step"] for i in found["instances"] if i["journey"] == "trial"] == ["settle"]
    assert outside == [], f"the page asked for more than loopback: {outside}"
    assert not [line for line in said if line.startswith("error")], said
    tab.context.close()


def test_a_page_of_an_origin_not_allowed_gets_nothing_in(
    browser: Browser, bundles: Path, server: Journeyman, site: tuple[str, Path]
) -> None:
    # The same page, reached as localhost: another origin than the one allowed.
    other = site[0].replace(LOOPBACK, "localhost")
    tab, _, _ = open_page(browser, bundles, server, "segment-other.html", SEGMENT_PAGE)
    with tab.expect_event("requestfailed", lambda request: "/v1/" in request.url):
        tab.goto(f"{other}/segment-other.html")
    # The library's calls carry an Authorization header, so the browser asks first and
    # sends nothing once refused. A call that needs no asking (text/plain, its key in the
    # body) goes out, and is refused: no CORS header, so the page cannot read the answer.
    read = tab.evaluate(
        """async () => {
          const body = JSON.stringify({writeKey: KEY, anonymousId: 'other-origin',
                                       event: 'trial_started', properties: {plan: 'pro'}});
          try { await fetch(API + '/v1/t', {method: 'POST', body}); return 'read'; }
          catch (error) { return 'blocked'; }
        }"""
    )
    assert read == "blocked"
    with server.client() as api:

        def refused() -> bool:
            events = api.get("/v1/events", params={"status": "rejected"}).json()["events"]
            return any(e["error"]["field"] == "Origin" for e in events)

        wait_until(refused, "the page's refused call in the event tail", WAIT_MS / 1000)
        assert api.get("/v1/profiles/other-origin").status_code == 404
        visitor = tab.evaluate("window.sent")
        assert api.get(f"/v1/profiles/{visitor}").status_code == 404
    tab.context.close()
