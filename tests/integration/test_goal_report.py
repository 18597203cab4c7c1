"""Goals and a holdout on a real ``journeyman serve`` (SQLite file, PostgreSQL), and through
``serve --bus`` and a worker: the holdout gets no email (real SMTP), purchases count as
goals per arm, and ``GET /v1/journeys/{name}/report`` gives the numbers and the lift that
statsmodels' reference functions give for the same counts."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from journeyman.domain.engine import split_point
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
goals:
  - {name: purchased, event: purchased, within: 7d, value: event.total, primary: true}
steps:
  - id: pick
    split:
      - {weight: 1, goto: hello, name: emailed}
      - {weight: 1, goto: hello, name: held, holdout: true}
  - id: hello
    send: promo_email
  - id: pause
    wait: 7d
"""
USERS = [f"u{index:02}" for index in range(30)]


def arm_of(user: str) -> str:
    """The arm the split gives ``user``: the first of two equal arms below one half."""
    return "emailed" if split_point(user, "promo", "pick") < 0.5 else "held"


def buyers() -> dict[str, list[str]]:
    """Who buys, by arm: the first eight emailed users and the first three held out."""
    by_arm: dict[str, list[str]] = {"emailed": [], "held": []}
    for user in USERS:
        by_arm[arm_of(user)].append(user)
    return {"emailed": by_arm["emailed"][:8], "held": by_arm["held"][:3]}


def run_scenario(client: httpx.Client, admin: httpx.Client, smtp: SmtpServer) -> None:
    for user in USERS:
        traits = {"email": f"{user}@x.test"}
        assert client.post("/v1/identify", json={"userId": user, "traits": traits}).is_success
        assert client.post("/v1/track", json={"userId": user, "event": "signed_up"}).is_success
    wait_until(lambda: report(admin)["entries"] == len(USERS) or None, "every entry counted")
    bought = buyers()
    for user in bought["emailed"] + bought["held"]:
        track = {"userId": user, "event": "purchased", "properties": {"total": 25}}
        assert client.post("/v1/track", json=track).is_success
    wait_until(lambda: _converted(admin, 11), "the eleven purchases counted")
    emailed = {u for u in USERS if arm_of(u) == "emailed"}
    wait_until(lambda: len(smtp.received) >= len(emailed) or None, "the emails")
    mailed = {r.split("@")[0] for m in smtp.received for r in m.recipients}
    assert mailed == emailed  # the holdout got none
    check_report(report(admin), len(emailed))


def report(admin: httpx.Client, version: str = "") -> dict[str, Any]:
    answer = admin.get("/v1/journeys/promo/report", params={"version": version} if version else {})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _converted(admin: httpx.Client, count: int) -> bool | None:
    return report(admin)["goals"][0]["conversions"] == count or None


def check_report(found: dict[str, Any], emailed: int) -> None:
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    held = len(USERS) - emailed
    assert (found["version"], found["entries"], found["holdout_arm"]) == (1, 30, "held")
    assert {a["name"]: a["entries"] for a in found["arms"]} == {"emailed": emailed, "held": held}
    (goal,) = found["goals"]
    assert (goal["name"], goal["conversions"], goal["value"]) == ("purchased", 11, 275.0)
    assert goal["rate"] == pytest.approx(11 / 30)
    assert goal["last_touch"] == {"hello": 8, "none": 3}
    assert goal["time_to_convert"]["median_seconds"] is not None
    arms = {a["name"]: a for a in goal["arms"]}
    assert (arms["emailed"]["conversions"], arms["held"]["conversions"]) == (8, 3)
    assert arms["held"]["lift"] is None
    lift = arms["emailed"]["lift"]
    _, p_value = proportions_ztest([8, 3], [emailed, held])
    interval = confint_proportions_2indep(8, emailed, 3, held, method="wald", compare="diff")
    ratio = confint_proportions_2indep(8, emailed, 3, held, method="log", compare="ratio")
    assert lift["absolute"] == pytest.approx(8 / emailed - 3 / held)
    assert lift["relative"] == pytest.approx((8 / emailed) / (3 / held) - 1)
    assert lift["p_value"] == pytest.approx(p_value)
    assert lift["absolute_interval"] == pytest.approx(list(interval))
    assert lift["relative_interval"] == pytest.approx([ratio[0] - 1, ratio[1] - 1])


@pytest.mark.durable
def test_serve_reports_goals_per_arm_with_lift_against_the_holdout(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        server = stack.enter_context(Journeyman(workspace, store_url, tmp_path)).start()
        client = stack.enter_context(server.client(WRITE_KEY))
        admin = stack.enter_context(server.client())
        run_scenario(client, admin, smtp)
        # bad input is refused naming the field; an unknown journey is a 404
        answer = admin.get("/v1/journeys/promo/report", params={"version": "x"})
        assert (answer.status_code, answer.json()["error"]["field"]) == (400, "version")
        assert admin.get("/v1/journeys/promo/report", params={"version": "9"}).status_code == 404
        assert admin.get("/v1/journeys/nope/report").status_code == 404
        assert report(admin, "all")["entries"] == 30
        metrics = admin.get("/metrics").text
        assert 'journeyman_goal_conversions_total{journey="promo",goal="purchased"} 11' in metrics


@pytest.mark.shared
def test_a_worker_counts_goals_and_skips_the_holdout_as_serve_does(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        api = serve_with_worker(stack, workspace, store_url, tmp_path, 4)
        client = stack.enter_context(api.client(WRITE_KEY))
        admin = stack.enter_context(api.client())
        run_scenario(client, admin, smtp)
