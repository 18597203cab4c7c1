"""An experiment on a real ``journeyman serve`` (SQLite file, PostgreSQL): profiles get
their variants' emails (real SMTP) by weight; once an operator picks a winner, every new
profile gets it, the report shows the decision and its data, and bad decisions are 4xx
naming the field, changing nothing."""

from __future__ import annotations

import re
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import serve_with_worker
from tests.conftest import write_workspace
from tests.integration.test_serve import smtp_channel
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

WORKSPACE = """
kind: event
name: signed_up
---
kind: event
name: purchased
---
kind: template
name: subject_a
channel: email
transactional: true
subject: "Subject A"
text: "a"
---
kind: template
name: subject_b
channel: email
transactional: true
subject: "Subject B"
text: "b"
---
kind: journey
name: promo
entry: {event: signed_up}
goals:
  - {name: purchased, event: purchased, within: 7d, primary: true}
steps:
  - id: subject_test
    experiment:
      - {name: a, weight: 1, send: subject_a}
      - {name: b, weight: 1, send: subject_b}
    winner: {min_per_variant: 1000, min_time: 3d}
  - id: pause
    wait: 7d
"""
EARLY = [f"u{index:02}" for index in range(20)]
LATE = [f"v{index:02}" for index in range(20)]


def report(admin: httpx.Client) -> dict[str, Any]:
    answer = admin.get("/v1/journeys/promo/report")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def sign_up(client: httpx.Client, users: list[str]) -> None:
    for user in users:
        traits = {"email": f"{user}@x.test"}
        assert client.post("/v1/identify", json={"userId": user, "traits": traits}).is_success
        assert client.post("/v1/track", json={"userId": user, "event": "signed_up"}).is_success


def subjects(smtp: SmtpServer, prefix: str) -> dict[str, str]:
    found = {}
    for mail in smtp.received:
        for recipient in mail.recipients:
            if recipient.startswith(prefix):
                found[recipient.split("@")[0]] = mail.message["Subject"]
    return found


@pytest.mark.durable
def test_an_operators_winner_sends_every_new_profile_to_it(tmp_path: Path, store_url: str) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        server = stack.enter_context(Journeyman(workspace, store_url, tmp_path)).start()
        client = stack.enter_context(server.client(WRITE_KEY))
        admin = stack.enter_context(server.client())
        run_scenario(client, admin, smtp)


@pytest.mark.shared
def test_workers_on_nats_apply_the_operators_winner_as_serve_does(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 2)
        client = stack.enter_context(api.client(WRITE_KEY))
        admin = stack.enter_context(api.client())
        run_scenario(client, admin, smtp)


def run_scenario(client: httpx.Client, admin: httpx.Client, smtp: SmtpServer) -> None:
    """Twenty profiles by weight, five purchases, the operator picks b, twenty more."""
    sign_up(client, EARLY)
    wait_until(lambda: len(subjects(smtp, "u")) == len(EARLY) or None, "the first emails")
    assert set(subjects(smtp, "u").values()) == {"Subject A", "Subject B"}  # by weight
    for user in EARLY[:5]:
        track = {"userId": user, "event": "purchased"}
        assert client.post("/v1/track", json=track).is_success
    wait_until(lambda: report(admin)["goals"][0]["conversions"] == 5 or None, "purchases")
    (before,) = report(admin)["experiments"]
    assert before["decision"] is None
    assert sum(v["entries"] for v in before["variants"]) == len(EARLY)

    check_refusals(admin)
    answer = admin.post(
        "/v1/journeys/promo/experiments/subject_test/winner",
        json={"variant": "b", "by": "ana@x.test"},
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["variant"], answer.json()["how"]) == ("b", "chosen")

    sign_up(client, LATE)
    wait_until(lambda: len(subjects(smtp, "v")) == len(LATE) or None, "the later emails")
    assert set(subjects(smtp, "v").values()) == {"Subject B"}
    (after,) = report(admin)["experiments"]
    decision = after["decision"]
    assert (decision["variant"], decision["how"], decision["by"]) == (
        "b",
        "chosen",
        "ana@x.test",
    )
    assert sum(a["n"] for a in decision["data"]) == len(EARLY)
    assert sum(a["conversions"] for a in decision["data"]) == 5
    entries = {v["name"]: v["entries"] for v in after["variants"]}
    early_b = next(a["n"] for a in decision["data"] if a["variant"] == "b")
    assert entries == {"a": len(EARLY) - early_b, "b": early_b + len(LATE)}
    page = console_report(admin)
    assert "Winner chosen by hand: b" in page
    assert 'data-variant="b"' in page


def console_report(admin: httpx.Client, journey: str = "promo", zone: str = "") -> str:
    """The console's Report tab of ``journey``, after logging in with the admin key, for a
    person who picked the time zone ``zone`` (none: UTC)."""
    with httpx.Client(base_url=str(admin.base_url), trust_env=False) as console:
        if zone:
            console.cookies.set("jm_timezone", zone)
        form = console.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        key = admin.headers["Authorization"].removeprefix("Bearer ")
        login = {"csrf": token.group(1), "user": "", "key": key, "next": "/"}
        assert console.post("/login", data=login).status_code == 303
        page = console.get(f"/journeys/{journey}/report")
        assert page.status_code == 200, page.text
        return page.text


def check_refusals(admin: httpx.Client) -> None:
    path = "/v1/journeys/promo/experiments"
    cases = [
        (f"{path}/subject_test/winner", {"variant": "c", "by": "x"}, 400, "variant"),
        (f"{path}/subject_test/winner", {"by": "x"}, 400, "variant"),
        (f"{path}/subject_test/winner", {"variant": "b"}, 400, "by"),
        (f"{path}/subject_test/winner", {"variant": "b", "by": "x", "why": 1}, 400, "why"),
        (f"{path}/pause/winner", {"variant": "b", "by": "x"}, 404, "step"),
        ("/v1/journeys/nope/experiments/subject_test/stop", {"by": "x"}, 404, "name"),
    ]
    for url, body, status, field in cases:
        answer = admin.post(url, json=body)
        assert answer.status_code == status, (url, body, answer.text)
        assert answer.json()["error"]["field"] == field, answer.text
    assert report(admin)["experiments"][0]["decision"] is None


# The policy decides by itself: b converts clearly better, driven by real /v1/track calls.

AUTOMATIC = WORKSPACE.replace(
    "winner: {min_per_variant: 1000, min_time: 3d}",
    "winner: {min_per_variant: 8, min_time: 1s, confidence: 0.95}",
)
FIRST = [f"p{index:02}" for index in range(30)]
THEN = [f"q{index:02}" for index in range(15)]
QUICK_CHECK = {"JOURNEYMAN_EXPERIMENT_CHECK": "0.2"}


@pytest.mark.durable
def test_serve_picks_the_variant_that_converts_better_and_sends_new_profiles_to_it(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", AUTOMATIC, smtp_channel(smtp.port))
        server = Journeyman(workspace, store_url, tmp_path, env=QUICK_CHECK)
        stack.enter_context(server).start()
        client = stack.enter_context(server.client(WRITE_KEY))
        admin = stack.enter_context(server.client())
        run_automatic(client, admin, smtp)


@pytest.mark.shared
def test_workers_on_nats_follow_the_winner_serve_decides(tmp_path: Path, store_url: str) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", AUTOMATIC, smtp_channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 2, env=QUICK_CHECK)
        client = stack.enter_context(api.client(WRITE_KEY))
        admin = stack.enter_context(api.client())
        run_automatic(client, admin, smtp)


def run_automatic(client: httpx.Client, admin: httpx.Client, smtp: SmtpServer) -> None:
    """Thirty profiles by weight; every one who got b buys, one who got a does; the
    server declares b the winner, and the fifteen after it all get b."""
    started = datetime.now(UTC)
    sign_up(client, FIRST)
    wait_until(lambda: len(subjects(smtp, "p")) == len(FIRST) or None, "the first emails")
    got = subjects(smtp, "p")
    got_b = sorted(u for u, subject in got.items() if subject == "Subject B")
    got_a = sorted(u for u, subject in got.items() if subject == "Subject A")
    assert (len(got_a) >= 8, len(got_b) >= 8) == (True, True)  # the weights share them out
    for user in [*got_b, got_a[0]]:
        track = {"userId": user, "event": "purchased"}
        assert client.post("/v1/track", json=track).is_success

    def decided() -> dict[str, Any] | None:
        found: dict[str, Any] | None = report(admin)["experiments"][0]["decision"]
        return found

    decision = wait_until(decided, "the server's decision")
    assert (decision["variant"], decision["how"], decision["by"]) == ("b", "winner", "policy")
    assert started <= datetime.fromisoformat(decision["at"]) <= datetime.now(UTC)
    data = {a["variant"]: a for a in decision["data"]}
    assert (data["a"]["n"], data["b"]["n"]) == (len(got_a), len(got_b))
    assert data["b"]["conversions"] >= 1
    assert decision["probability_best"]["b"] >= 0.95
    assert decision["probability_best"]["a"] == pytest.approx(1 - decision["probability_best"]["b"])

    sign_up(client, THEN)
    wait_until(lambda: len(subjects(smtp, "q")) == len(THEN) or None, "the later emails")
    assert set(subjects(smtp, "q").values()) == {"Subject B"}
    (after,) = report(admin)["experiments"]
    assert after["decision"] == decision  # final: later data do not change it
    entries = {v["name"]: v["entries"] for v in after["variants"]}
    assert entries == {"a": len(got_a), "b": len(got_b) + len(THEN)}
    page = console_report(admin)
    assert "Winner: b" in page
    assert f"decided on a {data['a']['conversions']} of {len(got_a)}" in page
