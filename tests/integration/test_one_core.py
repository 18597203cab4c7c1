"""A journey test means what production does: the same calls through ``journeyman test``
and through a real ``journeyman serve`` leave the same profiles, journey states, traces
and messages.

Each scenario is a list of calls. ``journeyman serve`` (a child process, its email going
to an aiosmtpd server) gets them over HTTP, one call after the other, or all in one
``/v1/batch``; the journey test gets them one second apart, or all at the same moment.
Waits in the journeys are short (the server waits for real), and a journey test stops
its clock before the longer ones end, while the server is compared before they do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from pprint import pformat
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from journeyman.cli import main
from journeyman.domain.ingest import read_identify, read_track
from journeyman.domain.model import Workspace
from journeyman.domain.reactions import ENGAGEMENT
from journeyman.journey_tests import run_test
from journeyman.runtime.processor import DeliveryResult, Processor
from journeyman.simulator import Simulator
from journeyman.storage import Database
from journeyman.workspace import load_workspace
from tests.conftest import START, write_workspace
from tests.integration.test_processor import ON_ERROR, live
from tests.integration.test_serve import smtp_channel
from tests.servers import Journeyman, SmtpServer
from tests.waiting import wait_until

pytestmark = pytest.mark.durable  # a server in another process needs a database that outlives it

WORKSPACE = """
kind: event
name: signed_up
schema: {type: object, properties: {plan: {type: string}}}
---
kind: event
name: purchased
---
kind: event
name: pinged
---
kind: event
name: visited
identity: anonymousId
---
kind: event
name: newsletter_signup
identity: email
schema:
  type: object
  required: [email]
  properties: {email: {type: string}}
---
kind: template
name: hello_email
channel: email
subject: "Hello {{ profile.firstName | default: 'there' }}"
text: "Good to see you."
---
kind: journey
name: welcome
entry: {event: signed_up}
steps:
  - id: hello
    send: hello_email
    on_error: unreached
  - id: await_purchase
    wait_for: {event: purchased, timeout: 1h}
    on_event: bought
    on_timeout: bought
  - id: bought
    end: bought
  - id: unreached
    end: unreached
---
kind: journey
name: news
entry: {event: newsletter_signup}
reentry: always
steps:
  - id: hello
    send: hello_email
  - id: done
    end: subscribed
---
kind: journey
name: nudge
entry: {event: pinged}
steps:
  - id: pause
    wait: 2s
  - id: nudge
    send: hello_email
  - id: done
    end: nudged
---
kind: journey
name: tour
entry: {event: visited}
steps:
  - id: tip
    send: hello_email
  - id: pause
    wait: 2s
  - id: done
    end: toured
"""


def track(user: str | None, event: str, anonymous: str | None = None, **props: Any) -> Call:
    return ("track", _ids(user, anonymous) | {"event": event, "properties": props})


def identify(user: str | None, anonymous: str | None = None, **traits: Any) -> Call:
    return ("identify", _ids(user, anonymous) | {"traits": traits})


def _ids(user: str | None, anonymous: str | None) -> dict[str, str]:
    ids = {"userId": user, "anonymousId": anonymous}
    return {key: value for key, value in ids.items() if value is not None}


Call = tuple[str, dict[str, Any]]


@dataclass
class Scenario:
    calls: list[Call]
    profiles: list[str]  # the profiles to compare (absent ones too)
    together: bool = False  # all calls at once: one /v1/batch, one moment of the test
    refused: bool = False  # the mail server refuses every message (the test lists `fail`)
    expect: list[dict[str, Any]] = field(default_factory=list)  # the journey test's own


# ---------------------------------------------------------------- the two sides


View = dict[str, Any]


def simulated(folder: Path, scenario: Scenario) -> tuple[View, Simulator]:
    """What ``journeyman test`` makes of the scenario, as a `kind: test` document."""
    test = {
        "kind": "test",
        "name": "the scenario",
        "until": "30s",  # the waits end, the hour-long timeouts do not
        "events": [
            {"at": "0s" if scenario.together else f"{i}s", kind: body}
            for i, (kind, body) in enumerate(scenario.calls)
        ],
        "expect": scenario.expect,
    }
    if scenario.refused:
        test["fail"] = ["hello", "nudge"]
    (folder / "test.yaml").write_text(json.dumps(test))
    workspace = load_workspace(folder).workspace
    assert workspace is not None
    (case,) = workspace.tests
    result = run_test(workspace, case)
    assert result.passed, result.failures
    sim = result.simulator
    profiles: View = {}
    for profile_id in scenario.profiles:
        profile = sim.profiles.get(profile_id)
        if profile is None:
            profiles[profile_id] = None
            continue
        mine = [r for r in sim.records if r.profile_id == profile_id]
        instances = [i for i in sim.instances.values() if i.profile_id == profile_id]
        profiles[profile_id] = {
            "traits": profile.traits,
            "instances": sorted(
                (
                    i.id,
                    i.journey,
                    i.status,
                    i.step,
                    i.waiting,
                    i.end_state,
                    *_trace([(r.step, r.outcome) for r in mine if r.instance_id == i.id]),
                )
                for i in instances
            ),
            "not_entered": [(r.journey, r.outcome) for r in mine if r.instance_id is None],
        }
    messages = sorted((m.profile_id, m.journey, m.step, m.content["subject"]) for m in sim.messages)
    mail = [] if scenario.refused else sorted((m.to, m.content["subject"]) for m in sim.messages)
    return {"profiles": profiles, "messages": messages, "mail": mail}, sim


def served(api: httpx.Client, smtp: SmtpServer, scenario: Scenario) -> View:
    """What a running server makes of the scenario, once nothing is left to happen soon."""
    if scenario.together:
        batch = [{"type": kind, **body} for kind, body in scenario.calls]
        answer = api.post("/v1/batch", json={"batch": batch})
        assert answer.status_code == 200, answer.text
    for kind, body in [] if scenario.together else scenario.calls:
        answer = api.post(f"/v1/{kind}", json=body)
        assert answer.status_code == 202, answer.text
        # A journey test hands a message over the moment it is made; here, the next call
        # waits for the deliveries that instances wait on.
        wait_until(lambda: not _delivering(api, scenario), "the deliveries")
    return wait_until(lambda: _settled(api, smtp, scenario), "the server to settle")


def _delivering(api: httpx.Client, scenario: Scenario) -> bool:
    for profile_id in scenario.profiles:
        answer = api.get(f"/v1/profiles/{profile_id}")
        instances = answer.json()["instances"] if answer.status_code == 200 else []
        if any(i["waiting"] == "delivery" for i in instances):
            return True
    return False


def _settled(api: httpx.Client, smtp: SmtpServer, scenario: Scenario) -> View | None:
    """The view, once no instance waits for a timer or a delivery, and every message went
    out or failed, and each failure shows in its instance's trace; None before."""
    # The messages first: a delivery that ends after this read is caught by the check of
    # the traces below, or by the next look.
    rows = api.get("/v1/messages", params={"limit": "1000"}).json()["messages"]
    if any(row["status"] in ("queued", "retry") for row in rows):
        return None
    profiles: View = {}
    for profile_id in scenario.profiles:
        answer = api.get(f"/v1/profiles/{profile_id}")
        if answer.status_code == 404:
            profiles[profile_id] = None
            continue
        found = answer.json()
        instances = found["instances"]
        if any(i["status"] == "waiting" and i["waiting"] != "event" for i in instances):
            return None
        profiles[profile_id] = {
            "traits": found["traits"],
            "instances": sorted(
                (
                    i["id"],
                    i["journey"],
                    i["status"],
                    i["step"],
                    i["waiting"],
                    i["end_state"],
                    *_trace([(r["step"], r["outcome"]) for r in i["trace"]]),
                )
                for i in instances
            ),
            "not_entered": [(r["journey"], r["outcome"]) for r in found["not_entered"]],
        }
        failures = {
            (i["journey"], r["step"])
            for i in instances
            for r in i["trace"]
            if r["outcome"] == "failed"
        }
        failed = {
            (row["journey"], row["step"])
            for row in rows
            if row["profile_id"] == profile_id and row["status"] == "failed"
        }
        if not failed <= failures:
            return None  # its outcome is not in the trace yet
        delivered = {
            (i["id"], r["step"])
            for i in instances
            for r in i["trace"]
            if r["outcome"] == "delivered"
        }
        sent = {
            (row["instance_id"], row["step"])
            for row in rows
            if row["profile_id"] == profile_id and row["status"] == "sent"
        }
        if not sent <= delivered:
            return None  # a message_sent is still on its way to the profile
    if api.get("/v1/messages", params={"limit": "1000"}).json()["messages"] != rows:
        return None  # a message was made or settled while the profiles were read
    messages = sorted(
        (r["profile_id"], r["journey"], r["step"], r["content"]["subject"]) for r in rows
    )
    mail = sorted((m.recipients[0], str(m.message["Subject"])) for m in smtp.received)
    return {"profiles": profiles, "messages": messages, "mail": mail}


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@dataclass
class Both:
    """One scenario, both ways."""

    folder: Path
    api: httpx.Client
    smtp: SmtpServer

    def run(self, scenario: Scenario) -> tuple[View, View]:
        if scenario.refused:
            # Refused for good, but not the address (that would be a hard bounce, which a
            # journey test's `fail` does not simulate: it fails the step, as here).
            self.smtp.data_reply = "554 5.7.1 message refused"
        on_server = served(self.api, self.smtp, scenario)
        in_test, _ = simulated(self.folder, scenario)
        return in_test, on_server


@pytest.fixture
def both(tmp_path: Path, store_url: str, smtp: SmtpServer) -> Iterator[Both]:
    folder = write_workspace(tmp_path / "ws", WORKSPACE, smtp_channel(smtp.port))
    with Journeyman(folder, store_url, tmp_path) as server:
        server.start()
        with server.client() as api:
            yield Both(folder, api, smtp)


def _trace(records: list[tuple[Any, str]]) -> tuple[list[tuple[Any, str]], list[tuple[Any, str]]]:
    """An instance's trace as two parts: the engine's steps in order, and the reactions
    to its messages (delivered, opened, ...), which a server records when the provider
    answers, in whatever order that falls among the steps, and a journey test at once."""
    steps = [r for r in records if r[1] not in ENGAGEMENT]
    return steps, sorted(r for r in records if r[1] in ENGAGEMENT)


def same(in_test: View, on_server: View) -> None:
    """The journey test saw what the server did; if not, say where they part."""
    for part in ("profiles", "messages", "mail"):
        assert in_test[part] == on_server[part], (
            f"{part} differ\n journey test: {pformat(in_test[part])}\n"
            f" server:       {pformat(on_server[part])}"
        )


def messages_to(view: View, profile: str) -> list[tuple[Any, ...]]:
    return [m for m in view["messages"] if m[0] == profile]


# ---------------------------------------------------------------- scenarios


def test_an_event_sent_twice_with_one_message_id_enters_once_in_a_test_as_on_the_server(
    both: Both,
) -> None:
    again = track("u1", "signed_up", plan="pro")
    again[1]["messageId"] = "m-1"
    scenario = Scenario(
        [identify("u1", email="u1@example.com"), again, again, track("u1", "pinged")],
        ["u1"],
        expect=[{"entered": "welcome", "times": 1}, {"sent": "welcome.hello", "times": 1}],
    )
    in_test, on_server = both.run(scenario)
    same(in_test, on_server)
    (welcome,) = [i for i in in_test["profiles"]["u1"]["instances"] if i[1] == "welcome"]
    assert welcome[2:5] == ("waiting", "await_purchase", "event")


def test_a_journey_test_with_a_repeated_message_id_passes_as_the_server_behaves(
    tmp_path: Path,
) -> None:
    body = {
        "event": "newsletter_signup",
        "properties": {"email": "bo@example.com"},
        "messageId": "m-1",
    }
    test = {
        "kind": "test",
        "name": "a retried call",
        "events": [{"at": "0s", "track": body}, {"at": "5s", "track": body}],
        "expect": [{"entered": "news", "times": 1}, {"sent": "news.hello", "times": 1}],
    }
    folder = write_workspace(tmp_path, WORKSPACE, json.dumps(test))
    result = CliRunner().invoke(main, ["test", str(folder)])
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output


ANONYMOUS_VISITOR = [
    identify(None, "a1", email="ann@example.com", firstName="Ann"),
    track(None, "visited", "a1"),  # a tip to ann@example.com at once, for the anonymous a1
    identify("u1", "a1", firstName="Ada"),  # signs in: a1 merges into u1
    identify(None, "a1", plan="pro"),  # an anonymous id that signed in names u1 now
    track(None, "visited", "a1"),  # u1 is on the tour already
    track("u1", "signed_up"),
    track(None, "newsletter_signup", email="ANN@example.com"),  # the email moved to u1
]


def test_an_anonymous_visitor_who_signs_in_is_one_profile_in_a_test_as_on_the_server(
    both: Both,
) -> None:
    expect = [
        {"sent": "tour.tip", "profile": "u1", "subject": "Hello Ann"},
        {"sent": "news.hello", "profile": "u1", "to": "ann@example.com"},
    ]
    in_test, on_server = both.run(Scenario(ANONYMOUS_VISITOR, ["a1", "u1"], expect=expect))
    same(in_test, on_server)
    assert in_test["profiles"]["a1"] is None
    u1 = in_test["profiles"]["u1"]
    assert u1["traits"] == {"email": "ann@example.com", "firstName": "Ada", "plan": "pro"}
    assert {i[1] for i in u1["instances"]} == {"tour", "welcome", "news"}
    assert len(messages_to(in_test, "u1")) == 3  # tour, welcome and news: all u1's
    assert ("ann@example.com", "Hello Ann") in in_test["mail"]


def test_calls_that_come_in_one_batch_mean_what_they_mean_one_by_one(both: Both) -> None:
    """In one batch, the anonymous id linked by the identify before names the known
    profile, and so does the email the anonymous profile was given in the batch."""
    scenario = Scenario(ANONYMOUS_VISITOR, ["a1", "u1"], together=True)
    in_test, on_server = both.run(scenario)
    same(in_test, on_server)
    assert in_test["profiles"]["a1"] is None
    assert {m[0] for m in in_test["messages"]} == {"u1"}


def test_a_refused_message_takes_the_on_error_path_in_a_test_as_on_the_server(
    both: Both,
) -> None:
    calls = [
        identify("u2", email="bo@example.com", firstName="Bo"),
        track("u2", "signed_up"),
        track("u2", "pinged"),
        track(None, "newsletter_signup", email="bo@example.com"),
    ]
    expect = [{"ended": "unreached", "profile": "u2"}, {"never": "welcome.await_purchase"}]
    in_test, on_server = both.run(Scenario(calls, ["u2"], refused=True, expect=expect))
    same(in_test, on_server)
    ends = {i[1]: i[5] for i in in_test["profiles"]["u2"]["instances"]}
    assert ends == {"welcome": "unreached", "nudge": "nudged", "news": "subscribed"}


def test_a_changed_email_names_its_profile_and_the_old_one_no_longer_in_a_test_as_on_the_server(
    both: Both,
) -> None:
    calls = [
        identify("u3", email="old@example.com", firstName="Cy"),
        identify("u3", email="New@Example.com"),
        track(None, "newsletter_signup", email="old@example.com"),
        track(None, "newsletter_signup", email="new@example.com"),
        track(None, "newsletter_signup", email="new@example.com"),  # reentry: always
    ]
    in_test, on_server = both.run(Scenario(calls, ["u3", "old@example.com"]))
    same(in_test, on_server)
    assert in_test["profiles"]["old@example.com"]["traits"] == {"email": "old@example.com"}
    assert len(in_test["profiles"]["u3"]["instances"]) == 2


def test_timers_fire_and_a_wait_for_takes_its_event_in_a_test_as_on_the_server(
    both: Both,
) -> None:
    calls = [
        identify("u4", email="di@example.com", firstName="Di"),
        track("u4", "pinged"),
        track("u4", "signed_up"),
        track("u4", "purchased"),
        track("u5", "pinged"),  # a profile with no email: the nudge has no address
    ]
    in_test, on_server = both.run(Scenario(calls, ["u4", "u5"]))
    same(in_test, on_server)
    ends = {i[1]: i[5] for i in in_test["profiles"]["u4"]["instances"]}
    assert ends == {"nudge": "nudged", "welcome": "bought"}


# ---------------------------------------------------------------- where batches are cut

VISIT = """
kind: event
name: visited
identity: anonymousId
"""


def test_a_delivery_outcome_after_a_merge_applies_to_the_profile_merged_into(
    store: Database, workspace: Callable[..., Workspace]
) -> None:
    """The outbox row still names the anonymous profile; the instance is the known one's
    now, and its on_error path runs with the known profile's traits (its phone)."""
    ws = workspace(VISIT, ON_ERROR.replace("{event: signed_up}", "{event: visited}"))

    async def test(processor: Processor) -> None:
        await processor.submit(
            [
                read_identify({"anonymousId": "a1", "traits": {"email": "a1@example.com"}}, START),
                read_track({"anonymousId": "a1", "event": "visited"}, ws.events, START),
            ]
        )
        (greeting,) = await store.claim(START, 10)
        assert greeting.effect.profile_id == "a1"
        traits = {"phone": "+15550100"}
        await processor.submit(
            [read_identify({"userId": "u1", "anonymousId": "a1", "traits": traits}, START)]
        )
        result = DeliveryResult(greeting.effect, False, "550 mailbox unavailable")
        assert await processor.submit([result]) == ["accepted"]
        (instance,) = await store.instances_of("u1")
        assert instance.end_state == "reached_by_sms"
        assert await store.profile("a1") is None
        rows = {m.step: m for m in await store.messages(profile="u1")}
        assert rows["fallback"].status == "queued"
        assert rows["fallback"].content["to"] == "+15550100"  # the known profile's phone

    live(store, ws, test)
