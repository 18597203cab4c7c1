"""Reactions to messages in the journey language: the built-in reaction events, the
``wait_for: {reaction: ..., to: ...}`` short form, and reactions in journey tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from journeyman.cli import main
from journeyman.domain.reactions import reaction_event
from journeyman.simulator import NoMessage, Simulator
from journeyman.workspace import load_workspace
from tests.conftest import BASE, write_workspace
from tests.engine_helpers import (
    Simulate,
    after,
    end_states,
    journey,
    outcomes,
    record,
    sent,
    sign_up,
)

OFFER = """
kind: template
name: offer_email
channel: email
subject: "An offer"
html: '<a href="https://shop.example/sale?c=1">Shop</a> <a href="https://blog.example/news">News</a>'
"""


def onboarding(wait_for: str = "{reaction: opened, to: welcome, timeout: 3d}", **keys: str) -> str:
    """Welcome email, then wait for a reaction to it: engaged, or an SMS nudge after 3d."""
    return journey(
        f"""
        - id: welcome
          send: hello_email
        - id: await_open
          wait_for: {wait_for}
          on_event: engaged
          on_timeout: nudge
        - id: nudge
          send: hello_sms
          next: nudged
        - id: engaged
          end: engaged
        - id: nudged
          end: nudged
        """,
        **keys,
    )


def offer(url: str) -> str:
    return journey(
        f"""
        - id: pitch
          send: offer_email
        - id: await_click
          wait_for: {{reaction: clicked, to: pitch, url: "{url}", timeout: 1d}}
          on_event: clicked
          on_timeout: ignored
        - id: clicked
          end: clicked
        - id: ignored
          end: ignored
        """
    )


def with_phone(sim: Simulator, user: str = "u1") -> None:
    sim.identify({"userId": user, "traits": {"phone": "+15550100"}})


# the short form in the engine


def test_an_open_of_the_instances_welcome_takes_the_event_path(simulate: Simulate) -> None:
    sim = simulate(onboarding())
    sign_up(sim)
    waiting = record(sim, "await_open", "waiting").detail
    assert waiting.startswith("for opened of welcome until ")
    sim.react("opened", "welcome", at=after("2h"))
    sim.run()
    assert end_states(sim) == ["engaged"]
    assert record(sim, "await_open", "event").detail == "message_opened of welcome arrived"
    assert sent(sim) == [("welcome", after("0s"))]


def test_a_message_handed_over_is_delivered_as_serve_records_it(simulate: Simulate) -> None:
    sim = simulate(onboarding("{reaction: delivered, to: welcome, timeout: 1h}"))
    sign_up(sim)
    assert end_states(sim) == ["engaged"]
    assert outcomes(sim, "welcome") == ["sent", "delivered"]
    assert sim.react("delivered", "welcome") is None  # what the dispatcher recorded already
    assert outcomes(sim, "welcome") == ["sent", "delivered"]


def test_a_message_that_fails_is_not_delivered(simulate: Simulate) -> None:
    sim = simulate(onboarding("{reaction: delivered, to: welcome, timeout: 1h}"), fail=["welcome"])
    sign_up(sim)
    with_phone(sim)
    sim.run()
    assert end_states(sim) == ["nudged"]
    assert "delivered" not in outcomes(sim, "welcome")


def test_without_a_reaction_the_timeout_path_is_taken(simulate: Simulate) -> None:
    sim = simulate(onboarding())
    sign_up(sim)
    with_phone(sim)
    sim.run()
    assert end_states(sim) == ["nudged"]
    assert sent(sim) == [("welcome", after("0s")), ("nudge", after("3d"))]
    assert record(sim, "await_open", "timeout").detail == "no opened of welcome within 3d"


def test_an_open_of_an_earlier_instances_message_does_not_count(simulate: Simulate) -> None:
    sim = simulate(onboarding(reentry="always"))
    sign_up(sim)
    sim.run()  # the first instance times out and ends
    first = sim.messages[0]
    sign_up(sim, at=after("4d"))
    # The first welcome is opened late, through the track API as a provider would post it.
    late = reaction_event("message_opened", first, after("4d1h"), machine=False)
    body = {"userId": "u1", "event": late.name, "properties": late.properties}
    assert sim.track(body, after("4d1h")) is not None
    assert [i.status for i in sim.instances.values()] == ["ended", "waiting"]
    sim.react("opened", "welcome", at=after("4d2h"))  # the second instance's own welcome
    assert end_states(sim) == ["nudged", "engaged"]


def test_an_open_of_another_steps_message_does_not_count(simulate: Simulate) -> None:
    sim = simulate(
        journey(
            """
            - id: welcome
              send: hello_email
            - id: tips
              send: hello_push
            - id: await_open
              wait_for: {reaction: opened, to: tips, timeout: 1d}
              on_event: engaged
            - id: engaged
              end: engaged
            """
        )
    )
    sign_up(sim, pushToken="tok")
    sim.react("opened", "welcome", at=after("1h"))
    assert end_states(sim) == [None]
    sim.react("opened", "tips", at=after("2h"))
    assert end_states(sim) == ["engaged"]


def test_a_machine_open_is_left_aside_when_asked(simulate: Simulate) -> None:
    sim = simulate(onboarding("{reaction: opened, to: welcome, timeout: 3d, machine: false}"))
    sign_up(sim)
    assert record(sim, "await_open", "waiting").detail.startswith(
        "for opened of welcome by a person until"
    )
    sim.react("opened", "welcome", at=after("1m"), machine=True)
    assert end_states(sim) == [None]
    sim.react("opened", "welcome", at=after("5h"))
    assert end_states(sim) == ["engaged"]


def test_a_machine_open_counts_by_default(simulate: Simulate) -> None:
    sim = simulate(onboarding())
    sign_up(sim)
    sim.react("opened", "welcome", at=after("1m"), machine=True)
    assert end_states(sim) == ["engaged"]


def test_a_click_counts_only_on_a_url_that_matches_the_pattern(simulate: Simulate) -> None:
    sim = simulate(OFFER, offer("https://shop.example/*"))
    sign_up(sim)
    sim.react("clicked", "pitch", at=after("1h"), url="https://blog.example/news")
    assert end_states(sim) == [None]
    sim.react("clicked", "pitch", at=after("2h"), url="https://shop.example/sale?c=1")
    assert end_states(sim) == ["clicked"]


@pytest.mark.parametrize(
    ("pattern", "url", "matches"),
    [
        ("https://shop.example/*", "https://shop.example/", True),
        ("https://shop.example/*", "https://shop.example.evil/x", False),
        ("https://shop.example/sale?c=1", "https://shop.example/sale?c=1", True),
        ("https://shop.example/sale?c=1", "https://shop.example/saleXc=1", False),  # ? is itself
        ("*://shop.example/*/cart", "https://shop.example/de/cart", True),
        ("https://shop.example/", "https://shop.example/more", False),  # the whole URL
    ],
)
def test_a_url_pattern_has_one_wildcard(
    simulate: Simulate, pattern: str, url: str, matches: bool
) -> None:
    sim = simulate(OFFER, offer(pattern))
    sign_up(sim)
    sim.react("clicked", "pitch", at=after("1h"), url=url)
    assert end_states(sim) == (["clicked"] if matches else [None])


def test_a_simulated_click_follows_the_first_link_of_the_message(simulate: Simulate) -> None:
    sim = simulate(OFFER, offer("https://shop.example/*"))
    sign_up(sim)
    event = sim.react("clicked", "pitch", at=after("1h"))
    assert event is not None
    assert event.properties["url"] == "https://shop.example/sale?c=1"
    assert end_states(sim) == ["clicked"]


def test_a_reaction_carries_the_properties_of_its_message(simulate: Simulate) -> None:
    sim = simulate(onboarding())
    sign_up(sim)
    event = sim.react("bounced", "welcome", at=after("1h"))
    (message,) = sim.messages
    assert event is not None
    assert (event.name, event.profile_id) == ("message_bounced", "u1")
    assert event.properties == {
        "journey": "j",
        "version": message.version,
        "step": "welcome",
        "instance": message.instance_id,
        "message": message.key,
        "channel": "email",
        "bounce": "hard",
        "address": "u1@example.com",
        "reason": "a simulated bounce",
    }


def test_a_reaction_to_a_message_never_sent_is_refused(simulate: Simulate) -> None:
    sim = simulate(onboarding())
    with pytest.raises(NoMessage, match="no message from step welcome was sent by then"):
        sim.react("opened", "welcome")
    sign_up(sim)
    with pytest.raises(NoMessage, match="to profile u2"):
        sim.react("opened", "welcome", profile="u2")
    sign_up(sim, user="u2")
    with pytest.raises(NoMessage, match=r"several profiles \(u1, u2\): name one with 'profile'"):
        sim.react("opened", "welcome")


# reaction events as ordinary events


def test_reaction_events_enter_and_exit_journeys_and_are_read_in_when(
    simulate: Simulate,
) -> None:
    sim = simulate(
        onboarding(exit="[{event: message_bounced, when: 'event.bounce == \"hard\"'}]"),
        journey(
            """
            - id: alert
              send: hello_sms
            """,
            name="clicks",
            entry="{event: message_clicked, when: 'event.properties.url != null'}",
        ),
        OFFER,
        offer("*").replace("name: j", "name: pitcher"),
    )
    sign_up(sim)
    with_phone(sim)
    sim.react("bounced", "welcome", at=after("1h"), bounce="soft")
    assert end_states(sim) == [None]
    sim.react("bounced", "welcome", at=after("2h"))
    assert end_states(sim) == ["exited"]
    assert end_states(sim, "pitcher") == [None]
    sim.react("clicked", "pitch", at=after("3h"))
    assert end_states(sim, "pitcher") == ["clicked"]
    assert end_states(sim, "clicks") == ["completed"]
    assert ("alert", after("3h")) in sent(sim)


# validation


def problems(tmp_path: Path, *documents: str) -> list[str]:
    return [str(p) for p in load_workspace(write_workspace(tmp_path, BASE, *documents)).problems]


def test_reaction_events_need_no_definition_and_their_properties_are_known(
    tmp_path: Path,
) -> None:
    when = "not event.machine and event.properties.user_agent != ''"
    flow = onboarding(
        f'{{reaction: opened, to: welcome, when: "{when}"}}',
        exit="[{event: message_bounced, when: 'event.bounce == \"hard\"'}, {event: unsubscribed}]",
    ).replace("on_timeout: nudge", "")
    assert problems(tmp_path, flow) == []
    typo = flow.replace("event.machine", "event.machin")
    assert "'event.machin' is in no event schema (did you mean 'machine'?)" in (
        " ".join(problems(tmp_path / "typo", typo))
    )


def test_an_event_document_may_not_take_a_reaction_events_name(tmp_path: Path) -> None:
    assert problems(tmp_path, "kind: event\nname: message_opened\n") == [
        "doc01.yaml:2: event message_opened: event name 'message_opened' is reserved: "
        "journeyman defines this reaction event and its properties itself; give your event "
        "another name"
    ]


@pytest.mark.parametrize(
    ("wait_for", "expected"),
    [
        (
            "{reaction: opend, to: welcome}",
            "doc01.yaml:8: journey j: step await_open: 'reaction' must be one of sent, "
            "delivered, failed, opened, clicked, bounced, complained, unsubscribed, not 'opend' "
            "(did you mean 'opened'?)",
        ),
        (
            "{reaction: opened}",
            "doc01.yaml:8: journey j: step await_open: 'reaction' needs 'to': the send step "
            "whose message it is",
        ),
        (
            "{reaction: opened, to: nudge, event: message_opened}",
            "doc01.yaml:8: journey j: step await_open: 'wait_for' needs exactly one of 'event' "
            "or 'reaction'",
        ),
        (
            "{to: welcome}",
            "doc01.yaml:8: journey j: step await_open: 'wait_for' needs exactly one of 'event' "
            "or 'reaction'",
        ),
        (
            "{reaction: opened, to: welcome, url: 'https://x.example/*'}",
            "doc01.yaml:8: journey j: step await_open: 'url' goes with 'reaction: clicked'",
        ),
        (
            "{reaction: clicked, to: welcome, machine: false}",
            "doc01.yaml:8: journey j: step await_open: 'machine' goes with 'reaction: opened'",
        ),
        (
            "{reaction: opened, to: welcome, machine: no way}",
            "doc01.yaml:8: journey j: step await_open: 'machine' must be true or false, "
            "not a string",
        ),
        (
            "{reaction: opened, to: welcom}",
            "doc01.yaml:8: journey j: step await_open: 'to' names no step 'welcom' "
            "(did you mean 'welcome'?)",
        ),
        (
            "{reaction: opened, to: engaged}",
            "doc01.yaml:8: journey j: step await_open: 'to' must name a send step, and engaged "
            "is an end step",
        ),
        (
            "{reaction: opened, to: nudge}",
            "doc01.yaml:8: journey j: step await_open: no path passes the send step nudge "
            "before this wait: it waits in vain",
        ),
    ],
)
def test_a_broken_reaction_wait_names_the_field(
    tmp_path: Path, wait_for: str, expected: str
) -> None:
    flow = onboarding(wait_for).replace("on_timeout: nudge", "")
    found = problems(tmp_path, flow)
    assert expected in found, found


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            "{at: 1h, opened: await_open}",
            "doc02.yaml:4: test t: step await_open is a wait_for step, not a send step",
        ),
        (
            "{at: 1h, opened: welcom}",
            "doc02.yaml:4: test t: no journey has a step 'welcom' (did you mean 'welcome'?)",
        ),
        (
            "{at: 1h, opened: welcome, url: 'https://x.example/'}",
            "doc02.yaml:4: test t: 'url' goes with 'clicked', not 'opened'",
        ),
        (
            "{at: 1h, bounced: welcome, bounce: hardest}",
            "doc02.yaml:4: test t: 'bounce' must be one of hard, soft, not 'hardest' "
            "(did you mean 'hard'?)",
        ),
        (
            "{at: 1h, opened: welcome, machine: true, track: {}}",
            "doc02.yaml:4: test t: a test event needs exactly one of track, identify, page, "
            "screen, alias, group or a reaction (sent, delivered, failed, opened, clicked, "
            "bounced, complained, unsubscribed, resubscribed)",
        ),
        (
            "{at: 1h, track: {userId: u1, event: e}, machine: true}",
            "doc02.yaml:4: test t: 'machine' goes with a reaction, such as opened",
        ),
    ],
)
def test_a_broken_reaction_in_a_test_names_the_field(
    tmp_path: Path, event: str, expected: str
) -> None:
    test = f"kind: test\nname: t\nevents:\n  - {event}\nexpect: []\n"
    found = problems(tmp_path, onboarding(), test)
    assert expected in found, found


# journey tests, through the command line


PATHS = """
kind: test
name: an opened welcome engages
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com, phone: "+15550100"}}
  - at: 1s
    track: {userId: u1, event: signed_up}
  - at: 2h
    opened: welcome
expect:
  - ended: engaged
    at: 2h
  - never: nudge
---
kind: test
name: an unopened welcome is followed by an SMS
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com, phone: "+15550100"}}
  - at: 1s
    track: {userId: u1, event: signed_up}
  - at: 2h
    opened: welcome
    machine: true
expect:
  - sent: nudge
    at: 3d1s
  - ended: nudged
---
kind: test
name: a click on the shop follows the offer
events:
  - at: 0s
    identify: {userId: u1, traits: {email: u1@example.com}}
  - at: 0s
    track: {userId: u1, event: signed_up}
  - at: 1h
    clicked: pitcher.pitch
    url: https://blog.example/news
  - at: 2h
    clicked: pitch
    profile: u1
expect:
  - ended: clicked
    at: 2h
"""

NEVER_SENT = """
kind: test
name: an open before the welcome
events:
  - at: 1s
    opened: welcome
  - at: 2s
    track: {userId: u1, event: signed_up}
expect:
  - ended: engaged
"""


def run_cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_journey_tests_take_the_event_path_on_a_reaction_and_the_timeout_path_without(
    tmp_path: Path,
) -> None:
    flows = [
        onboarding("{reaction: opened, to: welcome, timeout: 3d, machine: false}"),
        OFFER,
        offer("https://shop.example/*").replace("name: j", "name: pitcher"),
    ]
    folder = write_workspace(tmp_path, BASE, *flows, PATHS)
    code, output = run_cli("test", folder, "--trace")
    assert code == 0, output
    assert "3 passed, 0 failed" in output
    assert "j.await_open waiting: for opened of welcome by a person until" in output
    assert "j.await_open event: message_opened of welcome arrived" in output
    assert "j.await_open timeout: no opened of welcome by a person within 3d" in output


def test_a_reaction_to_a_message_never_sent_fails_the_test_with_its_line(
    tmp_path: Path,
) -> None:
    folder = write_workspace(tmp_path, BASE, onboarding(), NEVER_SENT)
    code, output = run_cli("test", folder)
    assert code == 1
    assert "FAIL an open before the welcome" in output
    assert (
        "line 5: opened: welcome at 1s: no message from step welcome was sent by then; "
        "a reaction answers a message already sent"
    ) in output


def test_validate_counts_only_the_events_the_workspace_defines(tmp_path: Path) -> None:
    folder = write_workspace(tmp_path, BASE, onboarding())
    code, output = run_cli("validate", folder)
    assert code == 0, output
    assert "(3 events, " in output


def test_the_graph_says_which_reaction_a_wait_is_for(tmp_path: Path) -> None:
    flow = onboarding("{reaction: opened, to: welcome, timeout: 3d, machine: false}")
    folder = write_workspace(tmp_path, BASE, flow)
    code, output = run_cli("graph", folder, "j")
    assert code == 0, output
    assert "wait for opened of welcome by a person up to 3d" in output
    assert 's_await_open -- "opened" --> s_engaged' in output


def test_a_posted_reaction_with_a_property_of_the_wrong_type_is_refused(
    simulate: Simulate,
) -> None:
    sim = simulate(onboarding())
    body = {"userId": "u1", "event": "message_opened", "properties": {"machine": "yes"}}
    assert sim.track(body) is None
    (rejection,) = sim.rejected
    assert rejection.error.field == "properties.machine"
    assert sim.profiles == {}
