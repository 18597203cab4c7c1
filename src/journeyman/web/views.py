"""What each console page shows, as plain data: the pages render it, the admin API sends it.

Every function here reads a running :class:`Runtime` and returns JSON-ready dicts, so a
page and its JSON twin can never disagree.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import itertools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import yaml

from journeyman.channels.catcher import MailCatcher
from journeyman.domain import funnel
from journeyman.domain import model as m
from journeyman.domain.ingest import normal_email
from journeyman.domain.parse import compile_journey
from journeyman.domain.reactions import ENGAGEMENT, REACTION_OUTCOMES
from journeyman.domain.segments import SEGMENT_EVENTS
from journeyman.domain.state import Account, Event, Profile, StepRecord
from journeyman.errors import JourneymanError
from journeyman.runtime.audit import AUDIT_SHOWN
from journeyman.runtime.processor import Overloaded
from journeyman.runtime.publish import origin
from journeyman.runtime.service import Runtime
from journeyman.runtime.tail import TailEntry
from journeyman.storage.base import DeadLetter, MessageRow
from journeyman.web.consent_view import AUDIT_EVENTS, audit
from journeyman.web.layout import ENTRY
from journeyman.workspace import Loaded, load_workspace

__all__ = [
    "SAMPLE_PROFILE",
    "STEP_NUMBERS",
    "ReplayFailed",
    "caught_mail",
    "dead_letter",
    "dead_letters",
    "event_tail",
    "explain",
    "find_journey",
    "instance_path",
    "journey_at",
    "journey_audit",
    "journey_counts",
    "journey_versions",
    "journeys_overview",
    "load_folder",
    "node_counts",
    "outcomes_shown",
    "profile_owners",
    "profile_page",
    "profile_search",
    "profile_view",
    "record",
    "removed_journeys",
    "render_template",
    "replay_dead_letter",
    "step_detail",
    "version_of",
    "workspace_status",
]

RECENT_EVENTS = 50  # of a profile, shown with it
# The profile a template is shown with when no real profile has reached the step yet.
SAMPLE_PROFILE = {
    "id": "sample",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "email": "ada@example.com",
    "phone": "+15550100",
    "plan": "pro",
}


def record(item: StepRecord) -> dict[str, Any]:
    return {
        "at": item.at,
        "profile_id": item.profile_id,
        "instance_id": item.instance_id,
        "journey": item.journey,
        "step": item.step,
        "outcome": item.outcome,
        "detail": item.detail,
    }


# journeys


async def journeys_overview(runtime: Runtime, now: datetime) -> list[dict[str, Any]]:
    """Every journey with its state and numbers: entries in the last hour and day,
    instances waiting, how many reached an end, and errors."""
    reads = runtime.reads
    states = await runtime.store.journey_states()
    instances = await reads.instance_counts()
    found = []
    removed = await removed_journeys(runtime)
    gone = {journey.name for journey in removed}
    for journey in [*runtime.workspace.journeys.values(), *removed]:
        counts = await reads.step_counts(journey.name)
        entered = counts.get("", {}).get("entered", 0)
        completed = sum(
            counts.get(step.id, {}).get("ended", 0)
            for step in journey.steps.values()
            if isinstance(step, m.End)
        )
        found.append(
            {
                "name": journey.name,
                "version": journey.version,
                "state": "removed" if journey.name in gone else states.get(journey.name, "active"),
                "entry": journey.entry_event,
                "description": journey.document.get("description", ""),
                "steps_count": len(journey.steps),
                "entered": entered,
                "entered_last_hour": await reads.entries_since(
                    journey.name, now - timedelta(hours=1)
                ),
                "entered_last_day": await reads.entries_since(
                    journey.name, now - timedelta(days=1)
                ),
                "waiting": instances.get((journey.name, "waiting"), 0),
                "ended": instances.get((journey.name, "ended"), 0),
                "completion_rate": round(completed / entered, 4) if entered else None,
                "errors": sum(c.get("failed", 0) for c in counts.values()),
            }
        )
    return found


# What the numbers of a step mean, and how they are worked out: one definition for the
# graph, the API's ``numbers`` and the report (journeyman.domain.funnel).
STEP_NUMBERS = funnel.STEP_NUMBERS
node_counts = funnel.step_numbers


def outcomes_shown(counts: Mapping[str, int]) -> dict[str, int]:
    """A step's records by outcome, without what the numbers or the engagement say."""
    return {
        k: n
        for k, n in counts.items()
        if k not in ("waiting_now", "left") and not k.startswith("unique_")
    }


def engagement(step: m.Step | None, counts: Mapping[str, int]) -> dict[str, Any] | None:
    """What customers did with a send step's messages: how many were sent, and of those
    how many were delivered, opened (by a person, and apart by a mail provider's proxy),
    clicked, bounced, complained or unsubscribed, each counted once per instance, with its
    rate of the sent; None for any other step."""
    if not isinstance(step, m.Send):
        return None
    sent = counts.get("sent", 0)
    found: dict[str, Any] = {"sent": sent}
    rates: dict[str, float | None] = {}
    for outcome in ENGAGEMENT:
        n = counts.get(f"unique_{outcome}", 0)
        found[outcome] = n
        rates[outcome] = round(n / sent, 4) if sent else None
    found["clicks"] = counts.get("clicked", 0)  # every click, a person clicking twice too
    found["rates"] = rates
    return found


async def journey_counts(
    runtime: Runtime, journey: m.Journey, version: int | None, removed: bool = False
) -> dict[str, Any]:
    """Live numbers for every box of the graph of ``journey`` (one version of it), keyed by
    step id: of that version's instances, or of every version's with ``version`` None."""
    counts = await runtime.reads.step_counts(journey.name, version)
    entry = counts.get("", {})
    nodes: dict[str, Any] = {
        ENTRY: {
            "entered": entry.get("entered", 0),
            "not_entered": entry.get("not_entered", 0),
        }
    }
    for step in journey.steps.values():
        mine = counts.get(step.id, {})
        nodes[step.id] = node_counts(step, mine) | {"outcomes": mine}
        reactions = engagement(step, mine)
        if reactions is not None:
            nodes[step.id]["engagement"] = reactions
    states = await runtime.store.journey_states()
    return {
        "name": journey.name,
        "version": journey.version,
        "counts_version": "all" if version is None else version,
        "state": "removed" if removed else states.get(journey.name, "active"),
        "nodes": nodes,
    }


async def journey_audit(runtime: Runtime, name: str) -> list[dict[str, Any]]:
    """Who paused, resumed, stopped or published the journey, and when: newest first."""
    return [entry.as_dict() for entry in await runtime.reads.audit(name, AUDIT_SHOWN)]


async def find_journey(runtime: Runtime, name: str) -> tuple[m.Journey, bool] | None:
    """The journey ``name`` of the workspace, else the last published version of a journey
    removed from it (True): its instances may still run, and an operator may stop them."""
    journey = runtime.workspace.journeys.get(name)
    if journey is not None:
        return journey, False
    published = (await runtime.store.published()).get(name)
    if published is None:
        return None
    found = journey_at(runtime, name, published.version, published.document)
    return (found, True) if found is not None else None


async def removed_journeys(runtime: Runtime) -> list[m.Journey]:
    """The last published version of every journey the workspace no longer has, by name."""
    published = await runtime.store.published()
    found = []
    for name in sorted(set(published) - set(runtime.workspace.journeys)):
        journey = journey_at(runtime, name, published[name].version, published[name].document)
        if journey is not None:
            found.append(journey)
    return found


async def version_of(runtime: Runtime, journey: m.Journey, version: int) -> m.Journey | None:
    """Version ``version`` of ``journey``, as it was published (None if there is none)."""
    if version == journey.version:
        return journey
    document = await runtime.store.journey_document(journey.name, version)
    return journey_at(runtime, journey.name, version, document) if document else None


def journey_at(
    runtime: Runtime, name: str, version: int, document: dict[str, Any]
) -> m.Journey | None:
    """A stored version, compiled: the runtime's own if it keeps it for running instances."""
    kept = runtime.versions(name, version)
    if kept is not None:
        return kept
    found = compile_journey(document, f"{name} v{version}")
    return dataclasses.replace(found, version=version) if found is not None else None


async def step_detail(
    runtime: Runtime, journey: m.Journey, step_id: str, now: datetime, version: int | None = None
) -> dict[str, Any]:
    """One box of the graph: its definition, the last instances that passed it (of one
    version, or of every version with ``version`` None) and, for a send, its template
    rendered for the latest of their profiles (or a sample one)."""
    step = journey.steps.get(step_id)
    entry = step_id == ENTRY
    step_or_entry = None if entry else step_id
    records = await runtime.reads.step_records(journey.name, step_or_entry, 20, version)
    definition: Any = _entry_document(journey) if entry else _step_document(journey, step_id)
    found: dict[str, Any] = {
        "id": step_id,
        "type": "entry" if entry else (step.kind if step else ""),
        "definition": definition,
        "definition_yaml": yaml.safe_dump(definition, sort_keys=False, allow_unicode=True),
        "records": [record(r) for r in records],
        "preview": None,
    }
    if isinstance(step, m.Send):
        found["preview"] = await _preview(runtime, journey, step.template, records, now)
    return found


def _entry_document(journey: m.Journey) -> dict[str, Any]:
    keys = ("entry", "reentry", "timeout", "exit", "ignore_caps")
    return {key: journey.document[key] for key in keys if key in journey.document}


def _step_document(journey: m.Journey, step_id: str) -> Any:
    for item in journey.document.get("steps", []):
        if isinstance(item, dict) and item.get("id") == step_id:
            return item
    return {}


async def _preview(
    runtime: Runtime,
    journey: m.Journey,
    template_name: str,
    records: list[StepRecord],
    now: datetime,
) -> dict[str, Any] | None:
    """The template rendered for the newest profile that reached the step, else a sample."""
    template = runtime.workspace.templates.get(template_name)
    if template is None:
        return None
    profile, entry = (
        dict(SAMPLE_PROFILE),
        Event(name=journey.entry_event, profile_id="sample", timestamp=now),
    )
    account: dict[str, Any] = {}
    for item in records:
        instance = await runtime.store.instance(item.instance_id) if item.instance_id else None
        stored = await runtime.reads.profile(item.profile_id)
        if instance is not None and stored is not None:
            profile, entry = stored.view(), instance.entry
            found = await runtime.reads.account(stored.account) if stored.account else None
            account = found.view() if found is not None else {}
            break
    fields = render_template(template, profile, entry, journey, now, account)
    return {
        "template": template.name,
        "channel": template.channel,
        "profile": profile["id"],
        "fields": fields,
        # Which fields HTML-escape the values they output (the html of an email).
        "escaped": sorted(name for name, part in template.fields.items() if part.escapes),
    }


def render_template(
    template: m.MessageTemplate,
    profile: Mapping[str, Any],
    entry: Event,
    journey: m.Journey,
    now: datetime,
    account: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    scope = {
        "profile": profile,
        "account": account or {},
        "event": entry.view(),
        "entry": entry.view(),
        "journey": {"name": journey.name, "version": journey.version},
        "now": now,
    }
    return {name: field.render(scope) for name, field in template.fields.items()}


async def instance_path(runtime: Runtime, instance_id: str) -> dict[str, Any] | None:
    """The steps one instance went through, in order, to draw its path on the graph."""
    # No id holds a NUL (PostgreSQL cannot be asked for one).
    known = instance_id and "\x00" not in instance_id
    instance = await runtime.store.instance(instance_id) if known else None
    if instance is None:
        return None
    trace = await runtime.reads.trace(instance.profile_id, limit=_TRACE_LIMIT)
    steps = [
        r.step
        for r in trace
        if r.instance_id == instance_id
        and r.step is not None
        and r.outcome not in REACTION_OUTCOMES  # noted on the send step later: no move
    ]
    visited = [ENTRY, *dict.fromkeys(steps)]
    taken = [[a, b] for a, b in itertools.pairwise([ENTRY, *steps]) if a != b]
    return {
        "id": instance.id,
        "journey": instance.journey,
        "profile_id": instance.profile_id,
        "version": instance.version,
        "status": instance.status,
        "end_state": instance.end_state,
        "step": instance.step,
        "visited": visited,
        "taken": list(map(list, dict.fromkeys(map(tuple, taken)))),
    }


async def journey_versions(
    runtime: Runtime, journey: m.Journey, version: int, against: int | None
) -> dict[str, Any]:
    """A stored version's document, and a unified diff against another version."""
    store = runtime.store
    document = await store.journey_document(journey.name, version)
    other = await store.journey_document(journey.name, against) if against else None
    diff = ""
    if document is not None and other is not None:
        diff = "".join(
            difflib.unified_diff(
                _yaml(other).splitlines(keepends=True),
                _yaml(document).splitlines(keepends=True),
                f"{journey.name} v{against}",
                f"{journey.name} v{version}",
            )
        )
    return {
        "name": journey.name,
        "versions": list(range(1, journey.version + 1)),
        "version": version,
        "document": document,
        "document_yaml": _yaml(document) if document is not None else "",
        "against": against,
        "diff": diff,
    }


def _yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


# profiles


async def profile_search(runtime: Runtime, query: str) -> list[str]:
    """Profile ids a userId, anonymousId, email or phone number leads to."""
    query = query.strip()
    if not query or "\x00" in query:  # no id holds a NUL: ingest refuses one
        return []
    found: list[str] = []
    if await runtime.reads.profile(query) is not None:
        found.append(query)
    wanted = [("anonymousId", query), ("email", normal_email(query))]
    found += (await runtime.store.resolve(wanted)).values()
    if _PHONE.fullmatch(query):
        for phone in dict.fromkeys((query, re.sub(r"[\s().-]", "", query))):
            found += await runtime.reads.profiles_with_trait("phone", phone, 20)
    return list(dict.fromkeys(found))


_PHONE = re.compile(r"\+?[\d\s().-]{5,}")


async def profile_page(
    runtime: Runtime, query: str, after: str = "", limit: int = 50
) -> dict[str, Any]:
    """A page of profiles for a search: on the first, the ones ``query`` names exactly
    (see :func:`profile_search`); then, in id order, every profile whose id, email or
    anonymousId starts with it, or a word of whose name does, case ignored (every
    profile, for an empty query). ``next`` is the ``after`` of the next page, or None."""
    text = query.strip()
    if "\x00" in text or "\x00" in after:  # no id holds a NUL; PostgreSQL cannot be asked
        return {"query": query, "profiles": [], "next": None}
    exact = await profile_search(runtime, text) if text and not after else []
    found, following = await runtime.reads.search_profiles(text, after, limit)
    profiles = list(dict.fromkeys([*exact, *found]))
    return {"query": query, "profiles": profiles, "next": following}


def _reactions(trace: list[StepRecord], row: MessageRow) -> list[dict[str, Any]]:
    """What the customer (or their provider) did with one message, oldest first."""
    return [
        _step(r)
        for r in trace
        if r.instance_id == row.instance_id and r.step == row.step and r.outcome in ENGAGEMENT
    ]


async def profile_view(
    runtime: Runtime, profile_id: str, *, messages: bool = False
) -> dict[str, Any] | None:
    """A profile as the API's ``GET /v1/profiles/{id}`` and the console show it: traits,
    identities, consent, recent events, and every instance with its timeline (and, with
    ``messages``, what each instance sent)."""
    reads = runtime.reads
    if "\x00" in profile_id:  # no id holds one (ingest refuses it); PostgreSQL cannot look
        return None
    profile = await reads.profile(profile_id)
    if profile is None:
        return None
    # Instances before their records: records are only ever added, so every step that
    # led to the state shown is in the trace, even if a commit lands between the reads.
    instances = await reads.instances_of(profile_id)
    trace = await reads.trace(profile_id)
    # One read for the recent events and the consent audit, which looks further back.
    history = await reads.history(profile_id, limit=AUDIT_EVENTS)
    sent = await reads.messages(profile=profile_id, limit=200) if messages else []
    identities: dict[str, list[str]] = {"userId": [profile.id]}
    for kind, value in await reads.identities_of(profile_id):
        identities.setdefault(kind, []).append(value)
    consent, topics = profile.traits.get("consent"), profile.traits.get("subscriptions")
    account = await reads.account(profile.account) if profile.account is not None else None
    shown = []
    for i in instances:
        shown.append(
            {
                "id": i.id,
                "journey": i.journey,
                "version": i.version,
                "status": i.status,
                "step": i.step,
                "waiting": i.waiting,
                "wake_at": i.wake_at,
                "entered_at": i.entered_at,
                "end_state": i.end_state,
                "ended_at": i.ended_at,
                "trace": [_step(r) for r in trace if r.instance_id == i.id],
            }
        )
        if messages:
            shown[-1]["messages"] = [
                msgspec.to_builtins(row) | {"reactions": _reactions(trace, row)}
                for row in sent
                if row.instance_id == i.id
            ]
    return {
        "id": profile.id,
        "traits": profile.traits,
        "identities": identities,
        "consent": {
            "unsubscribed": profile.traits.get("unsubscribed") is True,
            "channels": consent if isinstance(consent, dict) else {},
            "topics": topics if isinstance(topics, dict) else {},
            "suppressed": msgspec.to_builtins(profile.suppressed),
            "audit": audit(history),
        },
        "events": [
            {
                "name": s.event.name,
                "type": s.event.type,
                "messageId": s.event.message_id,
                "timestamp": s.event.timestamp,
                "properties": s.event.properties,
                "context": s.event.context,
                "received_at": s.received_at,
            }
            for s in history[:RECENT_EVENTS]
        ],
        "account": _account(profile, account, trace),
        "instances": shown,
        "not_entered": [_step(r) for r in trace if r.instance_id is None and r.journey],
        # the segments it is in now, since when; and each change, in the trace's order
        "segments": profile.segments,
        "segment_changes": [
            {"at": r.at, "segment": r.detail, "outcome": r.outcome}
            for r in trace
            if r.instance_id is None and r.outcome in SEGMENT_EVENTS
        ],
    }


def _account(
    profile: Profile, account: Account | None, trace: list[StepRecord]
) -> dict[str, Any] | None:
    """The profile's account (its latest group call's) and its traits, with when each
    account was attached; None when no group call named one."""
    if profile.account is None:
        return None
    return {
        "id": profile.account,
        "traits": account.traits if account is not None else {},
        "attached": [_step(r) for r in trace if r.outcome == "account"],
    }


def _step(item: StepRecord) -> dict[str, Any]:
    return {
        "at": item.at,
        "journey": item.journey,
        "step": item.step,
        "outcome": item.outcome,
        "detail": item.detail,
    }


# events


async def event_tail(
    runtime: Runtime,
    *,
    name: str | None,
    profile: str | None,
    status: str | None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The live tail, each accepted track explained: which journeys it started, or why none."""
    entries = runtime.tail.entries(name=name, profile=profile, status=status, limit=limit)
    return await explain(runtime, entries)


async def explain(runtime: Runtime, entries: list[TailEntry]) -> list[dict[str, Any]]:
    """Tail entries as dicts; an accepted track gets ``journeys``: per journey it can
    start, entered or not_entered with the reason, or a text saying why none can.

    Every accepted event leaves one entry decision per journey it can start, in the order
    the events were processed. So the newest such event of a profile matches the newest
    decision, the one before it the one before, and so on: times alone cannot tell apart
    two events of one batch, which share a time.
    """
    workspace = runtime.workspace
    # The entries were just read from the tail. A decision made after this belongs to an
    # event that arrived since. (An entry's own time is when its call arrived, before the
    # batch that decided on it ran: no bound for its decision.)
    cutoff = runtime.processor.now()
    decisions: dict[int, list[dict[str, str]]] = {}
    for profile_id in dict.fromkeys(e.profile_id for e in entries if _explained(e)):
        mine = [e for e in entries if e.profile_id == profile_id and _explained(e)]
        trace = await runtime.reads.trace(profile_id, limit=_TRACE_LIMIT)
        decisions |= _match(workspace, mine, trace, cutoff)
    owners = await profile_owners(runtime, [e.profile_id for e in entries])
    found = []
    for entry in entries:
        item = entry.as_dict()
        # The profile the call's id leads to now (None: none was ever stored).
        item["profile_now"] = owners.get(entry.profile_id)
        if _explained(entry):
            item["journeys"] = _why_none(workspace, entry.name) or decisions[entry.seq]
        found.append(item)
    return found


async def profile_owners(runtime: Runtime, ids: list[str]) -> dict[str, str]:
    """The profile each id leads to now: itself if it is a profile, else the profile an
    identify or alias merged it into (its anonymousId's owner). An id of a call that was
    never stored, or of a profile that was never made, is left out."""
    wanted = [i for i in dict.fromkeys(ids) if i and "\x00" not in i]
    found: dict[str, str] = {}
    for profile_id in wanted:
        if await runtime.reads.profile(profile_id) is not None:
            found[profile_id] = profile_id
    missing = [("anonymousId", i) for i in wanted if i not in found]
    if missing:
        for (_, value), owner in (await runtime.store.resolve(missing)).items():
            found[value] = owner
    return found


_TRACE_LIMIT = 100_000
_ENTRY_OUTCOMES = ("entered", "not_entered")


def _explained(entry: TailEntry) -> bool:
    return entry.status == "accepted" and entry.type in ("track", "page", "screen")


def _why_none(workspace: m.Workspace, name: str) -> str:
    """Why no journey can start on the event ``name``, or '' if some can."""
    if name not in workspace.events:
        return f"no kind: event document defines {name!r}, so no journey can start on it"
    if not workspace.journeys_entered_by(name):
        return f"no journey starts on {name!r}"
    return ""


def _match(
    workspace: m.Workspace, entries: list[TailEntry], trace: list[StepRecord], cutoff: datetime
) -> dict[int, list[dict[str, str]]]:
    """Per tail entry (by seq) of one profile, newest first: its decision per journey.
    Decisions made after ``cutoff`` are left out: their events are not among the entries."""
    found: dict[int, list[dict[str, str]]] = {e.seq: [] for e in entries}
    for journey in workspace.journeys.values():
        made = [
            r
            for r in reversed(trace)
            if r.journey == journey.name
            and r.outcome in _ENTRY_OUTCOMES
            and "jumped from" not in r.detail
            and r.at <= cutoff
        ]
        events = [e for e in entries if e.name == journey.entry_event]
        for index, entry in enumerate(events):
            decision = made[index] if index < len(made) else None
            found[entry.seq].append(
                {
                    "journey": journey.name,
                    "outcome": decision.outcome if decision else "unknown",
                    "detail": decision.detail if decision else "",
                }
            )
    return found


# messages and caught mail


def caught_mail(path: Path | None, limit: int = 50) -> list[dict[str, Any]]:
    if path is None:
        return []
    mails = MailCatcher.read(path)[-limit:]
    return [
        {
            "from": mail.sender,
            "to": mail.to,
            "subject": mail.subject,
            "text": mail.text,
            "html": mail.html,
            "key": mail.key,
            "received": mail.received,
        }
        for mail in reversed(mails)
    ]


# workspace


def load_folder(runtime: Runtime) -> Loaded | None:
    """The workspace folder the server started from, read again now (None if it has none).

    Read with the server's environment, so JOURNEYMAN_TIMEZONE and JOURNEYMAN_MODE apply.
    """
    if runtime.root is None:
        return None
    return load_workspace(runtime.root, runtime.dispatcher.env)


IMPORTS_SHOWN = 10  # the latest import jobs the workspace page lists


async def workspace_status(runtime: Runtime) -> dict[str, Any]:
    """The workspace folder as it is on disk now: its problems, and what a publish would do;
    the latest imports (``POST /v1/import``) and publishes (who, when, which version)."""
    running = await running_version(runtime)
    imports = [job.as_dict() for job in await runtime.imports.recent(IMPORTS_SHOWN)]
    publishes = [e.as_dict() for e in await runtime.reads.audit("", AUDIT_SHOWN)]
    loaded = load_folder(runtime)
    if loaded is None:
        return {
            "folder": None,
            "valid": None,
            "problems": [],
            "plan": None,
            "running": running,
            "imports": imports,
            "publishes": publishes,
        }
    problems = [p.as_dict() for p in loaded.problems]
    plan = None
    if loaded.workspace is not None:
        plan = dataclasses.asdict(await runtime.publish(loaded.workspace, dry_run=True))
    return {
        "folder": str(runtime.root),
        "valid": loaded.workspace is not None,
        "problems": problems,
        "plan": plan,
        "running": running,
        "imports": imports,
        "publishes": publishes,
    }


async def running_version(runtime: Runtime) -> dict[str, Any]:
    """The workspace version this server runs, and where it came from (when recorded)."""
    found = await origin(runtime.store, runtime.version) if runtime.version else None
    return {
        "version": runtime.version,
        "from": found.source if found else None,
        "at": found.at if found else None,
        "published": found.describe() if found else None,
    }


# dead letters


async def dead_letters(runtime: Runtime, limit: int = 100) -> dict[str, Any]:
    """How many dead letters are kept, and the latest ``limit``, newest first."""
    count, letters = await runtime.reads.dead_letters(limit)
    return {"count": count, "dead_letters": [dead_letter(letter) for letter in letters]}


def dead_letter(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON: where and why it failed, what it carries (``triggers``,
    decoded, or null if it cannot be read), and the message itself, as it came
    (``headers``, and ``body`` in base64)."""
    try:
        triggers = msgspec.to_builtins(_decode(letter))
    except Exception:
        triggers = None
    return {
        "id": letter.id,
        "partition": letter.partition,
        "kind": _kind(letter.headers),
        "error": letter.error,
        "attempts": letter.attempts,
        "first_failed_at": letter.first_failed_at,
        "last_failed_at": letter.last_failed_at,
        "triggers": triggers,
        "headers": letter.headers,
        "body": base64.b64encode(letter.body).decode(),
    }


def _decode(letter: DeadLetter) -> list[Any]:
    # Imported here: a deployment without a bus never loads the NATS client.
    from journeyman.scaleout.bus import decode_message

    return list(decode_message(letter.headers, letter.body))


def _kind(headers: Mapping[str, str]) -> str:
    for header, kind in _KINDS:
        if header in headers:
            return kind
    return "event"


_KINDS = (
    ("Journeyman-Timers", "timers"),
    ("Journeyman-Timer", "timers"),
    ("Journeyman-Outcome", "outcome"),
    ("Journeyman-Command", "command"),
)


class ReplayFailed(JourneymanError):
    """A replay that did not take: ``retry`` when the bus or the store was away (try
    again later), else the message failed again; the dead letter is kept either way."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry


async def replay_dead_letter(runtime: Runtime, letter: DeadLetter) -> dict[str, Any]:
    """Send a dead letter's message on again, then forget the dead letter.

    With a bus, the message is published again to its partition, as it came; its owner
    applies it moments later (if it fails again, it comes back as a new dead letter).
    Without one, the processor applies it now. Raises :class:`ReplayFailed`.
    """
    bus = getattr(runtime, "bus", None)  # serve --bus (a BusRuntime)
    if bus is not None:
        try:
            partition = await bus.republish(letter)
        except Exception as error:
            raise ReplayFailed(f"the bus did not take the message: {error}", retry=True) from None
        answer: dict[str, Any] = {"id": letter.id, "replayed": "published"}
        answer["partition"] = partition
    else:
        answer = {"id": letter.id, "replayed": "applied", "results": await _apply(runtime, letter)}
    await runtime.reads.delete_dead_letter(letter.id)
    return answer


async def _apply(runtime: Runtime, letter: DeadLetter) -> list[str]:
    try:
        triggers = _decode(letter)
    except Exception as error:
        raise ReplayFailed(f"not a message journeyman can read: {error}", retry=False) from None
    try:
        answers = await runtime.processor.submit_each(triggers)
    except Overloaded:
        raise ReplayFailed("too much is queued; retry shortly", retry=True) from None
    failed = [a for a in answers if isinstance(a, Exception)]
    if failed:
        raise ReplayFailed(f"the message failed again: {failed[0]!r}", retry=False)
    return [a for a in answers if isinstance(a, str)]
