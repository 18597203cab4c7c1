"""The report's steps, arms, conversion over time, filters and CSV on a real ``journeyman
serve`` (SQLite file, PostgreSQL): a journey-level ``holdout: 20%`` gets no email (real
SMTP), and what the API and its CSV say matches the events sent."""

from __future__ import annotations

import csv
import io
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from journeyman.domain.goals import held_out
from journeyman.workspace import load_workspace
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
schema: {type: object, properties: {total: {type: number}}}
---
kind: template
name: promo_email
channel: email
transactional: true
subject: "Ten percent off"
text: "Come back"
---
kind: journey
name: promo
entry: {event: signed_up}
holdout: 20%
goals:
  - {name: purchased, event: purchased, within: 7d, value: event.total, primary: true}
steps:
  - id: hello
    send: promo_email
  - id: pause
    wait: 7d
"""
USERS = [f"u{index:02}" for index in range(40)]
BUYERS = USERS[::3]


def report(admin: httpx.Client, **params: str) -> dict[str, Any]:
    answer = admin.get("/v1/journeys/promo/report", params=params)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def sent_all(admin: httpx.Client, treated: int) -> bool | None:
    found = report(admin)
    hello = found["steps"][0]
    done = found["goals"][0]["conversions"] == len(BUYERS) and hello["counts"].get("sent")
    return (done == treated) or None


@pytest.mark.durable
def test_the_report_gives_steps_arms_days_and_csv_as_the_events_made_them(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        model = load_workspace(workspace).workspace.journeys["promo"]  # type: ignore[union-attr]
        held = {user for user in USERS if held_out(model, user)}
        server = stack.enter_context(Journeyman(workspace, store_url, tmp_path)).start()
        client = stack.enter_context(server.client(WRITE_KEY))
        admin = stack.enter_context(server.client())
        for user in USERS:
            traits = {"email": f"{user}@x.test"}
            assert client.post("/v1/identify", json={"userId": user, "traits": traits}).is_success
            assert client.post("/v1/track", json={"userId": user, "event": "signed_up"}).is_success
        wait_until(lambda: report(admin)["entries"] == len(USERS) or None, "every entry")
        for user in BUYERS:
            track = {"userId": user, "event": "purchased", "properties": {"total": 10}}
            assert client.post("/v1/track", json=track).is_success
        treated = len(USERS) - len(held)
        wait_until(lambda: sent_all(admin, treated), "the purchases and the sends counted")
        wait_until(lambda: len(smtp.received) >= treated or None, "the emails")
        mailed = {r.split("@")[0] for m in smtp.received for r in m.recipients}
        assert mailed == set(USERS) - held  # the journey's holdout got none

        found = report(admin)
        check_arms_and_steps(found, held)
        check_days(admin, found, held)
        check_csv(admin, found)
        check_refusals(admin)


def check_arms_and_steps(found: dict[str, Any], held: set[str]) -> None:
    treated = len(USERS) - len(held)
    assert (found["holdout"], found["holdout_arm"]) == (0.2, "holdout")
    assert {a["name"]: a["entries"] for a in found["arms"]} == {
        "holdout": len(held),
        "treated": treated,
    }
    arms = {a["name"]: a for a in found["goals"][0]["arms"]}
    assert arms["holdout"]["conversions"] == len(held & set(BUYERS))
    assert arms["treated"]["conversions"] == len(set(BUYERS) - held)
    assert arms["treated"]["lift"] is not None
    hello, pause = found["steps"]
    assert (hello["id"], hello["template"], hello["reached"]) == ("hello", "promo_email", 40)
    assert hello["counts"]["sent"] == treated
    assert hello["counts"]["skipped"] == len(held)
    assert hello["engagement"]["sent"] == treated
    by_arm = {a["name"]: a for a in hello["arms"]}
    assert {k: v for k, v in by_arm["holdout"].items() if k in ("reached", "counts")} == {
        "reached": len(held),
        "counts": {"skipped": len(held)},
    }
    assert by_arm["holdout"]["numbers"]["skipped"] == len(held)
    assert by_arm["holdout"]["engagement"]["sent"] == 0  # held out: no message
    assert by_arm["treated"]["counts"]["sent"] == treated
    assert by_arm["treated"]["engagement"]["sent"] == treated
    assert pause["reached"] == len(USERS)


def check_days(admin: httpx.Client, found: dict[str, Any], held: set[str]) -> None:
    series = {s["name"]: s["points"] for s in found["goals"][0]["over_time"]}
    assert set(series) == {"holdout", "treated"}
    (point,) = series["holdout"]  # everyone entered today (UTC)
    assert (point["entries"], point["conversions"]) == (len(held), len(held & set(BUYERS)))
    assert point["low"] <= point["rate"] <= point["high"]
    today = date.fromisoformat(point["day"])
    same = report(admin, **{"from": today.isoformat(), "to": today.isoformat()})
    assert same["entries"] == len(USERS)
    later = report(admin, **{"from": (today + timedelta(days=1)).isoformat()})
    assert (later["entries"], later["goals"][0]["conversions"]) == (0, 0)
    assert later["range"] == {"from": (today + timedelta(days=1)).isoformat(), "to": None}
    assert report(admin, version="all")["entries"] == len(USERS)


def check_csv(admin: httpx.Client, found: dict[str, Any]) -> None:
    answer = admin.get("/v1/journeys/promo/report.csv")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert 'filename="promo-report.csv"' in answer.headers["content-disposition"]
    assert admin.get("/v1/journeys/promo/report", params={"format": "csv"}).text == answer.text
    rows = list(csv.reader(io.StringIO(answer.text)))
    cells = {tuple(r[:5]): r[5] for r in rows[1:]}
    assert cells[("journey", "promo", "", "", "entries")] == str(len(USERS))
    assert cells[("goal", "purchased", "", "", "conversions")] == str(len(BUYERS))
    hello = found["steps"][0]
    assert cells[("step", "hello", "", "", "sent")] == str(hello["counts"]["sent"])
    p_value = next(a for a in found["goals"][0]["arms"] if a["name"] == "treated")["lift"]
    assert float(cells[("goal", "purchased", "treated", "", "p_value")]) == p_value["p_value"]


def check_refusals(admin: httpx.Client) -> None:
    for params, field in [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-02-30"}, "to"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
        ({"format": "xml"}, "format"),
        ({"version": "x"}, "version"),
    ]:
        answer = admin.get("/v1/journeys/promo/report", params=params)
        assert (answer.status_code, answer.json()["error"]["field"]) == (400, field), params
    assert admin.get("/v1/journeys/promo/report.csv", params={"to": "x"}).status_code == 400
    assert admin.get("/v1/journeys/nope/report.csv").status_code == 404
    assert httpx.get(f"{admin.base_url}/v1/journeys/promo/report.csv").status_code == 401
