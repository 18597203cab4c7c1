"""The storage contract every backend keeps, run against each selected backend.

Each test opens a fresh database through the ``store`` fixture (see tests/stores.py) and
checks what a user of the runtime would notice: what comes back, in which order, and that
a batch is written whole or not at all.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace as struct_replace

from journeyman.domain.core import Changes, Delivered, ProfileClock, Snapshot, Timer
from journeyman.domain.segments import segment_event
from journeyman.domain.state import Account, Event, Instance, Profile, SendMessage, StepRecord
from journeyman.storage import (
    Database,
    NewerSchema,
    StorageUnavailable,
    StorageURLError,
    open_store,
)
from journeyman.storage.base import LEASE, AuditEntry, HistoryRow, StoredEvent
from journeyman.storage.codec import encode
from tests.conftest import START
from tests.stores import Backend, run

MINUTE = timedelta(minutes=1)
MS = timedelta(milliseconds=1)


def event(
    profile: str = "u1", name: str = "signed_up", message_id: str | None = None, **props: Any
) -> Event:
    return Event(
        name=name,
        profile_id=profile,
        timestamp=START,
        properties=props,
        message_id=message_id,
        user_id=profile,
    )


def instance(
    id: str = "u1:hello:1",
    profile: str = "u1",
    status: str = "waiting",
    wake_at: datetime | None = None,
    step: str = "pause",
) -> Instance:
    return Instance(
        id=id,
        journey="hello",
        version=1,
        profile_id=profile,
        entered_at=START,
        entry=event(profile),
        step=step,
        status=status,
        waiting="timer" if wake_at is not None else ("event" if status == "waiting" else None),
        wake_at=wake_at,
        end_state="completed" if status == "ended" else None,
    )


def send(
    key: str,
    profile: str = "u1",
    journey: str = "hello",
    at: datetime = START,
    subject: str = "Hello",
) -> SendMessage:
    return SendMessage(
        key=key,
        instance_id=f"{profile}:{journey}:1",
        journey=journey,
        step="greet",
        profile_id=profile,
        channel="email",
        template="hello_email",
        to=f"{profile}@example.com",
        content={"subject": subject},
        at=at,
    )


def record(outcome: str, at: datetime = START, profile: str = "u1") -> StepRecord:
    return StepRecord(
        at=at,
        profile_id=profile,
        journey="hello",
        instance_id=f"{profile}:hello:1",
        step="greet",
        outcome=outcome,
    )


def profile(id: str = "u1", **traits: Any) -> Profile:
    return Profile(id=id, traits=traits)


def ids(instances: Sequence[Timer]) -> list[str]:
    return [i.id for i in instances]


# load


def test_load_gives_an_empty_profile_for_an_unknown_id_and_stores_nothing(store: Database) -> None:
    async def check() -> None:
        nobody = Snapshot(Profile(id="nobody"), [], new=True)
        assert await store.load(["nobody"]) == {"nobody": nobody}
        assert await store.profile("nobody") is None
        assert await store.load([]) == {}

    run(store, check)


def test_load_gives_stored_profiles_with_their_running_instances_only(store: Database) -> None:
    async def check() -> None:
        await store.commit(
            Changes(
                profiles={"u1": profile("u1", plan="pro"), "u2": profile("u2")},
                instances={
                    i.id: i
                    for i in (
                        instance("u1:a:1", wake_at=START),
                        instance("u1:b:1", status="ended"),
                        instance("u1:c:1"),
                        instance("u2:a:1", profile="u2"),
                    )
                },
            )
        )
        found = await store.load(["u1", "u3"])
        assert set(found) == {"u1", "u3"}
        assert (found["u1"].profile.traits, found["u1"].new) == ({"plan": "pro"}, False)
        assert ids(found["u1"].running) == ["u1:a:1", "u1:c:1"]
        assert found["u3"] == Snapshot(Profile(id="u3"), [], new=True)

    run(store, check)


def test_load_finds_every_one_of_many_profiles(store: Database) -> None:
    many = [f"u{n}" for n in range(1200)]

    async def check() -> None:
        await store.commit(
            Changes(
                profiles={p: profile(p, n=n) for n, p in enumerate(many)},
                instances={f"{p}:a:1": instance(f"{p}:a:1", profile=p) for p in many},
            )
        )
        found = await store.load(many)
        assert [found[p].profile.traits["n"] for p in many] == list(range(1200))
        assert all(ids(found[p].running) == [f"{p}:a:1"] for p in many)

    run(store, check)


def test_states_holding_every_byte_value_come_back_whole(store: Database) -> None:
    # NUL bytes, bytes that are no UTF-8 and long values inside the stored states: what
    # the backend reads many of in one go must give each back byte for byte.
    many = [f"u{n}" for n in range(600)]
    values = [
        0,
        -1,
        2**63 - 1,
        -(2**63),
        0.1,
        1e308,
        "\x00",
        "a\x00b\x00",
        "\xff\u20ac",
        "x" * 70_000,
    ]

    async def check() -> None:
        profiles = {p: profile(p, n=n, v=values[n % len(values)]) for n, p in enumerate(many)}
        accounts = {
            p: Account(id=p, traits={"v": values[n % len(values)]}) for n, p in enumerate(many[:30])
        }
        running = {f"{p}:a:1": instance(f"{p}:a:1", profile=p) for p in many}
        await store.commit(Changes(profiles=profiles, instances=running))
        await store.commit(Changes(accounts={a: dict(x.traits) for a, x in accounts.items()}))
        found = await store.load(many)
        assert {p: found[p].profile for p in many} == profiles
        assert [ids(found[p].running) for p in many] == [[f"{p}:a:1"] for p in many]
        assert await store.accounts(list(accounts)) == accounts
        assert await store.instances(list(running)) == running

    run(store, check)


# commit: what each part of a batch becomes


def test_a_committed_profile_replaces_the_stored_one(store: Database) -> None:
    async def check() -> None:
        await store.commit(Changes(profiles={"u1": profile("u1", firstName="Ada")}))
        await store.commit(Changes(profiles={"u1": profile("u1", firstName="Bo", plan="pro")}))
        assert await store.profile("u1") == profile("u1", firstName="Bo", plan="pro")

    run(store, check)


def test_committed_account_traits_merge_key_by_key_into_the_stored_ones(store: Database) -> None:
    async def check() -> None:
        assert await store.accounts(["acme"]) == {}
        await store.commit(Changes(accounts={"acme": {"plan": "pro", "seats": 5}, "solo": {}}))
        await store.commit(Changes(accounts={"acme": {"seats": None, "region": "eu"}}))
        found = await store.accounts(["acme", "solo", "nobody"])
        assert found == {
            "acme": Account(id="acme", traits={"plan": "pro", "region": "eu"}),
            "solo": Account(id="solo"),
        }
        assert await store.account("acme") == found["acme"]
        assert await store.account("nobody") is None

    run(store, check)


@pytest.mark.shared
def test_two_processes_changing_one_account_at_once_each_keep_their_traits(
    store: Database, store_url: str
) -> None:
    other = open_store(store_url)

    async def check() -> None:
        await other.open()
        try:
            writes = [
                writer.commit(Changes(accounts={"acme": {f"{name}{n}": n}}))
                for n in range(10)
                for name, writer in (("a", store), ("b", other))
            ]
            await asyncio.gather(*writes)
        finally:
            await other.close()
        found = await store.account("acme")
        assert found is not None
        assert len(found.traits) == 20

    run(store, check)


def test_a_committed_instance_replaces_its_earlier_state(store: Database) -> None:
    async def check() -> None:
        await store.commit(Changes(instances={"u1:hello:1": instance(wake_at=START + MINUTE)}))
        ended = instance(status="ended", step="done")
        await store.commit(Changes(instances={"u1:hello:1": ended}))
        assert await store.instance("u1:hello:1") == ended
        assert await store.instance("nope") is None
        assert (await store.load(["u1"]))["u1"].running == []
        assert await store.due(START + MINUTE, 10) == []

    run(store, check)


def test_instances_are_read_many_at_once_running_or_ended(store: Database) -> None:
    async def check() -> None:
        ended = instance("u1:a:1", status="ended", step="done")
        waiting = instance("u2:a:1", profile="u2", wake_at=START + MINUTE)
        await store.commit(Changes(instances={i.id: i for i in (ended, waiting)}))
        found = await store.instances(["u1:a:1", "u2:a:1", "nope"])
        assert found == {"u1:a:1": ended, "u2:a:1": waiting}
        assert await store.instances([]) == {}

    run(store, check)


def test_instances_of_lists_running_and_ended_newest_first(store: Database) -> None:
    async def check() -> None:
        await store.commit(Changes(instances={"u1:a:1": instance("u1:a:1", status="ended")}))
        await store.commit(Changes(instances={"u1:b:1": instance("u1:b:1")}))
        await store.commit(Changes(instances={"u2:a:1": instance("u2:a:1", profile="u2")}))
        assert ids(await store.instances_of("u1")) == ["u1:b:1", "u1:a:1"]
        assert await store.instances_of("u3") == []

    run(store, check)


def test_events_become_the_history_newest_first(store: Database) -> None:
    later = START + MINUTE

    async def check() -> None:
        first = event(name="signed_up", message_id="m1", plan="pro")
        await store.commit(Changes(at=START, events=[first]))
        others = [event(name="purchased", total=5), event(name="deleted")]
        await store.commit(Changes(at=later, events=others))
        await store.commit(Changes(at=START, events=[event("u2")]))
        history = await store.history("u1")
        assert [s.event.name for s in history] == ["deleted", "purchased", "signed_up"]
        assert history[-1] == StoredEvent(first, START)
        assert history[0].received_at == later
        assert [s.event.name for s in await store.history("u1", limit=2)] == [
            "deleted",
            "purchased",
        ]
        assert await store.history("u3") == []

    run(store, check)


def test_seen_names_the_message_ids_accepted_before(store: Database) -> None:
    async def check() -> None:
        assert await store.seen(["m1"]) == set()
        events = [event(message_id="m1"), event("u2", message_id="m2"), event(), event()]
        await store.commit(Changes(at=START, events=events))
        assert await store.seen(["m1", "m2", "m3"]) == {"m1", "m2"}
        assert await store.seen([]) == set()

    run(store, check)


def test_seen_answers_for_many_message_ids_at_once(store: Database) -> None:
    async def check() -> None:
        events = [event(f"u{n % 7}", message_id=f"m{n}") for n in range(1200)]
        await store.commit(Changes(at=START, events=events))
        asked = [f"m{n}" for n in range(0, 2400, 2)]
        assert await store.seen(asked) == {f"m{n}" for n in range(0, 1200, 2)}

    run(store, check)


def test_effects_are_queued_in_the_outbox_once_per_key(store: Database) -> None:
    async def check() -> None:
        hello = send("k1", subject="Hello Ada")
        await store.commit(Changes(effects=[hello, hello]))
        await store.commit(Changes(effects=[send("k1", subject="a retry, not a new message")]))
        (row,) = await store.messages()
        assert (row.key, row.kind, row.channel, row.status, row.attempts) == (
            "k1",
            "send",
            "email",
            "queued",
            0,
        )
        assert (row.journey, row.step, row.profile_id, row.instance_id) == (
            "hello",
            "greet",
            "u1",
            "u1:hello:1",
        )
        assert row.content == {"to": "u1@example.com", "subject": "Hello Ada"}
        assert len(await store.claim(START, 10)) == 1

    run(store, check)


def test_step_records_become_the_trace_oldest_first(store: Database) -> None:
    async def check() -> None:
        await store.commit(Changes(records=[record("entered"), record("sent", START + MS)]))
        await store.commit(
            Changes(records=[record("ended", START + MINUTE), record("x", profile="u2")])
        )
        trace = await store.trace("u1")
        assert [r.outcome for r in trace] == ["entered", "sent", "ended"]
        assert trace[0] == record("entered")
        assert trace[1].at == START + MS
        assert await store.trace("u3") == []

    run(store, check)


def test_entries_since_counts_a_journeys_entries_from_a_time_on(store: Database) -> None:
    async def check() -> None:
        entries = [
            struct_replace(record("entered", START + MINUTE * n, f"u{n}"), step=None)
            for n in range(3)
        ]
        refused = struct_replace(record("not_entered", START + MINUTE), step=None)
        await store.commit(Changes(records=[*entries, refused, record("sent", START)]))
        assert await store.entries_since("hello", START) == 3
        assert await store.entries_since("hello", START + MINUTE) == 2
        assert await store.entries_since("hello", START + MINUTE * 3) == 0
        assert await store.entries_since("other", START) == 0

    run(store, check)


def test_step_records_gives_the_latest_records_of_one_step_newest_first(store: Database) -> None:
    async def check() -> None:
        entry = struct_replace(record("entered"), step=None)
        sends = [record("sent", START + MINUTE * n, f"u{n}") for n in range(3)]
        await store.commit(Changes(records=[entry, *sends]))
        latest = await store.step_records("hello", "greet", 2)
        assert [(r.profile_id, r.outcome) for r in latest] == [("u2", "sent"), ("u1", "sent")]
        assert await store.step_records("hello", None, 10) == [entry]
        assert await store.step_records("hello", "nope", 10) == []

    run(store, check)


def test_step_counts_count_one_version_and_the_instances_that_left_a_step(
    store: Database,
) -> None:
    def on(version: int, profile: str, status: str, step: str = "wait") -> Instance:
        found = instance(f"{profile}:hello:1", profile, status, step=step)
        return struct_replace(found, version=version)

    def at(profile: str, step: str | None, outcome: str, detail: str = "") -> StepRecord:
        found = struct_replace(record(outcome, profile=profile), step=step, detail=detail)
        return found if outcome != "not_entered" else struct_replace(found, instance_id=None)

    async def check() -> None:
        instances = [on(1, "u1", "waiting"), on(1, "u2", "ended"), on(2, "u3", "waiting")]
        instances += [on(2, "u4", "ended", "end"), on(2, "u5", "ended")]
        records = [
            *(at(f"u{n}", None, "entered", "by signed_up") for n in range(1, 6)),
            at("u9", None, "not_entered", "the profile is already in this journey"),
            at("u1", "wait", "waiting"),
            at("u2", "wait", "waiting"),
            at("u2", "wait", "ended", "exited: exit event deleted"),
            at("u3", "wait", "waiting"),
            at("u4", "wait", "waited"),
            at("u4", "end", "ended", "welcomed"),  # the end step's state: completed
            at("u5", "wait", "merged", "ended: merged into profile u9"),
        ]
        await store.commit(Changes(instances={i.id: i for i in instances}, records=records))
        every = await store.step_counts("hello")
        assert every[""] == {"entered": 5, "not_entered": 1}
        assert every["wait"] == {
            "waiting": 3,
            "ended": 1,
            "waited": 1,
            "merged": 1,
            "left": 2,
            "waiting_now": 2,
        }
        assert every["end"] == {"ended": 1}  # an instance that completed did not leave
        first = await store.step_counts("hello", 1)
        assert first[""] == {"entered": 2, "not_entered": 1}
        assert first["wait"] == {"waiting": 2, "ended": 1, "left": 1, "waiting_now": 1}
        assert "end" not in first
        second = await store.step_counts("hello", 2)
        assert second["wait"] == {
            "waiting": 1,
            "waited": 1,
            "merged": 1,
            "left": 1,
            "waiting_now": 1,
        }
        assert await store.step_counts("hello", 3) == {"": {"not_entered": 1}}

    run(store, check)


def test_step_records_of_one_version_are_those_of_its_instances(store: Database) -> None:
    async def check() -> None:
        old = struct_replace(instance("u1:hello:1", "u1"), version=1)
        new = struct_replace(instance("u2:hello:1", "u2"), version=2)
        refused = struct_replace(record("not_entered", profile="u3"), step=None, instance_id=None)
        entries = [struct_replace(record("entered", profile=p), step=None) for p in ("u1", "u2")]
        sends = [record("sent", START + MINUTE * n, f"u{n}") for n in (1, 2)]
        await store.commit(
            Changes(instances={old.id: old, new.id: new}, records=[*entries, refused, *sends])
        )
        assert await store.step_records("hello", "greet", 10, 1) == [sends[0]]
        assert await store.step_records("hello", "greet", 10, 2) == [sends[1]]
        assert await store.step_records("hello", "greet", 10) == sends[::-1]
        assert await store.step_records("hello", None, 10, 2) == [refused, entries[1]]
        assert await store.step_records("hello", "greet", 10, 3) == []

    run(store, check)


def test_profiles_with_trait_finds_profiles_by_the_exact_text_of_a_trait(store: Database) -> None:
    async def check() -> None:
        profiles = {
            "u1": profile("u1", phone="+15550100"),
            "u2": profile("u2", phone="+155501000"),
            "u3": profile("u3", note="+15550100"),
        }
        await store.commit(Changes(profiles=profiles))
        assert await store.profiles_with_trait("phone", "+15550100", 10) == ["u1"]
        assert await store.profiles_with_trait("phone", "+1", 10) == []

    run(store, check)


def test_search_profiles_finds_by_the_start_of_an_id_email_or_name_case_ignored_in_pages(
    store: Database,
) -> None:
    async def check() -> None:
        profiles = {
            "Ada-1": profile("Ada-1", firstName="Ada", lastName="Lovelace"),
            "u2": profile("u2", name="Grace Hopper"),
            "u3": profile("u3", note="ada"),  # not a name: not found by it
            "u4": profile("u4"),
            "100%_x": profile("100%_x"),
        }
        emails = {("email", "ada.l@example.com"): "u4", ("anonymousId", "Anon-9"): "u4"}
        await store.commit(Changes(profiles=profiles, identities=emails))
        assert await store.search_profiles("ada", "", 10) == (["Ada-1", "u4"], None)
        assert await store.search_profiles("HOP", "", 10) == (["u2"], None)
        assert await store.search_profiles("love", "", 10) == (["Ada-1"], None)
        assert await store.search_profiles("anon-", "", 10) == (["u4"], None)
        assert await store.search_profiles("100%_", "", 10) == (["100%_x"], None)
        assert await store.search_profiles("10_", "", 10) == ([], None)  # taken literally
        first, after = await store.search_profiles("", "", 2)
        assert (first, after) == (["100%_x", "Ada-1"], "Ada-1")
        rest, end = await store.search_profiles("", "Ada-1", 10)
        assert (rest, end) == (["u2", "u3", "u4"], None)

    run(store, check)


def test_identities_resolve_to_the_profile_they_were_last_given_to(store: Database) -> None:
    async def check() -> None:
        ada, bo = ("email", "ada@example.com"), ("email", "bo@example.com")
        await store.commit(Changes(profiles={"u1": profile()}, identities={ada: "u1", bo: "u1"}))
        await store.commit(Changes(profiles={"u2": profile("u2")}, identities={ada: "u2"}))
        unknown = ("email", "cy@example.com")
        assert await store.resolve([ada, bo, unknown]) == {ada: "u2", bo: "u1"}
        assert await store.resolve([("phone", "ada@example.com")]) == {}

    run(store, check)


def test_a_commit_that_fails_writes_nothing_of_its_batch(store: Database) -> None:
    async def check() -> None:
        await store.commit(Changes(at=START, events=[event(message_id="m1")], effects=[send("k1")]))
        (queued,) = await store.claim(START, 10)
        doomed = Changes(
            at=START,
            events=[event("u2", message_id="m2"), event("u2", message_id="m1")],
            profiles={"u2": profile("u2", plan="pro")},
            instances={"u2:hello:1": instance("u2:hello:1", profile="u2", wake_at=START)},
            effects=[send("k2", profile="u2")],
            records=[record("entered", profile="u2")],
            identities={("email", "u2@example.com"): "u2"},
            deliveries=[Delivered(queued.id, "sent", "250 ok", START)],
        )
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            await store.commit(doomed)
        assert await store.profile("u2") is None
        assert await store.history("u2") == []
        assert await store.seen(["m2"]) == set()
        assert await store.instances_of("u2") == []
        assert await store.due(START, 10) == []
        assert await store.trace("u2") == []
        assert await store.resolve([("email", "u2@example.com")]) == {}
        assert [(m.key, m.status) for m in await store.messages()] == [("k1", "queued")]
        # and the store takes the next batch as if nothing had happened
        await store.commit(Changes(at=START, events=[event("u2", message_id="m2")]))
        assert await store.seen(["m2"]) == {"m2"}

    run(store, check)


# timers


def test_due_gives_waiting_instances_whose_time_has_come_earliest_first(store: Database) -> None:
    async def check() -> None:
        waits = {"a": 3, "b": 1, "c": 2, "d": 10}
        batch = Changes(
            instances={
                f"u1:{name}:1": instance(f"u1:{name}:1", wake_at=START + minutes * MINUTE)
                for name, minutes in waits.items()
            }
        )
        # not waiting for a time: an event wait, an ended one, one in the middle of a step
        batch.instances["u1:e:1"] = instance("u1:e:1")
        batch.instances["u1:f:1"] = instance("u1:f:1", status="ended")
        batch.instances["u1:g:1"] = instance("u1:g:1", status="active", wake_at=START)
        await store.commit(batch)
        assert ids(await store.due(START + 5 * MINUTE, 10)) == ["u1:b:1", "u1:c:1", "u1:a:1"]
        assert ids(await store.due(START + 5 * MINUTE, 2)) == ["u1:b:1", "u1:c:1"]
        assert ids(await store.due(START + MINUTE, 10)) == ["u1:b:1"]
        assert await store.due(START + MINUTE - MS, 10) == []

    run(store, check)


def test_due_never_gives_an_instance_before_its_time(store: Database) -> None:
    wake = START + MINUTE + timedelta(microseconds=600)

    async def check() -> None:
        await store.commit(Changes(instances={"u1:hello:1": instance(wake_at=wake)}))
        assert await store.due(wake - timedelta(microseconds=300), 10) == []
        (due,) = await store.due(wake, 10)
        assert due.wake_at == wake

    run(store, check)


def test_next_wake_is_when_the_first_waiting_instance_is_due(store: Database) -> None:
    early = START + MINUTE + timedelta(microseconds=600)

    async def check() -> None:
        assert await store.next_wake() is None
        await store.commit(
            Changes(
                instances={
                    "u1:a:1": instance("u1:a:1", wake_at=START + 2 * MINUTE),
                    "u1:b:1": instance("u1:b:1", wake_at=early),
                    "u1:c:1": instance("u1:c:1", status="ended"),
                    "u1:d:1": instance("u1:d:1"),
                }
            )
        )
        wake = await store.next_wake()
        assert wake is not None
        assert early <= wake < early + MS
        # a timer loop that sleeps until then finds the instance due
        assert ids(await store.due(wake, 10)) == ["u1:b:1"]
        await store.commit(Changes(instances={"u1:b:1": instance("u1:b:1", status="ended")}))
        assert await store.next_wake() == START + 2 * MINUTE

    run(store, check)


# outbox


def test_claim_leases_items_oldest_first_and_gives_them_again_after_the_lease(
    store: Database,
) -> None:
    async def check() -> None:
        effects = [send("k3", at=START + 2 * MS), send("k1"), send("k2", at=START + MS)]
        await store.commit(Changes(effects=[*effects, send("later", at=START + MINUTE)]))
        first = await store.claim(START + MS, 2)
        assert [i.effect.key for i in first] == ["k1", "k2"]
        assert [i.attempts for i in first] == [0, 0]
        assert first[0].effect == effects[1]
        assert [i.effect.key for i in await store.claim(START + 2 * MS, 10)] == ["k3"]
        # claimed but never settled (the process died while delivering): not before the
        # lease has passed, then again, with the same key
        assert [i.effect.key for i in await store.claim(START + MINUTE, 10)] == ["later"]
        assert await store.claim(START + LEASE, 10) == []
        again = await store.claim(START + 2 * MS + LEASE, 10)
        assert [i.effect.key for i in again] == ["k1", "k2", "k3"]

    run(store, check)


def test_settle_records_sent_failed_and_retries_at_their_time(store: Database) -> None:
    later = START + 10 * MINUTE

    async def check() -> None:
        await store.commit(Changes(effects=[send("sent"), send("failed"), send("retry")]))
        items = {i.effect.key: i.id for i in await store.claim(START, 10)}
        at = START + MINUTE
        await store.settle(
            [
                Delivered(items["sent"], "sent", "250 ok", at),
                Delivered(items["failed"], "failed", "550 no such user", at),
                Delivered(items["retry"], "retry", "421 try later", at, retry_at=later),
            ]
        )
        rows = {m.key: m for m in await store.messages()}
        assert {k: (m.status, m.attempts, m.detail) for k, m in rows.items()} == {
            "sent": ("sent", 1, "250 ok"),
            "failed": ("failed", 1, "550 no such user"),
            "retry": ("retry", 1, "421 try later"),
        }
        assert rows["sent"].updated_at == at
        assert await store.claim(later - MS, 10) == []
        (retry,) = await store.claim(later, 10)
        assert (retry.effect.key, retry.attempts) == ("retry", 1)
        await store.settle([Delivered(retry.id, "sent", "250 ok", later)])
        assert await store.claim(later + 100 * LEASE, 10) == []
        assert [(m.status, m.attempts) for m in await store.messages(status="sent")] == [
            ("sent", 2),
            ("sent", 1),
        ]

    run(store, check)


def test_a_late_outcome_of_a_delivery_whose_lease_ran_out_leaves_a_final_row_alone(
    store: Database,
) -> None:
    async def check() -> None:
        await store.commit(Changes(effects=[send("k1")]))
        (slow,) = await store.claim(START, 10)
        (again,) = await store.claim(START + LEASE, 10)  # the first claimer looks dead
        await store.settle([Delivered(again.id, "sent", "250 ok", START + LEASE)])
        await store.settle([Delivered(slow.id, "retry", "timed out", START + LEASE, START)])
        (row,) = await store.messages()
        assert (row.status, row.attempts, row.detail) == ("sent", 1, "250 ok")
        assert await store.claim(START + 10 * LEASE, 10) == []

    run(store, check)


def test_running_instances_of_a_journey_come_in_pages_by_id(store: Database) -> None:
    async def check() -> None:
        ids = [f"u{n}:hello:1" for n in range(5)]
        running = [instance(i, profile=i.split(":")[0]) for i in reversed(ids)]
        other = struct_replace(instance("u1:other:1"), journey="other")
        ended = instance("u0:hello:0", profile="u0", status="ended")
        await store.commit(Changes(instances={i.id: i for i in [*running, other, ended]}))
        first = await store.running_of("hello", 3)
        assert [i.id for i in first] == ids[:3]
        rest = await store.running_of("hello", 3, after=first[-1].id)
        assert [i.id for i in rest] == ids[3:]
        assert await store.running_of("hello", 3, after=rest[-1].id) == []

    run(store, check)


def test_a_commit_settles_deliveries_with_the_state_change(store: Database) -> None:
    async def check() -> None:
        await store.commit(Changes(effects=[send("k1")]))
        (item,) = await store.claim(START, 10)
        failed = Delivered(item.id, "failed", "bounced", START + MINUTE)
        await store.commit(Changes(records=[record("failed")], deliveries=[failed]))
        (row,) = await store.messages()
        assert (row.status, row.detail, row.attempts) == ("failed", "bounced", 1)

    run(store, check)


def test_messages_filter_by_profile_journey_and_status_newest_first(store: Database) -> None:
    async def check() -> None:
        effects = [
            send("u1-hello", "u1"),
            send("u1-cart", "u1", journey="cart"),
            send("u2-hello", "u2"),
            send("u2-cart", "u2", journey="cart"),
        ]
        for effect in effects:
            await store.commit(Changes(effects=[effect]))
        items = {i.effect.key: i.id for i in await store.claim(START, 10)}
        await store.settle([Delivered(items["u2-hello"], "sent", "", START)])

        async def keys(**filters: Any) -> list[str]:
            return [m.key for m in await store.messages(**filters)]

        assert await keys() == ["u2-cart", "u2-hello", "u1-cart", "u1-hello"]
        assert await keys(profile="u1") == ["u1-cart", "u1-hello"]
        assert await keys(journey="cart") == ["u2-cart", "u1-cart"]
        assert await keys(status="sent") == ["u2-hello"]
        assert await keys(profile="u2", status="queued") == ["u2-cart"]
        assert await keys(profile="u2", journey="hello", status="queued") == []
        assert await keys(limit=2) == ["u2-cart", "u2-hello"]
        assert await keys(profile="u3") == []

    run(store, check)


def test_a_sent_message_is_read_by_its_key_with_the_profile_that_has_it_now(
    store: Database,
) -> None:
    async def check() -> None:
        message = struct_replace(send("anon-hello", "anon"), content={"html": "<a href=x>"})
        await store.commit(Changes(effects=[message, send("u2-hello", "u2")]))
        assert await store.sent_message("anon-hello") == message
        assert await store.sent_message("missing") is None
        # An identify merges the anonymous profile into u1: a click on the message now
        # belongs to u1.
        await store.commit(Changes(merges=[("anon", "u1")]))
        found = await store.sent_message("anon-hello")
        assert found == struct_replace(message, profile_id="u1")

    run(store, check)


# settings


def test_settings_are_kept_by_key(store: Database) -> None:
    async def check() -> None:
        assert await store.get_setting("write_key") is None
        await store.set_setting("write_key", "w1")
        await store.set_setting("admin_key", "a1")
        await store.set_setting("write_key", "w2")
        assert await store.get_setting("write_key") == "w2"
        assert await store.get_setting("admin_key") == "a1"

    run(store, check)


# lifecycle


@pytest.mark.durable
def test_everything_committed_is_there_after_close_and_reopen(
    backend: Backend, store: Database, store_url: str
) -> None:
    email = ("email", "u1@example.com")

    async def write() -> None:
        await store.commit(
            Changes(
                at=START,
                events=[event(message_id="m1")],
                profiles={"u1": profile(email="u1@example.com")},
                instances={"u1:hello:1": instance(wake_at=START + MINUTE)},
                effects=[send("k1"), send("k2")],
                records=[record("entered")],
                identities={email: "u1"},
            )
        )
        await store.set_setting("write_key", "w1")
        # one delivery is under way when the process stops
        await store.claim(START, 1)

    reopened = open_store(store_url)

    async def read() -> None:
        snapshot = (await reopened.load(["u1"]))["u1"]
        assert snapshot.profile == profile(email="u1@example.com")
        assert ids(snapshot.running) == ["u1:hello:1"]
        assert await reopened.seen(["m1"]) == {"m1"}
        assert [s.event.message_id for s in await reopened.history("u1")] == ["m1"]
        assert [r.outcome for r in await reopened.trace("u1")] == ["entered"]
        assert await reopened.resolve([email]) == {email: "u1"}
        assert ids(await reopened.due(START + MINUTE, 10)) == ["u1:hello:1"]
        assert await reopened.get_setting("write_key") == "w1"
        assert [m.status for m in await reopened.messages()] == ["queued", "queued"]
        # k1 was being delivered when the process stopped: it is delivered again (with the
        # same key) at once where one process owns the database, else once its lease passes
        if backend.single_process:
            assert [i.effect.key for i in await reopened.claim(START, 10)] == ["k1", "k2"]
        else:
            (k2,) = await reopened.claim(START, 10)
            assert k2.effect.key == "k2"
            await reopened.settle([Delivered(k2.id, "sent", "250 ok", START)])
            assert [i.effect.key for i in await reopened.claim(START + LEASE, 10)] == ["k1"]

    run(store, write)
    run(reopened, read)


@pytest.mark.durable
def test_reopening_a_database_changes_nothing(
    backend: Backend, store: Database, store_url: str
) -> None:

    async def write() -> None:
        await store.commit(Changes(at=START, events=[event(message_id="m1")], effects=[send("k1")]))

    def contents() -> list[Any]:
        reopened = open_store(store_url)

        async def read() -> list[Any]:
            return [
                await reopened.history("u1"),
                await reopened.messages(),
                await reopened.seen(["m1"]),
            ]

        return run(reopened, read)

    run(store, write)
    first = contents()
    assert first[2] == {"m1"}
    assert contents() == contents() == first


@pytest.mark.newer_schema
def test_a_database_from_a_newer_version_is_refused_with_a_clear_error(
    backend: Backend, store: Database, store_url: str
) -> None:
    assert backend.newer_schema is not None

    async def nothing() -> None:
        return None

    run(store, nothing)
    backend.newer_schema(store_url)
    newer = open_store(store_url)
    with pytest.raises(NewerSchema, match=r"newer than this journeyman.*upgrade"):
        asyncio.run(newer.open())
    asyncio.run(newer.close())


# schema versions


@pytest.mark.durable
def test_opening_applies_each_schema_step_once(store: Database, store_url: str) -> None:
    async def nothing() -> None:
        return None

    run(store, nothing)
    assert [step.version for step in store.applied] == list(range(1, len(store.applied) + 1))
    assert store.applied, "a new database gets every step"
    again = open_store(store_url)
    run(again, nothing)
    assert again.applied == []


# opening


def test_an_unreachable_postgresql_server_is_named_without_its_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # nothing listens on the port once the probe has closed it
    store = open_store(f"postgresql://jm:s3cret@127.0.0.1:{port}/journeyman?pool=2")
    with pytest.raises(StorageUnavailable) as caught:
        asyncio.run(store.open())
    message = str(caught.value)
    assert message.startswith(f"cannot open postgresql://jm:***@127.0.0.1:{port}/journeyman")
    assert "s3cret" not in message
    assert "refused" in message.lower() or "connect" in message.lower()


def test_the_pool_size_comes_from_the_url_and_other_parameters_go_to_the_server() -> None:
    from journeyman.storage.postgres import DEFAULT_POOL, parse_url

    assert parse_url("postgres://jm:pw@db:6543/j?pool=3&application_name=jm") == (
        "postgresql://jm:pw@db:6543/j?application_name=jm",
        3,
    )
    assert parse_url("postgresql://db/j") == ("postgresql://db/j", DEFAULT_POOL)


@pytest.mark.parametrize("url", ["postgresql://h/db?pool=0", "postgres://h/db?pool=many"])
def test_a_bad_pool_size_is_refused_with_the_url(url: str) -> None:
    with pytest.raises(StorageURLError, match=r"pool=.* use a whole number from 1 up"):
        open_store(url)


@pytest.mark.shared
def test_a_timer_due_later_in_the_same_millisecond_is_not_claimed_early(store: Database) -> None:
    from journeyman.storage.postgres import PostgresStore

    wake = START + MINUTE + timedelta(microseconds=600)

    async def check() -> None:
        assert isinstance(store, PostgresStore)
        await store.commit(Changes(instances={"u1:hello:1": instance(wake_at=wake)}))
        # Not due yet: it must not be claimed (and so held back for a whole lease) either.
        assert await store.claim_due(wake - timedelta(microseconds=300), 10) == []
        (due,) = await store.claim_due(wake + MS, 10)
        assert due.wake_at == wake

    run(store, check)


def test_a_profile_clock_is_due_beside_waits_and_goes_when_its_segments_need_none(
    store: Database,
) -> None:
    clock = START + MINUTE + timedelta(microseconds=600)

    async def check() -> None:
        clocked = Profile(id="u2", wakes={"active": clock, "vip": START + 5 * MINUTE})
        wait = instance("u1:a:1", wake_at=START + 2 * MINUTE)
        await store.commit(Changes(profiles={"u2": clocked}, instances={wait.id: wait}))
        wake = await store.next_wake()
        assert wake is not None
        assert clock <= wake < clock + MS
        assert await store.due(clock - timedelta(microseconds=300), 10) == []
        due = await store.due(START + 3 * MINUTE, 10)
        assert [(t.id, t.profile_id) for t in due] == [("\x00u2", "u2"), ("u1:a:1", "u1")]
        assert isinstance(due[0], ProfileClock)
        assert clock <= due[0].wake_at < clock + MS
        assert ids(await store.due(START + 3 * MINUTE, 1)) == ["\x00u2"]
        # the profile stored with no wake time: its clock is gone
        await store.commit(Changes(profiles={"u2": Profile(id="u2")}))
        assert ids(await store.due(START + 3 * MINUTE, 10)) == ["u1:a:1"]
        assert await store.next_wake() == START + 2 * MINUTE

    run(store, check)


def test_a_profile_clock_moves_with_its_state_and_stays_when_only_the_state_changes(
    store: Database,
) -> None:
    early, late = START + MINUTE, START + 5 * MINUTE

    async def check() -> None:
        await store.commit(Changes(profiles={"u2": Profile(id="u2", wakes={"s": late})}))
        assert await store.next_wake() == late
        pro = Profile(id="u2", traits={"plan": "pro"}, wakes={"s": late})
        await store.commit(Changes(profiles={"u2": pro}))
        assert await store.next_wake() == late
        stored = await store.profile("u2")
        assert stored is not None
        assert stored.traits == {"plan": "pro"}
        sooner = Profile(id="u2", traits={"plan": "pro"}, wakes={"s": early})
        await store.commit(Changes(profiles={"u2": sooner}))
        assert await store.next_wake() == early
        assert ids(await store.due(early, 10)) == ["\x00u2"]

    run(store, check)


@pytest.mark.shared
def test_processes_sharing_a_database_never_claim_the_same_profile_clock(
    store: Database, store_url: str
) -> None:
    from journeyman.storage.postgres import PostgresStore

    late = START + MINUTE
    people = [f"u{n:02}" for n in range(30)]

    async def check() -> None:
        other = open_store(f"{store_url}?pool=2")
        assert isinstance(store, PostgresStore)
        assert isinstance(other, PostgresStore)
        profiles = {p: Profile(id=p, wakes={"s": START + n * MS}) for n, p in enumerate(people)}
        await store.commit(Changes(profiles=profiles))
        await other.open()
        try:
            mine, theirs = await asyncio.gather(
                store.claim_due(late, 20), other.claim_due(late, 20)
            )
            claimed = [t.profile_id for t in [*mine, *theirs]]
            assert sorted(claimed) == people  # each once
            assert await other.claim_due(late, 100) == []
            assert await store.next_wake() == late + LEASE
            # storing the profile's next state ends the claim
            moved = Profile(id=people[0], wakes={"s": START})
            await store.commit(Changes(profiles={moved.id: moved}))
            assert ids(await store.due(late, 100)) == ["\x00" + people[0]]
        finally:
            await other.close()

    run(store, check)


def test_a_merged_anonymous_profile_gives_its_segments_to_the_known_one_which_keeps_its_own(
    store: Database,
) -> None:
    def joined(profile: str, at: datetime, *segments: str) -> Changes:
        return Changes(
            events=[segment_event(profile, name, True, at) for name in segments],
            profiles={profile: Profile(id=profile, segments=dict.fromkeys(segments, at))},
        )

    async def members(segment: str) -> list[tuple[str, datetime]]:
        return await store.segment_members(segment, "", 10)

    async def check() -> None:
        await store.commit(joined("anon", START, "vip", "pro"))
        await store.commit(joined("known", START + MINUTE, "vip"))
        assert await store.segment_sizes() == {"vip": 2, "pro": 1}
        # as merge_profiles leaves it: both profiles' segments, the known one's since when
        both = {"vip": START + MINUTE, "pro": START}
        merged = Profile(id="known", segments=both)
        await store.commit(Changes(profiles={"known": merged}, merges=[("anon", "known")]))
        assert await members("vip") == [("known", START + MINUTE)]
        assert await members("pro") == [("known", START)]
        assert await store.segment_sizes() == {"vip": 1, "pro": 1}
        assert await store.profile("anon") is None

    run(store, check)


def test_a_segments_recent_entries_and_exits_are_read_newest_first(store: Database) -> None:
    def line(profile: str, outcome: str, detail: str, minutes: int) -> StepRecord:
        at = START + minutes * MINUTE
        return StepRecord(
            at=at,
            profile_id=profile,
            journey="",
            instance_id=None,
            step=None,
            outcome=outcome,
            detail=detail,
        )

    async def check() -> None:
        records = [
            line("u1", "segment_entered", "vip", 1),
            line("u2", "segment_entered", "vip", 2),
            line("u1", "segment_exited", "vip", 3),
            line("u3", "segment_entered", "other", 4),
            line("u3", "account", "vip", 5),  # another line with no journey
        ]
        await store.commit(Changes(records=records))
        changes = await store.segment_changes("vip", 10)
        assert [(r.profile_id, r.outcome) for r in changes] == [
            ("u1", "segment_exited"),
            ("u2", "segment_entered"),
            ("u1", "segment_entered"),
        ]
        assert len(await store.segment_changes("vip", 2)) == 2
        assert await store.segment_changes("nobody", 10) == []

    run(store, check)


# several processes on one database


@pytest.mark.shared
def test_processes_sharing_a_database_never_claim_the_same_timer_or_message(
    store: Database, store_url: str
) -> None:
    from journeyman.storage.postgres import PostgresStore

    late = START + MINUTE
    people = [f"u{n:02}" for n in range(40)]

    async def check() -> None:
        other = open_store(f"{store_url}?pool=2")  # `pool` stays with journeyman
        assert isinstance(store, PostgresStore)
        assert isinstance(other, PostgresStore)
        await store.commit(
            Changes(
                instances={
                    f"{p}:hello:1": instance(f"{p}:hello:1", profile=p, wake_at=START + n * MS)
                    for n, p in enumerate(people)
                },
                effects=[send(f"k-{p}", profile=p) for p in people],
            )
        )
        await other.open()
        try:
            mine, theirs = await asyncio.gather(
                store.claim_due(late, 25), other.claim_due(late, 25)
            )
            assert not set(ids(mine)) & set(ids(theirs))
            assert sorted(ids(mine) + ids(theirs)) == [f"{p}:hello:1" for p in people]
            assert ids(mine) == sorted(ids(mine))  # earliest first
            # claimed: due for nobody until the lease passes (the claimer died)
            assert await store.due(late, 100) == []
            assert await other.claim_due(late, 100) == []
            assert await store.next_wake() == late + LEASE
            assert len(await other.claim_due(late + LEASE, 100)) == len(people)
            # storing an instance's next state ends its claim
            moved = instance(mine[0].id, profile=mine[0].profile_id, wake_at=START)
            await store.commit(Changes(instances={moved.id: moved}))
            assert ids(await store.due(late, 100)) == [moved.id]

            sends = await asyncio.gather(store.claim(START, 25), other.claim(START, 25))
            keys = [[item.effect.key for item in claimed] for claimed in sends]
            assert not set(keys[0]) & set(keys[1])
            assert sorted(keys[0] + keys[1]) == [f"k-{p}" for p in people]
        finally:
            await other.close()

    run(store, check)


def test_a_statement_written_once_is_rewritten_for_postgresql_placeholders_and_words() -> None:
    from journeyman.storage.sql import POSTGRES_DIALECT, SQLITE_DIALECT, Statements

    query = "SELECT 1 FROM steps WHERE journey = ? AND step {same} ? ORDER BY {seq} LIMIT ?"
    assert SQLITE_DIALECT(query) == (
        "SELECT 1 FROM steps WHERE journey = ? AND step IS ? ORDER BY rowid LIMIT ?"
    )
    assert POSTGRES_DIALECT(query) == (
        "SELECT 1 FROM steps WHERE journey = $1 AND step IS NOT DISTINCT FROM $2 "
        "ORDER BY seq LIMIT $3"
    )
    statements = Statements.of(POSTGRES_DIALECT)
    assert statements.running_of.count("$") == 3
    assert "?" not in statements.running_of
    assert all("?" not in statement for statement in statements.merge)


def test_open_shared_store_refuses_a_database_workers_cannot_share(tmp_path: Any) -> None:
    from journeyman.storage import NotShared, open_shared_store

    url = f"sqlite:///{tmp_path / 'j.db'}"
    with pytest.raises(NotShared, match=f"a worker needs a PostgreSQL database, not {url}"):
        open_shared_store(url, "a worker")


def test_a_message_is_read_back_by_its_key_whatever_became_of_it(store: Database) -> None:
    async def check() -> None:
        news = struct_replace(send("k1"), topic="news")
        await store.commit(Changes(effects=[news, send("k2", profile="u2")]))
        (claimed, _) = await store.claim(START, 10)
        await store.settle([Delivered(claimed.id, "sent", "250 OK", START)])
        assert await store.sent_message("k1") == news
        assert (await store.sent_message("k2") or news).profile_id == "u2"
        assert await store.sent_message("k3") is None

    run(store, check)


def test_keep_history_makes_profiles_keeps_events_once_and_leaves_traits(
    store: Database,
) -> None:
    async def check() -> None:
        await store.commit(Changes(profiles={"u1": profile("u1", plan="pro")}))
        first = event("u1", "purchased", message_id="m1")
        rows = [
            HistoryRow("m1", "u1", "purchased", encode(first)),
            HistoryRow("m2", "u2", "purchased", encode(event("u2", "purchased", message_id="m2"))),
            HistoryRow("m1", "u1", "purchased", encode(first)),  # the same, twice in a batch
        ]
        assert await store.keep_history(rows, START) == 2
        assert await store.keep_history(rows[:1], START) == 0  # kept already
        assert await store.seen(["m1", "m2", "m3"]) == {"m1", "m2"}
        kept = await store.profile("u1")
        assert kept is not None
        assert kept.traits == {"plan": "pro"}  # an existing profile is left as it was
        assert await store.profile("u2") == Profile(id="u2")  # a new one, empty
        assert [s.event for s in await store.history("u1")] == [first]

    run(store, check)


def test_the_audit_gives_each_journeys_entries_newest_first_and_bounded(store: Database) -> None:
    first = AuditEntry(START, "sam", "console", "pause", "hello")
    stop = AuditEntry(START + MINUTE, "api", "api", "stop", "hello", count=3)
    published = AuditEntry(START + MINUTE, "ops", "api", "publish", workspace_version=2)
    other = AuditEntry(START, "serve", "serve", "publish", "other", None, 1, 1)

    async def test() -> None:
        assert await store.audit("hello", 10) == []
        await store.add_audit([first, stop])
        await store.add_audit([published, other])
        assert await store.audit("hello", 10) == [stop, first]
        assert await store.audit("hello", 1) == [stop]
        assert await store.audit("", 10) == [published]
        assert await store.audit("other", 10) == [other]

    run(store, test)
