"""Opens and clicks with a bus: ``serve --bus`` takes the clicks, a ``journeyman worker``
sends the email and applies the events. The worker builds the links on the public URL and
secret that serve keeps in the database."""

from __future__ import annotations

import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import (
    BusServer,
    NatsServer,
    WorkerProcess,
    serve_with_worker,
)
from tests.conftest import write_workspace
from tests.integration.test_reaction_pixel import WORKSPACE as WAITS_FOR_AN_OPEN
from tests.integration.test_reaction_pixel import open_and_ignore
from tests.integration.test_serve import accepted, smtp_channel
from tests.integration.test_tracking import BLOG, PERSON, SALE, WORKSPACE, events, hrefs
from tests.servers import WRITE_KEY, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.shared

WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}


def test_a_worker_sends_tracked_email_and_clicks_reach_the_profile_through_the_bus(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 4)
        client = stack.enter_context(api.client())
        traits = {"firstName": "Ada", "email": "ada@example.com"}
        accepted(client.post("/v1/identify", json={"userId": "ada", "traits": traits}))
        accepted(client.post("/v1/track", json={"userId": "ada", "event": "signed_up"}))
        wait_until(lambda: len(smtp.received) >= 3, "the three emails")
        [promo] = [m.message for m in smtp.received if m.message["Subject"] == "Our sale"]
        body = promo.get_body(preferencelist=("html",))
        assert body is not None
        html = str(body.get_content())
        sale, blog, *_ = hrefs(html)
        assert sale.startswith(f"{api.url}/c/")
        [pixel] = re.findall(r'<img src="([^"]+)"', html)

        with httpx.Client(timeout=20, trust_env=False) as browser:
            assert browser.get(sale, headers={"User-Agent": PERSON}).headers["location"] == SALE
            assert browser.get(blog).headers["location"] == BLOG
            assert browser.get(pixel, headers={"User-Agent": "Mozilla/5.0"}).status_code == 200

        # The events are in JetStream when the answers come; the worker applies them.
        clicked = wait_until(lambda: _two(events(client, "ada", "message_clicked")), "clicks")
        urls = {e["properties"]["url"] for e in clicked}
        assert urls == {SALE, BLOG}
        [opened] = wait_until(lambda: events(client, "ada", "message_opened"), "the open")
        assert opened["properties"]["machine"] is True
        assert opened["properties"]["message"] == promo["X-Journeyman-Key"]


def test_while_the_bus_is_down_a_click_answers_503_and_leads_nowhere(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        nats_server = stack.enter_context(NatsServer(tmp_path / "nats"))
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        api = BusServer(workspace, store_url, tmp_path, nats_server.url, "JMTRACK", 2)
        stack.enter_context(api).start()
        worker = WorkerProcess("1", workspace, store_url, nats_server.url, tmp_path)
        stack.enter_context(worker).start()
        client = stack.enter_context(api.client())
        traits = {"email": "bo@example.com"}
        accepted(client.post("/v1/identify", json={"userId": "bo", "traits": traits}))
        accepted(client.post("/v1/track", json={"userId": "bo", "event": "signed_up"}))
        wait_until(lambda: len(smtp.received) >= 3, "the three emails")
        [promo] = [m.message for m in smtp.received if m.message["Subject"] == "Our sale"]
        body = promo.get_body(preferencelist=("html",))
        assert body is not None
        html = str(body.get_content())
        sale = hrefs(html)[0]
        [pixel] = re.findall(r'<img src="([^"]+)"', html)
        nats_server.kill()
        with httpx.Client(timeout=30, trust_env=False) as browser:
            answer = browser.get(sale)
            assert answer.status_code == 503, answer.text
            assert "location" not in answer.headers
            assert answer.headers["retry-after"]
            opened = browser.get(pixel)
            assert (opened.status_code, opened.headers["content-type"]) == (503, "image/gif")
        assert "Traceback" not in api.output
        nats_server.start()
        with httpx.Client(timeout=30, trust_env=False) as browser:
            answer = wait_until(lambda: _redirected(browser, sale), "a click once NATS is back")
        assert answer.headers["location"] == SALE


def _redirected(browser: httpx.Client, url: str) -> httpx.Response | None:
    answer = browser.get(url)
    return answer if answer.status_code == 302 else None


def _two(found: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return found if len(found) == 2 else None


def test_a_workers_wait_for_an_open_takes_the_pixel_path_or_the_timeout_path(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WAITS_FOR_AN_OPEN, smtp_channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 2)
        open_and_ignore(stack.enter_context(api.client()), smtp)
