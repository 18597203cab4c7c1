"""An anonymous visitor signs in: their profile, history and journeys join the known one."""

from __future__ import annotations

from collections.abc import Callable

from journeyman.domain.model import Workspace
from journeyman.runtime.processor import Processor
from journeyman.simulator import Simulator
from journeyman.storage import Database
from tests.conftest import START
from tests.engine_helpers import after
from tests.integration.test_processor import identify, live, track

Build = Callable[..., Workspace]

BROWSING = """
kind: event
name: viewed
identity: anonymousId
---
kind: journey
name: browse
entry: {event: viewed}
steps:
  - id: await_purchase
    wait_for: {event: purchased, timeout: 1d}
    on_event: bought
    on_timeout: nudge
  - id: nudge
    send: hello_email
    next: done
  - id: bought
    end: bought
  - id: done
    end: nudged
"""


def test_a_journey_started_anonymously_goes_on_for_the_signed_in_profile(
    simulate: Callable[..., Simulator],
) -> None:
    sim = simulate(BROWSING)
    sim.identify({"anonymousId": "a1", "traits": {"plan": "pro"}}, START)
    sim.track({"anonymousId": "a1", "event": "viewed"}, START)
    link = {"userId": "u1", "anonymousId": "a1", "traits": {"email": "u1@example.com"}}
    sim.identify(link, after("1h"))
    sim.track({"userId": "u1", "event": "purchased"}, after("2h"))
    sim.run()
    assert "a1" not in sim.profiles
    assert sim.profiles["u1"].traits == {"plan": "pro", "email": "u1@example.com"}
    (instance,) = sim.instances.values()
    assert (instance.profile_id, instance.end_state) == ("u1", "bought")
    assert [r.outcome for r in sim.records if r.outcome == "merged"] == ["merged"]


def test_later_anonymous_events_reach_the_signed_in_profile(
    simulate: Callable[..., Simulator],
) -> None:
    sim = simulate(BROWSING)
    sim.identify({"userId": "u1", "anonymousId": "a1", "traits": {"email": "u1@example.com"}})
    sim.track({"anonymousId": "a1", "event": "viewed"}, START)
    sim.run()
    (message,) = sim.messages
    assert (message.profile_id, message.to) == ("u1", "u1@example.com")


def test_a_journey_both_profiles_are_in_keeps_the_known_profiles_instance(
    simulate: Callable[..., Simulator],
) -> None:
    sim = simulate(BROWSING.replace("identity: anonymousId", "identity: userId"))
    sim.track({"userId": "u1", "event": "viewed"}, START)
    sim.track({"userId": "a1", "event": "viewed"}, START)
    sim.identify({"userId": "u1", "anonymousId": "a1"}, after("1h"))
    ends = {i.id: i.end_state for i in sim.instances.values() if i.status == "ended"}
    assert ends == {"a1:browse:1": "merged"}
    assert len([i for i in sim.instances.values() if i.status == "waiting"]) == 1


def test_the_runtime_moves_the_anonymous_history_and_journeys_to_the_known_profile(
    store: Database, workspace: Build
) -> None:
    ws = workspace(BROWSING)

    async def test(processor: Processor) -> None:
        await processor.submit([identify({"anonymousId": "a1", "traits": {"plan": "pro"}})])
        await processor.submit([track(ws, {"anonymousId": "a1", "event": "viewed"})])
        link = {"userId": "u1", "anonymousId": "a1", "traits": {"email": "U1@Example.com"}}
        await processor.submit([identify(link)])
        assert await store.profile("a1") is None
        profile = await store.profile("u1")
        assert profile is not None
        assert profile.traits == {"plan": "pro", "email": "U1@Example.com"}
        assert [s.event.name for s in await store.history("u1")] == [
            "identify",
            "viewed",
            "identify",
        ]
        (instance,) = await store.instances_of("u1")
        assert (instance.journey, instance.profile_id, instance.status) == (
            "browse",
            "u1",
            "waiting",
        )
        # Later anonymous events and email lookups (in any case) find the known profile.
        assert await store.resolve([("anonymousId", "a1"), ("email", "u1@example.com")]) == {
            ("anonymousId", "a1"): "u1",
            ("email", "u1@example.com"): "u1",
        }
        await processor.submit([track(ws, {"anonymousId": "a1", "event": "viewed"})])
        latest, *_ = await store.history("u1")
        assert latest.event.name == "viewed"
        assert await store.profile("a1") is None

    live(store, ws, test)


def test_a_changed_email_no_longer_finds_the_profile(store: Database, workspace: Build) -> None:
    ws = workspace(BROWSING)

    async def test(processor: Processor) -> None:
        await processor.submit([identify({"userId": "u1", "traits": {"email": "old@x.com"}})])
        await processor.submit([identify({"userId": "u1", "traits": {"email": "new@x.com"}})])
        assert await store.resolve([("email", "old@x.com"), ("email", "new@x.com")]) == {
            ("email", "new@x.com"): "u1"
        }

    live(store, ws, test)
