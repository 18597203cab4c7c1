"""The one core: triggers in, the changes of one batch out.

:func:`apply` is what ``serve``, ``worker`` and ``journeyman test`` all run between reading
state and keeping it: for each trigger in order it finds the profile (by user id, by an
anonymous id that has signed in, or by email), drops what came before (an event by its
``messageId``, a delivery outcome learned already), folds an anonymous profile into the
known one when an ``identify`` links them, attaches the profile to its account on a
``group`` call (see :func:`_group`), runs the :class:`~journeyman.domain.engine.Engine`,
and carries its outcome into the profile's state, for the next trigger, and into
:class:`Changes`, for the store. The processor reads the state from the store (as
:class:`Snapshot` s) and commits the changes as they are; the simulator keeps both in
memory.

It is pure: no I/O and no clock (``now`` comes in). It needs what the store knew before
the batch (:class:`Known`) and a :class:`Snapshot` of every profile the triggers may
touch; :func:`lookups` and :func:`profiles_needed` say which, and :func:`accounts_needed`
which accounts (their traits) :class:`Known` must hold. The outcome does not depend
on how triggers are cut into batches: whatever a trigger changes counts for the next one
as if it had been stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec

from journeyman.domain.engine import Engine, Outcome
from journeyman.domain.ingest import normal_email
from journeyman.domain.merge import merge_profiles
from journeyman.domain.model import EventDefinition, Segment
from journeyman.domain.reactions import reaction_record, reaction_tallies
from journeyman.domain.segments import SEGMENT_EVENTS, backfill_reads
from journeyman.domain.state import (
    ACCOUNT_UPDATED,
    Account,
    Effect,
    Event,
    Instance,
    Profile,
    StepRecord,
    Tally,
    differs,
)

__all__ = [
    "ACCOUNT_UPDATED",
    "BACKFILL",
    "LIST",
    "Changes",
    "Delivered",
    "DeliveryResult",
    "Known",
    "Operate",
    "ProfileClock",
    "Snapshot",
    "Timer",
    "TimerDue",
    "Trigger",
    "accounts_needed",
    "apply",
    "backfill_trigger",
    "backfills_needed",
    "carry",
    "clock_id",
    "from_group",
    "links",
    "list_change",
    "lookups",
    "profile_of",
    "profiles_needed",
    "recorded_by_journeyman",
]

_replace = msgspec.structs.replace

REASON_LENGTH = 500  # of an engine failure's text in the trace
#: The type of the event that carries a change of a static list (see :func:`list_change`).
LIST = "list"
#: The type of the event that asks for a segment backfill of one profile (see
#: :func:`backfill_trigger`).
BACKFILL = "backfill"


# triggers


@dataclass(frozen=True, slots=True)
class TimerDue:
    """An instance's wake-up time has come; or, when ``instance_id`` is the profile's
    :func:`clock_id`, the profile's clock (see :class:`ProfileClock`)."""

    instance_id: str
    profile_id: str


def clock_id(profile_id: str) -> str:
    """The id a profile's clock goes by among timers: no instance's (no id holds a NUL)."""
    return "\x00" + profile_id


@dataclass(frozen=True, slots=True)
class ProfileClock:
    """A profile's clock: when its segments' answers can next change with no event
    (:attr:`Profile.wake_at`). Stores give it among due timers, beside instances."""

    profile_id: str
    wake_at: datetime

    @property
    def id(self) -> str:
        return clock_id(self.profile_id)


@dataclass(frozen=True, slots=True)
class Delivered:
    """What became of one delivery attempt of an outbox row (``id``)."""

    id: int
    status: Literal["sent", "retry", "failed"]
    detail: str
    at: datetime
    retry_at: datetime | None = None  # with status retry


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How a delivery went, for the engine.

    ``settled`` is what the store writes about the outbox row in the same commit: the
    domain only carries it into :attr:`Changes.deliveries`. An outcome that comes from
    another worker has its row settled already, and names it as ``told``: it applies only
    while the row still waits for the engine to learn it (see :attr:`Known.untold`), so an
    outcome that comes twice applies once.
    """

    effect: Effect
    ok: bool
    detail: str = ""
    settled: Delivered | None = None
    told: int | None = None  # the outbox row's id, for an outcome settled elsewhere


@dataclass(frozen=True, slots=True)
class Operate:
    """An operator's command for one instance: ``resume`` it, or ``stop`` it.

    ``seq``, for a resume, is the instance's step count when it was found held: the resume
    applies to that hold only, so one that comes again after the instance moved on (and
    maybe was held again) does nothing. A stop applies to whatever the instance does, and
    does nothing to an instance that has ended.
    """

    instance_id: str
    profile_id: str
    command: Literal["resume", "stop"]
    seq: int | None = None


Trigger = Event | TimerDue | DeliveryResult | Operate
#: What a store gives as due: a waiting instance, or a profile's clock.
Timer = Instance | ProfileClock


# state in, changes out


@dataclass(slots=True)
class Snapshot:
    """A profile as the engine needs it: its traits and its running instances."""

    profile: Profile
    running: list[Instance]
    new: bool = False  # no such profile is stored yet


@dataclass(slots=True)
class Known:
    """What the store knew before the batch, as far as the triggers need it.

    :func:`apply` adds the messageIds it accepts to ``seen`` and takes the outbox rows it
    learns out of ``untold``.
    """

    identities: Mapping[tuple[str, str], str] = field(default_factory=dict)  # -> profile id
    seen: set[str] = field(default_factory=set)  # messageIds accepted before
    untold: set[int] = field(default_factory=set)  # settled rows the engine has not learned
    # instances that outcomes are for, found where the profile's running ones are not
    instances: Mapping[str, Instance] = field(default_factory=dict)
    # the accounts of the profiles and of the group calls (see accounts_needed), by id;
    # apply keeps them up to each group call
    accounts: dict[str, Account] = field(default_factory=dict)
    # profile id -> its stored events that its backfill triggers read (backfills_needed)
    logs: Mapping[str, Sequence[Event]] = field(default_factory=dict)


@dataclass(slots=True)
class Changes:
    """Everything one pass changed, to keep in one transaction (``Store.commit``)."""

    at: datetime | None = None  # when: the time the events are kept as received
    events: list[Event] = field(default_factory=list)  # accepted, with their profile
    profiles: dict[str, Profile] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    identities: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, value) -> id
    # (kind, value, profile id): identities the profile no longer has, such as an old email
    forgotten: list[tuple[str, str, str]] = field(default_factory=list)
    # (anonymous id, known id): everything of the anonymous profile moves to the known one
    merges: list[tuple[str, str]] = field(default_factory=list)
    told: list[int] = field(default_factory=list)  # outbox rows whose outcome was learned
    # delivery attempts to settle: the outcomes applied now (see DeliveryResult.settled)
    deliveries: list[Delivered] = field(default_factory=list)
    # triggers the engine raised on (each failed alone; see Engine.on_crash), for the log
    crashes: list[tuple[Trigger, Exception]] = field(default_factory=list)
    # account id -> the traits group calls changed (None: removed), to merge key by key
    # into the stored ones; an account named with no traits is {} (it is kept all the same)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # report counters to add to, in the same commit (see journeyman.domain.goals)
    tallies: list[Tally] = field(default_factory=list)

    def __bool__(self) -> bool:
        """Whether there is anything to keep (crashes are only for the log)."""
        return any(
            (
                self.events,
                self.profiles,
                self.instances,
                self.effects,
                self.records,
                self.deliveries,
                self.forgotten,
                self.merges,
                self.told,
                self.accounts,
                self.tallies,
            )
        )


def apply(
    engine: Engine,
    snapshots: Mapping[str, Snapshot],
    triggers: Iterable[Trigger],
    now: datetime,
    known: Known,
    *,
    quiet: bool = False,
) -> tuple[list[str], Changes]:
    """Each trigger's result (``accepted``, ``duplicate``, or for a timer that moved its
    instance on, ``fired``) and the changes of all of them, in order.

    ``snapshots`` are brought up to each trigger as it runs; every profile that
    :func:`profiles_needed` names must be in it. Never raises for a fault of the engine's:
    the trigger fails alone, and is listed in :attr:`Changes.crashes`. With ``quiet``, the
    events are only kept (an import): see :meth:`Engine.on_record`.
    """
    changes = Changes(at=now)
    definitions = engine.workspace.events
    results = []
    for trigger in triggers:
        if isinstance(trigger, Event):
            if trigger.message_id is not None and _seen_before(trigger.message_id, known):
                results.append("duplicate")
            else:
                results.append(
                    _event(engine, snapshots, trigger, now, known, changes, definitions, quiet)
                )
        elif isinstance(trigger, DeliveryResult) and _told_before(trigger, known, changes):
            results.append("duplicate")
        else:
            results.append(_other(engine, snapshots, trigger, now, known, changes))
            if isinstance(trigger, DeliveryResult) and trigger.settled is not None:
                changes.deliveries.append(trigger.settled)
    return results, changes


def _event(
    engine: Engine,
    snapshots: Mapping[str, Snapshot],
    event: Event,
    now: datetime,
    known: Known,
    changes: Changes,
    definitions: Mapping[str, EventDefinition],
    quiet: bool = False,
) -> str:
    event = _resolved(event, snapshots, known, changes, definitions)
    if event.type == LIST:
        return _list(engine, snapshots[event.profile_id], event, now, known, changes)
    if event.type == BACKFILL:
        return _backfill(engine, snapshots[event.profile_id], event, now, known, changes)
    folded = _merge(event, snapshots, changes, now) if links(event) else None
    snapshot = snapshots[event.profile_id]
    filled = _fill_traits(snapshot, event, changes)
    merged = folded is not None
    if event.type == "group":
        changes.events.append(event)
        updated = _group(snapshot, event, known, changes)
        if updated is None:  # nothing of the account changed: no journey reads a group call
            _made(snapshot, changes)
            if filled or merged:
                _carry_out(
                    snapshot,
                    _traits_filled(engine, snapshot, event, now, known, changes, quiet, merged),
                    changes,
                )
            return "accepted"
        event = updated
    account = _account(snapshot, known)
    try:
        if event.type == "alias":  # it only links two ids: no journey reads it
            outcome = Outcome(snapshot.profile)
            if filled or merged:
                outcome = _traits_filled(
                    engine, snapshot, event, now, known, changes, quiet, merged
                )
        elif quiet:
            outcome = engine.on_record(snapshot.profile, event, now, filled=filled, merged=merged)
        else:
            outcome = engine.on_event(
                snapshot.profile,
                snapshot.running,
                event,
                now,
                account=account,
                filled=filled,
                merged=merged,
            )
    except Exception as error:
        outcome = _crashed(engine, snapshot, event, error, now, changes)
    changes.events.append(event)
    record = reaction_record(event)
    if record is not None:
        changes.records.append(record)
        changes.tallies += reaction_tallies(event, record)
    _made(snapshot, changes)
    _carry_out(snapshot, outcome, changes)
    return "accepted"


def _traits_filled(
    engine: Engine,
    snapshot: Snapshot,
    event: Event,
    now: datetime,
    known: Known,
    changes: Changes,
    quiet: bool,
    merged: bool,
) -> Outcome:
    """The segments that read traits (every segment, when ``merged``), evaluated after a
    call no journey reads (a group call, an alias) gave the profile traits from its
    context, or folded another profile into it."""
    account = _account(snapshot, known)
    try:
        return engine.on_traits(
            snapshot.profile,
            snapshot.running,
            now,
            account=account,
            react=not quiet,
            merged=merged,
        )
    except Exception as error:
        return _crashed(engine, snapshot, event, error, now, changes)


def _made(snapshot: Snapshot, changes: Changes) -> None:
    if snapshot.new:  # an event makes its profile, traits or not
        changes.profiles.setdefault(snapshot.profile.id, snapshot.profile)
        snapshot.new = False


# accounts


def accounts_needed(snapshots: Mapping[str, Snapshot], triggers: Iterable[Trigger]) -> set[str]:
    """The accounts :func:`apply` reads: those of the profiles in ``snapshots`` and those
    the group calls among ``triggers`` name."""
    needed = {s.profile.account for s in snapshots.values() if s.profile.account is not None}
    for trigger in triggers:
        if isinstance(trigger, Event) and trigger.group_id is not None:
            needed.add(trigger.group_id)
    return needed


def recorded_by_journeyman(event: Event) -> bool:
    """Whether journeyman recorded the event itself in :attr:`Changes.events` (a segment
    change, the account_updated of a group call), rather than taking it as a call."""
    return from_group(event) or event.name in SEGMENT_EVENTS


def from_group(event: Event) -> bool:
    """Whether the event is the :data:`ACCOUNT_UPDATED` a group call recorded, rather than
    a call of its own (it follows its group call in :attr:`Changes.events`)."""
    return event.type == "track" and event.group_id is not None


def _account(snapshot: Snapshot, known: Known) -> Account | None:
    """The profile's account as it is at this point of the batch, or None if it has none."""
    account_id = snapshot.profile.account
    if account_id is None:
        return None
    return known.accounts.get(account_id) or Account(id=account_id)


def _group(snapshot: Snapshot, event: Event, known: Known, changes: Changes) -> Event | None:
    """A group call: the profile belongs to the account from now on (the latest call wins)
    and the account takes the call's traits, key by key (null removes one). When that
    changed any trait, the event :data:`ACCOUNT_UPDATED` on this profile, with the changed
    traits as its properties, for journeys to enter on or wait for; else None.

    The other members of the account read the new traits from their next trigger on, but
    get no event: fanning one out to every member is not done.
    """
    account_id = event.group_id
    assert account_id is not None
    before = known.accounts.get(account_id) or Account(id=account_id)
    changed = {k: v for k, v in event.properties.items() if differs(before.traits, k, v)}
    known.accounts[account_id] = before.patched(changed)
    changes.accounts.setdefault(account_id, {}).update(changed)
    profile = snapshot.profile
    if profile.account != account_id:
        left = f" (it left account {profile.account})" if profile.account is not None else ""
        snapshot.profile = _replace(profile, account=account_id)
        changes.profiles[profile.id] = snapshot.profile
        changes.records.append(
            StepRecord(
                at=event.timestamp,
                profile_id=profile.id,
                journey="",
                instance_id=None,
                step=None,
                outcome="account",
                detail=f"attached to account {account_id}{left}"[:REASON_LENGTH],
            )
        )
    if not changed:
        return None
    return _replace(event, name=ACCOUNT_UPDATED, type="track", properties=changed, message_id=None)


def _other(
    engine: Engine,
    snapshots: Mapping[str, Snapshot],
    trigger: TimerDue | DeliveryResult | Operate,
    now: datetime,
    known: Known,
    changes: Changes,
) -> str:
    if isinstance(trigger, TimerDue) and trigger.instance_id == clock_id(trigger.profile_id):
        return _clock(engine, snapshots[trigger.profile_id], now, known, changes)
    if isinstance(trigger, DeliveryResult):
        snapshot, target = _delivered(snapshots, trigger, known, changes)
    else:
        snapshot = snapshots[trigger.profile_id]
        target = _find(snapshot.running, trigger.instance_id)  # None: it ended or moved on
        held = trigger.seq if isinstance(trigger, Operate) else None
        if target is not None and held is not None and target.seq != held:
            target = None  # it moved on since the command was given
    if target is None:
        return "accepted"
    try:
        outcome = _run(engine, snapshot, trigger, target, now, _account(snapshot, known))
    except Exception as error:
        outcome = _crashed(engine, snapshot, trigger, error, now, changes, target)
    _carry_out(snapshot, outcome, changes)
    fired = isinstance(trigger, TimerDue) and bool(outcome.instances)
    return "fired" if fired else "accepted"


def _clock(
    engine: Engine, snapshot: Snapshot, now: datetime, known: Known, changes: Changes
) -> str:
    """The profile's clock came: its segments that move with time are evaluated again."""
    profile = snapshot.profile
    if snapshot.new or profile.wake_at is None or profile.wake_at > now:
        return "accepted"  # a clock that moved on since it was claimed, or a merged profile
    try:
        outcome = engine.on_clock(profile, snapshot.running, now, account=_account(snapshot, known))
    except Exception as error:
        # It would come due again at once, and fail the same way: its due wakes are dropped.
        changes.crashes.append((TimerDue(clock_id(profile.id), profile.id), error))
        wakes = {name: at for name, at in profile.wakes.items() if at > now}
        schedules = {name: at for name, at in profile.schedules.items() if at > now}
        outcome = Outcome(_replace(profile, wakes=wakes, schedules=schedules), profile_changed=True)
    _carry_out(snapshot, outcome, changes)
    return "fired"


def list_change(
    segment: str, entered: bool, now: datetime, user_id: str = "", email: str = ""
) -> Event:
    """A change of a static list (``kind: segment`` with ``list: true``), as a trigger:
    the profile named by ``user_id`` (or else by ``email``, as an event named by email
    finds it) is added to the list, or removed."""
    properties: dict[str, Any] = {"segment": segment, "entered": entered}
    if not user_id:
        properties["email"] = email
    return Event(
        name="segment_list",
        profile_id=user_id or normal_email(email),
        timestamp=now,
        properties=properties,
        type=LIST,
        user_id=user_id or None,
    )


def _list(
    engine: Engine, snapshot: Snapshot, event: Event, now: datetime, known: Known, changes: Changes
) -> str:
    """A list change: the request is not kept as an event; the segment event it makes is."""
    segment, entered = event.properties.get("segment"), event.properties.get("entered")
    if not isinstance(segment, str) or not isinstance(entered, bool):
        return "accepted"
    try:
        outcome = engine.on_list(
            snapshot.profile,
            snapshot.running,
            segment,
            entered,
            now,
            account=_account(snapshot, known),
        )
    except Exception as error:
        outcome = _crashed(engine, snapshot, event, error, now, changes)
    _made(snapshot, changes)
    _carry_out(snapshot, outcome, changes)
    return "accepted"


def backfill_trigger(profile_id: str, segments: Sequence[str], now: datetime) -> Event:
    """The trigger that backfills ``segments`` for one profile: taken in as an event is
    (so that on a bus, only the owner of the profile's partition applies it), never kept."""
    return Event(
        name="segment_backfill",
        profile_id=profile_id,
        timestamp=now,
        properties={"segments": list(segments)},
        type=BACKFILL,
        user_id=profile_id,
    )


def _backfilled(event: Event) -> list[str]:
    names = event.properties.get("segments")
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def backfills_needed(
    triggers: Iterable[Trigger], segments: Mapping[str, Segment]
) -> dict[str, frozenset[str]]:
    """Profile id -> the events whose stored log its backfill triggers read (the store
    gives them as :attr:`Known.logs`)."""
    needed: dict[str, frozenset[str]] = {}
    for trigger in triggers:
        if isinstance(trigger, Event) and trigger.type == BACKFILL:
            reads = backfill_reads(segments, _backfilled(trigger))
            if reads:
                needed[trigger.profile_id] = needed.get(trigger.profile_id, frozenset()) | reads
    return needed


def _backfill(
    engine: Engine, snapshot: Snapshot, event: Event, now: datetime, known: Known, changes: Changes
) -> str:
    """A backfill of one profile: its history made again from its stored events (and those
    of this batch so far), its segments evaluated. A profile that is not stored (merged
    into another since) has nothing to backfill."""
    if snapshot.new:
        return "accepted"
    segments = _backfilled(event)
    profile_id = snapshot.profile.id
    reads = backfill_reads(engine.workspace.segments, segments)
    log = [e for e in known.logs.get(profile_id, ()) if e.name in reads]
    log += (e for e in changes.events if e.profile_id == profile_id and e.name in reads)
    try:
        outcome = engine.on_backfill(snapshot.profile, segments, log, now)
    except Exception as error:
        outcome = _crashed(engine, snapshot, event, error, now, changes)
    _carry_out(snapshot, outcome, changes)
    return "accepted"


def _delivered(
    snapshots: Mapping[str, Snapshot], trigger: DeliveryResult, known: Known, changes: Changes
) -> tuple[Snapshot, Instance | None]:
    """The profile that has the instance an outcome is for (after a merge, the known one,
    whatever the effect says), and that instance, ended or not."""
    instance_id = trigger.effect.instance_id
    latest = changes.instances.get(instance_id) or known.instances.get(instance_id)
    snapshot = snapshots[latest.profile_id if latest else trigger.effect.profile_id]
    return snapshot, _find(snapshot.running, instance_id) or latest


def _run(
    engine: Engine,
    snapshot: Snapshot,
    trigger: Trigger,
    target: Instance,
    now: datetime,
    account: Account | None,
) -> Outcome:
    """The engine on one trigger other than an event, for the instance ``target``."""
    profile, running = snapshot.profile, snapshot.running
    if isinstance(trigger, TimerDue):
        return engine.on_timer(profile, running, target, now, account=account)
    if isinstance(trigger, Operate):
        if trigger.command == "stop":
            return engine.on_stop(profile, target, now)
        return engine.on_resume(profile, running, target, now, account=account)
    assert isinstance(trigger, DeliveryResult)
    step = trigger.effect.step
    if trigger.ok:
        return engine.on_delivered(profile, running, target, step, now, account=account)
    return engine.on_failure(profile, running, target, step, trigger.detail, now, account=account)


def _crashed(
    engine: Engine,
    snapshot: Snapshot,
    trigger: Trigger,
    error: Exception,
    now: datetime,
    changes: Changes,
    target: Instance | None = None,
) -> Outcome:
    """The engine raised: the trigger fails alone (failing the batch would fail every other
    trigger in it, and the trigger would come back to fail the same way for ever)."""
    changes.crashes.append((trigger, error))
    reason = f"the engine failed: {error!r}"[:REASON_LENGTH]
    failed = trigger if isinstance(trigger, Event) else target
    assert failed is not None
    return engine.on_crash(snapshot.profile, snapshot.running, failed, reason, now)


def _seen_before(message_id: str, known: Known) -> bool:
    """Whether an event with this messageId was accepted before; if not, it is now."""
    if message_id in known.seen:
        return True
    known.seen.add(message_id)
    return False


def _told_before(trigger: DeliveryResult, known: Known, changes: Changes) -> bool:
    """Whether an outcome settled elsewhere was learned before (by its outbox row); if
    not, it is now."""
    if trigger.told is None:
        return False
    if trigger.told not in known.untold:
        return True
    known.untold.discard(trigger.told)
    changes.told.append(trigger.told)
    return False


# identities


def lookups(
    triggers: Iterable[Trigger], definitions: Mapping[str, EventDefinition]
) -> list[tuple[str, str]]:
    """The identities to look up in the store before :func:`apply`: the email of each
    event that names its profile by email, and the anonymous id of each event without a
    user id (the visitor may have signed in since)."""
    found = []
    for trigger in triggers:
        if isinstance(trigger, Event):
            key = _named_by(trigger, definitions)
            if key is not None:
                found.append(key)
    return found


def profiles_needed(
    triggers: Iterable[Trigger],
    definitions: Mapping[str, EventDefinition],
    identities: Mapping[tuple[str, str], str],
) -> set[str]:
    """The profiles :func:`apply` may read, given what ``identities`` were found: each
    trigger's, each anonymous profile an ``identify`` folds into a known one, and the
    address of each event named by email (its profile, if no one has it by then).

    A profile that a trigger finds through an identity given earlier in the same batch is
    the profile of that earlier trigger, so it is in the set already.
    """
    needed = set()
    for trigger in triggers:
        if not isinstance(trigger, Event):
            needed.add(profile_of(trigger))
            continue
        key = _named_by(trigger, definitions)
        needed.add(key[1] if key is not None and key[0] == "email" else trigger.profile_id)
        owner = identities.get(key) if key is not None else None
        if owner is not None:
            needed.add(owner)
        if links(trigger):
            assert trigger.anonymous_id is not None
            needed.add(trigger.anonymous_id)
    return needed


def _resolved(
    event: Event,
    snapshots: Mapping[str, Snapshot],
    known: Known,
    changes: Changes,
    definitions: Mapping[str, EventDefinition],
) -> Event:
    """The event for the profile that has its identity at this point of the batch.

    An event named by email goes to the profile with that email, or starts a profile keyed
    by the address, with the address as its email. An event with an anonymous id only
    goes to the profile the visitor signed in as, if they did.
    """
    key = _named_by(event, definitions)
    if key is None:
        return event
    if key[0] == "email":
        return _by_email(event, key[1], snapshots, known, changes)
    owner = _owner(key, known, changes)
    return event if owner is None else _replace(event, profile_id=owner)


def _named_by(event: Event, definitions: Mapping[str, EventDefinition]) -> tuple[str, str] | None:
    """The identity that names the event's profile, when it is not the event's own id:
    its email, if its definition says so (or a list change names an email), or its
    anonymous id, if it has no user id."""
    if event.type == LIST:
        email = event.properties.get("email")
        return ("email", normal_email(email)) if isinstance(email, str) else None
    if event.type in _ACTIONS:
        definition = definitions.get(event.name)
        if definition is not None and definition.identity == "email":
            return "email", normal_email(str(event.properties.get("email")))
    if event.user_id is None and event.anonymous_id is not None:
        return "anonymousId", event.anonymous_id
    return None


def _by_email(
    event: Event, email: str, snapshots: Mapping[str, Snapshot], known: Known, changes: Changes
) -> Event:
    profile_id = _owner(("email", email), known, changes) or email
    if profile_id != event.profile_id:
        event = _replace(event, profile_id=profile_id)
    snapshot = snapshots[profile_id]
    if snapshot.new and profile_id == email:
        snapshot.profile = Profile(id=email, traits={"email": email})
        changes.profiles[email] = snapshot.profile
        changes.identities[("email", email)] = email
    return event


def _owner(key: tuple[str, str], known: Known, changes: Changes) -> str | None:
    """Who has the identity now: as given in this batch, else as stored, unless this batch
    took it away."""
    owner = changes.identities.get(key)
    if owner is not None:
        return owner
    owner = known.identities.get(key)
    if owner is not None and changes.forgotten and (*key, owner) in changes.forgotten:
        return None
    return owner


# The calls that say what a profile did: journeys enter on them and wait for them.
_ACTIONS = ("track", "page", "screen")


def links(event: Event) -> bool:
    """Whether the event says an anonymous id (or, for an alias, a previous id) and a user
    id are one person."""
    return (
        event.type in ("identify", "alias")
        and event.user_id is not None
        and event.anonymous_id is not None
        and event.anonymous_id != event.user_id
    )


def profile_of(trigger: Trigger) -> str:
    """The profile a trigger names (an event's before it is resolved)."""
    if isinstance(trigger, DeliveryResult):
        return trigger.effect.profile_id
    return trigger.profile_id


# carrying changes


def _fill_traits(snapshot: Snapshot, event: Event, changes: Changes) -> bool:
    """Give the profile the traits the call's context tells and it does not have yet:
    ``timezone`` and ``locale``, and for a call other than an identify (whose traits are
    set by the engine) those of ``context.traits``. An identify is what changes a trait.
    Whether it gave any (then the segments that read traits are evaluated again)."""
    context = event.context
    if not context:
        return False
    found: dict[str, Any] = {k: context[k] for k in ("timezone", "locale") if k in context}
    if event.type != "identify":
        found.update(context.get("traits", {}))
    traits = snapshot.profile.traits
    missing = {k: v for k, v in found.items() if v is not None and k not in traits}
    if not missing:
        return False
    profile = _replace(snapshot.profile, traits={**traits, **missing})
    email = missing.get("email")
    if isinstance(email, str) and email:
        changes.identities[("email", normal_email(email))] = profile.id
    snapshot.profile = profile
    changes.profiles[profile.id] = profile
    return True


def _merge(
    event: Event, snapshots: Mapping[str, Snapshot], changes: Changes, now: datetime
) -> Profile | None:
    """Fold the anonymous profile (or, for an alias, the previous id's) into the known one,
    once; remember they are one. The profile folded in, if there was one (then the known
    profile's traits and history may have changed: its segments are evaluated again)."""
    assert event.anonymous_id is not None
    anonymous_id, known_id = event.anonymous_id, event.profile_id
    anonymous = snapshots[anonymous_id]
    changes.identities[("anonymousId", anonymous_id)] = known_id
    if anonymous.new:
        return None
    known = snapshots[known_id]
    merged = merge_profiles(
        known.profile, known.running, anonymous.profile, anonymous.running, now, event.type
    )
    known.profile, known.running, known.new = merged.profile, merged.running, False
    _move(changes, anonymous_id, known_id)
    email = anonymous.profile.traits.get("email")
    if isinstance(email, str) and email:  # the store moves the identities it holds, too
        changes.identities[("email", normal_email(email))] = known_id
    changes.profiles[known_id] = merged.profile
    changes.profiles.pop(anonymous_id, None)
    changes.instances.update((i.id, i) for i in merged.changed)
    changes.records.extend(merged.records)
    changes.tallies.extend(merged.tallies)
    changes.merges.append((anonymous_id, known_id))
    folded = anonymous.profile
    anonymous.profile, anonymous.running, anonymous.new = Profile(id=anonymous_id), [], True
    return folded


def _move(changes: Changes, anonymous: str, known: str) -> None:
    """Give what this batch made for the anonymous profile so far to the known one, as the
    store does with what it holds: the batch comes out the same wherever it is cut."""
    changes.events[:] = _moved(changes.events, anonymous, known)
    changes.records[:] = _moved(changes.records, anonymous, known)
    changes.effects[:] = _moved(changes.effects, anonymous, known)
    for instance_id, instance in changes.instances.items():
        if instance.profile_id == anonymous:
            changes.instances[instance_id] = _replace(instance, profile_id=known)
    for identity, owner in changes.identities.items():
        if owner == anonymous:
            changes.identities[identity] = known
    changes.forgotten[:] = [
        (kind, value, known if owner == anonymous else owner)
        for kind, value, owner in changes.forgotten
    ]


_Owned = TypeVar("_Owned", Event, StepRecord, Effect)


def _moved(items: Sequence[_Owned], anonymous: str, known: str) -> list[_Owned]:
    return [_replace(i, profile_id=known) if i.profile_id == anonymous else i for i in items]


def _find(running: Sequence[Instance], instance_id: str) -> Instance | None:
    for instance in running:
        if instance.id == instance_id:
            return instance
    return None


def _carry_out(snapshot: Snapshot, outcome: Outcome, changes: Changes) -> None:
    """Carry an outcome into the snapshot (for the next trigger) and the changes."""
    if outcome.profile_changed:
        before = snapshot.profile.traits.get("email")
        snapshot.profile = outcome.profile
        changes.profiles[outcome.profile.id] = outcome.profile
        email = outcome.profile.traits.get("email")
        if email != before:  # the profile has the identity from when it got the email on
            if isinstance(before, str) and before:
                changes.forgotten.append(("email", normal_email(before), outcome.profile.id))
            if isinstance(email, str) and email:
                changes.identities[("email", normal_email(email))] = outcome.profile.id
    if outcome.instances:
        changes.instances.update(outcome.instances)
        snapshot.running = carry(snapshot.running, outcome.instances.values())
    if outcome.effects:
        changes.effects.extend(outcome.effects)
    changes.events.extend(outcome.events)  # segment changes, after the trigger's own event
    changes.records.extend(outcome.records)
    changes.tallies.extend(outcome.tallies)


def carry(running: list[Instance], changed: Iterable[Instance]) -> list[Instance]:
    """The running instances after ``changed``: running ones replace or join, ended ones
    leave."""
    found = {i.id: i for i in running}
    for instance in changed:
        if instance.status == "ended":
            found.pop(instance.id, None)
        else:
            found[instance.id] = instance
    return list(found.values())
