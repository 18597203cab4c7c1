"""The report's step numbers and funnel on a real ``journeyman serve`` (SQLite file,
PostgreSQL): a journey with a branch, a send, a wait, exits and two ends, a journey-level
holdout, and a second version. The numbers the report gives, in all, per arm and per
version, are the ones worked out here from each profile's trace, and the ones the step
log gives (``GET /v1/journeys/{name}``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_workspace
from tests.integration.test_serve import smtp_channel
from tests.servers import WRITE_KEY, Journeyman, SmtpServer
from tests.waiting import wait_until

WORKSPACE = """
kind: event
name: signed_up
schema: {type: object, properties: {plan: {type: string}}}
---
kind: event
name: bought
---
kind: template
name: hello_email
channel: email
transactional: true
subject: "Welcome"
text: "Glad you are here"
---
kind: journey
name: flow
entry: {event: signed_up}
holdout: 25%
exit: [{event: bought}]
steps:
  - id: route
    branch:
      - when: event.plan == "pro"
        goto: greet
      - otherwise: free_end
  - id: greet
    send: hello_email
  - id: pause
    wait: 1h
  - id: done
    end: converted
  - id: free_end
    end: free
"""
STEPS = ("route", "greet", "pause", "done", "free_end")
FIRST = [f"a{index:02}" for index in range(24)]  # enter version 1
SECOND = [f"b{index:02}" for index in range(12)]  # enter version 2
PRO = {user for user in FIRST + SECOND if int(user[1:]) % 2 == 0}
BUYERS = [user for user in FIRST if int(user[1:]) % 4 == 0]  # exit while waiting
NUMBERS = ("entered", "waiting", "passed", "left", "skipped", "capped", "dropped", "failed")


def report(admin: httpx.Client, version: str) -> dict[str, Any]:
    answer = admin.get("/v1/journeys/flow/report", params={"version": version})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def sign_up(client: httpx.Client, users: Iterable[str]) -> None:
    for user in users:
        traits = {"email": f"{user}@x.test"}
        assert client.post("/v1/identify", json={"userId": user, "traits": traits}).is_success
        plan = "pro" if user in PRO else "free"
        track = {"userId": user, "event": "signed_up", "properties": {"plan": plan}}
        assert client.post("/v1/track", json=track).is_success


def ended(admin: httpx.Client, version: str, state: str, count: int) -> bool | None:
    return report(admin, version)["ended"].get(state) == count or None


@pytest.mark.durable
def test_the_reports_step_numbers_and_funnel_are_those_of_the_trace_and_the_step_log(
    tmp_path: Path, store_url: str
) -> None:
    with ExitStack() as stack:
        smtp = stack.enter_context(SmtpServer())
        workspace = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
        server = stack.enter_context(Journeyman(workspace, store_url, tmp_path)).start()
        client = stack.enter_context(server.client(WRITE_KEY))
        admin = stack.enter_context(server.client())

        sign_up(client, FIRST)
        wait_until(lambda: report(admin, "1")["entries"] == len(FIRST) or None, "the entries")
        for user in BUYERS:
            assert client.post("/v1/track", json={"userId": user, "event": "bought"}).is_success
        wait_until(lambda: ended(admin, "1", "exited", len(BUYERS)), "the exits")

        files = {p.name: p.read_text() for p in sorted(workspace.glob("*.yaml"))}
        files = {name: text.replace("wait: 1h", "wait: 1s") for name, text in files.items()}
        answer = admin.put("/v1/workspace", json={"files": files})
        assert answer.status_code == 200, answer.text
        assert answer.json()["plan"]["versions"]["flow"] == 2
        sign_up(client, SECOND)
        second_pro = len(PRO & set(SECOND))
        wait_until(lambda: ended(admin, "2", "converted", second_pro), "version 2's waits")

        instances = traces(admin, FIRST + SECOND)
        for version in ("1", "2", "all"):
            mine = [i for i in instances if version in ("all", str(i["version"]))]
            check_version(admin, version, mine)
        check_scenario(instances)


def traces(admin: httpx.Client, users: Iterable[str]) -> list[dict[str, Any]]:
    """Every instance of the journey, with its trace, as the profiles' pages give them."""
    found = []
    for user in users:
        answer = admin.get(f"/v1/profiles/{user}")
        assert answer.status_code == 200, answer.text
        found += [i for i in answer.json()["instances"] if i["journey"] == "flow"]
    return found


def held(instance: dict[str, Any]) -> bool:
    """Whether the instance was held out, as its entry line says."""
    entry = next(line for line in instance["trace"] if line["outcome"] == "entered")
    return "held out" in entry["detail"]


def expected(instances: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Each step's numbers worked out from the traces alone: an instance arrived at every
    step its trace names (or where it waits now); it waits where its status says; it left
    where an exit ended it; it was skipped where a line says so; else it passed."""
    found = {step: dict.fromkeys(NUMBERS, 0) for step in STEPS}
    for instance in instances:
        arrived = {line["step"] for line in instance["trace"] if line["step"]}
        if instance["status"] == "waiting":
            arrived.add(instance["step"])
            found[instance["step"]]["waiting"] += 1
        for step in arrived:
            found[step]["entered"] += 1
        for line in instance["trace"]:
            if line["outcome"] == "skipped":
                found[line["step"]]["skipped"] += 1
            if line["outcome"] == "ended" and line["detail"].startswith("exited"):
                found[line["step"]]["left"] += 1
    for numbers in found.values():
        others = numbers["waiting"] + numbers["skipped"] + numbers["left"]
        numbers["passed"] = numbers["entered"] - others
    return found


def check_version(admin: httpx.Client, version: str, instances: list[dict[str, Any]]) -> None:
    found = report(admin, version)
    everyone = expected(instances)
    arms = {
        "holdout": expected(i for i in instances if held(i)),
        "treated": expected(i for i in instances if not held(i)),
    }
    assert [s["id"] for s in found["steps"]] == list(STEPS)
    for step in found["steps"]:
        assert step["numbers"] == everyone[step["id"]], (version, step["id"])
        assert step["reached"] == everyone[step["id"]]["entered"]  # the funnel
        for arm in step["arms"]:
            assert arm["numbers"] == arms[arm["name"]][step["id"]], (version, arm["name"])
    states = Counter(i["end_state"] for i in instances if i["status"] == "ended")
    assert found["ended"] == dict(states)
    log = admin.get("/v1/journeys/flow", params={"version": version}).json()
    assert {s["id"]: s["numbers"] for s in log["steps"]} == everyone  # the step log's
    page = admin.get("/v1/journeys/flow/report.csv", params={"version": version}).text
    for step_id, numbers in everyone.items():
        assert f"step,{step_id},,,reached,{numbers['entered']}\r\n" in page
        for key, n in numbers.items():
            assert f"step,{step_id},,,numbers:{key},{n}\r\n" in page


def check_scenario(instances: list[dict[str, Any]]) -> None:
    """The scenario took every path the check relies on."""
    first = expected(i for i in instances if i["version"] == 1)
    second = expected(i for i in instances if i["version"] == 2)
    assert first["pause"]["left"] == len(BUYERS)
    assert first["pause"]["waiting"] == len(PRO & set(FIRST)) - len(BUYERS)
    assert first["done"]["entered"] == 0
    assert second["done"]["passed"] == len(PRO & set(SECOND))
    assert second["free_end"]["passed"] == len(set(SECOND) - PRO)
    assert any(held(i) for i in instances)
    assert not all(held(i) for i in instances)
    assert any(held(i) and i["step"] == "pause" for i in instances if i["version"] == 1)
